"""DIMSE messages of one connection: reassembly, request/response correlation, timing.

``DimseTransactions`` takes the framer's command and dataset PDV items (pdu.py) that the
conversation hands it, reassembles each message per (direction, presentation context),
decodes its command set (dimse.py), pairs every request with its responses by Message ID
(PS3.7 9.1) and emits a ``DimseTransaction`` with the timings of DESIGN §3 when the final
response completes, or when the request is given up. It never sees bytes of a data set:
dataset PDVs arrive as lengths.
"""

from __future__ import annotations

from .dimse import (
    C_CANCEL,
    COMMAND_SET_START,
    Command,
    CommandSetError,
    command_shape,
    decode_command,
    status_class,
)
from .events import (
    ACCEPTOR,
    REQUESTOR,
    DimseRequestSeen,
    DimseResponseSeen,
    DimseTransaction,
    ProtocolError,
)
from .problems import BAD_COMMAND_SET, COMMAND_TOO_LARGE, DUPLICATE_MESSAGE_ID, TOO_MANY_PENDING
from .roles import CERTAIN, Roles

# The command set memo (``DimseTransactions.command_memo``): a C-ECHO or C-FIND, and their
# responses, are byte-identical in every association of a peer (message ID 1, the same
# SOP class), about 60 % of the commands of short associations (many-flows benchmark),
# while decoding one costs ~24 k instructions. A command set that names an instance (a
# C-STORE's) is never met again: it is kept by its dimse.command_shape instead (the same
# SCU's C-STOREs differ by little but the instance; finding the shape costs ~9 k), in a
# memo of its own (a shape is not a command set: the two kinds of key never meet). Both
# bounded by entries and by the size of what they keep.
COMMAND_MEMO_ENTRIES = 1024
COMMAND_MEMO_MAX_BYTES = 512  # per command set (they are ~60-200 bytes)
# DimseTransaction.outcome of a request still open when the capture or the daemon stopped
IN_FLIGHT = "in-flight-at-capture-end"


class Transaction:
    """One request awaiting its final response (plain mutable record, not an event)."""

    __slots__ = (
        "key", "command", "sop_class_uid", "context_id", "message_id", "request_ts",
        "request_complete_ts", "response_ts", "final_response_ts", "response_complete_ts",
        "request_bytes",
        "response_bytes", "pending", "complete", "status", "status_class", "last_ts",
        "instance_uid", "error_comment", "move_destination", "remaining", "completed",
        "failed", "warning", "done", "stalls", "sender",
    )  # fmt: skip

    def __init__(
        self,
        key: tuple,
        cmd: Command,
        context_id: int,
        request_ts: float,
        sender: str = "",
        command: str = "",
    ):
        self.key = key
        self.sender = sender  # of the request: "requestor", or "acceptor" (C-GET's C-STOREs)
        self.command = command or cmd.name  # the caller's cmd.name, when it has it
        self.sop_class_uid = cmd.sop_class_uid
        self.context_id = context_id
        self.message_id = cmd.message_id or 0
        self.request_ts = request_ts
        self.request_complete_ts: float | None = None
        self.response_ts: float | None = None
        self.final_response_ts: float | None = None  # first packet of the final response
        self.response_complete_ts: float | None = None
        self.request_bytes = 0
        self.response_bytes = 0
        self.pending = 0
        self.complete = True
        self.status: int | None = None
        self.status_class = "unanswered"
        self.last_ts = request_ts
        self.instance_uid = cmd.affected_sop_instance_uid or cmd.requested_sop_instance_uid
        self.error_comment = ""
        self.move_destination = cmd.move_destination
        self.remaining: int | None = None
        self.completed: int | None = None
        self.failed: int | None = None
        self.warning: int | None = None
        self.done = False
        self.stalls: dict | None = None  # (sender, cause) -> [count, seconds]


class Message:
    """A DIMSE message being reassembled on one (direction, context)."""

    __slots__ = ("start_ts", "buf", "broken", "command", "txn", "final", "incomplete", "stalls")

    def __init__(self, start_ts: float, buf: bytearray | None):
        self.start_ts = start_ts  # first packet of the command
        self.buf = buf  # command fragments until decoded (None: decoded, or never)
        self.broken = False  # over the cap or a fragment lost: never decoded
        self.command: Command | None = None
        self.txn: Transaction | None = None
        self.final = False  # a final (non-pending) response
        self.incomplete = False
        self.stalls: dict | None = None  # stalls before its transaction was known


def delta(a: float | None, b: float | None) -> float | None:
    """``b - a``, or None when either instant was not seen."""
    return None if a is None or b is None else b - a


class DimseTransactions:
    """The DIMSE state of one connection; events are appended to the caller's ``out``."""

    __slots__ = (
        "roles",
        "max_command_bytes",
        "keep_instance_uids",
        "transaction_timeout",
        "max_pending",
        "messages",
        "collecting",
        "transactions",
        "in_gap",
        "pending_stalls",
        "command_memo",
        "shape_memo",
    )

    def __init__(
        self,
        roles: Roles,
        max_command_bytes: int,
        keep_instance_uids: bool,
        transaction_timeout: float,
        max_pending: int,
        command_memo: dict | None = None,
        shape_memo: dict | None = None,
    ) -> None:
        """``command_memo``: command set bytes -> decoded Command, ``shape_memo``: the same
        by dimse.command_shape, shared by the connections of a pipeline
        (acse.AssociateDecoder.commands / .command_shapes; its own if None). Decoding is a
        pure function of the bytes, and a Command is never changed once decoded."""
        self.roles = roles
        self.max_command_bytes = max_command_bytes
        self.keep_instance_uids = keep_instance_uids
        self.transaction_timeout = transaction_timeout
        self.max_pending = max_pending
        self.messages: dict[tuple[int, int], Message] = {}
        self.collecting: list[tuple[int, int] | None] = [None, None]
        self.transactions: dict[tuple[int, int, int], Transaction] = {}
        # Items being handled come from a gap: a PDV finished by a gap ended in bytes never
        # seen, so when its last packet was on the wire is unknown and no time is measured
        # from or to it (DESIGN §3 times are packet times; a wrong one is worse than none).
        self.in_gap = False
        # Stalls inside a P-DATA-TF before its command was decoded, per direction: they
        # belong to the next message of that direction (a response split after its headers).
        # (None until the first such stall: most connections never have one)
        self.pending_stalls: list[dict | None] | None = None
        # (with instance UIDs kept every command set is unique: no memo)
        self.command_memo = (
            None if keep_instance_uids else {} if command_memo is None else command_memo
        )
        self.shape_memo = {} if shape_memo is None else shape_memo

    # -- the conversation's calls ---------------------------------------------------------

    def drop_direction(self, d: int) -> None:
        """Forget the partial messages of direction ``d`` (it lost its framing)."""
        for key in [k for k in self.messages if k[0] == d]:
            del self.messages[key]
        self.collecting[d] = None

    def end(self, out: list, capture_ended: bool = False) -> None:
        """The connection is over: every open request is unanswered, or, when it was the
        capture (or the daemon) that stopped, in flight: nobody failed to answer it."""
        self.messages.clear()
        if not self.transactions:  # every request answered: the usual end
            return
        outcome = IN_FLIGHT if capture_ended else "unanswered-ended"
        for txn in list(self.transactions.values()):
            self._emit_txn(txn, outcome, out)
        self.transactions.clear()

    def touch(self, now: float) -> None:
        """The connection delivered bytes up to ``now``: a transaction whose message is
        still arriving (a data set being skipped, no item per packet) is not quiet."""
        for m in self.messages.values():
            txn = m.txn
            if txn is not None and txn.last_ts < now:
                txn.last_ts = now

    def expire(self, now: float, out: list) -> None:
        """Give up the requests quiet for longer than the transaction timeout."""
        limit = now - self.transaction_timeout
        for txn in [t for t in self.transactions.values() if t.last_ts <= limit]:
            del self.transactions[txn.key]
            self._emit_txn(txn, "unanswered-timeout", out)

    # -- P-DATA: message reassembly ---------------------------------------------------------

    def on_command_fragment(self, d: int, item: tuple, ts: float, out: list) -> None:
        _, ctx, last, data, start_ts = item
        key = (d, ctx)
        msgs = self.messages
        m = msgs.get(key)
        if m is not None and m.broken and data.startswith(COMMAND_SET_START):
            # A broken (over-cap) command whose last fragment never came: a fragment that
            # starts like a new command set (CommandGroupLength, length 4) ends it.
            m = None
        elif m is not None and m.command is not None:
            # A new command while the previous message still waited for dataset
            # fragments: its last fragment was lost (or never sent).
            del msgs[key]
            m.incomplete = True
            self._message_complete(m, None, out)
            m = None
        other = self.collecting[d]
        if other is not None and other != key:
            # PS3.8 E.1 forbids interleaving messages in one direction (the conversation
            # reports fragments-interleaved). The interrupted command is kept, so neither
            # message is lost or decoded from half its fragments; any third partial command
            # of this side is dropped: at most two command buffers per side.
            for k in [k for k, o in msgs.items() if k[0] == d and k not in (key, other)]:
                if msgs[k].command is None:
                    del msgs[k]
        if m is None and last and len(data) <= self.max_command_bytes:
            # The usual case: a whole command set in one PDV. Decoded from the PDV itself:
            # no buffer, and the message is never stored unless a data set follows.
            self.collecting[d] = None
            m = Message(start_ts, None)
            if self.pending_stalls is not None:
                self._take_pending_stalls(d, m)
            command_set = data
        else:
            self.collecting[d] = key
            if m is None:
                m = msgs[key] = Message(start_ts, bytearray())
                if self.pending_stalls is not None:
                    self._take_pending_stalls(d, m)
            if not m.broken:
                assert m.buf is not None
                if len(m.buf) + len(data) > self.max_command_bytes:
                    detail = f"command set over {self.max_command_bytes} bytes"
                    out.append(ProtocolError(ts, self.roles.sender(d), COMMAND_TOO_LARGE, detail))
                    m.broken = True
                    m.buf = None
                else:
                    m.buf += data
            if not last:
                return
            del msgs[key]
            self.collecting[d] = None
            if m.broken or m.buf is None:
                return
            command_set = bytes(m.buf)
            m.buf = None
        try:
            cmd = self._decode(command_set)
        except CommandSetError as exc:
            out.append(ProtocolError(ts, self.roles.sender(d), BAD_COMMAND_SET, str(exc)))
            return
        m.command = cmd
        has_dataset = cmd.has_dataset
        if has_dataset:
            msgs[key] = m
        if cmd.is_response:
            self._on_response(d, ctx, m, cmd, ts, out)
        else:
            self._on_request(d, ctx, m, cmd, out)
        if not has_dataset:
            self._message_complete(m, ts, out)

    def _decode(self, command_set: bytes) -> Command:
        """``decode_command(command_set)``, through the memos (see COMMAND_MEMO_ENTRIES)."""
        memo = self.command_memo
        if memo is None or len(command_set) > COMMAND_MEMO_MAX_BYTES:
            return decode_command(command_set, self.keep_instance_uids)  # (positional)
        cmd = memo.get(command_set)
        if cmd is not None:
            return cmd
        key = command_shape(command_set)
        if key is None:
            key = command_set  # names no instance: kept by its bytes
        else:
            memo = self.shape_memo
            cmd = memo.get(key)
            if cmd is not None:
                return cmd
        cmd = decode_command(command_set, False)  # (a memo: instance UIDs are not kept)
        if len(memo) >= COMMAND_MEMO_ENTRIES:
            memo.clear()
        memo[key] = cmd
        return cmd

    def _take_pending_stalls(self, d: int, m: Message) -> None:
        """A new message of ``d`` owns the stalls seen before its command was decoded."""
        pending = self.pending_stalls
        assert pending is not None
        m.stalls, pending[d] = pending[d], None

    def on_data(self, d: int, item: tuple, ts: float, out: list) -> None:
        _, ctx, last, nbytes, _start_ts, missed = item
        key = (d, ctx)
        m = self.messages.get(key)
        if m is None or m.command is None:
            # No decoded command owns this fragment (midstream start, lost command):
            # it is counted in pdata_bytes and otherwise ignored.
            return
        if missed:
            m.incomplete = True
        txn = m.txn
        if txn is not None:
            txn.last_ts = ts
            if m.command.is_response:
                txn.response_bytes += nbytes
            else:
                txn.request_bytes += nbytes
        if last:
            del self.messages[key]
            self._message_complete(m, None if self.in_gap else ts, out)

    def on_lost(self, d: int, ctx: int) -> None:
        """A gap destroyed PDV(s) of ``ctx`` (-1: of any context) in direction ``d``."""
        for key in [k for k in self.messages if k[0] == d and (ctx < 0 or k[1] == ctx)]:
            m = self.messages[key]
            m.incomplete = True
            if m.txn is not None:
                m.txn.complete = False
            if m.command is None:  # a command fragment is gone: it can never be decoded
                del self.messages[key]
                if self.collecting[d] == key:
                    self.collecting[d] = None

    # -- DIMSE correlation ------------------------------------------------------------------

    def _on_request(self, d: int, ctx: int, m: Message, cmd: Command, out: list) -> None:
        roles = self.roles
        if roles.evidence != CERTAIN:  # (the call only when there is something to learn)
            roles.learn_from_command(d, cmd)
        sender = REQUESTOR if d == roles.requestor_direction else ACCEPTOR  # roles.sender
        if cmd.command_field == C_CANCEL:
            mid = cmd.message_id_being_responded_to or 0
            out.append(
                DimseRequestSeen(m.start_ts, sender, "C-CANCEL", cmd.sop_class_uid, ctx, mid)
            )
            return
        if cmd.message_id is None:
            out.append(
                ProtocolError(m.start_ts, sender, BAD_COMMAND_SET, "request without MessageID")
            )
            return
        name = cmd.name
        out.append(
            DimseRequestSeen(m.start_ts, sender, name, cmd.sop_class_uid, ctx, cmd.message_id)
        )
        key = (d, ctx, cmd.message_id)
        txns = self.transactions
        if key in txns:
            detail = f"message id {cmd.message_id}"
            out.append(ProtocolError(m.start_ts, sender, DUPLICATE_MESSAGE_ID, detail))
            txns[key].done = True
        elif len(txns) >= self.max_pending:
            detail = f"{self.max_pending} requests open"
            out.append(ProtocolError(m.start_ts, sender, TOO_MANY_PENDING, detail))
            return
        txn = Transaction(key, cmd, ctx, m.start_ts, sender, name)
        txns[key] = txn
        m.txn = txn
        if m.stalls:
            txn.stalls = add_stalls(None, m.stalls)

    def _on_response(
        self, d: int, ctx: int, m: Message, cmd: Command, ts: float, out: list
    ) -> None:
        roles = self.roles
        if roles.evidence != CERTAIN:
            roles.learn_from_command(d, cmd)
        sender = REQUESTOR if d == roles.requestor_direction else ACCEPTOR
        mid = cmd.message_id_being_responded_to
        if mid is None or cmd.status is None:
            detail = "response without MessageIDBeingRespondedTo or Status"
            out.append(ProtocolError(m.start_ts, sender, BAD_COMMAND_SET, detail))
            return
        status = cmd.status
        # (success, the usual answer, without the call: status_class's first case)
        cls = "success" if status == 0 else status_class(cmd.command_field, status)
        out.append(DimseResponseSeen(m.start_ts, sender, cmd.name, status, cls, ctx, mid))
        txn = self.transactions.get((1 - d, ctx, mid))
        if txn is None:  # request not seen (midstream start) or already given up
            return
        m.txn = txn
        if m.stalls:
            txn.stalls = add_stalls(txn.stalls, m.stalls)
        if txn.response_ts is None:
            txn.response_ts = m.start_ts
        txn.last_ts = ts
        txn.status = cmd.status
        txn.status_class = cls
        if cmd.error_comment:
            txn.error_comment = cmd.error_comment
        # the sub-operation counts (C-MOVE/C-GET), spelt out: no getattr/setattr by name
        if cmd.remaining is not None:
            txn.remaining = cmd.remaining
        if cmd.completed is not None:
            txn.completed = cmd.completed
        if cmd.failed is not None:
            txn.failed = cmd.failed
        if cmd.warning is not None:
            txn.warning = cmd.warning
        if cls != "pending":  # a final response (more follow a pending one)
            m.final = True
            txn.final_response_ts = m.start_ts
        else:
            txn.pending += 1

    def _message_complete(self, m: Message, ts: float | None, out: list) -> None:
        """The last fragment of ``m`` was seen at ``ts`` (None: it was lost)."""
        txn = m.txn
        if txn is None or txn.done:
            return
        if m.incomplete:
            txn.complete = False
        if ts is not None:
            txn.last_ts = ts
        assert m.command is not None
        if not m.command.is_response:
            txn.request_complete_ts = ts
        elif m.final:
            txn.response_complete_ts = ts
            if txn.request_complete_ts is None:
                # answered before the end of its request was seen (that end lies in a
                # capture gap not yet reported, e.g. held behind a reassembly hole)
                txn.complete = False
            self.transactions.pop(txn.key, None)
            self._emit_txn(txn, "answered", out)

    def _emit_txn(self, txn: Transaction, outcome: str, out: list) -> None:
        txn.done = True
        answered = outcome == "answered"
        # an in-flight request was not answered *yet*: its class says so, not "unanswered"
        unanswered = "in-flight" if outcome == IN_FLIGHT else "unanswered"
        req_done = txn.request_complete_ts
        rsp_ts, rsp_done, final_ts = (
            txn.response_ts,
            txn.response_complete_ts,
            txn.final_response_ts,
        )
        stalls = txn.stalls
        request_ts = txn.request_ts
        transfer = None if req_done is None else req_done - request_ts
        latency = None if req_done is None or rsp_ts is None else rsp_ts - req_done
        response_transfer = None if final_ts is None or rsp_done is None else rsp_done - final_ts
        # Positional, in DimseTransaction's field order (each line names its field): with
        # 30 keyword arguments, matching the names cost as much as building the event.
        # delta() and stall_tuple() are spelt out (request_ts is always known).
        out.append(
            DimseTransaction(
                txn.command,  # command
                txn.sop_class_uid,  # sop_class_uid
                txn.context_id,  # context_id
                txn.message_id,  # message_id
                txn.status if answered else None,  # status
                txn.status_class if answered else unanswered,  # status_class
                outcome,  # outcome
                request_ts,  # request_ts
                req_done,  # request_complete_ts
                rsp_ts,  # response_ts
                rsp_done,  # response_complete_ts
                transfer,  # request_transfer_seconds
                latency,  # response_latency_seconds
                None if rsp_done is None else rsp_done - request_ts,  # duration_seconds
                txn.request_bytes,  # request_dataset_bytes
                txn.response_bytes,  # response_dataset_bytes
                txn.pending,  # pending_responses
                txn.complete,  # complete
                txn.instance_uid,  # affected_sop_instance_uid
                txn.error_comment,  # error_comment
                txn.move_destination,  # move_destination
                txn.remaining,  # suboperations_remaining
                txn.completed,  # suboperations_completed
                txn.failed,  # suboperations_failed
                txn.warning,  # suboperations_warning
                _stall_seconds(stalls) if stalls else 0.0,  # stall_seconds
                stall_tuple(stalls) if stalls else (),  # stalls
                final_ts,  # final_response_ts
                response_transfer,  # response_transfer_seconds
                txn.sender,  # request_sender
            )
        )

    # -- stalls (DESIGN §3) -----------------------------------------------------------------

    def message_open(self, d: int) -> bool:
        """A DIMSE message of direction ``d`` has started and not completed."""
        if self.collecting[d] is not None:
            return True
        for k in self.messages:  # noqa: SIM110 - a loop, not any() over a generator (per stall)
            if k[0] == d:
                return True
        return False

    def request_completed_since(self, d: int, since: float) -> Transaction | None:
        """An open transaction whose request (sent by ``d``) completed at ``since`` or later."""
        for txn in self.transactions.values():
            done = txn.request_complete_ts
            if txn.key[0] == d and done is not None and done >= since:
                return txn
        return None

    def on_stall(
        self, d: int, sender: str, cause: str, seconds: float, txn: Transaction | None = None
    ) -> None:
        """A stall inside a transfer of direction ``d``: to ``txn`` if given (a request
        whose last bytes were resent), else to the message in transfer (its transaction
        once known), else to the next message of ``d``."""
        one = (sender, cause)
        if txn is not None:
            txn.stalls = add_stall(txn.stalls, one, seconds)
            return
        key = self.collecting[d]
        m = self.messages.get(key) if key is not None else None
        if m is None:
            m = next((v for k, v in self.messages.items() if k[0] == d), None)
        if m is None:
            if self.pending_stalls is None:
                self.pending_stalls = [None, None]
            self.pending_stalls[d] = add_stall(self.pending_stalls[d], one, seconds)
        elif m.txn is not None:
            m.txn.stalls = add_stall(m.txn.stalls, one, seconds)
        else:
            m.stalls = add_stall(m.stalls, one, seconds)


def add_stall(into: dict | None, key: tuple[str, str], seconds: float) -> dict:
    """``add_stalls(into, {key: [1, seconds]})`` without making that dict (per stall)."""
    if into is None:
        return {key: [1, seconds]}
    total = into.setdefault(key, [0, 0.0])
    total[0] += 1
    total[1] += seconds
    return into


def _stall_seconds(stalls: dict) -> float:
    """The stalls' seconds in all; one entry (the usual case) without sum's generator."""
    if len(stalls) == 1:
        for _count, seconds in stalls.values():
            return seconds
    return sum(v[1] for v in stalls.values())


def add_stalls(into: dict | None, more: dict | None) -> dict | None:
    """Stall totals (sender, cause) -> [count, seconds]: ``into`` plus ``more``."""
    if not more:
        return into
    if into is None:
        return {k: list(v) for k, v in more.items()}
    for k, (count, seconds) in more.items():
        total = into.setdefault(k, [0, 0.0])
        total[0] += count
        total[1] += seconds
    return into


def stall_tuple(stalls: dict | None) -> tuple[tuple[str, str, int, float], ...]:
    """The events' form of stall totals: sorted (sender, cause, count, seconds)."""
    if not stalls:
        return ()
    if len(stalls) == 1:  # the usual case: one sender and cause, nothing to sort
        (((s, c), (n, secs)),) = stalls.items()
        return ((s, c, n, secs),)
    return tuple((s, c, n, secs) for (s, c), (n, secs) in sorted(stalls.items()))

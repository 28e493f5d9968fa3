"""One TCP connection's DICOM conversation: sans-IO, bytes and timestamps in, events out.

``DicomConversation`` owns one PduFramer per direction (pdu.py), decodes association PDUs
(acse.py) and command sets (dimse.py), reassembles messages per (direction, presentation
context), correlates requests with responses and times them as DESIGN §3 says. Nothing
raises out of feed/gap/close/expire: a bug or hostile input becomes a ProtocolError with
kind "parser-exception" and that direction resynchronises (or is given up after repeated
exceptions, so a poison stream cannot make every packet expensive).

The calls return a list of events, or a shared empty tuple when nothing happened (the
common case on the hot path); callers must not mutate the result.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..config import DicomConfig
from . import acse
from .dimse import (
    C_CANCEL,
    Command,
    CommandSetError,
    decode_command,
    is_final_status,
    status_class,
)
from .events import (
    ACCEPTOR,
    REQUESTOR,
    Aborted,
    AssociationAccepted,
    AssociationEnded,
    AssociationRejected,
    AssociationRequested,
    DimseRequestSeen,
    DimseResponseSeen,
    DimseTransaction,
    Event,
    PresentationContext,
    ProtocolError,
    ReleaseReplied,
    ReleaseRequested,
    Resynchronised,
)
from .pdu import CMD, DATA, ERROR, LOST, PARTIAL, PDU, RESYNC, PduFramer

_NO_EVENTS: tuple = ()
_DEFAULT_CONFIG = DicomConfig()
MAX_EXCEPTIONS_PER_DIRECTION = 3  # then the direction is ignored until the flow ends

# Services whose requests only ever flow requestor -> acceptor (the SCU role). C-STORE is
# not one: C-GET sub-operations are C-STORE requests flowing acceptor -> requestor.
_SCU_ONLY = frozenset({0x0010, 0x0020, 0x0021, 0x0030})  # C-GET, C-FIND, C-MOVE, C-ECHO
_C_STORE = 0x0001
_COMMAND_SET_START = b"\x00\x00\x00\x00\x04\x00\x00\x00"  # (0000,0000) UL, length 4
_TIMEOUT_HOWS = frozenset({"idle", "timeout", "evicted-capacity", "evicted-memcap"})


class _Txn:
    """One request awaiting its final response (plain mutable record, not an event)."""

    __slots__ = (
        "key", "command", "sop_class_uid", "context_id", "message_id", "request_ts",
        "request_complete_ts", "response_ts", "response_complete_ts", "request_bytes",
        "response_bytes", "pending", "complete", "status", "status_class", "last_ts",
        "instance_uid", "error_comment", "move_destination", "remaining", "completed",
        "failed", "warning", "done",
    )  # fmt: skip

    def __init__(self, key: tuple, cmd: Command, context_id: int, request_ts: float):
        self.key = key
        self.command = cmd.name
        self.sop_class_uid = cmd.sop_class_uid
        self.context_id = context_id
        self.message_id = cmd.message_id or 0
        self.request_ts = request_ts
        self.request_complete_ts: float | None = None
        self.response_ts: float | None = None
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


class _Msg:
    """A DIMSE message being reassembled on one (direction, context)."""

    __slots__ = ("start_ts", "buf", "broken", "command", "txn", "final", "incomplete")

    def __init__(self, start_ts: float):
        self.start_ts = start_ts  # first packet of the command
        self.buf: bytearray | None = bytearray()  # command fragments until decoded
        self.broken = False  # over the cap or a fragment lost: never decoded
        self.command: Command | None = None
        self.txn: _Txn | None = None
        self.final = False  # a final (non-pending) response
        self.incomplete = False


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


class DicomConversation:
    """Sans-IO DICOM UL/DIMSE state of one connection (directions 0 and 1)."""

    def __init__(
        self,
        requestor_direction: int = 0,
        *,
        config: DicomConfig = _DEFAULT_CONFIG,
        transaction_timeout: float = 300.0,
        max_pending: int = 1024,
    ) -> None:
        self.config = config
        self.transaction_timeout = transaction_timeout
        self.max_pending = max_pending
        self.requestor_direction = requestor_direction
        self.calling_ae = "unknown"
        self.called_ae = "unknown"
        self.missed_bytes = [0, 0]
        self._framers = (
            PduFramer(
                max_command_bytes=config.max_command_bytes,
                max_association_pdu_bytes=config.max_association_pdu_bytes,
            ),
            PduFramer(
                max_command_bytes=config.max_command_bytes,
                max_association_pdu_bytes=config.max_association_pdu_bytes,
            ),
        )
        self._role_evidence = 0  # 0 guess, 1 weak (a C-STORE request), 2 certain
        self._msgs: dict[tuple[int, int], _Msg] = {}
        self._collecting: list[tuple[int, int] | None] = [None, None]
        self._txns: dict[tuple[int, int, int], _Txn] = {}
        self._rq_ts: float | None = None
        self._rq_contexts: tuple[PresentationContext, ...] = ()
        self._release_rq = False
        self._release_rp = False
        self._aborted = False
        self._closed = False
        self._exceptions = [0, 0]
        self._in_gap = False  # items being handled come from gap(), not from bytes

    @property
    def pdata_bytes(self) -> list[int]:
        """P-DATA-TF bytes seen per direction (the framers count them on the hot path)."""
        return [self._framers[0].pdata_bytes, self._framers[1].pdata_bytes]

    @property
    def dicom_seen(self) -> bool:
        """At least one plausible PDU was framed (the flow really is DICOM)."""
        return self._framers[0].synced or self._framers[1].synced

    def sender(self, direction: int) -> str:
        return REQUESTOR if direction == self.requestor_direction else ACCEPTOR

    def silent_direction(self) -> int | None:
        """The direction that delivered nothing while the other spoke DICOM, else None.

        Either the peer never answered or, far more often on a mirror port, only one
        direction is mirrored: the numbers of this association are then one-sided.
        """
        heard = [
            f.synced or f.pdata_bytes > 0 or self.missed_bytes[d] > 0
            for d, f in enumerate(self._framers)
        ]
        if heard[0] != heard[1] and self.dicom_seen:
            return 0 if not heard[0] else 1
        return None

    # -- public API ---------------------------------------------------------------------

    def feed(self, direction: int, data: bytes, ts: float) -> Sequence[Event]:
        try:
            framer = self._framers[direction]
            n = len(data)
            if framer.skip > n:  # hot path, inlined from PduFramer.feed (see pdu.py)
                framer.skip -= n
                framer.pdata_bytes += n
                return _NO_EVENTS
            items = framer.feed(data, ts)
        except Exception as exc:  # noqa: BLE001 - containment is the point
            return self._contain(direction, exc, ts, [])
        if not items:
            return _NO_EVENTS
        return self._handle(direction, items, ts)

    def skip_budget(self, direction: int) -> int:
        """N such that feeding any chunk shorter than N only counts it (the hot path in
        ``feed``): the rest of a PDV being skipped. 0 when the framer is not skipping."""
        return self._framers[direction].skip

    def skip_taken(self, direction: int, nbytes: int) -> None:
        """Account for ``nbytes`` (< ``skip_budget``) fed elsewhere as chunks shorter than
        the budget: exactly what ``feed`` does for each of them."""
        framer = self._framers[direction]
        framer.skip -= nbytes
        framer.pdata_bytes += nbytes

    def gap(self, direction: int, nbytes: int, ts: float) -> Sequence[Event]:
        try:
            self.missed_bytes[direction] += nbytes
            items = self._framers[direction].gap(nbytes, ts)
        except Exception as exc:  # noqa: BLE001
            return self._contain(direction, exc, ts, [])
        if not items:
            return _NO_EVENTS
        # A PDV finished by a gap ended in bytes never seen: when its last packet was on
        # the wire is unknown, so no time is measured from or to it (DESIGN §3 times are
        # packet times; a wrong one is worse than none).
        self._in_gap = True
        try:
            return self._handle(direction, items, ts)
        finally:
            self._in_gap = False

    def close(self, how: str, ts: float) -> Sequence[Event]:
        if self._closed:
            return _NO_EVENTS
        self._closed = True
        out: list = []
        try:
            for framer in self._framers:
                framer.kill()
            self._msgs.clear()
            for txn in list(self._txns.values()):
                self._emit_txn(txn, "unanswered-ended", out)
            self._txns.clear()
            if self.dicom_seen:
                out.append(AssociationEnded(ts, self._end_how(how), _delta(self._rq_ts, ts)))
        except Exception as exc:  # noqa: BLE001
            out.append(ProtocolError(ts, "", "parser-exception", type(exc).__name__))
        return out

    def expire(self, now: float) -> Sequence[Event]:
        if not self._txns:
            return _NO_EVENTS
        out: list = []
        try:
            limit = now - self.transaction_timeout
            for txn in [t for t in self._txns.values() if t.last_ts <= limit]:
                del self._txns[txn.key]
                self._emit_txn(txn, "unanswered-timeout", out)
        except Exception as exc:  # noqa: BLE001
            out.append(ProtocolError(now, "", "parser-exception", type(exc).__name__))
        return out or _NO_EVENTS

    # -- dispatch -------------------------------------------------------------------------

    def _handle(self, d: int, items: Sequence[tuple], ts: float) -> Sequence[Event]:
        out: list = []
        try:
            for item in items:
                kind = item[0]
                if kind == DATA:
                    self._on_data(d, item, ts, out)
                elif kind == CMD:
                    self._on_cmd_fragment(d, item, ts, out)
                elif kind == PDU:
                    self._on_pdu(d, item[1], item[2], item[3], ts, out)
                elif kind == PARTIAL:
                    self._on_partial_associate(d, item[1], item[2], item[3], ts, out)
                elif kind == LOST:
                    self._on_lost(d, item[1])
                elif kind == RESYNC:
                    out.append(Resynchronised(ts, self.sender(d), item[1]))
                elif kind == ERROR:
                    out.append(ProtocolError(ts, self.sender(d), item[1], item[2]))
        except Exception as exc:  # noqa: BLE001
            return self._contain(d, exc, ts, out)
        return out or _NO_EVENTS

    def _contain(self, d: int, exc: Exception, ts: float, out: list) -> list:
        """A bug or unforeseen input: count it, reset this direction, never raise."""
        # Only the exception type: its message could quote PDU content.
        if d not in (0, 1):
            out.append(ProtocolError(ts, "", "parser-exception", type(exc).__name__))
            return out
        out.append(ProtocolError(ts, self.sender(d), "parser-exception", type(exc).__name__))
        self._exceptions[d] += 1
        framer = self._framers[d]
        if self._exceptions[d] >= MAX_EXCEPTIONS_PER_DIRECTION:
            framer.kill()
        else:
            framer.unsync()
        for key in [k for k in self._msgs if k[0] == d]:
            del self._msgs[key]
        self._collecting[d] = None
        return out

    # -- association PDUs -----------------------------------------------------------------

    def _on_pdu(
        self, d: int, pdu_type: int, body: bytes, start_ts: float, ts: float, out: list
    ) -> None:
        try:
            if pdu_type == acse.A_ASSOCIATE_RQ:
                self._on_associate_rq(d, body, start_ts, out)
            elif pdu_type == acse.A_ASSOCIATE_AC:
                self._on_associate_ac(d, body, start_ts, ts, out)
            elif pdu_type == acse.A_ASSOCIATE_RJ:
                self._on_associate_rj(d, body, start_ts, ts, out)
            elif pdu_type == acse.A_RELEASE_RQ:
                acse.check_release(body)
                self._release_rq = True
                out.append(ReleaseRequested(start_ts, self.sender(d)))
            elif pdu_type == acse.A_RELEASE_RP:
                acse.check_release(body)
                self._release_rp = True
                out.append(ReleaseReplied(start_ts, self.sender(d)))
            elif pdu_type == acse.A_ABORT:
                source, reason, source_label, reason_label = acse.decode_abort(body)
                self._aborted = True
                out.append(
                    Aborted(start_ts, self.sender(d), source_label, reason_label, source, reason)
                )
        except acse.AcseError as exc:
            out.append(ProtocolError(ts, self.sender(d), "bad-pdu", str(exc)))

    def _on_partial_associate(
        self, d: int, pdu_type: int, body: bytes, start_ts: float, ts: float, out: list
    ) -> None:
        try:
            if pdu_type == acse.A_ASSOCIATE_RQ:
                self._on_associate_rq(d, body, start_ts, out, partial=True)
            else:
                self._on_associate_ac(d, body, start_ts, ts, out, partial=True)
        except acse.AcseError as exc:
            out.append(ProtocolError(ts, self.sender(d), "bad-pdu", str(exc)))

    def _on_associate_rq(
        self, d: int, body: bytes, start_ts: float, out: list, partial: bool = False
    ) -> None:
        decode = acse.decode_associate_prefix if partial else acse.decode_associate
        rq = decode(body, acse.A_ASSOCIATE_RQ)
        # Whoever sends the A-ASSOCIATE-RQ is the requestor, whatever the flow table guessed.
        self.requestor_direction = d
        self._role_evidence = 2
        self._rq_ts = start_ts
        self._rq_contexts = rq.presentation_contexts
        self.calling_ae = rq.calling_ae
        self.called_ae = rq.called_ae
        out.append(
            AssociationRequested(
                start_ts,
                rq.calling_ae,
                rq.called_ae,
                rq.application_context,
                rq.presentation_contexts,
                rq.user_info,
            )
        )

    def _on_associate_ac(
        self, d: int, body: bytes, start_ts: float, ts: float, out: list, partial: bool = False
    ) -> None:
        decode = acse.decode_associate_prefix if partial else acse.decode_associate
        ac = decode(body, acse.A_ASSOCIATE_AC)
        if self._role_evidence < 2:
            self.requestor_direction = 1 - d
            self._role_evidence = 2
        if self._rq_ts is None:
            # RQ not seen (one-sided capture): the AC echoes the RQ's titles (PS3.8 9.3.3)
            if ac.calling_ae:
                self.calling_ae = ac.calling_ae
            if ac.called_ae:
                self.called_ae = ac.called_ae
        out.append(
            AssociationAccepted(
                start_ts,
                _delta(self._rq_ts, ts),
                self.calling_ae,
                self.called_ae,
                acse.merge_contexts(self._rq_contexts, ac.presentation_contexts),
                ac.user_info,
            )
        )

    def _on_associate_rj(self, d: int, body: bytes, start_ts: float, ts: float, out: list) -> None:
        result, source, reason, result_l, source_l, reason_l = acse.decode_reject(body)
        if self._role_evidence < 2:
            self.requestor_direction = 1 - d
            self._role_evidence = 2
        out.append(
            AssociationRejected(
                start_ts,
                _delta(self._rq_ts, ts),
                result_l,
                source_l,
                reason_l,
                result,
                source,
                reason,
            )
        )

    def _end_how(self, how: str) -> str:
        if self._aborted:
            return "aborted"
        if self._release_rq and self._release_rp:
            return "released"
        if how == "reset":
            return "reset"
        if how in _TIMEOUT_HOWS:
            return "timeout"
        return "closed"

    # -- P-DATA: message reassembly ---------------------------------------------------------

    def _on_cmd_fragment(self, d: int, item: tuple, ts: float, out: list) -> None:
        _, ctx, last, data, start_ts = item
        key = (d, ctx)
        msgs = self._msgs
        m = msgs.get(key)
        if m is not None and m.broken and data.startswith(_COMMAND_SET_START):
            # A broken (over-cap) command whose last fragment never came: a fragment that
            # starts like a new command set (CommandGroupLength, length 4) ends it.
            m = None
        elif m is not None and m.command is not None:
            # A new command while the previous message still waited for dataset
            # fragments: its last fragment was lost (or never sent).
            del msgs[key]
            m.incomplete = True
            self._message_complete(d, m, None, out)
            m = None
        other = self._collecting[d]
        if other is not None and other != key:
            # PS3.8 forbids interleaving messages in one direction; dropping the other
            # partial command keeps at most one command buffer (max_command_bytes) per side.
            msgs.pop(other, None)
        self._collecting[d] = key
        if m is None:
            m = msgs[key] = _Msg(start_ts)
        if not m.broken:
            assert m.buf is not None
            if len(m.buf) + len(data) > self.config.max_command_bytes:
                out.append(
                    ProtocolError(
                        ts,
                        self.sender(d),
                        "command-too-large",
                        f"command set over {self.config.max_command_bytes} bytes",
                    )
                )
                m.broken = True
                m.buf = None
            else:
                m.buf += data
        if not last:
            return
        del msgs[key]
        self._collecting[d] = None
        if m.broken or m.buf is None:
            return
        try:
            cmd = decode_command(bytes(m.buf), keep_instance_uids=self.config.keep_instance_uids)
        except CommandSetError as exc:
            out.append(ProtocolError(ts, self.sender(d), "bad-command-set", str(exc)))
            return
        m.buf = None
        m.command = cmd
        if cmd.has_dataset:
            msgs[key] = m
        if cmd.is_response:
            self._on_response(d, ctx, m, cmd, ts, out)
        else:
            self._on_request(d, ctx, m, cmd, out)
        if not cmd.has_dataset:
            self._message_complete(d, m, ts, out)

    def _on_data(self, d: int, item: tuple, ts: float, out: list) -> None:
        _, ctx, last, nbytes, _start_ts, missed = item
        key = (d, ctx)
        m = self._msgs.get(key)
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
            del self._msgs[key]
            self._message_complete(d, m, None if self._in_gap else ts, out)

    def _on_lost(self, d: int, ctx: int) -> None:
        for key in [k for k in self._msgs if k[0] == d and (ctx < 0 or k[1] == ctx)]:
            m = self._msgs[key]
            m.incomplete = True
            if m.txn is not None:
                m.txn.complete = False
            if m.command is None:  # a command fragment is gone: it can never be decoded
                del self._msgs[key]
                if self._collecting[d] == key:
                    self._collecting[d] = None

    # -- DIMSE correlation ------------------------------------------------------------------

    def _learn_role(self, d: int, cmd: Command) -> None:
        """Midstream (no A-ASSOCIATE seen): correct the requestor guess from DIMSE."""
        if self._role_evidence == 2 or cmd.command_field is None:
            return
        service = cmd.command_field & 0x7FFF
        if service in _SCU_ONLY:
            self.requestor_direction = (1 - d) if cmd.is_response else d
            self._role_evidence = 2
        elif service == _C_STORE and not cmd.is_response and self._role_evidence == 0:
            # Weak: a C-GET's sub-operation C-STOREs flow the other way. Any later C-GET,
            # C-MOVE, C-FIND or C-ECHO message overrides this.
            self.requestor_direction = d
            self._role_evidence = 1

    def _on_request(self, d: int, ctx: int, m: _Msg, cmd: Command, out: list) -> None:
        self._learn_role(d, cmd)
        sender = self.sender(d)
        if cmd.command_field == C_CANCEL:
            mid = cmd.message_id_being_responded_to or 0
            out.append(
                DimseRequestSeen(m.start_ts, sender, "C-CANCEL", cmd.sop_class_uid, ctx, mid)
            )
            return
        if cmd.message_id is None:
            out.append(
                ProtocolError(m.start_ts, sender, "bad-command-set", "request without MessageID")
            )
            return
        out.append(
            DimseRequestSeen(m.start_ts, sender, cmd.name, cmd.sop_class_uid, ctx, cmd.message_id)
        )
        key = (d, ctx, cmd.message_id)
        if key in self._txns:
            out.append(
                ProtocolError(
                    m.start_ts, sender, "duplicate-message-id", f"message id {cmd.message_id}"
                )
            )
            self._txns[key].done = True
        elif len(self._txns) >= self.max_pending:
            out.append(
                ProtocolError(
                    m.start_ts, sender, "too-many-pending", f"{self.max_pending} requests open"
                )
            )
            return
        txn = _Txn(key, cmd, ctx, m.start_ts)
        self._txns[key] = txn
        m.txn = txn

    def _on_response(self, d: int, ctx: int, m: _Msg, cmd: Command, ts: float, out: list) -> None:
        self._learn_role(d, cmd)
        sender = self.sender(d)
        mid = cmd.message_id_being_responded_to
        if mid is None or cmd.status is None:
            out.append(
                ProtocolError(
                    m.start_ts,
                    sender,
                    "bad-command-set",
                    "response without MessageIDBeingRespondedTo or Status",
                )
            )
            return
        cls = status_class(cmd.command_field, cmd.status)
        out.append(DimseResponseSeen(m.start_ts, sender, cmd.name, cmd.status, cls, ctx, mid))
        txn = self._txns.get((1 - d, ctx, mid))
        if txn is None:  # request not seen (midstream start) or already given up
            return
        m.txn = txn
        if txn.response_ts is None:
            txn.response_ts = m.start_ts
        txn.last_ts = ts
        txn.status = cmd.status
        txn.status_class = cls
        if cmd.error_comment:
            txn.error_comment = cmd.error_comment
        for name in ("remaining", "completed", "failed", "warning"):
            value = getattr(cmd, name)
            if value is not None:
                setattr(txn, name, value)
        if is_final_status(cmd.command_field, cmd.status):
            m.final = True
        else:
            txn.pending += 1

    def _message_complete(self, d: int, m: _Msg, ts: float | None, out: list) -> None:
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
            self._txns.pop(txn.key, None)
            self._emit_txn(txn, "answered", out)

    def _emit_txn(self, txn: _Txn, outcome: str, out: list) -> None:
        txn.done = True
        answered = outcome == "answered"
        req_done = txn.request_complete_ts
        out.append(
            DimseTransaction(
                command=txn.command,
                sop_class_uid=txn.sop_class_uid,
                context_id=txn.context_id,
                message_id=txn.message_id,
                status=txn.status if answered else None,
                status_class=txn.status_class if answered else "unanswered",
                outcome=outcome,
                request_ts=txn.request_ts,
                request_complete_ts=req_done,
                response_ts=txn.response_ts,
                response_complete_ts=txn.response_complete_ts,
                request_transfer_seconds=_delta(txn.request_ts, req_done),
                response_latency_seconds=_delta(req_done, txn.response_ts),
                duration_seconds=_delta(txn.request_ts, txn.response_complete_ts),
                request_dataset_bytes=txn.request_bytes,
                response_dataset_bytes=txn.response_bytes,
                pending_responses=txn.pending,
                complete=txn.complete,
                affected_sop_instance_uid=txn.instance_uid,
                error_comment=txn.error_comment,
                move_destination=txn.move_destination,
                suboperations_remaining=txn.remaining,
                suboperations_completed=txn.completed,
                suboperations_failed=txn.failed,
                suboperations_warning=txn.warning,
            )
        )

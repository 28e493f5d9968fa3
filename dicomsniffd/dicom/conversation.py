"""One TCP connection's DICOM conversation: sans-IO, bytes and timestamps in, events out.

``DicomConversation`` owns one PduFramer per direction (pdu.py), decodes the association
PDUs (acse.py) and keeps the association's state (who requested, release, abort, end),
and hands the P-DATA items to its DimseTransactions (transactions.py: message reassembly,
request/response correlation and the timings of DESIGN §3). Nothing
raises out of feed/gap/close/expire: a bug or hostile input becomes a ProtocolError with
kind "parser-exception" and that direction resynchronises (or is given up after repeated
exceptions, so a poison stream cannot make every packet expensive).

The calls return a list of events, or a shared empty tuple when nothing happened (the
common case on the hot path); callers must not mutate the result.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import acse
from .conformance import Conformance
from .events import (
    Aborted,
    AssociationAccepted,
    AssociationEnded,
    AssociationRejected,
    AssociationRequested,
    Event,
    PresentationContext,
    ProtocolError,
    ReleaseReplied,
    ReleaseRequested,
    Resynchronised,
    Stalled,
)
from .pdu import (
    CMD,
    DATA,
    DATASET_HEAD,
    DEAD,
    ERROR,
    LOST,
    PARTIAL,
    PDU,
    RESYNC,
    VIOLATION,
    PduFramer,
)
from .problems import BAD_PDU, ONE_DIRECTION_ONLY, PARSER_EXCEPTION
from .roles import Roles
from .transactions import DimseTransactions, add_stall, delta, stall_tuple

_NO_EVENTS: tuple = ()
MAX_EXCEPTIONS_PER_DIRECTION = 3  # then the direction is ignored until the flow ends

# close(how): the flow table's reasons that mean "no end was seen, the flow went quiet or
# was dropped" (AssociationEnded.how "timeout"); "reset" stays, anything else is "closed"
_TIMEOUT_HOWS = frozenset({"idle", "timeout", "evicted-capacity", "evicted-memcap"})
# close(how) at the end of the capture or when the daemon stops: AssociationEnded.how
# "capture-ended" (the association was still open; no peer ended it, no peer is to blame)
CAPTURE_END_HOW = "end"
# The flow table's reason when dicomsniffd's own code failed on the connection: the monitor
# stopped watching, as at the end of a capture; nothing is the peers' fault (open requests
# are in flight, not unanswered; no one-sided-capture error).
OBSERVER_FAILED_HOW = "handler-failed"


class DicomConversation:
    """Sans-IO DICOM UL/DIMSE state of one connection (directions 0 and 1)."""

    __slots__ = (
        "calling_ae",
        "called_ae",
        "missed_bytes",
        "roles",
        "_framers",
        "_dimse",
        "_on_data",
        "_on_cmd_fragment",
        "_acse",
        "_rq_ts",
        "_rq_contexts",
        "_release_rq",
        "_release_rp",
        "_aborted",
        "_closed",
        "_exceptions",
        "_stalls",
        "_conformance",
        "_pdata_at_expire",
    )

    def __init__(
        self,
        requestor_direction: int = 0,
        *,
        max_command_bytes: int = 65536,
        max_association_pdu_bytes: int = 65536,
        keep_instance_uids: bool = False,
        transaction_timeout: float = 300.0,
        max_pending: int = 1024,
        associate_decoder: acse.AssociateDecoder | None = None,
    ) -> None:
        """Plain values, no configuration object (the core imports nothing outside dicom/):

        ``requestor_direction`` the flow table's guess (corrected by what is seen);
        ``max_command_bytes`` / ``max_association_pdu_bytes`` the buffering caps of a command
        set and of an association PDU; ``keep_instance_uids`` whether SOP Instance UIDs
        reach the events; ``transaction_timeout`` seconds of capture time before a quiet
        request is given up; ``max_pending`` open requests tracked at most;
        ``associate_decoder`` a memo shared by many conversations (one of its own if None).
        """
        self.calling_ae = "unknown"
        self.called_ae = "unknown"
        self.missed_bytes = [0, 0]
        self.roles = Roles(requestor_direction)
        self._framers = (  # positional, as DimseTransactions below
            PduFramer(max_command_bytes, max_association_pdu_bytes),
            PduFramer(max_command_bytes, max_association_pdu_bytes),
        )
        self._acse = associate_decoder if associate_decoder is not None else acse.AssociateDecoder()
        # positional: one per connection, and keyword calls cost (many-flows benchmark)
        self._dimse = dimse = DimseTransactions(
            self.roles,
            max_command_bytes,
            keep_instance_uids,
            transaction_timeout,
            max_pending,
            self._acse.commands,
            self._acse.command_shapes,
        )
        # Bound once: _handle calls these per PDV, at the cost of a method lookup (not
        # on_lost: rare, and one object less per connection).
        self._on_data = dimse.on_data
        self._on_cmd_fragment = dimse.on_command_fragment
        self._rq_ts: float | None = None
        self._rq_contexts: tuple[PresentationContext, ...] = ()
        self._release_rq = False
        self._release_rp = False
        self._aborted = False
        self._closed = False
        self._exceptions: list[int] | None = None  # per direction, made at the first
        self._stalls: dict | None = None  # (sender, cause) -> [count, seconds]
        # DESIGN §4b checks; the negotiation memo is shared like the decode memo
        self._conformance = Conformance(self._framers, self.roles, self._acse.negotiations)
        self._pdata_at_expire = 0  # P-DATA bytes seen at the last expire() (activity)

    @property
    def requestor_direction(self) -> int:
        """The direction of the association requestor (0 or 1), as known so far."""
        return self.roles.requestor_direction

    @property
    def pdata_bytes(self) -> list[int]:
        """P-DATA-TF bytes seen per direction (the framers count them on the hot path)."""
        return [self._framers[0].pdata_bytes, self._framers[1].pdata_bytes]

    @property
    def dicom_seen(self) -> bool:
        """At least one plausible PDU was framed (the flow really is DICOM)."""
        return self._framers[0].synced or self._framers[1].synced

    def sender(self, direction: int) -> str:
        return self.roles.sender(direction)

    def silent_direction(self) -> int | None:
        """The direction that delivered nothing while the other spoke DICOM, else None.

        Either the peer never answered or, far more often on a mirror port, only one
        direction is mirrored: the numbers of this association are then one-sided.
        """
        # (asked once per connection at its end: both directions spelt out, no list)
        f0, f1 = self._framers
        missed = self.missed_bytes
        heard0 = f0.synced or f0.pdata_bytes > 0 or missed[0] > 0
        heard1 = f1.synced or f1.pdata_bytes > 0 or missed[1] > 0
        if heard0 != heard1 and self.dicom_seen:
            return 0 if not heard0 else 1
        return None

    # -- public API ---------------------------------------------------------------------

    def feed(self, direction: int, data: bytes, ts: float) -> Sequence[Event]:
        try:
            framer = self._framers[direction]
            n = len(data)
            # PduFramer.feed, inlined (one call less per chunk, see pdu.py): the hot path
            # of a data set being skipped, then the framing loop
            if framer.skip > n:
                framer.skip -= n
                framer.pdata_bytes += n
                return _NO_EVENTS
            if framer.state == DEAD or not n:
                return _NO_EVENTS
            items = framer.feed_chunk(data, ts)
        except Exception as exc:  # noqa: BLE001 - containment is the point
            return self._contain(direction, exc, ts, [])
        if not items:
            return _NO_EVENTS
        events = self._handle(direction, items, ts)
        if framer.pending:  # the rest of the chunk after a state-changing PDU (pdu.py)
            return self._feed_pending(direction, framer, list(events), ts)
        return events

    def _feed_pending(self, d: int, framer: PduFramer, events: list, ts: float) -> list:
        while framer.pending:
            rest, framer.pending = framer.pending, b""
            try:
                items = framer.feed(rest, ts)
            except Exception as exc:  # noqa: BLE001
                return self._contain(d, exc, ts, events)
            events.extend(self._handle(d, items, ts))
        return events

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

    def skip_chain(self, direction: int) -> tuple[int, int, int, float] | None:
        """What the compiled lease may walk past the budget (pdvchain.py), or None."""
        return self._framers[direction].chain_spec()

    def skip_chained(
        self,
        direction: int,
        nbytes: int,
        pdvs: int,
        pdv_bytes: int,
        done_ts: float,
        header_ts: float,
        skip_left: int,
        pdv_len: int,
    ) -> None:
        """Account for ``nbytes`` fed elsewhere that ended ``pdvs`` dataset PDVs (of
        ``pdv_bytes`` data bytes, the last at ``done_ts``) of the context skip_chain gave,
        and stopped inside the next one or at its end: exactly what ``feed`` does for them. The DATA
        items of those PDVs are not the last of their data set, so the DIMSE layer only
        adds their bytes and keeps the latest time: one item for all does the same."""
        framer = self._framers[direction]
        framer.chained(nbytes, skip_left, pdv_len, header_ts)
        if pdvs:
            item = (DATA, framer._ctx, False, pdv_bytes, header_ts, False)
            self._on_data(direction, item, done_ts, [])

    def stall(self, direction: int, cause: str, seconds: float, ts: float) -> Sequence[Event]:
        """Data of ``direction`` resumes at ``ts`` after ``seconds`` without any (the
        transport's ``cause``, a plain name). A stall only if it fell inside a request or
        response transfer (DESIGN §3): inside a P-DATA-TF, or between the PDUs of one
        DIMSE message. A pause between messages is the application's own time; but a
        gap ended by resending the last bytes of a request (``loss-recovery`` right after
        the request completed here) is still that request's transfer: the receiver
        waits for those bytes, only the capture saw them already."""
        try:
            dimse = self._dimse
            txn = None
            if not (self._framers[direction].in_pdata() or dimse.message_open(direction)):
                if cause == "loss-recovery":  # the transport's name, a plain value
                    txn = dimse.request_completed_since(direction, ts - seconds - 1e-6)
                if txn is None:
                    return _NO_EVENTS
            sender = self.roles.sender(direction)
            dimse.on_stall(direction, sender, cause, seconds, txn)
            self._stalls = add_stall(self._stalls, (sender, cause), seconds)
        except Exception as exc:  # noqa: BLE001
            return self._contain(direction, exc, ts, [])
        return [Stalled(ts, sender, cause, seconds)]

    def gap(self, direction: int, nbytes: int, ts: float) -> Sequence[Event]:
        try:
            self.missed_bytes[direction] += nbytes
            self._conformance.on_gap()
            items = self._framers[direction].gap(nbytes, ts)
        except Exception as exc:  # noqa: BLE001
            return self._contain(direction, exc, ts, [])
        if not items:
            return _NO_EVENTS
        dimse = self._dimse
        dimse.in_gap = True  # no packet time for what a gap finished (transactions.py)
        try:
            return self._handle(direction, items, ts)
        finally:
            dimse.in_gap = False

    def close(self, how: str, ts: float) -> Sequence[Event]:
        if self._closed:
            return _NO_EVENTS
        self._closed = True
        out: list = []
        try:
            for framer in self._framers:
                framer.kill()
            end_how = self._end_how(how)
            self._dimse.end(out, end_how == "capture-ended")  # (capture_ended)
            if self.dicom_seen:
                end = AssociationEnded(
                    ts,
                    end_how,
                    delta(self._rq_ts, ts),
                    stall_tuple(self._stalls),
                    self._command_with_dataset(),
                )
                out.append(end)
        except Exception as exc:  # noqa: BLE001
            out.append(ProtocolError(ts, "", PARSER_EXCEPTION, type(exc).__name__))
        return out

    def _command_with_dataset(self) -> tuple[tuple[str, int], ...]:
        f0, f1 = self._framers
        if not (f0.command_with_dataset or f1.command_with_dataset):
            return ()  # the usual answer, without the generator
        return tuple(
            (self.roles.sender(d), framer.command_with_dataset)
            for d, framer in enumerate(self._framers)
            if framer.command_with_dataset
        )

    def one_direction_error(self, ts: float) -> ProtocolError | None:
        """After close: the ProtocolError that flags a one-sided capture, or None.

        DESIGN §2b: a one-sided capture must be flagged, not silently half-counted. Not
        part of close()'s events: whoever closes decides whether a capture can be
        one-sided (a conversation fed from a test is not a capture).
        """
        silent = self.silent_direction()
        if silent is None:
            return None
        sender = self.roles.sender(silent)
        return ProtocolError(ts, sender, ONE_DIRECTION_ONLY, f"nothing seen from the {sender}")

    def expire(self, now: float) -> Sequence[Event]:
        if not self._dimse.transactions:
            return _NO_EVENTS
        # Bytes the framers skipped (a data set on the hot path) reach no transaction, yet
        # the connection is not quiet: a slow upload of one big object must not time out
        # while it is still arriving. Bytes since the last call count as activity now for
        # the messages still arriving.
        seen = self._framers[0].pdata_bytes + self._framers[1].pdata_bytes
        if seen != self._pdata_at_expire:
            self._pdata_at_expire = seen
            self._dimse.touch(now)
        out: list = []
        try:
            self._dimse.expire(now, out)
        except Exception as exc:  # noqa: BLE001
            out.append(ProtocolError(now, "", PARSER_EXCEPTION, type(exc).__name__))
        return out or _NO_EVENTS

    # -- dispatch -------------------------------------------------------------------------

    def _handle(self, d: int, items: Sequence[tuple], ts: float) -> Sequence[Event]:
        out: list = []
        try:
            for item in items:
                kind = item[0]
                # (the kinds by how often they come: a short association has about 4
                # PDUs, 3 commands, 2 data sets with their heads; the rest are rare)
                if kind == CMD:
                    first = len(out)
                    self._on_cmd_fragment(d, item, ts, out)
                    self._conformance.after_command(d, item[1], item[2], out, first, ts)
                elif kind == PDU:
                    self._on_pdu(d, item[1], item[2], item[3], ts, out)
                elif kind == DATA:
                    self._on_data(d, item, ts, out)
                elif kind == DATASET_HEAD:
                    self._conformance.on_dataset_head(d, item[1], item[2], ts, out)
                elif kind == PARTIAL:
                    self._on_partial_associate(d, item[1], item[2], item[3], ts, out)
                elif kind == LOST:
                    self._dimse.on_lost(d, item[1])
                    self._conformance.on_lost(d)
                elif kind == RESYNC:
                    out.append(Resynchronised(ts, self.roles.sender(d), item[1]))
                    self._conformance.on_lost(d)
                elif kind == ERROR:
                    out.append(ProtocolError(ts, self.roles.sender(d), item[1], item[2]))
                    self._conformance.on_lost(d)
                elif kind == VIOLATION:
                    out.append(self._conformance.event(ts, d, item[1], item[2]))
        except Exception as exc:  # noqa: BLE001
            return self._contain(d, exc, ts, out)
        return out or _NO_EVENTS

    def _contain(self, d: int, exc: Exception, ts: float, out: list) -> list:
        """A bug or unforeseen input: count it, reset this direction, never raise."""
        # Only the exception type: its message could quote PDU content.
        if d not in (0, 1):
            out.append(ProtocolError(ts, "", PARSER_EXCEPTION, type(exc).__name__))
            return out
        out.append(ProtocolError(ts, self.roles.sender(d), PARSER_EXCEPTION, type(exc).__name__))
        if self._exceptions is None:
            self._exceptions = [0, 0]
        self._exceptions[d] += 1
        framer = self._framers[d]
        if self._exceptions[d] >= MAX_EXCEPTIONS_PER_DIRECTION:
            framer.kill()
        else:
            framer.unsync()
        self._dimse.drop_direction(d)
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
                if len(body) != 4:  # (check_release raises only then: no call otherwise)
                    acse.check_release(body)
                self._release_rq = True
                out.append(ReleaseRequested(start_ts, self.roles.sender(d)))
            elif pdu_type == acse.A_RELEASE_RP:
                if len(body) != 4:
                    acse.check_release(body)
                self._release_rp = True
                self._conformance.on_closed_to_pdata()
                out.append(ReleaseReplied(start_ts, self.roles.sender(d)))
            elif pdu_type == acse.A_ABORT:
                source, reason, source_label, reason_label = acse.decode_abort(body)
                self._aborted = True
                out.append(
                    Aborted(
                        start_ts, self.roles.sender(d), source_label, reason_label, source, reason
                    )
                )
        except acse.AcseError as exc:
            out.append(ProtocolError(ts, self.roles.sender(d), BAD_PDU, str(exc)))

    def _on_partial_associate(
        self, d: int, pdu_type: int, body: bytes, start_ts: float, ts: float, out: list
    ) -> None:
        try:
            if pdu_type == acse.A_ASSOCIATE_RQ:
                self._on_associate_rq(d, body, start_ts, out, partial=True)
            else:
                self._on_associate_ac(d, body, start_ts, ts, out, partial=True)
        except acse.AcseError as exc:
            out.append(ProtocolError(ts, self.roles.sender(d), BAD_PDU, str(exc)))

    def _on_associate_rq(
        self, d: int, body: bytes, start_ts: float, out: list, partial: bool = False
    ) -> None:
        decode = acse.decode_associate_prefix if partial else self._acse.decode_associate
        rq = decode(body, acse.A_ASSOCIATE_RQ)
        # Whoever sends the A-ASSOCIATE-RQ is the requestor, whatever the flow table guessed.
        self.roles.set_requestor(d)
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
        self._conformance.on_rq(d, rq, partial, start_ts, out)

    def _on_associate_ac(
        self, d: int, body: bytes, start_ts: float, ts: float, out: list, partial: bool = False
    ) -> None:
        decode = acse.decode_associate_prefix if partial else self._acse.decode_associate
        ac = decode(body, acse.A_ASSOCIATE_AC)
        self.roles.answered_from(d)
        if self._rq_ts is None:
            # RQ not seen (one-sided capture): the AC echoes the RQ's titles (PS3.8 9.3.3)
            if ac.calling_ae:
                self.calling_ae = ac.calling_ae
            if ac.called_ae:
                self.called_ae = ac.called_ae
        merged = self._acse.merge_contexts(self._rq_contexts, ac.presentation_contexts)
        out.append(
            AssociationAccepted(
                start_ts,
                delta(self._rq_ts, ts),
                self.calling_ae,
                self.called_ae,
                merged,
                ac.user_info,
            )
        )
        self._conformance.on_ac(d, ac, merged, partial, start_ts, out)

    def _on_associate_rj(self, d: int, body: bytes, start_ts: float, ts: float, out: list) -> None:
        result, source, reason, result_l, source_l, reason_l = acse.decode_reject(body)
        self.roles.answered_from(d)
        self._conformance.on_closed_to_pdata()
        out.append(
            AssociationRejected(
                start_ts,
                delta(self._rq_ts, ts),
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
        if how == CAPTURE_END_HOW and not self._release_rq:
            # still open (a release under way whose reply was not seen is "closed": its
            # open requests then were not answered before the release)
            return "capture-ended"
        if how == OBSERVER_FAILED_HOW:
            return "capture-ended"
        return "closed"

"""JSON-lines event log: one line per association, DIMSE transaction and anomaly.

What is written is chosen for a PACS administrator reading it after the fact, and what is
never written is chosen for privacy: no user identity fields (the core keeps only the
type, and this log drops even that), no dataset bytes (the core never has them), and SOP
Instance UIDs only when ``keep_instance_uids`` is set. TCP retransmissions and zero
windows can come once per packet, so they are summed per connection and written once
when the association ends.

A file target is rotated by size (``path`` → ``path.1`` → … → ``path.N``, the oldest
dropped), so the log never takes more than ``(backups + 1) * max_bytes`` of disk plus
one line; a path that is not a regular file (a FIFO, ``/dev/stdout``) is written through,
never rotated. A write error (disk full) drops the line and is counted, it never stops the
capture; ``on_write_error`` is told of each (``dicomsniffd analyze`` fails on it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

from dicomsniffd.config import EventLogConfig
from dicomsniffd.dicom.events import (
    ACCEPTOR,
    REQUESTOR,
    Aborted,
    AssociationAccepted,
    AssociationEnded,
    AssociationRejected,
    AssociationRequested,
    DimseTransaction,
    PresentationContext,
    ProtocolError,
    ProtocolViolation,
    Resynchronised,
    UserInformation,
)
from dicomsniffd.dicom.implementations import implementation_dict
from dicomsniffd.dicom.problems import PROTOCOL_VIOLATIONS, RESYNC
from dicomsniffd.names import context_result, status_hex, uid_display_name
from dicomsniffd.sinks.dispatch import EventSink

log = logging.getLogger(__name__)

_DEFAULTS = EventLogConfig()
# Bound on connections tracked at once (their RQ and TCP tallies); far above the flow
# table's working set, it only matters if AssociationEnded never comes for some flows.
_MAX_TRACKED = 100_000
_MAX_DETAIL = 200


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


class _Tracked:
    """What the log remembers about one connection until its association ends."""

    __slots__ = ("request", "answered", "retransmissions", "zero_windows")

    def __init__(self) -> None:
        self.request: AssociationRequested | None = None
        self.answered = False  # this connection's "association" line was written
        self.retransmissions = {REQUESTOR: 0, ACCEPTOR: 0}
        self.zero_windows = {REQUESTOR: 0, ACCEPTOR: 0}


class EventLog(EventSink):
    EVENTS = {
        DimseTransaction: "_dimse",
        AssociationRequested: "_requested",
        AssociationAccepted: "_accepted",
        AssociationRejected: "_rejected",
        Aborted: "_aborted",
        AssociationEnded: "_ended",
        ProtocolError: "_protocol_error",
        Resynchronised: "_resynchronised",
        ProtocolViolation: "_protocol_violation",
    }

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[str],
        *,
        keep_instance_uids: bool = False,
        max_bytes: int = _DEFAULTS.max_bytes,
        backups: int = _DEFAULTS.backups,
        on_write_error: Callable[[OSError], None] | None = None,
    ) -> None:
        """``target``: a path (opened for append, rotated by size) or an open text stream
        (written as is, never rotated or closed by us). ``on_write_error``: called with each
        write error instead of logging the first one (the line is dropped either way)."""
        super().__init__()
        self.keep_instance_uids = keep_instance_uids
        self.max_bytes = max(1, max_bytes)
        self.backups = max(0, backups)
        self.lines_written = 0
        self.write_errors = 0
        self._on_write_error = on_write_error
        self._tracked: dict[int, _Tracked] = {}
        if isinstance(target, str | os.PathLike):
            self.path: str | None = os.fspath(target)
            self._stream: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            # A FIFO or character device cannot be told, and must never be rotated.
            self._rotates = os.path.isfile(self.path)
            self._size = self._stream.tell() if self._rotates else 0
        else:
            self.path = None
            self._rotates = False
            self._stream = target
            self._size = 0

    @classmethod
    def from_config(cls, config: EventLogConfig, keep_instance_uids: bool = False) -> EventLog:
        return cls(
            config.path,
            keep_instance_uids=keep_instance_uids,
            max_bytes=config.max_bytes,
            backups=config.backups,
        )

    # -- writing -----------------------------------------------------------------------------

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
        size = len(line.encode("utf-8"))
        try:
            if self._rotates and self._size and self._size + size > self.max_bytes:
                self._rotate()
            self._stream.write(line)
            # One flush per line: events are per DIMSE message, not per packet, and a
            # line must be on disk when someone tails the log during an incident.
            self._stream.flush()
        except OSError as exc:
            self.write_errors += 1
            if self._on_write_error is not None:
                self._on_write_error(exc)
            elif self.write_errors == 1:
                log.error("event log: write failed (%s); lines are dropped until it works", exc)
            return
        self._size += size
        self.lines_written += 1

    def _rotate(self) -> None:
        assert self.path is not None
        self._stream.close()
        if self.backups:
            for index in range(self.backups - 1, 0, -1):
                older = f"{self.path}.{index}"
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{index + 1}")
            os.replace(self.path, f"{self.path}.1")
        # backups == 0: start the file over, the log is bounded to max_bytes.
        self._stream = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self._size = 0

    def flush(self) -> None:
        # A closed stream (ValueError) or a full disk must not fail a shutdown.
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def close(self) -> None:
        """Close the file (a stream given by the caller is only flushed)."""
        if self.path is None:
            self.flush()
        elif not self._stream.closed:
            # Lines are flushed one by one, so only a failed write leaves bytes to lose
            # here, and that failure was already counted (and reported).
            with contextlib.suppress(OSError):
                self._stream.close()

    # -- helpers -----------------------------------------------------------------------------

    def _tracked_for(self, flow: Any) -> _Tracked:
        tracked = self._tracked.get(flow.flow_id)
        if tracked is None:
            if len(self._tracked) >= _MAX_TRACKED:
                self._tracked.pop(next(iter(self._tracked)))  # oldest first
            tracked = self._tracked[flow.flow_id] = _Tracked()
        return tracked

    @staticmethod
    def _base(kind: str, ts: float | None, flow: Any) -> dict[str, Any]:
        return {
            "ts": ts,
            "type": kind,
            "flow_id": flow.flow_id,
            "client": flow.client,
            "server": flow.server,
            "calling_ae": flow.calling_ae,
            "called_ae": flow.called_ae,
        }

    @staticmethod
    def _contexts(contexts: Iterable[PresentationContext]) -> list[dict[str, Any]]:
        out = []
        for pc in contexts:
            entry: dict[str, Any] = {
                "context_id": pc.context_id,
                "abstract_syntax": pc.abstract_syntax,
                "abstract_syntax_name": uid_display_name(pc.abstract_syntax),
                "transfer_syntaxes": [uid_display_name(ts) for ts in pc.transfer_syntaxes],
            }
            if pc.result is not None:
                entry["result"] = context_result(pc.result)
                entry["accepted_transfer_syntax"] = uid_display_name(pc.accepted_transfer_syntax)
            out.append(entry)
        return out

    @staticmethod
    def _implementation(info: UserInformation | None) -> dict[str, Any] | None:
        # Deliberately not the user identity sub-item, not even its type.
        return implementation_dict(info)

    # -- sink interface ----------------------------------------------------------------------

    def _requested(self, event: AssociationRequested, flow: Any) -> None:
        self._tracked_for(flow).request = event

    def _aborted(self, event: Aborted, flow: Any) -> None:
        tracked = self._tracked_for(flow)
        if tracked.request is not None and not tracked.answered:
            self._unanswered(tracked, "aborted-before-accept", flow)
        record = self._base("abort", event.ts, flow)
        record.update(sender=event.sender, source=event.source, reason=event.reason)
        self._write(record)

    def _protocol_error(self, event: ProtocolError, flow: Any) -> None:
        record = self._base("protocol_error", event.ts, flow)
        record.update(sender=event.sender, kind=event.kind, detail=event.detail[:_MAX_DETAIL])
        self._write(record)

    def _protocol_violation(self, event: ProtocolViolation, flow: Any) -> None:
        # DESIGN §4b: the association (flow, AE titles), the side, the rule and the message
        kind = PROTOCOL_VIOLATIONS[event.kind]
        record = self._base("protocol_violation", event.ts, flow)
        record.update(
            sender=event.sender,
            kind=event.kind,
            severity=kind.severity,
            reference=kind.reference,
            detail=event.detail[:_MAX_DETAIL],
            implementation_class_uid=event.implementation_class_uid,
            implementation_version_name=event.implementation_version_name,
        )
        self._write(record)

    def _resynchronised(self, event: Resynchronised, flow: Any) -> None:
        record = self._base("protocol_error", event.ts, flow)
        record.update(sender=event.sender, kind=RESYNC, skipped_bytes=event.skipped_bytes)
        self._write(record)

    def _accepted(self, event: AssociationAccepted, flow: Any) -> None:
        tracked = self._tracked_for(flow)
        tracked.answered = True
        request = tracked.request
        record = self._base("association", event.ts, flow)
        record.update(
            outcome="accepted",
            setup_ms=_ms(event.setup_seconds),
            presentation_contexts=self._contexts(event.presentation_contexts),
            requestor_implementation=self._implementation(request and request.user_info),
            acceptor_implementation=self._implementation(event.user_info),
        )
        self._write(record)

    def _rejected(self, event: AssociationRejected, flow: Any) -> None:
        tracked = self._tracked_for(flow)
        tracked.answered = True
        request = tracked.request
        record = self._base("association", event.ts, flow)
        record.update(
            outcome="rejected",
            setup_ms=_ms(event.setup_seconds),
            reject={"result": event.result, "source": event.source, "reason": event.reason},
            presentation_contexts=self._contexts(request.presentation_contexts if request else ()),
            requestor_implementation=self._implementation(request and request.user_info),
        )
        self._write(record)

    def _unanswered(self, tracked: _Tracked, outcome: str, flow: Any) -> None:
        """The "association" line of an RQ that got no AC or RJ, written at the A-ABORT
        or at the end (reset, close, timeout): exactly the failing cases keep their
        proposal and the requestor's software."""
        request = tracked.request
        assert request is not None
        tracked.answered = True
        record = self._base("association", request.ts, flow)
        record.update(
            outcome=outcome,
            setup_ms=None,
            presentation_contexts=self._contexts(request.presentation_contexts),
            requestor_implementation=self._implementation(request.user_info),
        )
        self._write(record)

    def _dimse(self, event: DimseTransaction, flow: Any) -> None:
        record = self._base("dimse", event.request_ts, flow)
        record.update(
            command=event.command,
            sop_class=uid_display_name(event.sop_class_uid),
            sop_class_uid=event.sop_class_uid,
            message_id=event.message_id,
            status=status_hex(event.status),
            status_class=event.status_class,
            outcome=event.outcome,
            request_bytes=event.request_dataset_bytes,
            response_bytes=event.response_dataset_bytes,
            request_transfer_ms=_ms(event.request_transfer_seconds),
            response_latency_ms=_ms(event.response_latency_seconds),
            response_transfer_ms=_ms(event.response_transfer_seconds),
            duration_ms=_ms(event.duration_seconds),
            pending_responses=event.pending_responses,
            complete=event.complete,
            error_comment=event.error_comment,
        )
        if event.move_destination:
            record["move_destination"] = event.move_destination
        if event.command in ("C-MOVE", "C-GET"):
            record["suboperations"] = {
                "remaining": event.suboperations_remaining,
                "completed": event.suboperations_completed,
                "failed": event.suboperations_failed,
                "warning": event.suboperations_warning,
            }
        if self.keep_instance_uids and event.affected_sop_instance_uid:
            record["affected_sop_instance_uid"] = event.affected_sop_instance_uid
        if event.stalls:
            record["stall_ms"] = _ms(event.stall_seconds)
            record["stalls"] = _stalls(event.stalls)
        self._write(record)

    def _ended(self, event: AssociationEnded, flow: Any) -> None:
        tracked = self._tracked.pop(flow.flow_id, None)
        if tracked is not None and tracked.request is not None and not tracked.answered:
            self._unanswered(tracked, "unanswered", flow)
        if tracked is not None:
            for kind, counts in (
                ("retransmission", tracked.retransmissions),
                ("zero-window", tracked.zero_windows),
            ):
                if any(counts.values()):
                    record = self._base("tcp", event.ts, flow)
                    record.update(kind=kind, count=dict(counts))
                    self._write(record)
        record = self._base("association_end", event.ts, flow)
        record.update(how=event.how, duration_s=event.duration_seconds)
        if event.stalls:
            record["stalls"] = _stalls(event.stalls)
        self._write(record)

    def tcp_event(
        self, kind: str, sender: str, flow: Any, value: float = 0.0, ts: float | None = None
    ) -> None:
        """``ts`` is optional (the pipeline may not pass it); a reset line then has
        ``"ts": null``."""
        if kind == "reset":
            record = self._base("tcp", ts, flow)
            record.update(kind="reset", sender=sender)
            self._write(record)
        elif kind == "retransmission":
            tracked = self._tracked_for(flow)
            tracked.retransmissions[sender] = tracked.retransmissions.get(sender, 0) + 1
        elif kind == "zero-window":
            tracked = self._tracked_for(flow)
            tracked.zero_windows[sender] = tracked.zero_windows.get(sender, 0) + 1

    # add_bytes: EventSink's no-op; volumes belong in the metrics and the summary, not
    # one line per flush.

    def connection_failure(self, server_label: str, reason: str, ts: float | None = None) -> None:
        self._write(
            {"ts": ts, "type": "connection_failure", "server": server_label, "reason": reason}
        )

    def tls_connection(self, server_label: str, outcome: str, ts: float | None = None) -> None:
        self._write({"ts": ts, "type": "tls", "server": server_label, "outcome": outcome})

    def tls_handshake(
        self, flow: Any, outcome: str, detail: Mapping[str, str], ts: float | None = None
    ) -> None:
        """The "tls" line with the connection and how the handshake ended: who refused
        it (the alert's or the reset's side) and how (streams/tls.py)."""
        record = {"ts": ts, "type": "tls", "flow_id": flow.flow_id, "client": flow.client}
        record.update(server=flow.server, outcome=outcome, **detail)
        self._write(record)


def _stalls(stalls: tuple[tuple[str, str, int, float], ...]) -> list[dict[str, Any]]:
    """Stall totals (DESIGN §3) as the event lines show them."""
    return [
        {"sender": sender, "cause": cause, "count": count, "ms": _ms(seconds)}
        for sender, cause, count, seconds in stalls
    ]

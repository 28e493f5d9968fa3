"""The ``Summary`` sink of ``dicomsniffd analyze``: collects one record per association
plus global statistics while the capture is replayed (``state.py``), and hands them to the
findings (``dicomsniffd.findings``) and the text rendering (``text.py``).
"""

from __future__ import annotations

from array import array
from typing import Any

from dicomsniffd.dicom.events import (
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
    ProtocolError,
    Resynchronised,
)
from dicomsniffd.dicom.problems import RESYNC
from dicomsniffd.dicom.transactions import IN_FLIGHT
from dicomsniffd.findings import Collected, evaluate
from dicomsniffd.findings.facts import Association, Command, percentiles, sender_counts
from dicomsniffd.names import command_by_role, is_out_of_resources, status_hex
from dicomsniffd.sinks.dispatch import EventSink
from dicomsniffd.sinks.report.trace import TransactionLog
from dicomsniffd.sinks.summary.moves import MoveLinks
from dicomsniffd.sinks.summary.pairs import Pair, PairTimings, rollup
from dicomsniffd.sinks.summary.rates import OBJECT_COMMANDS, BusyTime
from dicomsniffd.sinks.summary.text import render_text


class Summary(EventSink):
    """Sink building the ``analyze`` summary (``to_dict`` / ``findings`` / ``render_text``)."""

    # Handlers take the association record, not the flow: ``handle`` looks it up first.
    EVENTS = {
        AssociationRequested: "_on_requested",
        AssociationAccepted: "_on_accepted",
        AssociationRejected: "_on_rejected",
        Aborted: "_on_aborted",
        AssociationEnded: "_on_ended",
        DimseRequestSeen: "_on_request",
        DimseResponseSeen: "_on_response",
        DimseTransaction: "_on_transaction",
        ProtocolError: "_on_protocol_error",
        Resynchronised: "_on_resync",
    }

    def __init__(self) -> None:
        self._assocs: dict[int, Association] = {}
        self._commands: dict[str, Command] = {}
        self._tcp = {
            "retransmissions": sender_counts(),
            "zero_windows": sender_counts(),
            "resets": sender_counts(),
        }
        self._rtt = array("d")
        self._connection_failures: dict[tuple[str, str], int] = {}
        self._tls: dict[tuple[str, str], int] = {}
        self._protocol_errors: dict[str, int] = {}
        self._missed_total = 0
        # (command, status, calling, called) -> count, for the failure findings
        self._failures: dict[tuple[str, int, str, str], int] = {}
        self._error_comments: dict[tuple[str, int], list[str]] = {}
        self._unanswered_by: dict[tuple[str, str, str, str], int] = {}
        self._pairs: dict[Pair, PairTimings] = {}  # the per-AE-pair rollup (pairs.py)
        self._moves = MoveLinks()  # C-MOVEs and their sub-associations (moves.py)
        self._busy = BusyTime()  # the effective transfer rate of the objects (rates.py)
        # Per-transaction records for the HTML report (bounded, see TransactionLog).
        self.transactions = TransactionLog()
        super().__init__()  # self._handlers, from EVENTS

    # -- sink interface ----------------------------------------------------------------------

    def _assoc(self, flow: Any) -> Association:
        assoc = self._assocs.get(flow.flow_id)
        if assoc is None:
            assoc = self._assocs[flow.flow_id] = Association(flow)
        return assoc

    def _pair(self, assoc: Association) -> PairTimings:
        key = (assoc.calling_ae, assoc.called_ae)
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._pairs[key] = PairTimings()
        return pair

    def _command(self, command: str) -> Command:
        stats = self._commands.get(command)
        if stats is None:
            stats = self._commands[command] = Command()
        return stats

    def handle(self, event: Any, flow: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is None:
            return
        # _assoc() inlined, then the association touched (start time, latest AE titles):
        # this runs for every event, two calls less per event
        assoc = self._assocs.get(flow.flow_id)
        if assoc is None:
            assoc = self._assocs[flow.flow_id] = Association(flow)
        ts = getattr(event, "ts", None) or getattr(event, "request_ts", None)
        assoc.dicom_seen = True
        if ts is not None and (assoc.start_ts is None or ts < assoc.start_ts):
            assoc.start_ts = ts
        # AE titles are learnt by the pipeline from the RQ/AC: keep the latest.
        assoc.calling_ae = flow.calling_ae
        assoc.called_ae = flow.called_ae
        handler(event, assoc)

    def tcp_event(
        self, kind: str, sender: str, flow: Any, value: float = 0.0, ts: float | None = None
    ) -> None:
        if kind == "handshake-rtt":
            self._rtt.append(value * 1000.0)
            return
        field = {"retransmission": "retransmissions", "zero-window": "zero_windows"}.get(
            kind, "resets" if kind == "reset" else ""
        )
        if not field:
            return
        totals = self._tcp[field]
        totals[sender] = totals.get(sender, 0) + 1
        per_assoc = getattr(self._assoc(flow), field)
        per_assoc[sender] = per_assoc.get(sender, 0) + 1

    def add_bytes(self, kind: str, sender: str, nbytes: int, flow: Any) -> None:
        assoc = self._assoc(flow)
        if kind == "pdata":
            assoc.pdata[sender] = assoc.pdata.get(sender, 0) + nbytes
        elif kind == "missed":
            assoc.missed += nbytes
            self._missed_total += nbytes

    def connection_failure(self, server_label: str, reason: str, ts: float | None = None) -> None:
        key = (server_label, reason)
        self._connection_failures[key] = self._connection_failures.get(key, 0) + 1

    def tls_connection(self, server_label: str, outcome: str, ts: float | None = None) -> None:
        key = (server_label, outcome)
        self._tls[key] = self._tls.get(key, 0) + 1

    def association_count(self) -> int:
        """Connections with DICOM activity seen so far, cheaply (for a progress display)."""
        return len(self._assocs)

    def missed_bytes_total(self) -> int:
        """Bytes the sniffer never saw on DICOM connections (analyze's capture info)."""
        return self._missed_total

    # -- events ------------------------------------------------------------------------------

    def _on_requested(self, event: AssociationRequested, assoc: Association) -> None:
        assoc.requested = True
        assoc.contexts = list(event.presentation_contexts)
        assoc.implementation_class_uid = event.user_info.implementation_class_uid
        assoc.implementation_version_name = event.user_info.implementation_version_name

    def _on_accepted(self, event: AssociationAccepted, assoc: Association) -> None:
        assoc.accepted = True
        assoc.contexts = list(event.presentation_contexts)  # the RQ proposal with answers
        if not assoc.implementation_class_uid:  # RQ not seen: the acceptor's is all we have
            assoc.implementation_class_uid = event.user_info.implementation_class_uid
            assoc.implementation_version_name = event.user_info.implementation_version_name

    def _on_rejected(self, event: AssociationRejected, assoc: Association) -> None:
        assoc.reject = {"result": event.result, "source": event.source, "reason": event.reason}

    def _on_aborted(self, event: Aborted, assoc: Association) -> None:
        assoc.abort = {"source": event.source, "reason": event.reason, "sender": event.sender}

    def _on_ended(self, event: AssociationEnded, assoc: Association) -> None:
        assoc.end = event.how
        assoc.end_ts = event.ts
        assoc.duration = event.duration_seconds

    def _on_request(self, event: DimseRequestSeen, assoc: Association) -> None:
        assoc.requests += 1
        command = command_by_role(event.command, event.sender == ACCEPTOR)
        self._command(command).requests += 1
        if command == "C-STORE":
            self._pair(assoc).objects += 1
            self._moves.store_request(assoc.flow_id, event.ts)

    def _on_response(self, event: DimseResponseSeen, assoc: Association) -> None:
        status = status_hex(event.status)
        # a response from the requestor answers a request of the acceptor (C-GET's stores)
        command = command_by_role(event.command, event.sender == REQUESTOR)
        statuses = assoc.dimse.setdefault(command, {})
        statuses[status] = statuses.get(status, 0) + 1
        responses = self._command(command).responses
        responses[status] = responses.get(status, 0) + 1
        if event.status_class == "failure" or is_out_of_resources(event.status):
            key = (command, event.status, assoc.calling_ae, assoc.called_ae)
            self._failures[key] = self._failures.get(key, 0) + 1

    def _on_transaction(self, event: DimseTransaction, assoc: Association) -> None:
        self.transactions.add(event, assoc.flow_id)
        command = command_by_role(event.command, event.request_sender == ACCEPTOR)
        stats = self._command(command)
        if command == "C-MOVE":
            self._moves.move(assoc, event)
        if event.outcome.startswith("unanswered"):
            assoc.unanswered += 1
            stats.unanswered += 1
            key = (command, event.outcome, assoc.calling_ae, assoc.called_ae)
            self._unanswered_by[key] = self._unanswered_by.get(key, 0) + 1
        elif event.outcome == IN_FLIGHT:
            assoc.in_flight += 1
            stats.in_flight += 1
        if not event.complete:
            stats.incomplete += 1
        # the four TIMINGS, unrolled (no zip and tuple per transaction), per command
        # and per AE pair
        samples = stats.samples
        by_pair = self._pair(assoc).samples
        seconds = event.request_transfer_seconds
        if seconds is not None:
            samples["request_transfer_ms"].append(seconds * 1000.0)
            by_pair["request_transfer_ms"].append(seconds * 1000.0)
        seconds = event.response_latency_seconds
        if seconds is not None:
            samples["response_latency_ms"].append(seconds * 1000.0)
            by_pair["response_latency_ms"].append(seconds * 1000.0)
        seconds = event.response_transfer_seconds
        if seconds is not None:
            samples["response_transfer_ms"].append(seconds * 1000.0)
            by_pair["response_transfer_ms"].append(seconds * 1000.0)
        seconds = event.duration_seconds
        if seconds is not None:
            samples["duration_ms"].append(seconds * 1000.0)
            by_pair["duration_ms"].append(seconds * 1000.0)
        stats.dataset_bytes += event.request_dataset_bytes
        if event.request_dataset_bytes and event.request_transfer_seconds:
            stats.throughput_bytes += event.request_dataset_bytes
            stats.throughput_seconds += event.request_transfer_seconds
        if event.request_dataset_bytes and event.request_complete_ts is not None:
            end = event.response_complete_ts or event.request_complete_ts
            self._busy.add(command, event.request_ts, end, event.request_dataset_bytes)
        if event.error_comment and event.status is not None:
            comments = self._error_comments.setdefault((command, event.status), [])
            if len(comments) < 3 and event.error_comment not in comments:
                comments.append(event.error_comment)

    def _on_protocol_error(self, event: ProtocolError, assoc: Association) -> None:
        self._protocol_errors[event.kind] = self._protocol_errors.get(event.kind, 0) + 1
        assoc.protocol_errors += 1

    def _on_resync(self, event: Resynchronised, assoc: Association) -> None:
        self._protocol_errors[RESYNC] = self._protocol_errors.get(RESYNC, 0) + 1
        assoc.protocol_errors += 1

    # -- output ------------------------------------------------------------------------------

    def _associations(self) -> list[Association]:
        seen = [a for a in self._assocs.values() if a.dicom_seen or any(a.pdata.values())]
        return sorted(seen, key=lambda a: (a.start_ts or 0.0, a.flow_id))

    def to_dict(self, capture_info: dict[str, Any]) -> dict[str, Any]:
        associations = self._associations()
        return {
            "capture": {k: v for k, v in capture_info.items() if not k.startswith("_")},
            "associations": [a.to_dict() for a in associations],
            "dimse": {cmd: self._command_dict(cmd, s) for cmd, s in sorted(self._commands.items())},
            "tcp": {
                "retransmissions": dict(self._tcp["retransmissions"]),
                "zero_windows": dict(self._tcp["zero_windows"]),
                "resets": dict(self._tcp["resets"]),
                "handshake_rtt_ms": percentiles(self._rtt),
                "connection_failures": [
                    {"server": server, "reason": reason, "count": count}
                    for (server, reason), count in sorted(self._connection_failures.items())
                ],
            },
            "tls": [
                {"server": server, "outcome": outcome, "count": count}
                for (server, outcome), count in sorted(self._tls.items())
            ],
            "protocol_errors": dict(sorted(self._protocol_errors.items())),
            "findings": self.findings(capture_info),
            "pairs": rollup(associations, self._pairs, self._failures),
            "moves": self._moves.link(associations),
            "moves_dropped": self._moves.dropped,
            "protocol_errors_by_flow": {
                str(a.flow_id): a.protocol_errors for a in associations if a.protocol_errors
            },
        }

    def _command_dict(self, command: str, stats: Command) -> dict[str, Any]:
        """``Command.to_dict`` with the rates that mean one thing each: ``throughput_mbps``
        the per-object rate on the wire, ``effective_mbps`` bytes ÷ wall time (rates.py);
        both None for commands whose data sets are not objects."""
        out = stats.to_dict()
        if command not in OBJECT_COMMANDS:
            out["throughput_mbps"] = None
        out["effective_mbps"] = self._busy.effective_mbps(command)
        return out

    def findings(self, capture_info: dict[str, Any]) -> list[dict[str, Any]]:
        """All findings, most severe first; within a severity, the most frequent first."""
        return evaluate(self.collected(), capture_info)

    def collected(self) -> Collected:
        """The collected state as the findings read it."""
        return Collected(
            associations=self._associations(),
            commands=self._commands,
            tcp=self._tcp,
            connection_failures=self._connection_failures,
            tls=self._tls,
            protocol_errors=self._protocol_errors,
            missed_total=self._missed_total,
            failures=self._failures,
            error_comments=self._error_comments,
            unanswered_by=self._unanswered_by,
        )

    def timing_samples(self, command: str, name: str) -> list[float]:
        """All samples (ms) of one timing (``response_latency_ms``…) for one command."""
        stats = self._commands.get(command)
        return list(stats.samples[name]) if stats is not None and name in stats.samples else []

    # -- text ---------------------------------------------------------------------------------

    def render_text(self, capture_info: dict[str, Any]) -> str:
        return render_text(self.to_dict(capture_info))

"""The ``Summary`` sink of ``dicomsniffd analyze``: collects one record per association
plus global statistics while the capture is replayed, and hands them to the findings
(``dicomsniffd.findings``) and the text rendering (``text.py``).

Memory is flat in the number of associations: a record lives in ``_assocs`` while its
association is open, then ``kept.KeptAssociations`` counts it in exact totals and keeps a
bounded set of records (the problems, a uniform sample of the rest); timings are
``Distribution``s (exact up to a limit, then a DDSketch with a stated error).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
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
    ProtocolViolation,
    Resynchronised,
)
from dicomsniffd.dicom.problems import RESYNC
from dicomsniffd.dicom.transactions import IN_FLIGHT
from dicomsniffd.findings import Collected, evaluate
from dicomsniffd.findings.facts import (
    NO_TCP_EVENTS,
    Association,
    Command,
    StallTime,
    sender_counts,
)
from dicomsniffd.findings.quantiles import Distribution, percentiles
from dicomsniffd.names import command_by_role, is_out_of_resources, status_hex
from dicomsniffd.sinks.dispatch import EventSink
from dicomsniffd.sinks.report.trace import TransactionLog
from dicomsniffd.sinks.summary.kept import KeptAssociations
from dicomsniffd.sinks.summary.moves import MoveLinks
from dicomsniffd.sinks.summary.pairs import Pair, PairTimings, record_transaction, rollup
from dicomsniffd.sinks.summary.rates import OBJECT_COMMANDS, BusyTime
from dicomsniffd.sinks.summary.software import implementations
from dicomsniffd.sinks.summary.text import render_text

# The shape of ``to_dict`` (``analyze --json``) that ``dicomsniffd compare`` reads back:
# 2 added the per-command rows and TCP health of each AE pair (1: no "schema" key).
SCHEMA = "dicomsniffd-analyze/2"

# Ended associations whose records wait before they are decided on: the events a flow's
# close dispatches after AssociationEnded (the one-sided ProtocolError) still find them.
_ENDED_WAIT = 64
# A record made by a TCP event or a byte count before any DICOM event (``_assoc``) belongs
# to a connection that may never speak DICOM (an HTTP probe or a TLS client on a DICOM
# port that resets): it never gets AssociationEnded, so it would stay to the end, ~950
# bytes each. Of those, the newest QUIET_RECORDS are kept; an older one still without
# DICOM or P-DATA is dropped, as the end would drop it (KeptAssociations.add counts only
# associations), and counted. A real association's RQ comes within a round trip of its
# first packet, long before this many newer connections.
QUIET_RECORDS = 20_000
# Distinct (calling, called) AE title pairs the summary tells apart: every pair costs ~4 KB
# of rollups (timings, totals, health), and the titles come off the network. Associations
# of further pairs are counted under OTHER_PAIR (and in ae_pairs_folded): a site has tens
# to hundreds of pairs, a capture with more is misconfigured or hostile.
MAX_AE_PAIRS = 10_000
OTHER_PAIR = ("(other)", "(other)")
# Distinct rows of the protocol-violation table (kind, sender, AE pair, implementation UID
# and version: all but the kind from the network) and of the TLS table (keyed by the raw
# server address): the rest counted in violations_dropped / tls_handshakes_dropped.
MAX_VIOLATION_ROWS = 1_000


def _count_row(rows: dict, key: tuple, cap: int) -> bool:
    """Count one more ``key`` in ``rows`` unless it would be a row beyond ``cap``."""
    if key in rows:
        rows[key] += 1
    elif len(rows) < cap:
        rows[key] = 1
    else:
        return False
    return True


# Transactions between two compactions of the timing buffers (appended to directly).
_COMPACT_EVERY = 4_096


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
        ProtocolViolation: "_on_protocol_violation",
    }

    def __init__(
        self, kept: KeptAssociations | None = None, *, transaction_log: bool = True
    ) -> None:
        """``transaction_log`` False: no per-transaction records (``transactions`` is None),
        for a run that writes no HTML report, the only reader of them: about a tenth of
        this sink's work per short association."""
        self._assocs: dict[int, Association] = {}  # open (and just ended) associations
        self._ended: deque[int] = deque()  # flow ids of the just ended ones, oldest first
        self._quiet: deque[int] = deque()  # flow ids of records made before any DICOM
        self.quiet_dropped = 0
        self._ae_pairs: dict[tuple[str, str], tuple[str, str]] = {}  # MAX_AE_PAIRS of them
        self.ae_pairs_folded = 0  # associations counted under OTHER_PAIR
        self.violations_dropped = 0
        self.tls_handshakes_dropped = 0
        self.kept = kept if kept is not None else KeptAssociations()
        self._commands: dict[str, Command] = {}
        self._tcp = {
            "retransmissions": sender_counts(),
            # of those, the ones that filled a hole: lost before the capture point
            "lost_before_capture": sender_counts(),
            "zero_windows": sender_counts(),
            "resets": sender_counts(),
        }
        self._rtt = Distribution()
        self._connection_failures: dict[tuple[str, str], int] = {}
        self._tls: dict[tuple[str, str], int] = {}
        # (server "ip:port", outcome, how, refused_by) -> TLS connections (streams/tls.py)
        self._tls_handshakes: dict[tuple[str, str, str, str], int] = {}
        self._protocol_errors: dict[str, int] = {}
        # (kind, sender, calling, called, sender's implementation UID, version) -> count
        self._violations: dict[tuple[str, str, str, str, str, str], int] = {}
        self._missed_total = 0
        # (command, status, calling, called) -> count, for the failure findings
        self._failures: dict[tuple[str, int, str, str], int] = {}
        self._error_comments: dict[tuple[str, int], list[str]] = {}
        self._unanswered_by: dict[tuple[str, str, str, str], int] = {}
        self._pairs: dict[Pair, PairTimings] = {}  # the per-AE-pair rollup (pairs.py)
        self._stalls = StallTime()  # stalls inside transfers, per pair and command
        self._moves = MoveLinks()  # C-MOVEs and their sub-associations (moves.py)
        self._busy = BusyTime()  # the effective transfer rate of the objects (rates.py)
        # Per-transaction records for the HTML report (bounded, see TransactionLog).
        self.transactions = TransactionLog() if transaction_log else None
        self._until_compact = _COMPACT_EVERY
        super().__init__()  # self._handlers, from EVENTS

    # -- sink interface ----------------------------------------------------------------------

    def _assoc(self, flow: Any) -> Association:
        assoc = self._assocs.get(flow.flow_id)
        if assoc is None:
            assoc = self._assocs[flow.flow_id] = Association(flow)
            quiet = self._quiet
            quiet.append(flow.flow_id)
            if len(quiet) > QUIET_RECORDS:
                self._drop_quiet(quiet.popleft())
        return assoc

    def _drop_quiet(self, flow_id: int) -> None:
        old = self._assocs.get(flow_id)
        if old is not None and not (old.dicom_seen or any(old.pdata.values())):
            del self._assocs[flow_id]
            self.quiet_dropped += 1

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
        # every event has ``ts`` but the transaction (``request_ts``); a ts of 0 counts
        # as not known (no getattr with a default: it raises inside for a transaction)
        ts = event.request_ts if type(event) is DimseTransaction else (event.ts or None)
        assoc.dicom_seen = True
        if ts is not None and (assoc.start_ts is None or ts < assoc.start_ts):
            assoc.start_ts = ts
        # AE titles are learnt by the pipeline from the RQ/AC: keep the latest (folded past
        # MAX_AE_PAIRS); they change once or twice per association, so compare identities
        titles = assoc.titles
        if flow.calling_ae is not titles[0] or flow.called_ae is not titles[1]:
            self._learn_titles(assoc, flow)
        handler(event, assoc)

    def _learn_titles(self, assoc: Association, flow: Any) -> None:
        key = (flow.calling_ae, flow.called_ae)
        pair = self._ae_pairs.get(key)
        if pair is None:
            if len(self._ae_pairs) < MAX_AE_PAIRS:
                pair = self._ae_pairs[key] = key
            else:
                pair = OTHER_PAIR
                if assoc.calling_ae is not OTHER_PAIR[0]:
                    self.ae_pairs_folded += 1
        assoc.calling_ae, assoc.called_ae = pair
        assoc.titles = key

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
        if field == "retransmissions" and value:  # flows.state.LOST_BEFORE
            before = self._tcp["lost_before_capture"]
            before[sender] = before.get(sender, 0) + 1
        assoc = self._assoc(flow)
        per_assoc = getattr(assoc, field)
        if per_assoc is NO_TCP_EVENTS:  # the association's first of this kind
            per_assoc = {REQUESTOR: 0, ACCEPTOR: 0}
            setattr(assoc, field, per_assoc)
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

    def tls_handshake(
        self, flow: Any, outcome: str, detail: Mapping[str, str], ts: float | None = None
    ) -> None:
        self.tls_connection(flow.server_label, outcome, ts)
        key = (flow.server, outcome, detail.get("how", ""), detail.get("refused_by", ""))
        if not _count_row(self._tls_handshakes, key, MAX_VIOLATION_ROWS):
            self.tls_handshakes_dropped += 1

    def association_count(self) -> int:
        """Connections with DICOM activity seen so far, cheaply (for a progress display)."""
        return len(self._assocs) + self.kept.totals.associations

    def missed_bytes_total(self) -> int:
        """Bytes the sniffer never saw on DICOM connections (analyze's capture info)."""
        return self._missed_total

    # -- events ------------------------------------------------------------------------------

    def _on_requested(self, event: AssociationRequested, assoc: Association) -> None:
        assoc.requested = True
        assoc.contexts = event.presentation_contexts  # a tuple: read, never changed
        assoc.implementation_class_uid = event.user_info.implementation_class_uid
        assoc.implementation_version_name = event.user_info.implementation_version_name
        assoc.requestor_info = event.user_info

    def _on_accepted(self, event: AssociationAccepted, assoc: Association) -> None:
        assoc.accepted = True
        assoc.contexts = event.presentation_contexts  # the RQ proposal with answers
        assoc.acceptor_info = event.user_info
        assoc.setup_seconds = event.setup_seconds
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
        assoc.command_with_dataset = event.command_with_dataset
        ended = self._ended
        ended.append(assoc.flow_id)
        if len(ended) > _ENDED_WAIT:
            record = self._assocs.pop(ended.popleft(), None)
            if record is not None:
                self.kept.add(record)

    def _on_request(self, event: DimseRequestSeen, assoc: Association) -> None:
        assoc.requests += 1
        command = command_by_role(event.command, event.sender == ACCEPTOR)
        (self._commands.get(command) or self._command(command)).requests += 1  # inlined lookup
        if command == "C-STORE":
            (self._pairs.get((assoc.calling_ae, assoc.called_ae)) or self._pair(assoc)).objects += 1
            assoc.stores += 1
            if assoc.first_store_ts is None:
                assoc.first_store_ts = event.ts

    def _on_response(self, event: DimseResponseSeen, assoc: Association) -> None:
        status = status_hex(event.status)
        # a response from the requestor answers a request of the acceptor (C-GET's stores)
        command = command_by_role(event.command, event.sender == REQUESTOR)
        statuses = assoc.dimse.setdefault(command, {})
        statuses[status] = statuses.get(status, 0) + 1
        responses = (self._commands.get(command) or self._command(command)).responses
        responses[status] = responses.get(status, 0) + 1
        if event.status_class == "failure" or is_out_of_resources(event.status):
            key = (command, event.status, assoc.calling_ae, assoc.called_ae)
            self._failures[key] = self._failures.get(key, 0) + 1

    def _on_transaction(self, event: DimseTransaction, assoc: Association) -> None:
        if self.transactions is not None:
            self.transactions.add(event, assoc.flow_id)
        if event.outcome == "answered":
            pair = (assoc.calling_ae, assoc.called_ae)
            self._stalls.add(pair, event.command, event.duration_seconds, event.stalls)
        command = command_by_role(event.command, event.request_sender == ACCEPTOR)
        stats = self._commands.get(command) or self._command(command)  # inlined lookup
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
        # the four TIMINGS, unrolled (no zip and tuple per transaction), per command,
        # per AE pair and per command of the AE pair (its row counted by pairs.py)
        samples = stats.buffers
        pair_timings = self._pairs.get((assoc.calling_ae, assoc.called_ae)) or self._pair(assoc)
        by_pair = pair_timings.buffers
        by_pair_command = record_transaction(pair_timings, event, command)
        seconds = event.request_transfer_seconds
        if seconds is not None:
            ms = seconds * 1000.0
            samples["request_transfer_ms"].append(ms)
            by_pair["request_transfer_ms"].append(ms)
            by_pair_command["request_transfer_ms"].append(ms)
        seconds = event.response_latency_seconds
        if seconds is not None:
            ms = seconds * 1000.0
            samples["response_latency_ms"].append(ms)
            by_pair["response_latency_ms"].append(ms)
            by_pair_command["response_latency_ms"].append(ms)
        seconds = event.response_transfer_seconds
        if seconds is not None:
            ms = seconds * 1000.0
            samples["response_transfer_ms"].append(ms)
            by_pair["response_transfer_ms"].append(ms)
            by_pair_command["response_transfer_ms"].append(ms)
        seconds = event.duration_seconds
        if seconds is not None:
            ms = seconds * 1000.0
            samples["duration_ms"].append(ms)
            by_pair["duration_ms"].append(ms)
            by_pair_command["duration_ms"].append(ms)
            assoc.busy_seconds += seconds
        stats.dataset_bytes += event.request_dataset_bytes
        if event.request_dataset_bytes and event.request_transfer_seconds:
            stats.throughput_bytes += event.request_dataset_bytes
            stats.throughput_seconds += event.request_transfer_seconds
        self._until_compact -= 1
        if not self._until_compact:
            self._compact()
        if event.request_dataset_bytes and event.request_complete_ts is not None:
            end = event.response_complete_ts or event.request_complete_ts
            self._busy.add(command, event.request_ts, end, event.request_dataset_bytes)
        if event.error_comment and event.status is not None:
            comments = self._error_comments.setdefault((command, event.status), [])
            if len(comments) < 3 and event.error_comment not in comments:
                comments.append(event.error_comment)

    def _compact(self) -> None:
        """Move the timing samples appended since the last time into their sketches (a
        ``Distribution`` stays exact while it is under its limit)."""
        self._until_compact = _COMPACT_EVERY
        pair_commands = [c for p in self._pairs.values() for c in p.commands.values()]
        for owner in (*self._commands.values(), *self._pairs.values(), *pair_commands):
            for distribution in owner.samples.values():
                distribution.compact()

    def _on_protocol_error(self, event: ProtocolError, assoc: Association) -> None:
        self._protocol_errors[event.kind] = self._protocol_errors.get(event.kind, 0) + 1
        assoc.protocol_errors += 1
        if assoc.first_error is None:
            assoc.first_error = (event.sender, event.kind, event.detail)

    def _on_resync(self, event: Resynchronised, assoc: Association) -> None:
        self._protocol_errors[RESYNC] = self._protocol_errors.get(RESYNC, 0) + 1
        assoc.protocol_errors += 1

    def _on_protocol_violation(self, event: ProtocolViolation, assoc: Association) -> None:
        key = (
            event.kind,
            event.sender,
            assoc.calling_ae,
            assoc.called_ae,
            event.implementation_class_uid,
            event.implementation_version_name,
        )
        if not _count_row(self._violations, key, MAX_VIOLATION_ROWS):
            self.violations_dropped += 1

    # -- output ------------------------------------------------------------------------------

    def _associations(self) -> list[Association]:
        """The kept records in start time order, once every record is decided on (the
        capture has been read: the associations still open count as they are)."""
        for record in self._assocs.values():
            self.kept.add(record)
        self._assocs.clear()
        self._ended.clear()
        return self.kept.records()

    def to_dict(self, capture_info: dict[str, Any]) -> dict[str, Any]:
        return self._to_dict(capture_info, self._associations())

    def _to_dict(
        self, capture_info: dict[str, Any], associations: list[Association]
    ) -> dict[str, Any]:
        """``to_dict`` of the kept records ``associations`` (``_associations()``)."""
        totals = self.kept.totals
        return {
            "schema": SCHEMA,
            "capture": {k: v for k, v in capture_info.items() if not k.startswith("_")},
            "associations": [a.to_dict() for a in associations],
            # exact counts over all associations; "associations" lists ``listed`` of them
            "association_totals": {
                **totals.to_dict(),
                "listed": len(associations),
                "sampled": len(associations) < totals.associations,
            },
            "dimse": {cmd: self._command_dict(cmd, s) for cmd, s in sorted(self._commands.items())},
            "tcp": {
                "retransmissions": dict(self._tcp["retransmissions"]),
                "lost_before_capture": dict(self._tcp["lost_before_capture"]),
                "zero_windows": dict(self._tcp["zero_windows"]),
                "resets": dict(self._tcp["resets"]),
                "handshake_rtt_ms": percentiles(self._rtt),
                "stalls": self._stalls.to_dict(),
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
            "pairs": rollup(totals, self._pairs, self._failures),
            "implementations": implementations(associations),
            "protocol_violations": [
                {
                    "kind": kind,
                    "sender": sender,
                    "calling_ae": calling,
                    "called_ae": called,
                    "implementation_class_uid": uid,
                    "implementation_version_name": version,
                    "count": count,
                }
                for (kind, sender, calling, called, uid, version), count in sorted(
                    self._violations.items()
                )
            ],
            "moves": self._moves.link(associations),
            "moves_dropped": self._moves.dropped,
            "connections_without_dicom_dropped": self.quiet_dropped,
            "ae_pairs_folded": self.ae_pairs_folded,
            "protocol_violations_dropped": self.violations_dropped,
            "tls_handshakes_dropped": self.tls_handshakes_dropped,
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
        associations = self._associations()
        return Collected(
            associations=associations,
            totals=self.kept.totals,
            commands=self._commands,
            tcp=self._tcp,
            connection_failures=self._connection_failures,
            tls=self._tls,
            protocol_errors=self._protocol_errors,
            missed_total=self._missed_total,
            failures=self._failures,
            error_comments=self._error_comments,
            unanswered_by=self._unanswered_by,
            tls_handshakes=self._tls_handshakes,
            stalls=self._stalls,
            protocol_violations=self._violations,
        )

    def timing_samples(self, command: str, name: str) -> list[float]:
        """All samples (ms) of one timing (``response_latency_ms``…) for one command (each
        within 1 % once the timing is a sketch: ``Distribution.values``)."""
        stats = self._commands.get(command)
        return stats.samples[name].values() if stats is not None and name in stats.samples else []

    # -- text ---------------------------------------------------------------------------------

    def render_text(self, capture_info: dict[str, Any]) -> str:
        associations = self._associations()
        # each record's problem_score, set when it was counted (KeptAssociations.add)
        scores = [a.problem_score for a in associations]
        return render_text(self._to_dict(capture_info, associations), scores)

"""Offline troubleshooting summary for ``dicomsniffd analyze``.

Collects one record per association plus global statistics while the capture is
replayed, then turns them into findings written for a PACS administrator: what went
wrong, the evidence (which AEs, how often), the likely cause and what to check. Raw
timing samples are kept in ``array('d')`` (8 bytes each) so percentiles are exact even
for captures with a million transactions.
"""

from __future__ import annotations

import textwrap
import time
from array import array
from collections.abc import Callable, Iterable
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
    PresentationContext,
    ProtocolError,
    Resynchronised,
)
from dicomsniffd.sinks._names import (
    context_result,
    is_out_of_resources,
    status_hex,
    status_text,
    uid_display_name,
)

SEVERITIES = ("critical", "warning", "info")
_WIDTH = 100
# Reported by the core as protocol errors, but they describe the capture, not the peers.
_CAPTURE_QUALITY_KINDS = frozenset({"resync", "one-direction-only"})
_MAX_EVIDENCE = 8
_TIMINGS = ("request_transfer_ms", "response_latency_ms", "duration_ms")
# Their first response comes after the first sub-operation: latency is not service time.
_NO_SERVICE_TIME = frozenset({"C-MOVE", "C-GET"})
_SLOW_P95_S = 1.0
_SLOW_P50_S = 0.5


_Found = list[tuple[dict[str, Any], int]]  # (finding, weight for ranking)


def _sender_counts() -> dict[str, int]:
    return {REQUESTOR: 0, ACCEPTOR: 0}


class _Association:
    """Everything the summary keeps about one connection."""

    # One per association (10,000 live in the many-flows benchmark): slots make it
    # smaller and its attribute stores cheaper.
    __slots__ = (
        "flow_id", "client", "server", "calling_ae", "called_ae", "start_ts", "end_ts",
        "requested", "accepted", "dicom_seen", "reject", "abort", "end", "duration",
        "contexts", "implementation_class_uid", "implementation_version_name", "dimse",
        "requests", "unanswered", "pdata", "missed", "retransmissions", "zero_windows",
        "resets",
    )  # fmt: skip

    def __init__(self, flow: Any) -> None:
        self.flow_id: int = flow.flow_id
        self.client: str = flow.client
        self.server: str = flow.server
        self.calling_ae: str = flow.calling_ae
        self.called_ae: str = flow.called_ae
        self.start_ts: float | None = None
        self.end_ts: float | None = None
        self.requested = False
        self.accepted = False
        self.dicom_seen = False
        self.reject: dict[str, str] | None = None
        self.abort: dict[str, str] | None = None
        self.end: str | None = None
        self.duration: float | None = None
        self.contexts: list[PresentationContext] = []
        self.implementation_class_uid = ""
        self.implementation_version_name = ""
        self.dimse: dict[str, dict[str, int]] = {}
        self.requests = 0
        self.unanswered = 0
        self.pdata = _sender_counts()
        self.missed = 0
        self.retransmissions = _sender_counts()
        self.zero_windows = _sender_counts()
        self.resets = _sender_counts()

    def touch(self, ts: float | None, flow: Any) -> None:
        self.dicom_seen = True
        if ts is not None and (self.start_ts is None or ts < self.start_ts):
            self.start_ts = ts
        # AE titles are learnt by the pipeline from the RQ/AC: keep the latest.
        self.calling_ae = flow.calling_ae
        self.called_ae = flow.called_ae

    @property
    def outcome(self) -> str:
        if self.accepted:
            return "accepted"
        if self.reject is not None:
            return "rejected"
        if self.requested and (self.abort is not None or self.end in ("aborted", "reset")):
            return "aborted-before-accept"
        return "unknown"

    @property
    def pair(self) -> str:
        return f"{self.calling_ae} → {self.called_ae}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow_id": self.flow_id,
            "client": self.client,
            "server": self.server,
            "calling_ae": self.calling_ae,
            "called_ae": self.called_ae,
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "outcome": self.outcome,
            "end": self.end,
            "reject": self.reject,
            "abort": self.abort,
            "presentation_contexts": [_context_dict(pc) for pc in self.contexts],
            "implementation_class_uid": self.implementation_class_uid,
            "implementation_version_name": self.implementation_version_name,
            "dimse": {cmd: dict(statuses) for cmd, statuses in self.dimse.items()},
            "unanswered": self.unanswered,
            "pdata_bytes": dict(self.pdata),
            "missed_bytes": self.missed,
            "retransmissions": sum(self.retransmissions.values()),
            "zero_windows": sum(self.zero_windows.values()),
            "resets": sum(self.resets.values()),
        }


def _context_dict(pc: PresentationContext) -> dict[str, Any]:
    return {
        "context_id": pc.context_id,
        "abstract_syntax": pc.abstract_syntax,
        "abstract_syntax_name": uid_display_name(pc.abstract_syntax),
        "transfer_syntaxes_proposed": [uid_display_name(ts) for ts in pc.transfer_syntaxes],
        "result": context_result(pc.result) if pc.result is not None else None,
        "accepted_transfer_syntax_name": uid_display_name(pc.accepted_transfer_syntax),
    }


class _Command:
    """Global statistics of one DIMSE command."""

    def __init__(self) -> None:
        self.requests = 0
        self.responses: dict[str, int] = {}
        self.unanswered = 0
        self.samples = {name: array("d") for name in _TIMINGS}
        self.dataset_bytes = 0
        self.throughput_bytes = 0
        self.throughput_seconds = 0.0
        self.incomplete = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.requests,
            "responses": dict(sorted(self.responses.items())),
            "unanswered": self.unanswered,
        }
        for name in _TIMINGS:
            out[name] = percentiles(self.samples[name])
        out["dataset_bytes"] = self.dataset_bytes
        out["throughput_mbps"] = self.throughput_mbps
        return out

    @property
    def throughput_mbps(self) -> float | None:
        """Megabits per second over the requests whose upload took measurable time
        (a one-packet object has zero transfer time and would make this infinite)."""
        if self.throughput_seconds <= 0:
            return None
        return round(self.throughput_bytes * 8 / self.throughput_seconds / 1e6, 3)


def percentiles(samples: Iterable[float]) -> dict[str, Any]:
    """{count, p50, p95, p99, max} with linear interpolation between closest ranks."""
    values = sorted(samples)
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}

    def at(q: float) -> float:
        pos = q * (len(values) - 1)
        low = int(pos)
        high = min(low + 1, len(values) - 1)
        return round(values[low] + (values[high] - values[low]) * (pos - low), 3)

    return {
        "count": len(values),
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(values[-1], 3),
    }


def _finding(
    severity: str, code: str, title: str, detail: str, evidence: list[str], advice: str
) -> dict[str, Any]:
    if len(evidence) > _MAX_EVIDENCE:
        evidence = [*evidence[:_MAX_EVIDENCE], f"… and {len(evidence) - _MAX_EVIDENCE} more"]
    return {
        "severity": severity,
        "code": code,
        "title": title,
        "detail": detail,
        "evidence": evidence,
        "advice": advice,
    }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# Likely cause and what to check, per A-ASSOCIATE-RJ reason (matched by substring).
_REJECT_ADVICE = (
    (
        "called-ae",
        "The SCP does not know the called AE title the SCU asked for. Check the AE title "
        "configured on the SCP and the called AE configured on the sending device: they must "
        "match exactly (case and spaces count, at most 16 characters).",
    ),
    (
        "calling-ae",
        "The SCP does not accept this calling AE title. Add the sending device (AE title, IP "
        "address and port) to the SCP's list of known/allowed nodes, or fix the AE title the "
        "device sends.",
    ),
    (
        "application-context",
        "The SCP refused the application context name: the SCU is not speaking standard "
        "DICOM (1.2.840.10008.3.1.1.1). Check the SCU's DICOM configuration.",
    ),
    (
        "protocol-version",
        "The SCP refused the protocol version. Check both ends' DICOM stacks are up to date.",
    ),
    (
        "congestion",
        "The SCP is temporarily overloaded (transient reject). Check its load and its limit "
        "on simultaneous associations; the SCU should retry.",
    ),
    (
        "local-limit",
        "The SCP reached its limit of simultaneous associations (transient reject). Raise the "
        "limit on the SCP or reduce parallel sends from the SCUs.",
    ),
)
_REJECT_DEFAULT = (
    "The SCP refused the association without a specific reason. Its own log says why: "
    "usually an unknown calling AE, an IP address not allowed, or a licence/connection limit."
)

_FAILURE_ADVICE = {
    0xA801: "C-MOVE destination unknown: configure the destination AE (title, IP, port) on "
    "the C-MOVE SCP.",
    0x0122: "The SCP does not support this SOP class: enable it on the SCP or send a "
    "supported object type.",
    0x0118: "The SCP does not know this SOP class: enable it on the SCP.",
    0x0111: "The SCP already has an object with this SOP Instance UID (duplicate); check "
    "whether it is a resend or a UID clash.",
    0x0124: "The SCP refused the operation for this calling AE: check its access rules.",
    0x0110: "Processing failure inside the SCP: its log has the cause.",
    0x0213: "Resource limitation on the SCP (disk, memory, licence).",
}
_FAILURE_DEFAULT = (
    "Look up the status in the SCP's DICOM conformance statement and its log at the times "
    "of the failures; 0xA9xx and 0xCxxx failures usually mean the SCP rejected the content "
    "of the object."
)


class Summary:
    """Sink building the ``analyze`` summary (``to_dict`` / ``render_text``)."""

    def __init__(self) -> None:
        self._assocs: dict[int, _Association] = {}
        self._commands: dict[str, _Command] = {}
        self._tcp = {
            "retransmissions": _sender_counts(),
            "zero_windows": _sender_counts(),
            "resets": _sender_counts(),
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
        # Per-transaction records for the HTML report (bounded, see TransactionLog).
        self.transactions = TransactionLog()
        self._handlers: dict[type, Callable[[Any, _Association], None]] = {
            AssociationRequested: self._on_requested,
            AssociationAccepted: self._on_accepted,
            AssociationRejected: self._on_rejected,
            Aborted: self._on_aborted,
            AssociationEnded: self._on_ended,
            DimseRequestSeen: self._on_request,
            DimseResponseSeen: self._on_response,
            DimseTransaction: self._on_transaction,
            ProtocolError: self._on_protocol_error,
            Resynchronised: self._on_resync,
        }

    # -- sink interface ----------------------------------------------------------------------

    def _assoc(self, flow: Any) -> _Association:
        assoc = self._assocs.get(flow.flow_id)
        if assoc is None:
            assoc = self._assocs[flow.flow_id] = _Association(flow)
        return assoc

    def _command(self, command: str) -> _Command:
        stats = self._commands.get(command)
        if stats is None:
            stats = self._commands[command] = _Command()
        return stats

    def handle(self, event: Any, flow: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is None:
            return
        # _assoc() and _Association.touch() inlined (two calls per event less)
        assoc = self._assocs.get(flow.flow_id)
        if assoc is None:
            assoc = self._assocs[flow.flow_id] = _Association(flow)
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

    def missed_bytes_total(self) -> int:
        """Bytes the sniffer never saw on DICOM connections (analyze's capture info)."""
        return self._missed_total

    # -- events ------------------------------------------------------------------------------

    def _on_requested(self, event: AssociationRequested, assoc: _Association) -> None:
        assoc.requested = True
        assoc.contexts = list(event.presentation_contexts)
        assoc.implementation_class_uid = event.user_info.implementation_class_uid
        assoc.implementation_version_name = event.user_info.implementation_version_name

    def _on_accepted(self, event: AssociationAccepted, assoc: _Association) -> None:
        assoc.accepted = True
        assoc.contexts = list(event.presentation_contexts)  # the RQ proposal with answers
        if not assoc.implementation_class_uid:  # RQ not seen: the acceptor's is all we have
            assoc.implementation_class_uid = event.user_info.implementation_class_uid
            assoc.implementation_version_name = event.user_info.implementation_version_name

    def _on_rejected(self, event: AssociationRejected, assoc: _Association) -> None:
        assoc.reject = {"result": event.result, "source": event.source, "reason": event.reason}

    def _on_aborted(self, event: Aborted, assoc: _Association) -> None:
        assoc.abort = {"source": event.source, "reason": event.reason, "sender": event.sender}

    def _on_ended(self, event: AssociationEnded, assoc: _Association) -> None:
        assoc.end = event.how
        assoc.end_ts = event.ts
        assoc.duration = event.duration_seconds

    def _on_request(self, event: DimseRequestSeen, assoc: _Association) -> None:
        assoc.requests += 1
        self._command(event.command).requests += 1

    def _on_response(self, event: DimseResponseSeen, assoc: _Association) -> None:
        status = status_hex(event.status)
        statuses = assoc.dimse.setdefault(event.command, {})
        statuses[status] = statuses.get(status, 0) + 1
        responses = self._command(event.command).responses
        responses[status] = responses.get(status, 0) + 1
        if event.status_class == "failure" or is_out_of_resources(event.status):
            key = (event.command, event.status, assoc.calling_ae, assoc.called_ae)
            self._failures[key] = self._failures.get(key, 0) + 1

    def _on_transaction(self, event: DimseTransaction, assoc: _Association) -> None:
        self.transactions.add(event, assoc.flow_id)
        stats = self._command(event.command)
        if event.outcome.startswith("unanswered"):
            assoc.unanswered += 1
            stats.unanswered += 1
            key = (event.command, event.outcome, assoc.calling_ae, assoc.called_ae)
            self._unanswered_by[key] = self._unanswered_by.get(key, 0) + 1
        if not event.complete:
            stats.incomplete += 1
        # the three _TIMINGS, unrolled (no zip and tuple per transaction)
        samples = stats.samples
        seconds = event.request_transfer_seconds
        if seconds is not None:
            samples["request_transfer_ms"].append(seconds * 1000.0)
        seconds = event.response_latency_seconds
        if seconds is not None:
            samples["response_latency_ms"].append(seconds * 1000.0)
        seconds = event.duration_seconds
        if seconds is not None:
            samples["duration_ms"].append(seconds * 1000.0)
        stats.dataset_bytes += event.request_dataset_bytes
        if event.request_dataset_bytes and event.request_transfer_seconds:
            stats.throughput_bytes += event.request_dataset_bytes
            stats.throughput_seconds += event.request_transfer_seconds
        if event.error_comment and event.status is not None:
            comments = self._error_comments.setdefault((event.command, event.status), [])
            if len(comments) < 3 and event.error_comment not in comments:
                comments.append(event.error_comment)

    def _on_protocol_error(self, event: ProtocolError, assoc: _Association) -> None:
        self._protocol_errors[event.kind] = self._protocol_errors.get(event.kind, 0) + 1

    def _on_resync(self, event: Resynchronised, assoc: _Association) -> None:
        self._protocol_errors["resync"] = self._protocol_errors.get("resync", 0) + 1

    # -- output ------------------------------------------------------------------------------

    def _associations(self) -> list[_Association]:
        seen = [a for a in self._assocs.values() if a.dicom_seen or any(a.pdata.values())]
        return sorted(seen, key=lambda a: (a.start_ts or 0.0, a.flow_id))

    def to_dict(self, capture_info: dict[str, Any]) -> dict[str, Any]:
        return {
            "capture": {k: v for k, v in capture_info.items() if not k.startswith("_")},
            "associations": [a.to_dict() for a in self._associations()],
            "dimse": {cmd: s.to_dict() for cmd, s in sorted(self._commands.items())},
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
        }

    # -- findings ----------------------------------------------------------------------------

    def findings(self, capture_info: dict[str, Any]) -> list[dict[str, Any]]:
        """All findings, most severe first; within a severity, the most frequent first."""
        assocs = self._associations()
        found: list[tuple[dict[str, Any], int]] = []
        for check in (
            self._find_connection_failures,
            self._find_rejected,
            self._find_no_accepted_context,
            self._find_out_of_resources,
            self._find_dimse_failures,
            self._find_unanswered,
            self._find_aborts,
            self._find_resets,
            self._find_slow,
            self._find_retransmissions,
            self._find_zero_window,
            self._find_capture_incomplete,
            self._find_offloads,
            self._find_protocol_errors,
            self._find_tls,
            self._find_no_dicom,
        ):
            found.extend(check(assocs, capture_info))
        found.sort(key=lambda item: (SEVERITIES.index(item[0]["severity"]), -item[1]))
        return [finding for finding, _weight in found]

    def _find_connection_failures(self, assocs: list[_Association], info: dict) -> _Found:
        out = []
        for reason, code, severity, title, advice in (
            (
                "refused",
                "connection-refused",
                "critical",
                "Connections to a DICOM server were refused",
                "Nothing was listening on that port (the server answered the SYN with a reset): "
                "the DICOM service is stopped or crashed, or the sending device is configured "
                "with the wrong port. Check the service on the server and the port configured "
                "on the sender.",
            ),
            (
                "unanswered",
                "connection-unanswered",
                "warning",
                "Connection attempts to a DICOM server got no answer",
                "The SYN was never answered: the server is down or unreachable, or a firewall "
                "drops the traffic. Check routing and firewall rules between the sender and "
                "the server (and that this capture sees both directions).",
            ),
        ):
            rows = [(s, n) for (s, r), n in self._connection_failures.items() if r == reason]
            if not rows:
                continue
            total = sum(n for _s, n in rows)
            evidence = [f"{server}: {_plural(n, 'attempt')}" for server, n in sorted(rows)]
            detail = f"{_plural(total, 'TCP connection attempt')} to {len(rows)} server(s) failed ({reason})."
            out.append((_finding(severity, code, title, detail, evidence, advice), total))
        return out

    def _find_rejected(self, assocs: list[_Association], info: dict) -> _Found:
        groups: dict[tuple[str, str, str, str, str], int] = {}
        for a in assocs:
            if a.reject is not None:
                r = a.reject
                key = (a.calling_ae, a.called_ae, r["result"], r["source"], r["reason"])
                groups[key] = groups.get(key, 0) + 1
        if not groups:
            return []
        total = sum(groups.values())
        evidence = [
            f"{calling} → {called}: {reason} ({result}, from {source}), {_plural(n, 'time')}"
            for (calling, called, result, source, reason), n in sorted(
                groups.items(), key=lambda kv: -kv[1]
            )
        ]
        reasons = sorted({key[4] for key in groups})
        advice = " ".join(
            next((text for needle, text in _REJECT_ADVICE if needle in reason), _REJECT_DEFAULT)
            for reason in reasons
        )
        detail = (
            f"{_plural(total, 'association')} {'was' if total == 1 else 'were'} refused by "
            "the SCP (A-ASSOCIATE-RJ), "
            f"reason: {', '.join(reasons)}. Nothing was transferred on them."
        )
        title = "Associations rejected" + (
            ": called AE title not recognised" if reasons == ["called-ae-not-recognized"] else ""
        )
        return [
            (_finding("critical", "association-rejected", title, detail, evidence, advice), total)
        ]

    def _find_no_accepted_context(self, assocs: list[_Association], info: dict) -> _Found:
        evidence: list[str] = []
        none_accepted = 0
        weight = 0
        for a in assocs:
            if not a.accepted or not a.contexts:
                continue
            accepted_syntaxes = {pc.abstract_syntax for pc in a.contexts if pc.result == 0}
            if not accepted_syntaxes:
                none_accepted += 1
            refused: dict[str, tuple[set[str], str]] = {}
            for pc in a.contexts:
                if pc.result in (3, 4) and pc.abstract_syntax not in accepted_syntaxes:
                    names, _ = refused.get(pc.abstract_syntax, (set(), ""))
                    names.update(uid_display_name(ts) for ts in pc.transfer_syntaxes)
                    refused[pc.abstract_syntax] = (names, context_result(pc.result))
            for uid, (ts_names, why) in refused.items():
                weight += 1
                evidence.append(
                    f"flow {a.flow_id} {a.pair}: {uid_display_name(uid) or 'unknown'} "
                    f"refused ({why}); proposed transfer syntaxes: {', '.join(sorted(ts_names))}"
                )
        if not evidence:
            return []
        if none_accepted:
            severity = "critical"
            title = "Associations with no accepted presentation context"
            detail = (
                f"On {_plural(none_accepted, 'association')} the SCP accepted none of the "
                "proposed presentation contexts, so nothing could be sent. "
            )
        else:
            severity = "warning"
            title = "SOP classes refused by the SCP"
            detail = ""
        detail += (
            "The SCP refused some SOP classes the SCU proposed: those objects cannot be sent "
            "to it on these associations."
        )
        advice = (
            "'abstract-syntax-not-supported': enable that SOP class (object type) on the SCP. "
            "'transfer-syntaxes-not-supported': the SCP accepts none of the proposed encodings; "
            "enable one of them on the SCP (e.g. Explicit/Implicit VR Little Endian or the "
            "compression in use), or configure the SCU to also propose Implicit VR Little Endian."
        )
        return [
            (_finding(severity, "no-accepted-context", title, detail, evidence, advice), weight)
        ]

    def _failure_rows(self, predicate: Callable[[int], bool]) -> list[tuple[str, int, str, int]]:
        """(command, status, "calling → called", count) for failure responses matching."""
        return sorted(
            (
                (command, status, f"{calling} → {called}", n)
                for (command, status, calling, called), n in self._failures.items()
                if predicate(status)
            ),
            key=lambda row: -row[3],
        )

    def _evidence_line(self, command: str, status: int, pair: str, n: int) -> str:
        line = (
            f"{command} {status_hex(status)} ({status_text(status)}) {pair}: {_plural(n, 'time')}"
        )
        comments = self._error_comments.get((command, status))
        if comments:
            line += f"; error comment: {' | '.join(comments)}"
        return line

    def _find_out_of_resources(self, assocs: list[_Association], info: dict) -> _Found:
        rows = self._failure_rows(lambda s: is_out_of_resources(s))
        if not rows:
            return []
        total = sum(row[3] for row in rows)
        detail = (
            f"The SCP answered {_plural(total, 'request')} with 0xA7xx 'Refused: out of "
            "resources'. Those objects or queries were not processed."
        )
        advice = (
            "The SCP ran out of something: free disk space on the archive/cache, database "
            "space or table limits, memory, or a licence limit (studies, storage, connections). "
            "For C-FIND/C-MOVE (0xA701/0xA702) it may be a limit on the number of matches or "
            "sub-operations. Check the PACS storage and licence first."
        )
        evidence = [self._evidence_line(*row) for row in rows]
        return [
            (
                _finding(
                    "critical",
                    "out-of-resources",
                    "The SCP is out of resources (0xA700)",
                    detail,
                    evidence,
                    advice,
                ),
                total,
            )
        ]

    def _find_dimse_failures(self, assocs: list[_Association], info: dict) -> _Found:
        rows = self._failure_rows(lambda s: not is_out_of_resources(s))
        if not rows:
            return []
        total = sum(row[3] for row in rows)
        statuses = sorted({row[1] for row in rows})
        detail = (
            f"{_plural(total, 'DIMSE request')} failed: "
            + ", ".join(f"{status_hex(s)} {status_text(s)}" for s in statuses)
            + "."
        )
        advice = " ".join(dict.fromkeys(_FAILURE_ADVICE.get(s, _FAILURE_DEFAULT) for s in statuses))
        evidence = [self._evidence_line(*row) for row in rows]
        return [
            (
                _finding(
                    "critical",
                    "dimse-failures",
                    "DIMSE operations failed",
                    detail,
                    evidence,
                    advice,
                ),
                total,
            )
        ]

    def _find_unanswered(self, assocs: list[_Association], info: dict) -> _Found:
        if not self._unanswered_by:
            return []
        total = sum(self._unanswered_by.values())
        evidence = [
            f"{command} {calling} → {called}: {_plural(n, 'request')} "
            + ("open when the association ended" if outcome == "unanswered-ended" else "timed out")
            for (command, outcome, calling, called), n in sorted(
                self._unanswered_by.items(), key=lambda kv: -kv[1]
            )
        ]
        detail = (
            f"{_plural(total, 'request')} never got a final response: the association ended "
            "(release, abort or reset) or the transaction timed out with the request still open."
        )
        advice = (
            "The SCP did not answer in time: it hung, was overloaded, or the SCU gave up (its "
            "DIMSE timeout is shorter than the SCP's processing time). Compare the SCU's timeout "
            "with the response latency below and look at the SCP's log at those times. If the "
            "capture is incomplete, some responses may simply not have been captured."
        )
        return [
            (
                _finding(
                    "warning",
                    "unanswered",
                    "Requests without a response",
                    detail,
                    evidence,
                    advice,
                ),
                total,
            )
        ]

    def _find_aborts(self, assocs: list[_Association], info: dict) -> _Found:
        aborted = [a for a in assocs if a.abort is not None]
        if not aborted:
            return []
        evidence = []
        for a in aborted:
            who = "SCU (requestor)" if a.abort["sender"] == REQUESTOR else "SCP (acceptor)"
            line = (
                f"flow {a.flow_id} {a.pair}: A-ABORT from the {who}, "
                f"{a.abort['source']}, {a.abort['reason']}"
            )
            if a.duration is not None:
                line += f", after {a.duration:.1f} s"
            if a.unanswered:
                line += f", {_plural(a.unanswered, 'request')} unanswered"
            evidence.append(line)
        detail = (
            f"{_plural(len(aborted), 'association')} ended with A-ABORT instead of an orderly "
            "release; whatever was in transit was lost."
        )
        advice = (
            "An abort from the service user means an application gave up: typically a timeout "
            "on the SCU while waiting for the SCP, a cancelled job, or an internal error. An "
            "abort from the service provider means a DICOM stack saw a protocol problem "
            "(unexpected PDU, bad parameter). Check the log of the side that sent the abort at "
            "the time shown."
        )
        return [
            (
                _finding(
                    "warning",
                    "aborts",
                    "Associations aborted",
                    detail,
                    evidence,
                    advice,
                ),
                len(aborted),
            )
        ]

    def _find_resets(self, assocs: list[_Association], info: dict) -> _Found:
        hit = [a for a in assocs if a.end == "reset" or any(a.resets.values())]
        if not hit:
            return []
        evidence = []
        for a in hit:
            senders = [s for s in (REQUESTOR, ACCEPTOR) if a.resets.get(s)]
            by = " and ".join(senders) if senders else "unknown side"
            line = f"flow {a.flow_id} {a.pair} ({a.client} → {a.server}): reset by {by}"
            if a.unanswered:
                line += f", {_plural(a.unanswered, 'request')} unanswered"
            evidence.append(line)
        detail = (
            f"{_plural(len(hit), 'connection')} ended with a TCP reset instead of a DICOM "
            "release or abort."
        )
        advice = (
            "A reset without an A-RELEASE/A-ABORT means the application closed its socket "
            "abruptly (crash, restart, kill) or a firewall/load balancer cut the connection "
            "(idle timeout, inspection). Check which side sent it, firewall session timeouts, "
            "and the application logs at that time."
        )
        return [
            (
                _finding(
                    "warning",
                    "resets",
                    "Connections reset",
                    detail,
                    evidence,
                    advice,
                ),
                len(hit),
            )
        ]

    def _tcp_trouble(self) -> str:
        retrans = sum(self._tcp["retransmissions"].values())
        zero = sum(self._tcp["zero_windows"].values())
        return (
            f"{_plural(retrans, 'retransmission')} and {_plural(zero, 'zero-window event')} "
            "were seen"
        )

    def _find_slow(self, assocs: list[_Association], info: dict) -> _Found:
        out: _Found = []
        for command, stats in sorted(self._commands.items()):
            transfer = percentiles(stats.samples["request_transfer_ms"])
            latency = percentiles(stats.samples["response_latency_ms"])
            if not transfer["count"] or not latency["count"]:
                continue
            total_transfer = sum(stats.samples["request_transfer_ms"])
            total_latency = sum(stats.samples["response_latency_ms"])
            slow_latency = (
                latency["p95"] >= _SLOW_P95_S * 1000 or latency["p50"] >= _SLOW_P50_S * 1000
            )
            slow_transfer = (
                transfer["p95"] >= _SLOW_P95_S * 1000 or transfer["p50"] >= _SLOW_P50_S * 1000
            )
            numbers = (
                f"{command}: transfer p50 {transfer['p50']:.0f} ms / p95 {transfer['p95']:.0f} ms, "
                f"SCP service time p50 {latency['p50']:.0f} ms / p95 {latency['p95']:.0f} ms"
                f" over {transfer['count']} requests"
            )
            if command not in _NO_SERVICE_TIME and total_latency > total_transfer and slow_latency:
                detail = (
                    f"For {command}, the SCP takes longer to answer after receiving the request "
                    "than the network takes to deliver it: the time is spent inside the SCP."
                )
                advice = (
                    "The PACS itself is slow: check its storage write latency, database "
                    "commit time, CPU and ingest queues (compression, routing rules, "
                    "anti-virus scanning). Zero windows sent by the SCP point the same way."
                )
                out.append(
                    (
                        _finding(
                            "warning",
                            "slow-scp",
                            f"Slow SCP: service time dominates ({command})",
                            detail,
                            [numbers],
                            advice,
                        ),
                        transfer["count"],
                    )
                )
            elif total_transfer > total_latency and slow_transfer:
                tcp = self._tcp_trouble()
                trouble = any(self._tcp["retransmissions"].values()) or any(
                    self._tcp["zero_windows"].values()
                )
                evidence = [numbers, f"TCP: {tcp}"]
                if stats.throughput_mbps is not None:
                    evidence.append(f"upload throughput {stats.throughput_mbps:.1f} Mbit/s")
                detail = (
                    f"For {command}, moving the data takes longer than the SCP needs to "
                    f"process it: the time is spent on the network; {tcp}."
                )
                advice = (
                    "Check the path between SCU and SCP: speed/duplex mismatches, saturated "
                    "or WAN links, MTU problems, firewalls/IPS inspecting DICOM. Retransmissions "
                    "mean packet loss; zero windows from the SCP mean it stops reading (then "
                    "the SCP is the bottleneck); a slow SCU can also send slowly (disk, CPU)."
                )
                out.append(
                    (
                        _finding(
                            "warning" if trouble else "info",
                            "slow-network",
                            f"Slow transfers: network time dominates ({command})",
                            detail,
                            evidence,
                            advice,
                        ),
                        transfer["count"],
                    )
                )
        return out

    def _find_retransmissions(self, assocs: list[_Association], info: dict) -> _Found:
        counts = self._tcp["retransmissions"]
        total = sum(counts.values())
        packets = int(info.get("packets") or 0)
        if not total or not packets:
            return []
        ratio = total / packets
        if ratio >= 0.05:
            severity = "critical"
        elif ratio >= 0.01:
            severity = "warning"
        elif ratio >= 0.001:
            severity = "info"
        else:
            return []
        worst = sorted(assocs, key=lambda a: -sum(a.retransmissions.values()))[:5]
        evidence = [
            f"sent by requestor {counts.get(REQUESTOR, 0)}, by acceptor {counts.get(ACCEPTOR, 0)}"
        ] + [
            f"flow {a.flow_id} {a.pair}: {sum(a.retransmissions.values())}"
            for a in worst
            if sum(a.retransmissions.values())
        ]
        detail = (
            f"{total} TCP retransmissions for {packets} captured packets "
            f"({ratio:.2%}); above 1% transfers slow down noticeably."
        )
        advice = (
            "Retransmissions mean packets are lost between the capture point and the receiver: "
            "check interface error counters, duplex settings, congested links and firewalls. "
            "The side that retransmits is the one whose packets get lost."
        )
        return [
            (
                _finding(
                    severity,
                    "retransmissions",
                    f"TCP retransmissions ({ratio:.2%} of packets)",
                    detail,
                    evidence,
                    advice,
                ),
                total,
            )
        ]

    def _find_zero_window(self, assocs: list[_Association], info: dict) -> _Found:
        counts = self._tcp["zero_windows"]
        total = sum(counts.values())
        if not total:
            return []
        evidence = [
            f"advertised by acceptor (SCP) {counts.get(ACCEPTOR, 0)}, "
            f"by requestor (SCU) {counts.get(REQUESTOR, 0)}"
        ] + [
            f"flow {a.flow_id} {a.pair}: {sum(a.zero_windows.values())}"
            for a in sorted(assocs, key=lambda a: -sum(a.zero_windows.values()))[:5]
            if sum(a.zero_windows.values())
        ]
        detail = (
            f"A receiver told its peer to stop sending {_plural(total, 'time')} (TCP zero "
            "window): its application did not read the data fast enough."
        )
        advice = (
            "Zero windows from the SCP during C-STORE mean the PACS cannot write as fast as "
            "the data arrives (storage, CPU, ingest queue): that is SCP slowness seen on the "
            "network. Zero windows from the SCU (C-GET, C-FIND results) mean the SCU is slow to "
            "consume. Check the receiving host's disk and CPU load."
        )
        return [
            (
                _finding(
                    "warning",
                    "zero-window",
                    "TCP zero window: a receiver could not keep up",
                    detail,
                    evidence,
                    advice,
                ),
                total,
            )
        ]

    def _find_capture_incomplete(self, assocs: list[_Association], info: dict) -> _Found:
        missed = max(int(info.get("missed_bytes") or 0), self._missed_total)
        truncated = int(info.get("truncated_packets") or 0)
        incomplete = sum(s.incomplete for s in self._commands.values())
        resyncs = self._protocol_errors.get("resync", 0)
        truncated_files = list(info.get("truncated_files") or ())
        evidence = []
        if missed:
            evidence.append(f"{missed} bytes on DICOM connections were never captured")
        if truncated:
            evidence.append(f"{truncated} packets cut by the snapshot length (snaplen)")
        if incomplete:
            evidence.append(f"{incomplete} DIMSE transactions hit by a capture gap")
        if resyncs:
            evidence.append(f"{resyncs} resynchronisations of the DICOM stream after a gap")
        one_sided = self._protocol_errors.get("one-direction-only", 0)
        if one_sided:
            evidence.append(
                f"{one_sided} connections seen in one direction only (one-sided mirror, "
                "or a peer that never answered)"
            )
        for path in truncated_files:
            evidence.append(f"capture file {path} is truncated")
        if not evidence:
            return []
        detail = (
            "The capture does not contain everything that went over the wire, so counts, "
            "sizes and timings in this summary are incomplete (lower bounds)."
        )
        advice = (
            "Capture with a full snaplen (-s 0), a bigger capture buffer, and make sure the "
            "mirror port is not oversubscribed and mirrors both directions. Turn off offloads "
            "on the capture interface (ethtool -K IFACE gro off lro off tso off gso off)."
        )
        return [
            (
                _finding(
                    "warning",
                    "capture-incomplete",
                    "The capture is incomplete: numbers are lower bounds",
                    detail,
                    evidence,
                    advice,
                ),
                missed + truncated,
            )
        ]

    def _find_offloads(self, assocs: list[_Association], info: dict) -> _Found:
        # Merged super-packets lose nothing (their bytes are all there) but blur timing:
        # every merged frame gets one timestamp. Worth fixing, not a gap in the numbers.
        super_packets = int((info.get("decode") or {}).get("super_packets") or 0)
        if not super_packets:
            return []
        finding = _finding(
            "info",
            "capture-offloads",
            "Offloads were on where the capture was taken",
            "Some captured packets are larger than the wire MTU: the capturing host merged "
            "frames (GRO/LRO) or captured before segmentation (TSO/GSO). Nothing is lost, "
            "but merged frames share one timestamp, which blurs sub-millisecond timings.",
            [f"{super_packets} packets larger than a 1500-byte MTU frame"],
            "Turn offloads off on the capture interface: "
            "ethtool -K IFACE gro off lro off tso off gso off.",
        )
        return [(finding, super_packets)]

    def _find_protocol_errors(self, assocs: list[_Association], info: dict) -> _Found:
        errors = {k: n for k, n in self._protocol_errors.items() if k not in _CAPTURE_QUALITY_KINDS}
        if not errors:
            return []
        total = sum(errors.values())
        evidence = [f"{kind}: {n}" for kind, n in sorted(errors.items(), key=lambda kv: -kv[1])]
        detail = f"{_plural(total, 'DICOM protocol error')} were decoded from the traffic."
        advice = (
            "Either a peer violates the DICOM Upper Layer protocol (check its conformance and "
            "software version) or the capture lost data (see capture-incomplete)."
        )
        return [
            (
                _finding(
                    "info",
                    "protocol-errors",
                    "DICOM protocol errors",
                    detail,
                    evidence,
                    advice,
                ),
                total,
            )
        ]

    def _find_tls(self, assocs: list[_Association], info: dict) -> _Found:
        if not self._tls:
            return []
        total = sum(self._tls.values())
        failed = sum(n for (_s, o), n in self._tls.items() if o == "handshake-failed")
        evidence = [
            f"{server}: {outcome} {n}" for (server, outcome), n in sorted(self._tls.items())
        ]
        detail = (
            f"{_plural(total, 'TLS connection')} on DICOM ports; their content cannot be analysed."
        )
        advice = (
            "Failed TLS handshakes usually mean certificate or cipher mismatches: check the "
            "certificates and trust stores on both ends."
            if failed
            else "Nothing to do; DICOM over TLS is only counted, never decrypted."
        )
        severity = "warning" if failed else "info"
        return [
            (
                _finding(severity, "tls", "DICOM over TLS (not decoded)", detail, evidence, advice),
                total,
            )
        ]

    def _find_no_dicom(self, assocs: list[_Association], info: dict) -> _Found:
        if assocs or self._connection_failures or self._tls:
            return []
        detail = "No DICOM association was recognised in the capture."
        advice = (
            "Check that the capture holds the DICOM traffic (filter, ports, both directions) "
            "and that it is not DICOM over TLS. Associations already running when the capture "
            "started are only recognised on the configured DICOM ports."
        )
        return [(_finding("info", "no-dicom", "No DICOM traffic found", detail, [], advice), 0)]

    def timing_samples(self, command: str, name: str) -> list[float]:
        """All samples (ms) of one timing (``response_latency_ms``…) for one command."""
        stats = self._commands.get(command)
        return list(stats.samples[name]) if stats is not None and name in stats.samples else []

    # -- text ---------------------------------------------------------------------------------

    def render_text(self, capture_info: dict[str, Any]) -> str:
        data = self.to_dict(capture_info)
        parts = [
            _render_capture(data["capture"]),
            _render_findings(data["findings"]),
            _render_associations(data["associations"]),
            _render_dimse(data["dimse"]),
            _render_tcp(data["tcp"], data["protocol_errors"]),
        ]
        return "\n".join(part for part in parts if part) + "\n"


# -- text rendering (module functions: pure formatting of to_dict output) ---------------------


def _utc(ts: float | None, with_date: bool = True) -> str:
    if ts is None:
        return "-"
    fmt = "%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S"
    return time.strftime(fmt, time.gmtime(ts))


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _heading(title: str) -> str:
    return f"{title}\n{'=' * len(title)}"


def _render_capture(capture: dict[str, Any]) -> str:
    files = capture.get("files") or []
    first, last = capture.get("first_ts"), capture.get("last_ts")
    span = f" ({last - first:.1f} s)" if first is not None and last is not None else ""
    lines = [
        _heading("dicomsniffd analyze"),
        _fit(f"Files:    {', '.join(files) or '-'}", _WIDTH),
        f"Packets:  {capture.get('packets', 0)}   Bytes: {_bytes(capture.get('bytes', 0))}",
        f"Time:     {_utc(first)} → {_utc(last)} UTC{span}",
    ]
    return "\n".join(lines) + "\n"


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH, initial_indent=indent, subsequent_indent=indent) or [indent]


def _render_findings(findings: list[dict[str, Any]]) -> str:
    lines = [_heading(f"Findings ({len(findings)})")]
    if not findings:
        lines.append("No problems found.")
    for finding in findings:
        lines.append(f"[{finding['severity'].upper()}] {finding['title']}  ({finding['code']})")
        lines.extend(_wrap(finding["detail"], "    "))
        for item in finding["evidence"]:
            lines.extend(
                textwrap.wrap(item, _WIDTH, initial_indent="    - ", subsequent_indent="      ")
            )
        lines.extend(_wrap("What to check: " + finding["advice"], "    "))
        lines.append("")
    return "\n".join(lines)


_MAX_ROWS = 50


def _render_associations(assocs: list[dict[str, Any]]) -> str:
    lines = [_heading(f"Associations ({len(assocs)})")]
    if not assocs:
        return "\n".join([*lines, "None.", ""])
    header = (
        f"{'flow':>4} {'start':8} {'calling → called':30} {'server':21} "
        f"{'outcome':9} {'end':8} {'resp':>5} {'data':>8}"
    )
    lines.append(header)
    for a in assocs[:_MAX_ROWS]:
        responses = sum(sum(s.values()) for s in a["dimse"].values())
        outcome = "aborted*" if a["outcome"] == "aborted-before-accept" else a["outcome"]
        data = _bytes(sum(a["pdata_bytes"].values()))
        pair = _fit(f"{a['calling_ae']} → {a['called_ae']}", 30)
        lines.append(
            f"{a['flow_id']:>4} {_utc(a['start_ts'], False):8} {pair:30} "
            f"{_fit(a['server'], 21):21} {outcome:9} {a['end'] or '-':8} {responses:>5} {data:>8}"
        )
    if len(assocs) > _MAX_ROWS:
        lines.append(f"… {len(assocs) - _MAX_ROWS} more associations (use --json for all)")
    if any(a["outcome"] == "aborted-before-accept" for a in assocs):
        lines.append("aborted* = aborted or reset before the SCP answered the request")
    return "\n".join(lines) + "\n"


def _ms_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _render_dimse(dimse: dict[str, Any]) -> str:
    if not dimse:
        return ""
    lines = [
        _heading("DIMSE"),
        f"{'command':14} {'requests':>8} {'unanswered':>10}  responses by status",
    ]
    for command, s in dimse.items():
        statuses = ", ".join(
            f"{status} {status_text(int(status, 16)) if status else ''}: {n}".replace("  ", " ")
            for status, n in s["responses"].items()
        )
        wrapped = textwrap.wrap(statuses or "-", _WIDTH - 37) or ["-"]
        lines.append(f"{command:14} {s['requests']:>8} {s['unanswered']:>10}  {wrapped[0]}")
        lines.extend(f"{'':36}{more}" for more in wrapped[1:])
    lines += [
        "",
        "Timing (ms): transfer = network upload of the request, "
        "service = SCP time to first response",
        f"{'command':14} {'phase':9} {'count':>7} {'p50':>10} {'p95':>10} {'p99':>10} {'max':>10}",
    ]
    for command, s in dimse.items():
        for label, key in (
            ("transfer", "request_transfer_ms"),
            ("service", "response_latency_ms"),
            ("total", "duration_ms"),
        ):
            p = s[key]
            if not p["count"]:
                continue
            lines.append(
                f"{command:14} {label:9} {p['count']:>7} {_ms_cell(p['p50']):>10} "
                f"{_ms_cell(p['p95']):>10} {_ms_cell(p['p99']):>10} {_ms_cell(p['max']):>10}"
            )
    throughput = [
        f"{command}: {_bytes(s['dataset_bytes'])} of data sets, "
        f"upload throughput {s['throughput_mbps']:.1f} Mbit/s"
        for command, s in dimse.items()
        if s["throughput_mbps"] is not None
    ]
    if throughput:
        lines += ["", "Throughput", *throughput]
    return "\n".join(lines) + "\n"


def _render_tcp(tcp: dict[str, Any], protocol_errors: dict[str, int]) -> str:
    def pair(counts: dict[str, int]) -> str:
        return f"requestor {counts.get(REQUESTOR, 0)}, acceptor {counts.get(ACCEPTOR, 0)}"

    rtt = tcp["handshake_rtt_ms"]
    lines = [
        _heading("TCP health"),
        f"Retransmissions:  {pair(tcp['retransmissions'])}",
        f"Zero windows:     {pair(tcp['zero_windows'])}",
        f"Resets:           {pair(tcp['resets'])}",
        "Handshake RTT:    "
        + (
            f"p50 {_ms_cell(rtt['p50'])} ms, p95 {_ms_cell(rtt['p95'])} ms, "
            f"max {_ms_cell(rtt['max'])} ms ({rtt['count']} handshakes)"
            if rtt["count"]
            else "-"
        ),
    ]
    for failure in tcp["connection_failures"]:
        lines.append(
            f"Connection {failure['reason']}: {failure['server']} "
            f"({_plural(failure['count'], 'attempt')})"
        )
    if protocol_errors:
        lines.append(
            "Protocol errors:  "
            + ", ".join(f"{kind} {n}" for kind, n in sorted(protocol_errors.items()))
        )
    return "\n".join(lines) + "\n"


# -- per-transaction records for the HTML report (bounded memory) ----------------------------

TRACE_CAP = 20_000  # records kept in total
_NOTABLE_CAP = 5_000  # of which non-success ones (failures, warnings, unanswered, gaps)
_SERIES_BUCKETS = 512  # throughput time series: at most this many buckets
_SERIES_BASE_WIDTH = 0.125  # seconds; doubled whenever the span needs more buckets
_COMMENT_CAP = 256


class TransactionLog:
    """A bounded sample of DimseTransaction records plus an exact throughput time series.

    Non-success transactions (the ones a reader looks for) are kept first-come up to
    ``_NOTABLE_CAP``; successful ones are decimated evenly over the whole capture (when
    the buffer is full every other record is dropped and the sampling stride doubles), so
    charts of a million-transaction capture still span its whole time range. ``dropped``
    counts what was not kept. Records never hold dataset content or instance UIDs.
    """

    FIELDS = (
        "flow_id",
        "command",
        "sop_class_uid",
        "context_id",
        "message_id",
        "status",
        "status_class",
        "outcome",
        "request_ts",
        "request_complete_ts",
        "response_ts",
        "request_transfer_seconds",
        "response_latency_seconds",
        "duration_seconds",
        "request_dataset_bytes",
        "response_dataset_bytes",
        "complete",
        "error_comment",
    )

    def __init__(self, cap: int = TRACE_CAP, notable_cap: int = _NOTABLE_CAP) -> None:
        self.total = 0
        self._notable_cap = min(notable_cap, cap)
        self._ok_cap = max(cap - self._notable_cap, 2)
        self._notable: list[tuple] = []
        self._ok: list[tuple] = []
        self._ok_seen = 0
        self._stride = 1
        self.notable_dropped = 0
        self._width = _SERIES_BASE_WIDTH
        self._buckets: dict[int, list[float]] = {}  # key -> [bytes, transactions, failures]

    @property
    def dropped(self) -> int:
        return self.total - len(self._notable) - len(self._ok)

    def add(self, event: DimseTransaction, flow_id: int) -> None:
        self.total += 1
        self._add_to_series(event)
        notable = event.status_class != "success" or not event.complete
        if notable:
            if len(self._notable) < self._notable_cap:
                self._notable.append(self._record(event, flow_id))
            else:
                self.notable_dropped += 1
            return
        seq = self._ok_seen
        self._ok_seen += 1
        if seq % self._stride:
            return
        if len(self._ok) >= self._ok_cap:
            self._ok = self._ok[::2]
            self._stride *= 2
            if seq % self._stride:
                return
        self._ok.append(self._record(event, flow_id))

    @staticmethod
    def _record(e: DimseTransaction, flow_id: int) -> tuple:
        return (
            flow_id,
            e.command,
            e.sop_class_uid,
            e.context_id,
            e.message_id,
            e.status,
            e.status_class,
            e.outcome,
            e.request_ts,
            e.request_complete_ts,
            e.response_ts,
            e.request_transfer_seconds,
            e.response_latency_seconds,
            e.duration_seconds,
            e.request_dataset_bytes,
            e.response_dataset_bytes,
            e.complete,
            e.error_comment[:_COMMENT_CAP],
        )

    def records(self) -> list[dict[str, Any]]:
        """The kept records as dicts (keys: ``FIELDS``), in request time order."""
        rows = sorted(self._notable + self._ok, key=lambda r: (r[8], r[0], r[4]))
        return [dict(zip(self.FIELDS, row, strict=True)) for row in rows]

    # throughput time series -------------------------------------------------------------

    def _bump(self, ts: float, nbytes: float, count: int, failures: int) -> None:
        key = int(ts // self._width)
        buckets = self._buckets
        if buckets and key not in buckets:
            low, high = min(key, *buckets), max(key, *buckets)
            while high - low >= _SERIES_BUCKETS:
                self._merge()
                buckets = self._buckets
                key = int(ts // self._width)
                low, high = min(key, *buckets), max(key, *buckets)
        slot = buckets.get(key)
        if slot is None:
            slot = buckets[key] = [0.0, 0, 0]
        slot[0] += nbytes
        slot[1] += count
        slot[2] += failures

    def _merge(self) -> None:
        merged: dict[int, list[float]] = {}
        for key, (nbytes, count, failures) in self._buckets.items():
            slot = merged.setdefault(key // 2, [0.0, 0, 0])
            slot[0] += nbytes
            slot[1] += count
            slot[2] += failures
        self._buckets = merged
        self._width *= 2

    def _add_to_series(self, e: DimseTransaction) -> None:
        failed = 1 if e.status_class == "failure" else 0
        start = e.request_ts
        end = e.request_complete_ts
        nbytes = float(e.request_dataset_bytes)
        if nbytes and end is not None and end > start:
            # spread the upload over the buckets its transfer spans
            ts = start
            while ts < end:
                step_end = min(end, (ts // self._width + 1) * self._width)
                if step_end <= ts:  # float rounding at a bucket edge
                    step_end = end
                self._bump(ts, nbytes * (step_end - ts) / (end - start), 0, 0)
                ts = step_end
        elif nbytes:
            self._bump(start, nbytes, 0, 0)
        if e.response_dataset_bytes:
            self._bump(e.response_ts or start, float(e.response_dataset_bytes), 0, 0)
        self._bump(e.response_complete_ts or e.response_ts or start, 0.0, 1, failed)

    def series(self) -> dict[str, Any]:
        """Exact per-bucket totals over the whole capture: ``{"bucket_seconds": w,
        "points": [(bucket_start_ts, dataset_bytes, transactions, failures), ...]}``."""
        return {
            "bucket_seconds": self._width,
            "points": [
                (key * self._width, slot[0], int(slot[1]), int(slot[2]))
                for key, slot in sorted(self._buckets.items())
            ],
        }

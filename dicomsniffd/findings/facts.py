"""What the summary keeps while a capture is replayed: one record per association, one per
DIMSE command, and the exact percentiles of their timings.

Raw timing samples are kept in ``array('d')`` (8 bytes each) so percentiles are exact even
for captures with a million transactions. The findings (``dicomsniffd.findings``) read
these records; only the ``Summary`` sink writes them.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Any

from dicomsniffd.dicom.events import ACCEPTOR, REQUESTOR, PresentationContext
from dicomsniffd.names import context_result, uid_display_name

# DESIGN §3's phases; for a single-response service the first three add up to the fourth
TIMINGS = ("request_transfer_ms", "response_latency_ms", "response_transfer_ms", "duration_ms")


def sender_counts() -> dict[str, int]:
    """A fresh ``{requestor: 0, acceptor: 0}`` counter."""
    return {REQUESTOR: 0, ACCEPTOR: 0}


class Association:
    """Everything the summary keeps about one connection."""

    # One per association (10,000 live in the many-flows benchmark): slots make it
    # smaller and its attribute stores cheaper.
    __slots__ = (
        "flow_id", "client", "server", "calling_ae", "called_ae", "start_ts", "end_ts",
        "requested", "accepted", "dicom_seen", "reject", "abort", "end", "duration",
        "contexts", "implementation_class_uid", "implementation_version_name", "dimse",
        "requests", "unanswered", "pdata", "missed", "retransmissions", "zero_windows",
        "resets", "protocol_errors", "in_flight",
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
        self.pdata = sender_counts()
        self.missed = 0
        self.retransmissions = sender_counts()
        self.zero_windows = sender_counts()
        self.resets = sender_counts()
        self.protocol_errors = 0  # ProtocolError and Resynchronised events on this flow
        self.in_flight = 0  # requests still open when the capture (or the daemon) stopped

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
            "in_flight": self.in_flight,
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


class Command:
    """Global statistics of one DIMSE command (``C-STORE``…)."""

    def __init__(self) -> None:
        self.requests = 0
        self.responses: dict[str, int] = {}
        self.unanswered = 0
        self.in_flight = 0  # open when the capture stopped: not answered yet, not unanswered
        self.samples = {name: array("d") for name in TIMINGS}
        self.dataset_bytes = 0
        self.throughput_bytes = 0
        self.throughput_seconds = 0.0
        self.incomplete = 0

    def timing(self, name: str) -> dict[str, Any]:
        """Percentiles of one of ``TIMINGS``."""
        return percentiles(self.samples[name])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.requests,
            "responses": dict(sorted(self.responses.items())),
            "unanswered": self.unanswered,
            "in_flight": self.in_flight,
        }
        for name in TIMINGS:
            out[name] = self.timing(name)
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

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

from dicomsniffd.dicom.events import ACCEPTOR, REQUESTOR, PresentationContext, UserInformation
from dicomsniffd.dicom.implementations import implementation_dict
from dicomsniffd.names import context_result, uid_display_name

TIMINGS = ("request_transfer_ms", "response_latency_ms", "duration_ms")


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
        "resets", "protocol_errors", "requestor_info", "acceptor_info", "setup_seconds", "stores",
        "busy_seconds", "first_error",
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
        # the RQ's and the AC's user information: the decoded (frozen, memoised) object
        # itself, shared by every association that sent the same PDU; turned into
        # implementation_dict only when the summary is written
        self.requestor_info: UserInformation | None = None
        self.acceptor_info: UserInformation | None = None
        # for the interoperability findings (findings/interop.py)
        self.setup_seconds: float | None = None  # A-ASSOCIATE-RQ -> AC
        self.stores = 0  # C-STORE requests
        self.busy_seconds = 0.0  # sum of the DIMSE transactions' durations
        self.first_error: tuple[str, str, str] | None = None  # (sender, kind, detail)

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
            "requestor_implementation": implementation_dict(self.requestor_info),
            "acceptor_implementation": implementation_dict(self.acceptor_info),
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


class StallTime:
    """Stalls inside DIMSE transfers (DESIGN §3), per AE pair and command: how much of the
    transactions' time they took, by the side whose data stalled and the cause."""

    def __init__(self) -> None:
        # (calling, called, command) -> [transactions, their summed duration (s)]
        self.time: dict[tuple[str, str, str], list[float]] = {}
        # (calling, called, command, sender, cause) -> [stalls, seconds, transactions hit]
        self.stalls: dict[tuple[str, str, str, str, str], list[float]] = {}

    def add(self, pair: tuple[str, str], command: str, duration: float | None, stalls) -> None:
        """One answered transaction: its duration and ``DimseTransaction.stalls``."""
        if duration is None:
            return
        time = self.time.setdefault((*pair, command), [0, 0.0])
        time[0] += 1
        time[1] += duration
        for sender, cause, count, seconds in stalls:
            total = self.stalls.setdefault((*pair, command, sender, cause), [0, 0.0, 0])
            total[0] += count
            total[1] += seconds
            total[2] += 1

    def to_dict(self) -> list[dict[str, Any]]:
        return [
            {
                "calling_ae": calling,
                "called_ae": called,
                "command": command,
                "sender": sender,
                "cause": cause,
                "stalls": int(n),
                "seconds": round(seconds, 6),
                "transactions": int(hit),
                "share": round(seconds / self.time[(calling, called, command)][1], 4)
                if self.time[(calling, called, command)][1] > 0
                else None,
            }
            for (calling, called, command, sender, cause), (n, seconds, hit) in sorted(
                self.stalls.items()
            )
        ]

"""Numbers, times and the DIMSE timing table as people read them: shared by the text
summary (``sinks/summary/text.py``), the findings and the HTML report (``sinks/report/``).

Where the text summary and the report used to format the same thing differently, the one
function here keeps both behaviours behind a keyword, so both outputs stay byte-identical.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from dicomsniffd.names import NO_SERVICE_TIME, REVERSED_ROLE, status_hex


def plural(n: int, word: str) -> str:
    """``1 association``, ``2 associations``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def utc(ts: float | None, *, date: bool = True, ms: bool = False) -> str:
    """``2026-01-31 12:00:00`` in UTC (``date=False``: the time only; ``ms``: ``.123``);
    ``-`` when unknown."""
    if ts is None:
        return "-"
    text = time.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S", time.gmtime(ts))
    if ms:
        text += f".{int((ts % 1) * 1000):03d}"
    return text


def byte_size(n: float | None, *, largest_unit: str = "GB") -> str:
    """``512 B``, ``1.5 MB``; ``-`` when unknown. The text summary stops at GB
    (``1500.0 GB``), the report goes on to TB (``largest_unit="TB"``: ``1.5 TB``)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000 or unit == largest_unit:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000.0
    return f"{value:.1f} TB"


def one_decimal(value: float | None) -> str:
    """A table cell of milliseconds or Mbit/s: ``12.3``; ``-`` when unknown."""
    return "-" if value is None else f"{value:.1f}"


def seconds_as_ms(seconds: float | None) -> str:
    """Seconds shown as a milliseconds cell: ``0.0123`` -> ``12.3``."""
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def duration(seconds: float | None) -> str:
    """``120 ms``, ``4.2 s``, ``3.5 min``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


# The phases of a DIMSE transaction (DESIGN §3), as the timing tables show them.
TIMING_PHASES = (
    ("transfer", "request_transfer_ms"),
    ("service", "response_latency_ms"),
    ("response", "response_transfer_ms"),
    ("total", "duration_ms"),
)


# The phases of a request the acceptor sent: its transfer is a download and its service
# time the requestor's (the C-GET SCU storing what it asked for).
_REVERSED_LABELS = {"transfer": "download", "service": "SCU time"}


def timing_rows(
    dimse: Mapping[str, Mapping[str, Any]], *, first_response_label: bool = False
) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """``(command, phase label, percentiles)`` of the DIMSE timing table, from the
    ``dimse`` part of ``Summary.to_dict``; phases without samples are left out.

    ``first_response_label`` (the report) calls C-MOVE/C-GET's service phase "first
    response": their first response follows the first sub-operation, not the SCP's work.
    """
    for command, stats in dimse.items():
        for label, key in TIMING_PHASES:
            p = stats.get(key)  # a saved summary of an older version may lack a phase
            if not p or not p["count"]:
                continue
            if first_response_label and label == "service" and command in NO_SERVICE_TIME:
                label = "first response"
            if command in REVERSED_ROLE:  # acceptor -> requestor (C-GET's C-STOREs)
                label = _REVERSED_LABELS.get(label, label)
            yield command, label, p


def problem_score(a: Mapping[str, Any], protocol_errors: int = 0) -> int:
    """How much is wrong with one association (an ``Association.to_dict``): 0 when nothing.
    Rejected / aborted-before-accept weigh most, then aborts and resets, then each failed or
    warning response, unanswered requests, RSTs, protocol errors, retransmissions and zero windows (50 at
    most each), missed bytes and the ``protocol_errors`` seen on it (``Summary.to_dict``'s
    ``protocol_errors_by_flow``). The HTML report and the text summary both rank by it."""
    score = 0
    if a["outcome"] in ("rejected", "aborted-before-accept"):
        score += 100
    if a.get("abort") or a.get("end") in ("aborted", "reset"):
        score += 50
    for statuses in (a.get("dimse") or {}).values():
        for status, n in statuses.items():
            if status and status != "0x0000" and not status.startswith("0xFF"):
                score += n
    score += a.get("unanswered", 0) * 5 + a.get("resets", 0) * 5
    score += min(protocol_errors, 10) * 5
    score += min(a.get("retransmissions", 0), 50) + min(a.get("zero_windows", 0), 50)
    if a.get("missed_bytes"):
        score += 10
    return score


def format_break(broken: Mapping[str, Any]) -> str:
    """One phrase saying where a capture file broke (an entry of analyze's
    ``broken_files``), e.g. ``bad.pcap: corrupt record at packet 41 (byte offset 6012):
    …``; the byte offset is left out where unknown (pcapng)."""
    where = f"packet {broken['packet']}"
    if broken.get("offset") is not None:
        where += f" (byte offset {broken['offset']})"
    what = "cut short in the middle of" if broken["kind"] == "truncated" else "corrupt record at"
    return f"{broken['file']}: {what} {where}: {broken['error']}"


BREAK_COVERAGE = "the results cover the packets before the break"
REORDERED_NOTE = "read in the time order of their first packets, not in the order given"


def stall_lines(stalls: list[dict[str, Any]]) -> list[str]:
    """The summary's ``tcp.stalls`` rows (DESIGN §3 stalls), one line each, worst first."""
    rows = sorted(stalls, key=lambda s: -s["seconds"])
    return [
        f"{s['command']} {s['calling_ae']} → {s['called_ae']}: {s['sender']} {s['cause']} "
        f"{s['stalls']}×, {s['seconds']:.3g} s"
        + (f" ({s['share']:.0%} of the {s['command']} time)" if s["share"] is not None else "")
        for s in rows
    ]


def move_lines(m: dict[str, Any]) -> tuple[str, str]:
    """Two phrases for one C-MOVE of ``Summary.to_dict()["moves"]``: what it asked and got,
    and where its sub-association is (the report uses them too)."""
    status = status_hex(m["status"]) if m["status"] is not None else m["outcome"]
    counts = ", ".join(
        f"{name} {m[name]}" for name in ("completed", "failed", "warning") if m[name] is not None
    )
    what = (
        f"flow {m['flow_id']} {m['calling_ae']} → {m['called_ae']}, to "
        f"{m['move_destination'] or '?'}: {status}" + (f"; {counts}" if counts else "")
    )
    sub = m["sub_association"]
    if sub is None:
        where = (
            "no association to the destination in this capture (capture also where the SCP "
            "connects to it)"
        )
    else:
        where = (
            f"sub-association flow {sub['flow_id']} {sub['calling_ae']} → {sub['called_ae']} "
            f"({sub['server']}) opened after {_seconds_ms(sub['opened_after_s'])}, first C-STORE "
            f"after {_seconds_ms(sub['first_store_after_s'])}"
        )
    return what, where


def _seconds_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"

"""Is the TCP path healthy? Connections reset instead of released, packet loss
(retransmissions) and receivers that could not keep up (zero windows)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomsniffd.dicom.events import ACCEPTOR, REQUESTOR
from dicomsniffd.findings.rule import Collected, FindingKind, Found, rule
from dicomsniffd.formatting import plural

RESETS = FindingKind(
    "resets",
    "warning",
    "Connections reset",
    "A reset without an A-RELEASE/A-ABORT means the application closed its socket "
    "abruptly (crash, restart, kill) or a firewall/load balancer cut the connection "
    "(idle timeout, inspection). Check which side sent it, firewall session timeouts, "
    "and the application logs at that time.",
)
RETRANSMISSIONS = FindingKind(
    "retransmissions",
    "warning",  # graded by the share of packets: critical ≥ 5%, warning ≥ 1%, info ≥ 0.1%
    "TCP retransmissions",
    "Retransmissions mean packets are lost on the way between the peers: check interface "
    "error counters, duplex settings, congested links and firewalls on the stretch the "
    "evidence names. A segment seen twice was lost after the capture point (toward the "
    "receiver); a segment that filled a hole was lost before it (toward the sender). The "
    "side that retransmits is the one whose packets get lost.",
)
ZERO_WINDOW = FindingKind(
    "zero-window",
    "warning",
    "TCP zero window: a receiver could not keep up",
    "Zero windows from the SCP during C-STORE mean the PACS cannot write as fast as "
    "the data arrives (storage, CPU, ingest queue): that is SCP slowness seen on the "
    "network. Zero windows from the SCU (C-GET, C-FIND results) mean the SCU is slow to "
    "consume. Check the receiving host's disk and CPU load.",
)


@rule(RESETS)
def resets(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    hit = [a for a in c.associations if a.reset_seen]
    total = c.totals.reset  # exact; ``hit`` are the kept records among them
    if not total:
        return []
    # same shape as associations.aborts (one evidence line per association), other facts
    evidence = []
    for a in hit:
        senders = [s for s in (REQUESTOR, ACCEPTOR) if a.resets.get(s)]
        by = " and ".join(senders) if senders else "unknown side"
        line = f"flow {a.flow_id} {a.pair} ({a.client} → {a.server}): reset by {by}"
        if a.unanswered:
            line += f", {plural(a.unanswered, 'request')} unanswered"
        evidence.append(line)
    detail = (
        f"{plural(total, 'connection')} ended with a TCP reset instead of a DICOM release or abort."
    )
    return [RESETS.found(detail, evidence, total, of=total)]


def _retransmission_severity(ratio: float) -> str | None:
    if ratio >= 0.05:
        return "critical"
    if ratio >= 0.01:
        return "warning"
    if ratio >= 0.001:
        return "info"
    return None


@rule(RETRANSMISSIONS)
def retransmissions(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    counts = c.tcp["retransmissions"]
    total = sum(counts.values())
    packets = int(info.get("packets") or 0)
    if not total or not packets:
        return []
    ratio = total / packets
    severity = _retransmission_severity(ratio)
    if severity is None:
        return []
    worst = sorted(c.associations, key=lambda a: -sum(a.retransmissions.values()))[:5]
    evidence = (
        [f"sent by requestor {counts.get(REQUESTOR, 0)}, by acceptor {counts.get(ACCEPTOR, 0)}"]
        + _where_lost(counts, c.tcp.get("lost_before_capture") or {})
        + [
            f"flow {a.flow_id} {a.pair}: {sum(a.retransmissions.values())}"
            for a in worst
            if sum(a.retransmissions.values())
        ]
    )
    detail = (
        f"{total} TCP retransmissions for {packets} captured packets "
        f"({ratio:.2%}); above 1% transfers slow down noticeably."
    )
    title = f"{RETRANSMISSIONS.title} ({ratio:.2%} of packets)"
    return [RETRANSMISSIONS.found(detail, evidence, total, severity=severity, title=title)]


def _where_lost(counts: Mapping[str, int], before: Mapping[str, int]) -> list[str]:
    """Where the lost segments were lost, relative to the capture point (DESIGN §3)."""
    lines = []
    for sender, receiver in ((REQUESTOR, ACCEPTOR), (ACCEPTOR, REQUESTOR)):
        n, b = counts.get(sender, 0), before.get(sender, 0)
        if b:
            lines.append(
                f"{b} of the {sender}'s {n} filled a hole (the original never passed the "
                f"capture point): lost between the {sender} and the capture point"
            )
        if n - b > 0:
            lines.append(
                f"{n - b} of the {sender}'s {n} were seen twice: lost between the capture "
                f"point and the {receiver}"
            )
    return lines


@rule(ZERO_WINDOW)
def zero_window(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    counts = c.tcp["zero_windows"]
    total = sum(counts.values())
    if not total:
        return []
    evidence = [
        f"advertised by acceptor (SCP) {counts.get(ACCEPTOR, 0)}, "
        f"by requestor (SCU) {counts.get(REQUESTOR, 0)}"
    ] + [
        f"flow {a.flow_id} {a.pair}: {sum(a.zero_windows.values())}"
        for a in sorted(c.associations, key=lambda a: -sum(a.zero_windows.values()))[:5]
        if sum(a.zero_windows.values())
    ]
    detail = (
        f"A receiver told its peer to stop sending {plural(total, 'time')} (TCP zero "
        "window): its application did not read the data fast enough."
    )
    return [ZERO_WINDOW.found(detail, evidence, total)]

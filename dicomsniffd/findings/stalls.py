"""Where does the time inside a transfer go? Stalls by cause (DESIGN §3): a gap in one
side's data during a request or response transfer, named by what held it up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomsniffd.dicom.events import ACCEPTOR
from dicomsniffd.findings.rule import Collected, FindingKind, Found, Rule, rule
from dicomsniffd.formatting import plural

# A cause is reported when its stalls take at least this share of the time of one
# command between one AE pair (warning from WARNING_SHARE), and at least MIN_SECONDS.
INFO_SHARE = 0.10
WARNING_SHARE = 0.50
MIN_SECONDS = 0.1

DELAYED_ACK = FindingKind(
    "stalls-delayed-ack",
    "warning",
    "Nagle's algorithm waits for delayed ACKs",
    "One side writes a message in pieces (e.g. a PDU header, then the rest); TCP's Nagle "
    "algorithm holds the second small piece until the first is acknowledged, and the "
    "peer delays that ACK (about 40 ms on Linux, up to 200 ms on Windows). Each affected "
    "message loses that time, so small messages look like a slow network. Disable Nagle "
    "(TCP_NODELAY) on the side named: DCMTK tools and DCMTK-based products read the "
    "environment variable TCP_NODELAY=1 (DCMTK ≥ 3.6.2 no longer disables Nagle by "
    "default), and so does Orthanc when it is linked against the system DCMTK (e.g. "
    "Debian's package); Orthanc's own static builds disable Nagle at compile time "
    "(DISABLE_NAGLE_ALGORITHM); dcm4chee-arc has the network connection attribute "
    "'TCP No Delay' (dcmTCPNoDelay); pynetdicom writes each PDU in one piece.",
)
ZERO_WINDOW = FindingKind(
    "stalls-zero-window",
    "warning",
    "Transfers waited for a receiver that stopped reading",
    "The receiving side advertised a zero TCP window: its application did not read from "
    "the socket (busy writing to disk, a full ingest queue, CPU). The sender could not "
    "go on. Check the receiving host's disk, CPU and the application's queue at the "
    "times of the stalls.",
)
LOSS_RECOVERY = FindingKind(
    "stalls-loss-recovery",
    "warning",
    "Transfers waited for lost packets to be resent",
    "A segment was lost and the sender waited for a retransmission timeout or for "
    "duplicate ACKs before resending it. See the retransmissions finding for where the "
    "loss was; check interface errors, duplex and congested links there.",
)
SENDER_IDLE = FindingKind(
    "stalls-sender-idle",
    "info",
    "The sending application paused inside a transfer",
    "The data stopped in the middle of a message with nothing on the TCP side to explain "
    "it (no zero window, no loss, no ACK awaited): the sending application was slow to "
    "write, e.g. reading or compressing the object while sending it, or its own queue.",
)

_KIND_OF = {
    "delayed-ack": DELAYED_ACK,
    "zero-window": ZERO_WINDOW,
    "loss-recovery": LOSS_RECOVERY,
    "sender-idle": SENDER_IDLE,
}


def _check(cause: str, c: Collected) -> list[Found]:
    stall_time = c.stalls
    if stall_time is None:
        return []
    kind = _KIND_OF[cause]
    hits = []
    for key, (count, seconds, hit) in stall_time.stalls.items():
        calling, called, command, sender, this_cause = key
        if this_cause != cause or seconds < MIN_SECONDS:
            continue
        txns, total = stall_time.time[(calling, called, command)]
        share = seconds / total if total > 0 else 0.0
        if share >= INFO_SHARE:
            hits.append((share, seconds, count, hit, txns, total, calling, called, command, sender))
    if not hits:
        return []
    hits.sort(reverse=True)
    evidence = [_line(cause, *h) for h in hits]
    share, seconds, count = hits[0][0], sum(h[1] for h in hits), sum(h[2] for h in hits)
    severity = kind.severity if share >= WARNING_SHARE else "info"
    top = hits[0]
    detail = (
        f"{plural(int(count), 'stall')} inside DIMSE transfers ({seconds:.3g} s in all); "
        f"the most: {share:.0%} of {top[8]} time {top[6]} → {top[7]}."
    )
    title = f"{kind.title} ({share:.0%} of {hits[0][8]} time)"
    return [kind.found(detail, evidence, int(count), severity=severity, title=title)]


def _line(cause, share, seconds, count, hit, txns, total, calling, called, command, sender):
    side = f"the SCP ({called})" if sender == ACCEPTOR else f"the SCU ({calling})"
    return (
        f"{share:.0%} of {command} time {calling} → {called} is {cause} stalls of {side}'s "
        f"data: {seconds:.3g} s of {total:.3g} s, {plural(int(count), 'stall')} "
        f"({seconds / count * 1000:.0f} ms each) in {int(hit)} of {int(txns)} {command}s"
    )


def _cause_rule(cause: str, name: str) -> Rule:
    """The rule of one cause (the four differ only in the cause they read)."""

    def check(c: Collected, info: Mapping[str, Any]) -> list[Found]:
        return _check(cause, c)

    check.__name__ = check.__qualname__ = name
    return rule(_KIND_OF[cause])(check)


delayed_ack = _cause_rule("delayed-ack", "delayed_ack")
zero_window = _cause_rule("zero-window", "zero_window")
loss_recovery = _cause_rule("loss-recovery", "loss_recovery")
sender_idle = _cause_rule("sender-idle", "sender_idle")

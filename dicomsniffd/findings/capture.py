"""Can the capture be trusted? Bytes never captured, snaplen cuts, offloads that blur
timing, and a capture with no DICOM in it at all."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomsniffd.dicom.problems import ONE_DIRECTION_ONLY, RESYNC
from dicomsniffd.findings.rule import Collected, FindingKind, Found, rule
from dicomsniffd.formatting import BREAK_COVERAGE, format_break, plural

CAPTURE_INCOMPLETE = FindingKind(
    "capture-incomplete",
    "warning",
    "The capture is incomplete: numbers are lower bounds",
    "Capture with a full snaplen (-s 0), a bigger capture buffer, and make sure the "
    "mirror port is not oversubscribed and mirrors both directions. Turn off offloads "
    "on the capture interface (ethtool -K IFACE gro off lro off tso off gso off).",
)
CAPTURE_OFFLOADS = FindingKind(
    "capture-offloads",
    "info",
    "Offloads were on where the capture was taken",
    "Turn offloads off on the capture interface: ethtool -K IFACE gro off lro off tso off gso off.",
)
CAPTURE_ENDED = FindingKind(
    "capture-ended",
    "info",
    "The capture stopped while associations were still open",
    "Nothing points at either peer: the capture (or the daemon) stopped first. To see how "
    "these associations end, start the capture before the transfer and stop it after.",
)
NO_DICOM = FindingKind(
    "no-dicom",
    "info",
    "No DICOM traffic found",
    "Check that the capture holds the DICOM traffic (filter, ports, both directions) "
    "and that it is not DICOM over TLS. Associations already running when the capture "
    "started are only recognised on the configured DICOM ports.",
)


def _gaps_evidence(c: Collected, info: Mapping[str, Any], missed: int, truncated: int) -> list[str]:
    incomplete = sum(s.incomplete for s in c.commands.values())
    resyncs = c.protocol_errors.get(RESYNC, 0)
    evidence = []
    if missed:
        evidence.append(f"{missed} bytes on DICOM connections were never captured")
    if truncated:
        evidence.append(f"{truncated} packets cut by the snapshot length (snaplen)")
    if incomplete:
        evidence.append(f"{incomplete} DIMSE transactions hit by a capture gap")
    if resyncs:
        evidence.append(f"{resyncs} resynchronisations of the DICOM stream after a gap")
    one_sided = c.protocol_errors.get(ONE_DIRECTION_ONLY, 0)
    if one_sided:
        evidence.append(
            f"{one_sided} connections seen in one direction only (one-sided mirror, "
            "or a peer that never answered)"
        )
    for path in info.get("truncated_files") or ():
        evidence.append(f"capture file {path} is truncated")
    for broken in _corrupt_files(info):
        evidence.append(f"{format_break(broken)}; {BREAK_COVERAGE}")
    return evidence


def _corrupt_files(info: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The capture files that broke at a corrupt record (not merely cut short)."""
    return [b for b in info.get("broken_files") or () if b.get("kind") == "corrupt"]


_CORRUPT_ADVICE = (
    " A capture file is corrupt part way: re-copy it from the capture host (an interrupted "
    "or damaged copy is the usual cause) and check the disk the capture tool wrote to "
    "(full, or failing); pcapfix can sometimes recover the packets after the break, and "
    "editcap (editcap -F pcap bad.pcap good.pcap) rewrites the readable part as a clean file."
)


@rule(CAPTURE_INCOMPLETE)
def capture_incomplete(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    missed = max(int(info.get("missed_bytes") or 0), c.missed_total)
    truncated = int(info.get("truncated_packets") or 0)
    evidence = _gaps_evidence(c, info, missed, truncated)
    if not evidence:
        return []
    detail = (
        "The capture does not contain everything that went over the wire, so counts, "
        "sizes and timings in this summary are incomplete (lower bounds)."
    )
    corrupt = len(_corrupt_files(info))
    if corrupt:
        detail += (
            f" {plural(corrupt, 'capture file')} broke at a corrupt record; the packets after "
            "the break were not read."
        )
        advice = CAPTURE_INCOMPLETE.advice + _CORRUPT_ADVICE
        return [
            CAPTURE_INCOMPLETE.found(detail, evidence, missed + truncated + corrupt, advice=advice)
        ]
    return [CAPTURE_INCOMPLETE.found(detail, evidence, missed + truncated)]


@rule(CAPTURE_OFFLOADS)
def capture_offloads(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    # Merged super-packets lose nothing (their bytes are all there) but blur timing:
    # every merged frame gets one timestamp. Worth fixing, not a gap in the numbers.
    super_packets = int((info.get("decode") or {}).get("super_packets") or 0)
    if not super_packets:
        return []
    # A segment counts only when it exceeds the largest MSS a SYN announced (1460 when no
    # SYN was seen): jumbo-frame and loopback links are not told to turn offloads off.
    detail = (
        "Some captured packets are larger than the connections' MSS allows: the "
        "capturing host merged frames (GRO/LRO) or captured before segmentation "
        "(TSO/GSO). Nothing is lost, but merged frames share one timestamp, which blurs "
        "sub-millisecond timings."
    )
    evidence = [
        f"{super_packets} packets larger than the largest MSS the SYNs announced "
        "(1460 bytes when the capture holds no SYN)"
    ]
    return [CAPTURE_OFFLOADS.found(detail, evidence, super_packets)]


@rule(NO_DICOM)
def no_dicom(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    if c.totals.associations or c.connection_failures or c.tls:
        return []
    return [NO_DICOM.found("No DICOM association was recognised in the capture.", [], 0)]


@rule(CAPTURE_ENDED)
def capture_ended(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    """Associations cut by the end of the capture: their open requests are in flight, not
    unanswered, and no other finding blames a peer for them."""
    open_at_end = [a for a in c.associations if a.end == "capture-ended"]
    if not open_at_end:
        return []
    in_flight = sum(a.in_flight for a in open_at_end)
    detail = (
        f"{plural(len(open_at_end), 'association')} "
        f"{'was' if len(open_at_end) == 1 else 'were'} still open when the capture ended"
        + (
            f", with {plural(in_flight, 'request')} in flight (sent, not answered yet): "
            "they are not counted as unanswered."
            if in_flight
            else "."
        )
    )
    evidence = [
        f"flow {a.flow_id} {a.pair}: open at the end of the capture"
        + (f", {plural(a.in_flight, 'request')} in flight" if a.in_flight else "")
        for a in open_at_end[:10]
    ]
    if len(open_at_end) > 10:
        evidence.append(f"… and {len(open_at_end) - 10} more")
    return [CAPTURE_ENDED.found(detail, evidence, len(open_at_end))]

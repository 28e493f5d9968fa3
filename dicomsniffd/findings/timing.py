"""Is the PACS slow, or the network? Per command, compares the SCP's service time with
the network transfer time of the requests (DESIGN §3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomsniffd.findings.rule import Collected, FindingKind, Found, rule
from dicomsniffd.formatting import plural
from dicomsniffd.names import NO_SERVICE_TIME, REVERSED_ROLE

_SLOW_P95_S = 1.0
_SLOW_P50_S = 0.5

SLOW_SCP = FindingKind(
    "slow-scp",
    "warning",
    "Slow SCP: service time dominates",
    "The PACS itself is slow: check its storage write latency, database "
    "commit time, CPU and ingest queues (compression, routing rules, "
    "anti-virus scanning). Zero windows sent by the SCP point the same way.",
)
SLOW_NETWORK = FindingKind(
    "slow-network",
    "warning",  # info when the capture shows no retransmission and no zero window
    "Slow transfers: network time dominates",
    "Check the path between SCU and SCP: speed/duplex mismatches, saturated "
    "or WAN links, MTU problems, firewalls/IPS inspecting DICOM. Retransmissions "
    "mean packet loss; zero windows from the SCP mean it stops reading (then "
    "the SCP is the bottleneck); a slow SCU can also send slowly (disk, CPU).",
)


def _is_slow(p: Mapping[str, Any]) -> bool:
    return p["p95"] >= _SLOW_P95_S * 1000 or p["p50"] >= _SLOW_P50_S * 1000


def _tcp_trouble(c: Collected) -> str:
    retrans = sum(c.tcp["retransmissions"].values())
    zero = sum(c.tcp["zero_windows"].values())
    return f"{plural(retrans, 'retransmission')} and {plural(zero, 'zero-window event')} were seen"


# One rule for both kinds: a command is either SCP-bound or network-bound, and the
# findings come out in command order (the ranking's tie order).
@rule(SLOW_SCP, SLOW_NETWORK)
def slow(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    out: list[Found] = []
    for command, stats in sorted(c.commands.items()):
        transfer = stats.timing("request_transfer_ms")
        latency = stats.timing("response_latency_ms")
        if not transfer["count"] or not latency["count"]:
            continue
        total_transfer = stats.samples["request_transfer_ms"].sum()
        total_latency = stats.samples["response_latency_ms"].sum()
        numbers = (
            f"{command}: transfer p50 {transfer['p50']:.0f} ms / p95 {transfer['p95']:.0f} ms, "
            f"{'SCU' if command in REVERSED_ROLE else 'SCP'} service time "
            f"p50 {latency['p50']:.0f} ms / p95 {latency['p95']:.0f} ms"
            f" over {transfer['count']} requests"
        )
        # a C-GET's C-STOREs: their service time is the requestor's, not the SCP's
        scp_time = command not in NO_SERVICE_TIME and command not in REVERSED_ROLE
        if scp_time and total_latency > total_transfer and _is_slow(latency):
            detail = (
                f"For {command}, the SCP takes longer to answer after receiving the request "
                "than the network takes to deliver it: the time is spent inside the SCP."
            )
            title = f"{SLOW_SCP.title} ({command})"
            out.append(SLOW_SCP.found(detail, [numbers], transfer["count"], title=title))
        elif total_transfer > total_latency and _is_slow(transfer):
            tcp = _tcp_trouble(c)
            trouble = any(c.tcp["retransmissions"].values()) or any(c.tcp["zero_windows"].values())
            evidence = [numbers, f"TCP: {tcp}"]
            if stats.throughput_mbps is not None:
                way = "download" if command in REVERSED_ROLE else "upload"
                evidence.append(
                    f"{way} rate per object on the wire {stats.throughput_mbps:.1f} Mbit/s"
                )
            detail = (
                f"For {command}, moving the data takes longer than the SCP needs to "
                f"process it: the time is spent on the network; {tcp}."
            )
            out.append(
                SLOW_NETWORK.found(
                    detail,
                    evidence,
                    transfer["count"],
                    severity="warning" if trouble else "info",
                    title=f"{SLOW_NETWORK.title} ({command})",
                )
            )
    return out

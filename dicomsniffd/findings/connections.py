"""Can the SCU reach the SCP at all? TCP connection attempts that failed, and DICOM over
TLS (counted, never decrypted)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomsniffd.findings.rule import Collected, FindingKind, Found, rule
from dicomsniffd.formatting import plural

CONNECTION_REFUSED = FindingKind(
    "connection-refused",
    "critical",
    "Connections to a DICOM server were refused",
    "Nothing was listening on that port (the server answered the SYN with a reset): "
    "the DICOM service is stopped or crashed, or the sending device is configured "
    "with the wrong port. Check the service on the server and the port configured "
    "on the sender.",
)
CONNECTION_UNANSWERED = FindingKind(
    "connection-unanswered",
    "warning",
    "Connection attempts to a DICOM server got no answer",
    "The SYN was never answered: the server is down or unreachable, or a firewall "
    "drops the traffic. Check routing and firewall rules between the sender and "
    "the server (and that this capture sees both directions).",
)
TLS = FindingKind(
    "tls",
    "info",
    "DICOM over TLS (not decoded)",
    "Nothing to do; DICOM over TLS is only counted, never decrypted.",
)
_TLS_FAILED_ADVICE = (
    "Failed TLS handshakes usually mean certificate or cipher mismatches: check the "
    "certificates and trust stores on both ends."
)


def _failed_connections(c: Collected, reason: str, kind: FindingKind) -> list[Found]:
    rows = [(s, n) for (s, r), n in c.connection_failures.items() if r == reason]
    if not rows:
        return []
    total = sum(n for _s, n in rows)
    evidence = [f"{server}: {plural(n, 'attempt')}" for server, n in sorted(rows)]
    detail = (
        f"{plural(total, 'TCP connection attempt')} to {len(rows)} server(s) failed ({reason})."
    )
    return [kind.found(detail, evidence, total)]


@rule(CONNECTION_REFUSED)
def connection_refused(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    return _failed_connections(c, "refused", CONNECTION_REFUSED)


@rule(CONNECTION_UNANSWERED)
def connection_unanswered(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    return _failed_connections(c, "unanswered", CONNECTION_UNANSWERED)


@rule(TLS)
def tls(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    if not c.tls:
        return []
    total = sum(c.tls.values())
    failed = sum(n for (_s, o), n in c.tls.items() if o == "handshake-failed")
    evidence = [f"{server}: {outcome} {n}" for (server, outcome), n in sorted(c.tls.items())]
    detail = f"{plural(total, 'TLS connection')} on DICOM ports; their content cannot be analysed."
    if failed:
        return [TLS.found(detail, evidence, total, severity="warning", advice=_TLS_FAILED_ADVICE)]
    return [TLS.found(detail, evidence, total)]

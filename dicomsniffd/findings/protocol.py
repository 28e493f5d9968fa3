"""Does every peer speak the DICOM Upper Layer protocol (PS3.8)? Protocol errors decoded
from the traffic, except those that describe the capture rather than the peers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomsniffd.dicom.problems import ONE_DIRECTION_ONLY, RESYNC
from dicomsniffd.findings.rule import Collected, FindingKind, Found, rule
from dicomsniffd.formatting import plural

# Reported by the core as protocol errors, but they describe the capture, not the peers
# (the capture-incomplete finding counts them).
CAPTURE_QUALITY_KINDS = frozenset({RESYNC, ONE_DIRECTION_ONLY})

PROTOCOL_ERRORS = FindingKind(
    "protocol-errors",
    "info",
    "DICOM protocol errors",
    "Either a peer violates the DICOM Upper Layer protocol (check its conformance and "
    "software version) or the capture lost data (see capture-incomplete).",
)


@rule(PROTOCOL_ERRORS)
def protocol_errors(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    errors = {k: n for k, n in c.protocol_errors.items() if k not in CAPTURE_QUALITY_KINDS}
    if not errors:
        return []
    total = sum(errors.values())
    evidence = [f"{kind}: {n}" for kind, n in sorted(errors.items(), key=lambda kv: -kv[1])]
    detail = f"{plural(total, 'DICOM protocol error')} were decoded from the traffic."
    return [PROTOCOL_ERRORS.found(detail, evidence, total)]

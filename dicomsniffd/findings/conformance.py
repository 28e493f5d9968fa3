"""Does each side keep the rules of what it negotiated (DESIGN §4b)? One finding per
violation kind, naming the side that broke the rule, its AE title and its software
(Implementation Class UID and Version Name from its A-ASSOCIATE-RQ/AC): what a PACS
administrator hands to that vendor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomsniffd.dicom.problems import ERROR, PROTOCOL_VIOLATIONS
from dicomsniffd.findings.rule import Collected, FindingKind, Found, rule
from dicomsniffd.formatting import plural

PROTOCOL_VIOLATION = FindingKind(
    "protocol-violation",
    "warning",
    "A peer breaks a DICOM rule",
    "Collect the association and DIMSE logs (dicomsniffd --events, and the peers' own "
    "logs) and give them to the vendor of the software named above.",
)


def software(uid: str, version: str) -> str:
    """How a side's software is named: its Implementation Version Name and Class UID."""
    if not uid and not version:
        return "unknown software (its A-ASSOCIATE-RQ/AC was not seen)"
    if version and uid:
        return f"{version} (implementation class UID {uid})"
    return version or f"implementation class UID {uid}"


@rule(PROTOCOL_VIOLATION)
def protocol_violations(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    by_kind: dict[str, list[tuple[tuple[str, str, str, str, str], int]]] = {}
    for (kind, *rest), n in c.protocol_violations.items():
        by_kind.setdefault(kind, []).append((tuple(rest), n))  # type: ignore[arg-type]
    found: list[Found] = []
    for kind_name, rows in by_kind.items():
        kind = PROTOCOL_VIOLATIONS[kind_name]
        total = sum(n for _, n in rows)
        rows.sort(key=lambda row: -row[1])
        (sender, calling, called, uid, version), _ = rows[0]
        side = calling if sender == "requestor" else called
        detail = (
            f"{plural(total, 'time')}: {kind.meaning} ({kind.reference}). Broken by the "
            f"{sender} {side or 'unknown'} running {software(uid, version)}"
            + (f", and {len(rows) - 1} more side(s) (evidence)." if len(rows) > 1 else ".")
        )
        evidence = [
            f"{kind_name} by the {s} ({cg} → {cd}), {software(u, v)}: {n}"
            for (s, cg, cd, u, v), n in rows
        ]
        found.append(
            PROTOCOL_VIOLATION.found(
                detail,
                evidence,
                total,
                severity="warning" if kind.severity == ERROR else "info",
                title=f"A peer breaks a DICOM rule: {kind_name}",
                advice=f"Tell the vendor: {kind.advice}. {PROTOCOL_VIOLATION.advice}",
            )
        )
    return found

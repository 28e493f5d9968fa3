"""Which software each AE runs: the summary's ``implementations`` rollup and its text.

One row per AE, side and software (Implementation Class UID + Version Name), from the
A-ASSOCIATE-RQ (the requestor, under its calling AE title) and the -AC (the acceptor,
under the called AE title), with the Maximum Length values it announced and the number of
associations. An RQ that was never answered still names its requestor's software: that is
when a vendor is asked about it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dicomsniffd.dicom.events import ACCEPTOR, REQUESTOR
from dicomsniffd.dicom.implementations import describe, product_name
from dicomsniffd.findings.facts import Association


def implementations(associations: Iterable[Association]) -> list[dict[str, Any]]:
    """The rows, most associations first, then by AE title and side."""
    # First the associations per AE pair and decoded user information of each side: the
    # core shares one frozen object among the associations that sent the same RQ or AC
    # bytes, so the rows are then made once per distinct negotiation, not twice per
    # association. Rows come in the order the associations first showed them.
    seen: dict[tuple[str, str, int, int], list[Any]] = {}
    for a in associations:
        key = (a.calling_ae, a.called_ae, id(a.requestor_info), id(a.acceptor_info))
        count = seen.get(key)
        if count is None:
            seen[key] = [a.requestor_info, a.acceptor_info, 1]
        else:
            count[2] += 1
    rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for (calling, called, _, _), (requestor, acceptor, n) in seen.items():
        for side, ae, info in ((REQUESTOR, calling, requestor), (ACCEPTOR, called, acceptor)):
            if info is None:
                continue
            uid = info.implementation_class_uid
            key = (ae, side, uid, info.implementation_version_name)
            row = rows.get(key)
            if row is None:
                row = rows[key] = {
                    "ae": ae,
                    "side": side,
                    "implementation_class_uid": uid,
                    "implementation_version_name": info.implementation_version_name,
                    "product": product_name(uid),
                    "max_pdu_lengths": [],
                    "associations": 0,
                }
            row["associations"] += n
            if info.max_pdu_length not in row["max_pdu_lengths"]:
                row["max_pdu_lengths"].append(info.max_pdu_length)
    for row in rows.values():
        # None (no Maximum Length sub-item) sorts first
        row["max_pdu_lengths"].sort(key=lambda n: -1 if n is None else n)
    return sorted(rows.values(), key=lambda r: (-r["associations"], r["ae"], r["side"]))


def _max_length(values: list[int | None]) -> str:
    """PS3.8 D.1: 0 means no limit; None: the sub-item was missing."""
    shown = ["none sent" if v is None else ("unlimited" if v == 0 else str(v)) for v in values]
    return ", ".join(shown)


def render_software(rows: list[dict[str, Any]]) -> list[str]:
    """The text section's lines (empty when no RQ or AC was seen): per row, the AE, side,
    associations and the product, then the UID and Maximum Length indented below."""
    if not rows:
        return []
    lines = [
        "Software each AE runs (A-ASSOCIATE-RQ/AC user information)",
        f"{'AE':16} {'side':9} {'assocs':>6}  software",
    ]
    for r in rows:
        what = describe(r["implementation_class_uid"], r["implementation_version_name"])
        lines.append(f"{r['ae'][:16]:16} {r['side']:9} {r['associations']:>6}  {what}")
        lines.append(
            f"{'':34}class UID {r['implementation_class_uid'] or '-'}, "
            f"max PDU {_max_length(r['max_pdu_lengths'])}"
        )
    return lines

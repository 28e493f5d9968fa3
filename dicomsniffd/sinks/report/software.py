"""The report's "Software each AE runs" table (the summary's ``implementations`` rows),
and the list of evidence pcaps ``analyze --evidence`` wrote for the vendor."""

from __future__ import annotations

from typing import Any

from dicomsniffd.sinks.report.escape import esc


def _max_lengths(values: list[int | None]) -> str:
    return ", ".join(
        "none sent" if v is None else ("unlimited" if v == 0 else str(v)) for v in values
    )


def software_section(rows: list[dict[str, Any]]) -> str:
    """One row per AE, side and software; nothing when no RQ or AC was seen."""
    if not rows:
        return ""
    body = "".join(
        f"<tr><td><b>{esc(r['ae'])}</b></td><td>{esc(r['side'])}</td>"
        f"<td>{esc(r['product'] or 'not a known root')}</td>"
        f"<td><code>{esc(r['implementation_class_uid'] or '-')}</code></td>"
        f"<td>{esc(r['implementation_version_name'] or '-')}</td>"
        f"<td class='num'>{esc(_max_lengths(r['max_pdu_lengths']))}</td>"
        f"<td class='num'>{esc(r['associations'])}</td></tr>"
        for r in rows
    )
    return (
        "<section id='software'><h2>Software each AE runs</h2>"
        "<p class='note'>From the user information of the A-ASSOCIATE-RQ (requestor, under "
        "its calling AE title) and -AC (acceptor, under the called AE title). The product "
        "is named where the Implementation Class UID is under a well-known root.</p>"
        "<table id='software-table' class='grid'><thead><tr><th>AE</th><th>side</th>"
        "<th>product</th><th>implementation class UID</th><th>version name</th>"
        "<th>max PDU length</th><th>associations</th></tr></thead>"
        f"<tbody>{body}</tbody></table></section>"
    )


def evidence_section(evidence: dict[str, Any] | None) -> str:
    """The PHI-scrubbed pcaps of ``analyze --evidence`` (the summary's capture.evidence)."""
    if evidence is None:
        return ""
    body = "".join(
        f"<tr><td><code>{esc(f['file'])}</code></td><td class='num'>{esc(f['flow_id'])}</td>"
        f"<td>{esc(f['calling_ae'])} → {esc(f['called_ae'])}</td>"
        f"<td class='num'>{esc(f['frames'])}</td></tr>"
        for f in evidence["files"]
    )
    return (
        "<section id='evidence'><h2>Evidence for the vendor (PHI-scrubbed)</h2>"
        f"<p class='note'>In <code>{esc(evidence['directory'])}</code>; its "
        f"<code>{esc(evidence['readme'])}</code> says what was scrubbed: every data set byte "
        "and user-identity value overwritten in place, lengths and timing kept.</p>"
        "<table id='evidence-table' class='grid'><thead><tr><th>file</th><th>flow</th>"
        "<th>AE pair</th><th>frames</th></tr></thead>"
        f"<tbody>{body or '<tr><td colspan=4>none: no association with a problem</td></tr>'}"
        "</tbody></table></section>"
    )

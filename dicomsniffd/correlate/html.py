"""The HTML report of ``dicomsniffd correlate --report``: one self-contained page (no
script, no external resource; a Content-Security-Policy that allows only its own style).
Everything from the wire (AE titles, addresses) goes through the report's ``esc``."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from dicomsniffd.correlate.text import (
    DIRECTION_NAMES,
    association_line,
    clock_line,
    ms,
    totals_line,
)
from dicomsniffd.formatting import plural, utc
from dicomsniffd.sinks.report.escape import esc

_CSS = """
body{font:14px/1.45 system-ui,"DejaVu Sans",sans-serif;color:#1d2330;margin:0 auto;
max-width:1240px;padding:16px 24px}h1{font-size:24px}h2{font-size:19px;
border-bottom:2px solid #d0d5dd;margin-top:28px}h3{font-size:15px;margin:14px 0 4px}
.muted{color:#667085}table{border-collapse:collapse;margin:6px 0 12px;font-size:12.5px}
th,td{border:1px solid #d0d5dd;padding:3px 6px;text-align:left;vertical-align:top}
thead th{background:#f5f7fa}.num{text-align:right;white-space:nowrap}
.bad{color:#c62828;font-weight:600}.ok{color:#2e7d32}
footer{margin:40px 0 10px;color:#667085;font-size:12px}
"""


def _table(headers: list[str], rows: list[list[str]], nums: frozenset[int] = frozenset()) -> str:
    """A table; ``rows`` hold HTML already escaped, ``nums``: right-aligned columns."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='num'>{cell}</td>" if i in nums else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _count(n: int) -> str:
    return f"<span class='bad'>{n}</span>" if n else "<span class='ok'>0</span>"


def _overview(result: dict[str, Any]) -> str:
    rows = []
    for c in result["connections"]:
        d = c["directions"]
        resets = sum(
            r["copies"] for x in d.values() for r in x["resets"] if r["verdict"].startswith("inj")
        )
        changes = sorted({ch["change"] for x in d.values() for ch in x["option_changes"]})
        rows.append(
            [
                str(c["number"]),
                esc(association_line(c)),
                esc(f"{c['near']['client']} → {c['near']['server']}"),
                esc(f"{c['far']['client']} → {c['far']['server']}"),
                _count(d["c2s"]["lost"]),
                _count(d["s2c"]["lost"]),
                _count(d["c2s"]["added"] + d["s2c"]["added"]),
                _count(resets),
                esc(", ".join(changes) or "-"),
                esc(ms(d["c2s"]["delay"].get("p50_ms"))),
                esc(ms(d["s2c"]["delay"].get("p50_ms"))),
            ]
        )
    headers = ["#", "association", "at NEAR", "at FAR", "lost c→s", "lost s→c", "added",
               "injected resets", "options changed", "delay c→s p50", "delay s→c p50"]  # fmt: skip
    return "<h2>Connections seen at both points</h2>" + _table(
        headers, rows, frozenset({0, 4, 5, 6, 7, 9, 10})
    )


def _items(d: dict[str, Any]) -> list[list[str]]:
    rows = []

    def add(what: str, item: dict[str, Any]) -> None:
        rows.append(
            [
                esc(what),
                str(item["rel_seq"]),
                str(item["len"]),
                esc(item["flags"]),
                esc(f"{item['seen_at'].upper()} {utc(item['ts'], ms=True)}"),
                esc(item.get("dicom") or "-"),
            ]
        )

    for item in d["lost_segments"]:
        add(f"lost ×{item['copies_lost']}", item)
    for item in d["added_segments"]:
        if "RST" not in item["flags"]:
            add(f"added ×{item['copies_added']}", item)
    for r in d["resets"]:
        add(f"reset ×{r['copies']}: {r['verdict']}", r)
    for change in d["option_changes"]:
        count = plural(change["segments"], "segment")
        add(f"options: {change['change']} ({count}, first)", change["first"])
    for item in d["payload_changed_segments"]:
        add("payload changed", item)
    return rows


def _connection(c: dict[str, Any]) -> str:
    parts = [
        f"<h3>Connection {c['number']}: {esc(association_line(c))}</h3>",
        f"<p class='muted'>matched by {esc(', '.join(c['matched_by']))}; client on the "
        f"{esc(c['client_side'].upper())} side"
        + "".join(
            f"; {esc(t['endpoint'])} address translated {esc(t['near'])} → {esc(t['far'])}"
            for t in c["translated"]
        )
        + "</p>",
    ]
    for name in ("c2s", "s2c"):
        d = c["directions"][name]
        delay = d["delay"]
        timing = (
            f"delay p50 {ms(delay['p50_ms'])}, p95 {ms(delay['p95_ms'])}, max {ms(delay['max_ms'])}"
            if delay.get("samples")
            else "no delay measured"
        )
        parts.append(
            f"<p><b>{esc(DIRECTION_NAMES[name])}</b> (reaches {esc(d['upstream'].upper())} "
            f"first): {d['segments_upstream']} segments upstream, {d['segments_downstream']} "
            f"downstream, lost {_count(d['lost'])}, added {_count(d['added'])}; {esc(timing)}"
            + (f"; {d['not_compared']} not compared" if d["not_compared"] else "")
            + "</p>"
        )
        rows = _items(d)
        if rows:
            parts.append(
                _table(
                    ["what", "rel. seq", "len", "flags", "seen at", "DICOM"],
                    rows,
                    frozenset({1, 2}),
                )  # fmt: skip
            )
    return "".join(parts)


def _unmatched(result: dict[str, Any]) -> str:
    rows = [
        [point.upper(), esc(c["client"]), esc(c["server"]), esc(utc(c["first_ts"], ms=True))]
        for point in ("near", "far")
        for c in result["unmatched"][point]
    ]
    if not rows:
        return ""
    return "<h2>Connections seen at one point only</h2>" + _table(
        ["point", "client", "server", "first packet"], rows
    )


def render_html(result: dict[str, Any]) -> str:
    near, far = result["near"], result["far"]
    csp = (
        "default-src 'none'; "
        f"style-src 'sha256-{base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()}'; "
        "base-uri 'none'; form-action 'none'"
    )
    body = [
        "<h1>Between two capture points</h1>",
        "<table>"
        + "".join(
            f"<tr><th>{label}</th><td>{esc(p['file'])}: {p['packets']} packets, "
            f"{p['connections']} TCP connections, {esc(utc(p['first_ts'], ms=True))} to "
            f"{esc(utc(p['last_ts'], ms=True))}</td></tr>"
            for label, p in (("NEAR", near), ("FAR", far))
        )
        + f"<tr><th>clock</th><td>{esc(clock_line(result['clock']))}</td></tr>"
        + f"<tr><th>between the points</th><td>{esc(totals_line(result['totals']))}</td></tr>"
        + "</table>",
        _overview(result),
        "<h2>Details</h2>",
        *(_connection(c) for c in result["connections"]),
        _unmatched(result),
        "<footer>Generated by dicomsniffd correlate, a passive tool: segments are compared "
        "by sequence numbers and payload digests; no data set is decoded, so this report "
        "holds no patient data.</footer>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{esc(csp)}\">"
        "<meta name='referrer' content='no-referrer'>"
        f"<title>correlate: {esc(near['file'])} / {esc(far['file'])}</title>"
        f"<style>{_CSS}</style></head>\n<body>" + "\n".join(body) + "</body></html>\n"
    )

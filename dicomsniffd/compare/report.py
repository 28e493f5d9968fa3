"""The HTML report of ``dicomsniffd compare --report``: one self-contained page with the
verdict, the rule, one table per AE pair and the findings, text escaped with the analyze
report's ``esc`` (AE titles come off the wire)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomsniffd import outputs
from dicomsniffd.compare.diff import TCP_COUNTS, pair_name, phase_word, statuses_text
from dicomsniffd.formatting import one_decimal, utc
from dicomsniffd.sinks.report.escape import esc

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.2em .6em;text-align:right}
.sides td{text-align:left}
th:first-child,td:first-child{text-align:left}
.v{font-weight:bold;padding:.1em .5em;border-radius:.3em}
.v-fixed,.v-improved{background:#d4f4d4}.v-unchanged{background:#eee}
.v-regressed,.v-still-failing{background:#f8d0d0}.v-not-comparable{background:#f4ecc8}
.rule{color:#555;max-width:60em}.caveat{background:#f4ecc8;max-width:60em}
"""


def render_report(doc: Mapping[str, Any]) -> str:
    body = [
        f"<h1>dicomsniffd compare: {_verdict(doc['verdict'])}</h1>",
        _sides(doc),
        f"<p class='rule'>Rule: {esc(doc['rule']['text'])}.</p>",
        *(f"<p class='caveat'>Caveat: {esc(caveat)}</p>" for caveat in doc["caveats"]),
    ]
    body += [_pair_section(row) for row in doc["pairs"]]
    body.append(_findings(doc["findings"]))
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='referrer' content='no-referrer'>"
        f"<title>dicomsniffd compare: {esc(doc['verdict'])}</title><style>{_CSS}</style>"
        "</head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(path: str, doc: Mapping[str, Any]) -> None:
    """Written under ``dicomsniffd.outputs``' rule (a regular file replaced atomically)."""
    outputs.write(path, render_report(doc).encode("utf-8"), atomic=True)


def _verdict(verdict: str) -> str:
    return f"<span class='v v-{esc(verdict)}'>{esc(verdict)}</span>"


def _sides(doc: Mapping[str, Any]) -> str:
    rows = []
    for label in ("before", "after"):
        side = doc[label]
        rows.append(
            f"<tr><td>{label}</td><td>{esc(' '.join(side['files']))}</td>"
            f"<td>{esc(side['source'])}</td><td>{side['associations']}</td>"
            f"<td>{esc(utc(side.get('first_ts')))} – {esc(utc(side.get('last_ts')))}</td></tr>"
        )
    return (
        "<table class='sides'><tr><th>side</th><th>files</th><th>from</th><th>associations</th>"
        "<th>time (UTC)</th></tr>" + "".join(rows) + "</table>"
    )


def _pair_section(row: Mapping[str, Any]) -> str:
    parts = [f"<h2>{esc(pair_name(row))}: {_verdict(row['verdict'])}</h2>"]
    if row["reasons"]:
        parts.append("<ul>" + "".join(f"<li>{esc(r)}</li>" for r in row["reasons"]) + "</ul>")
    if row["before"] is None or row["after"] is None:
        return "\n".join(parts)
    head = (
        "<tr><th>command / phase</th><th>before p50</th><th>before p95</th><th>n</th>"
        "<th>after p50</th><th>after p95</th><th>n</th><th>Δ p95 ms</th><th>judged</th></tr>"
    )
    cells = [head]
    for command in row["commands"]:
        cells += _command_rows(command)
    tcp = row["tcp"]
    cells += [
        f"<tr><td>TCP {esc(c.replace('_', ' '))}</td><td colspan=3>{tcp[c]['before']}</td>"
        f"<td colspan=3>{tcp[c]['after']}</td><td></td><td>{esc(tcp[c]['judged'])}</td></tr>"
        for c in TCP_COUNTS
    ]
    parts.append("<table>" + "".join(cells) + "</table>")
    return "\n".join(parts)


def _command_rows(command: Mapping[str, Any]) -> list[str]:
    before, after = command["before"], command["after"]
    name = esc(command["command"])
    if before is None or after is None:
        return [f"<tr><td>{name}</td><td colspan=8>{esc(command['reasons'][0])}</td></tr>"]
    rows = [
        f"<tr><th>{name}: {_verdict(command['verdict'])}</th>"
        f"<td colspan=3>{before['requests']} requests; {esc(statuses_text(before))}</td>"
        f"<td colspan=3>{after['requests']} requests; {esc(statuses_text(after))}</td>"
        "<td colspan=2></td></tr>"
    ]
    for phase_name, phase in command["phases"].items():
        b, a = phase["before"], phase["after"]
        change = phase["p95_change_ms"]
        rows.append(
            f"<tr><td>{esc(phase_word(phase_name))}</td><td>{one_decimal(b['p50'])}</td>"
            f"<td>{one_decimal(b['p95'])}</td><td>{b['count']}</td>"
            f"<td>{one_decimal(a['p50'])}</td><td>{one_decimal(a['p95'])}</td>"
            f"<td>{a['count']}</td><td>{'-' if change is None else f'{change:+.1f}'}</td>"
            f"<td>{esc(phase['judged'])}</td></tr>"
        )
    throughput = command.get("throughput_mbps") or {}
    rows.append(
        f"<tr><td>throughput Mbit/s</td><td colspan=3>{one_decimal(throughput.get('before'))}"
        f"</td><td colspan=3>{one_decimal(throughput.get('after'))}</td><td></td>"
        "<td>shown, not judged</td></tr>"
    )
    return rows


def _findings(findings: Mapping[str, list[dict[str, Any]]]) -> str:
    parts = ["<h2>Findings (whole captures; shown, not judged)</h2>"]
    for state, word in (("gone", "gone"), ("still", "still there"), ("new", "new")):
        items = "".join(
            f"<li>[{esc(f['severity'])}] {esc(f['code'])}: {esc(f['title'])}</li>"
            for f in findings[state]
        )
        parts.append(f"<h3>{word} ({len(findings[state])})</h3><ul>{items}</ul>")
    return "\n".join(parts)

"""Self-contained HTML troubleshooting report for ``dicomsniffd analyze --report``.

One file a PACS administrator can open on a machine without internet and hand to a vendor:
capture header (and what the sniffer could not see), findings first, associations, charts
drawn as inline SVG here in Python, and a DIMSE transaction trace with a little inline
JavaScript for filtering. No external scripts, fonts, stylesheets or images; a Content
Security Policy forbids every fetch and runs only this module's own script (by hash).

Everything that came off the wire (AE titles, UIDs, error comments) is escaped with
``html.escape`` after control characters are made visible. Nothing here reads datasets:
the events carry none, so the report holds no patient data. Its size stays bounded on
huge captures: table rows are capped and charts are downsampled (counts are shown).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Iterable
from typing import Any

from dicomsniffd import __version__, outputs
from dicomsniffd.dicom.events import ACCEPTOR
from dicomsniffd.dicom.problems import RESYNC
from dicomsniffd.formatting import (
    BREAK_COVERAGE,
    REORDERED_NOTE,
    byte_size,
    duration,
    format_break,
    plural,
    utc,
)
from dicomsniffd.names import NO_SERVICE_TIME
from dicomsniffd.sinks.report.escape import esc
from dicomsniffd.sinks.report.software import evidence_section, software_section
from dicomsniffd.sinks.report.svg import (
    STATUS_COLORS,
    histogram_chart,
    latency_chart,
    throughput_chart,
    timeline_chart,
)
from dicomsniffd.sinks.report.tables import (
    associations_section,
    dimse_section,
    moves_section,
    pick_assocs,
    tcp_section,
    trace_section,
)

_SEVERITY_LABEL = {"critical": "Critical", "warning": "Warning", "info": "Info"}


def _records(summary: Any) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    """(kept transaction records, how many were not kept, throughput series)."""
    log = getattr(summary, "transactions", None)
    if log is None:
        return [], 0, {"bucket_seconds": 0.0, "points": []}
    return log.records(), int(log.dropped), log.series()


# -- sections ---------------------------------------------------------------------------------


def _blind_spots(data: dict[str, Any], summary: Any) -> list[str]:
    """What the sniffer could not see in this capture, one line each."""
    capture = data["capture"]
    missed = int(capture.get("missed_bytes") or 0)
    if hasattr(summary, "missed_bytes_total"):
        missed = max(missed, int(summary.missed_bytes_total()))
    truncated = int(capture.get("truncated_packets") or 0)
    truncated_files = list(capture.get("truncated_files") or [])
    super_packets = int((capture.get("decode") or {}).get("super_packets") or 0)
    evictions = (capture.get("flows") or {}).get("evictions") or {}
    evicted = sum(int(v) for v in evictions.values())
    resyncs = int(data["protocol_errors"].get(RESYNC, 0))
    totals = _totals(data)
    gaps = totals["with_gaps"]
    blind: list[str] = []
    if missed:
        blind.append(
            f"{byte_size(missed, largest_unit='TB')} ({missed} bytes) on DICOM connections were never captured, "
            f"on {plural(gaps, 'association')}"
        )
    if truncated:
        blind.append(f"{plural(truncated, 'packet')} cut short by the snapshot length")
    for path in truncated_files:
        blind.append(f"capture file {path} ends in the middle of a packet (truncated file)")
    for broken in capture.get("broken_files") or ():
        if broken.get("kind") == "corrupt":
            blind.append(f"capture file {format_break(broken)}; {BREAK_COVERAGE}")
    if super_packets:
        blind.append(
            f"{plural(super_packets, 'oversized packet')} (GRO/LRO/TSO offload on the "
            "capture host: packet boundaries and retransmissions are not what was on the wire)"
        )
    if evicted:
        blind.append(
            f"{plural(evicted, 'connection')} dropped from the flow table "
            f"({', '.join(f'{k} {v}' for k, v in sorted(evictions.items()))})"
        )
    if resyncs:
        blind.append(f"{plural(resyncs, 'resynchronisation')} of a DICOM stream after a gap")
    unknown = totals["outcomes"].get("unknown", 0)
    if unknown:
        blind.append(
            f"{plural(unknown, 'association')} already running when the capture started "
            "(negotiation not seen: AE titles and contexts may be unknown)"
        )
    return blind


def _limits(blind: list[str], dropped: int, n_records: int) -> str:
    """What the conclusions below can and cannot say, given the blind spots."""
    if blind:
        limit = (
            "Because of this, counts, byte totals and timings below are lower bounds; a "
            "transaction hit by a gap has no timing, and a missing response may simply not "
            "have been captured. Findings about failures and rejects that were seen remain "
            "valid."
        )
    else:
        limit = (
            "The sniffer saw every byte of the DICOM connections in this capture. Conclusions "
            "still only cover the traffic on this mirror port during the time span above; "
            "they say nothing about other network paths or other times."
        )
    if dropped:
        limit += (
            f" The transaction trace and the timeline of this report keep a sample of "
            f"{n_records} of {n_records + dropped} transactions (every failure first); "
            "the statistics and findings are computed over all of them."
        )
    return limit


def _header(data: dict[str, Any], summary: Any, dropped: int, n_records: int) -> str:
    capture = data["capture"]
    files = capture.get("files") or []
    first, last = capture.get("first_ts"), capture.get("last_ts")
    span = (last - first) if first is not None and last is not None else None
    n_tx = sum(s.get("requests", 0) for s in data["dimse"].values())
    blind = _blind_spots(data, summary)
    limit = _limits(blind, dropped, n_records)
    files_html = "".join(f"<li><code>{esc(f)}</code></li>" for f in files) or "<li>-</li>"
    if capture.get("files_reordered"):
        files_html += f"<li class='note'>({esc(REORDERED_NOTE)})</li>"
    rows = [
        ("Capture files", f"<ul class='files'>{files_html}</ul>"),
        (
            "Time span (UTC)",
            f"{esc(utc(first))} → {esc(utc(last))}"
            + (f" ({esc(duration(span))})" if span is not None else ""),
        ),
        (
            "Packets",
            f"{int(capture.get('packets') or 0):,} packets, "
            f"{esc(byte_size(capture.get('bytes') or 0, largest_unit='TB'))}",
        ),
        (
            "DICOM",
            f"{plural(_totals(data)['associations'], 'association')}, "
            f"{plural(n_tx, 'DIMSE request')}",
        ),
    ]
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    if blind:
        blind_html = "<ul>" + "".join(f"<li>{esc(b)}</li>" for b in blind) + "</ul>"
        box_class = "blind warn"
        heading = "What the sniffer could not see"
    else:
        blind_html = ""
        box_class = "blind ok"
        heading = "Capture completeness: nothing missing"
    return (
        "<header>"
        "<h1>DICOM troubleshooting report</h1>"
        f"<p class='sub'>dicomsniffd {esc(__version__)} · generated "
        f"{esc(utc(time.time()))} UTC · contains no patient data (datasets are never decoded)"
        "</p>"
        f"<table class='kv'>{table}</table>"
        f"<div class='{box_class}' id='capture-quality'><h3>{heading}</h3>{blind_html}"
        f"<p>{esc(limit)}</p></div>"
        "</header>"
    )


def _totals(data: dict[str, Any]) -> dict[str, Any]:
    """Exact association counts: ``association_totals`` (the summary keeps a bounded set
    of records), or counted from the listed records of an older ``to_dict``."""
    totals = data.get("association_totals")
    if totals is not None:
        return totals
    assocs = data["associations"]
    outcomes: dict[str, int] = {}
    for a in assocs:
        outcomes[a["outcome"]] = outcomes.get(a["outcome"], 0) + 1
    return {
        "associations": len(assocs),
        "outcomes": outcomes,
        "cut_short": sum(
            1 for a in assocs if a.get("abort") or a.get("end") in ("aborted", "reset")
        ),
        "with_gaps": sum(1 for a in assocs if a.get("missed_bytes")),
    }


def _overview(data: dict[str, Any]) -> str:
    totals = _totals(data)
    outcomes = totals["outcomes"]
    store = data["dimse"].get("C-STORE")
    cards = [
        ("Associations", str(totals["associations"])),
        ("Accepted", str(outcomes.get("accepted", 0))),
        ("Rejected", str(outcomes.get("rejected", 0))),
        ("Aborted / reset", str(totals["cut_short"])),
    ]
    if store:
        ok = sum(n for s, n in store["responses"].items() if s == "0x0000")
        failed = sum(
            n for s, n in store["responses"].items() if s != "0x0000" and not s.startswith("0xB")
        )
        cards.append(("C-STORE ok", str(ok)))
        cards.append(("C-STORE not ok", str(failed + store.get("unanswered", 0))))
        lat = store["response_latency_ms"]
        if lat["count"]:
            cards.append(("Service time p50 / p95", f"{lat['p50']:.0f} / {lat['p95']:.0f} ms"))
        tr = store["request_transfer_ms"]
        if tr["count"]:
            cards.append(("Transfer time p50 / p95", f"{tr['p50']:.0f} / {tr['p95']:.0f} ms"))
        rt = store.get("response_transfer_ms") or {}
        if rt.get("count"):
            cards.append(("Response transfer p50 / p95", f"{rt['p50']:.0f} / {rt['p95']:.0f} ms"))
        if store.get("effective_mbps") is not None:
            cards.append(("Upload rate, effective", f"{store['effective_mbps']:.1f} Mbit/s"))
        if store.get("throughput_mbps") is not None:
            cards.append(("Per object, on the wire", f"{store['throughput_mbps']:.1f} Mbit/s"))
    return (
        "<section id='overview' class='cards'>"
        + "".join(
            f"<div class='card'><div class='n'>{esc(v)}</div><div class='l'>{esc(k)}</div></div>"
            for k, v in cards
        )
        + "</section>"
    )


def _findings(findings: list[dict[str, Any]]) -> str:
    counts = {s: 0 for s in _SEVERITY_LABEL}
    for f in findings:
        counts[f["severity"]] = counts.get(f["severity"], 0) + 1
    parts = [
        "<section id='findings'><h2>Findings</h2>",
        "<p class='counts'>"
        + " · ".join(
            f"<span class='sev sev-{esc(s)}'>{esc(_SEVERITY_LABEL[s])}</span> {n}"
            for s, n in counts.items()
        )
        + "</p>",
    ]
    if not findings:
        parts.append("<p class='none'>No problems found in this capture.</p>")
    for i, f in enumerate(findings, 1):
        severity = f["severity"] if f["severity"] in _SEVERITY_LABEL else "info"
        evidence = "".join(f"<li>{esc(e)}</li>" for e in f.get("evidence") or [])
        parts.append(
            f"<article class='finding sev-{severity}' id='finding-{i}' "
            f"data-code='{esc(f.get('code', ''))}'>"
            f"<h3><span class='sev sev-{severity}'>{esc(_SEVERITY_LABEL[severity])}</span> "
            f"{esc(f.get('title', ''))} <code class='code'>{esc(f.get('code', ''))}</code></h3>"
            f"<p>{esc(f.get('detail', ''))}</p>"
            + (f"<h4>Evidence</h4><ul class='evidence'>{evidence}</ul>" if evidence else "")
            + f"<h4>Likely cause and what to do</h4><p class='advice'>{esc(f.get('advice', ''))}</p>"
            "</article>"
        )
    parts.append("</section>")
    return "".join(parts)


def _charts(
    data: dict[str, Any],
    summary: Any,
    records: list[dict[str, Any]],
    series: dict[str, Any],
) -> str:
    capture = data["capture"]
    assocs = data["associations"]
    t0 = capture.get("first_ts")
    t1 = capture.get("last_ts")
    times = [a["start_ts"] for a in assocs if a.get("start_ts") is not None]
    times += [a["end_ts"] for a in assocs if a.get("end_ts") is not None]
    times += [r["request_ts"] for r in records]
    if times:
        t0 = min(times) if t0 is None else min(t0, min(times))
        t1 = max(times) if t1 is None else max(t1, max(times))
    if t0 is None or t1 is None:
        t0 = t1 = 0.0
    lanes = pick_assocs(assocs, 40)
    # uploads only: a C-GET's C-STOREs (sent by the acceptor) are downloads
    store_records = [
        r for r in records if r["command"] == "C-STORE" and r.get("request_sender") != ACCEPTOR
    ]
    lat_records = store_records or [r for r in records if r["command"] not in NO_SERVICE_TIME]
    lat_command = "C-STORE" if store_records else "DIMSE"
    hist_command = "C-STORE"
    samples: list[float] = []
    if hasattr(summary, "timing_samples"):
        samples = summary.timing_samples("C-STORE", "response_latency_ms")
        if not samples:
            for command in data["dimse"]:
                if command not in NO_SERVICE_TIME:
                    samples.extend(summary.timing_samples(command, "response_latency_ms"))
            hist_command = "DIMSE"
    legend = "".join(
        f"<span class='lg'><svg width='12' height='12'><rect width='12' height='12' "
        f"fill='{color}'></rect></svg> {esc(name)}</span>"
        for name, color in STATUS_COLORS.items()
        if name != "pending"
    )
    parts = [
        "<section id='charts'><h2>Charts</h2>",
        "<h3>Timeline of associations and DIMSE operations</h3>",
        f"<p class='note'>One lane per association (line = association, coloured by outcome). "
        f"Each DIMSE operation is a bar: the pale part is the transfer of the request, the "
        f"solid part the SCP's service time until its response; colour = status. "
        f"{legend}</p>",
        timeline_chart(t0, t1, lanes, records, _totals(data)["associations"]),
        f"<h3>{esc(lat_command)} latency over time</h3>",
        "<p class='note'>Each dot is one request: service time (SCP) in colour of its status, "
        "transfer time (network) in blue.</p>",
        latency_chart(t0, t1, lat_records),
        "<h3>Throughput over time</h3>",
        "<p class='note'>Data set bytes moved by DIMSE operations per time bucket, in Mbit/s "
        "(bars), and completed operations (line).</p>",
        throughput_chart(t0, t1, series),
        f"<h3>Histogram of {esc(hist_command)} service times</h3>",
        "<p class='note'>How long the SCP took to answer a complete request (logarithmic "
        "time bins, every request of the capture).</p>",
        histogram_chart(samples),
        "</section>",
    ]
    return "".join(parts)


# -- page -------------------------------------------------------------------------------------

_CSS = """
:root{--fg:#1d2330;--muted:#667085;--line:#d0d5dd;--bg:#fff;--soft:#f5f7fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--fg);background:var(--bg);margin:0 auto;max-width:1240px;padding:16px 24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;border-bottom:2px solid var(--line);
padding-bottom:4px;margin-top:32px}h3{font-size:15px;margin:18px 0 6px}h4{margin:10px 0 4px;
font-size:13px;text-transform:uppercase;letter-spacing:.03em;color:var(--muted)}
.sub,.note,.muted{color:var(--muted)}.note{font-size:13px}
code{font:12px/1.3 ui-monospace,"DejaVu Sans Mono",monospace;word-break:break-all}
table{border-collapse:collapse}
.kv th{text-align:left;padding:3px 14px 3px 0;vertical-align:top;color:var(--muted);
font-weight:600}.kv td{padding:3px 0}
.files{margin:0;padding-left:18px}
.blind{border-radius:6px;padding:8px 14px;margin:12px 0}.blind h3{margin:4px 0}
.blind.warn{background:#fff6e5;border:1px solid #f4c36b}
.blind.ok{background:#ecf8ef;border:1px solid #9fd3ad}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}
.card{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:8px 14px;
min-width:130px}.card .n{font-size:20px;font-weight:700}.card .l{font-size:12px;color:var(--muted)}
.finding{border:1px solid var(--line);border-left:6px solid #999;border-radius:6px;
padding:4px 16px 8px;margin:12px 0}
.finding.sev-critical{border-left-color:#c62828}.finding.sev-warning{border-left-color:#f9a825}
.finding.sev-info{border-left-color:#1e88e5}
.finding h3 .code{color:var(--muted);font-weight:400}
.sev{display:inline-block;font-size:11px;font-weight:700;text-transform:uppercase;
padding:1px 7px;border-radius:10px;color:#fff;background:#999}
.sev.sev-critical{background:#c62828}.sev.sev-warning{background:#e6a000}
.sev.sev-info{background:#1e88e5}
.evidence{margin:2px 0;padding-left:20px}.evidence li{margin:2px 0}
.grid{width:100%;font-size:12.5px}.grid th,.grid td{border:1px solid var(--line);
padding:3px 6px;vertical-align:top;text-align:left}.grid thead th{background:var(--soft);
position:sticky;top:0}
.num{text-align:right;white-space:nowrap}
.scroll{overflow:auto;max-height:720px;border:1px solid var(--line)}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:600}.warn{color:#b26a00;font-weight:600}
.ctx{font-size:12px}.ctx td,.ctx th{padding:1px 6px;border-bottom:1px solid var(--soft)}
summary{cursor:pointer}
.chip{display:inline-block;border-radius:8px;padding:0 6px;font-size:12px;margin:1px 0;
white-space:nowrap;background:#eee}
.chip.st-success{background:#e3f3e5}.chip.st-failure{background:#fde3e3}
.chip.st-warning{background:#fff1c9}.chip.st-cancel{background:#efe3f6}
.chip.st-unanswered{background:#e8e8e8}.chip.st-pending{background:#e3eefc}
tr.st-failure td{background:#fff7f7}tr.st-unanswered td{background:#f7f7f7}
.filters{margin:8px 0}.filters select{margin-right:12px}
.chart{display:block;max-width:100%;height:auto;background:#fff;outline:1px solid var(--line)}
.chart text{font:11px system-ui,"DejaVu Sans",sans-serif;fill:#444}
.chart .axis{stroke:#999;stroke-width:1}.chart .grid-line{stroke:#eee;stroke-width:1}
.lg{white-space:nowrap;margin-left:10px}
footer{margin:40px 0 10px;color:var(--muted);font-size:12px}
@media print{.scroll{max-height:none;overflow:visible}}
"""

_JS = """(function(){
var a=document.getElementById('f-assoc'),s=document.getElementById('f-status'),
c=document.getElementById('f-count');if(!a||!s)return;
var rows=document.querySelectorAll('#trace-table tbody tr');
function apply(){var av=a.value,sv=s.value,n=0;
for(var i=0;i<rows.length;i++){var r=rows[i],st=r.getAttribute('data-status');
var ok=(!av||r.getAttribute('data-assoc')===av)&&(!sv||(sv==='problem'?st!=='success':st===sv));
r.hidden=!ok;if(ok)n++;}
c.textContent=n+' of '+rows.length+' rows shown';}
a.addEventListener('change',apply);s.addEventListener('change',apply);apply();
})();"""


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def render_report(summary: Any, capture_info: dict[str, Any]) -> str:
    """The whole report as one HTML string."""
    data = summary.to_dict(capture_info)
    records, dropped, series = _records(summary)
    csp = (
        "default-src 'none'; "
        f"style-src 'sha256-{_sha256(_CSS)}'; "
        f"script-src 'sha256-{_sha256(_JS)}'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    files = capture_info.get("files") or []
    title = "DICOM report" + (f": {os.path.basename(str(files[0]))}" if files else "")
    body = [
        _header(data, summary, dropped, len(records)),
        _overview(data),
        _findings(data["findings"]),
        associations_section(data["associations"], _totals(data)["associations"]),
        software_section(data.get("implementations") or []),
        _charts(data, summary, records, series),
        dimse_section(data["dimse"]),
        moves_section(data.get("moves") or [], data.get("moves_dropped", 0)),
        tcp_section(data["tcp"], data.get("tls") or [], data["protocol_errors"]),
        trace_section(records, data["associations"], dropped),
        evidence_section(data["capture"].get("evidence")),
        "<footer>Generated by dicomsniffd, a passive DICOM network monitor: it never sends a "
        "packet and never decodes data sets, so this report contains protocol facts (AE "
        "titles, UIDs of SOP classes and transfer syntaxes, status codes, timings) and no "
        "patient data.</footer>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{esc(csp)}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<meta name='referrer' content='no-referrer'>"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>"
        + "\n".join(body)
        + f"<script>{_JS}</script></body></html>\n"
    )


def write_report(path: str, summary: Any, capture_info: dict[str, Any]) -> None:
    """Write the self-contained HTML report of ``summary`` (a ``Summary`` sink after the
    capture was fed through it) to ``path`` under the rule of ``dicomsniffd.outputs``: a
    regular file is replaced atomically (temporary file + rename), a FIFO or character
    device is written through, ``-`` is standard output; raises ``OutputError``."""
    outputs.write(path, render_report(summary, capture_info).encode("utf-8"), atomic=True)


__all__: Iterable[str] = ("render_report", "write_report")

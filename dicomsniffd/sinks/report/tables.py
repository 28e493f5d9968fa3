"""The tables of the HTML report: associations, DIMSE statistics, TCP health and the DIMSE
transaction trace. Row counts are capped so a huge capture still gives a bounded report:
the rows with problems are kept first.
"""

from __future__ import annotations

from typing import Any

from dicomsniffd.formatting import (
    byte_size,
    duration,
    move_lines,
    one_decimal,
    plural,
    problem_score,
    seconds_as_ms,
    stall_lines,
    timing_rows,
    utc,
)
from dicomsniffd.names import command_by_role, status_hex, status_text, uid_display_name
from dicomsniffd.sinks.report.escape import esc
from dicomsniffd.sinks.report.svg import spread

MAX_TRACE_ROWS = 3_000
MAX_ASSOC_ROWS = 500
MAX_CONTEXTS_SHOWN = 40


def _pair(a: dict[str, Any]) -> str:
    return f"{a.get('calling_ae') or '?'} → {a.get('called_ae') or '?'}"


def _pick_rows(records: list[dict[str, Any]], cap: int) -> list[dict[str, Any]]:
    """At most ``cap`` records: every non-success one first, then successful ones spread
    evenly over time; returned in time order."""
    if len(records) <= cap:
        return records
    notable = [r for r in records if r["status_class"] != "success" or not r["complete"]]
    ok = [r for r in records if r["status_class"] == "success" and r["complete"]]
    notable = notable[:cap]
    room = cap - len(notable)
    picked = notable + spread(ok, room)
    return sorted(picked, key=lambda r: (r["request_ts"], r["flow_id"], r["message_id"]))


def pick_assocs(assocs: list[dict[str, Any]], cap: int) -> list[dict[str, Any]]:
    """At most ``cap`` associations, the ones with problems first, shown in time order."""
    if len(assocs) <= cap:
        return assocs
    ranked = sorted(range(len(assocs)), key=lambda i: (-problem_score(assocs[i]), i))
    keep = sorted(ranked[:cap])
    return [assocs[i] for i in keep]


def _status_chips(statuses: dict[str, int]) -> str:
    if not statuses:
        return "-"
    chips = []
    for status, n in sorted(statuses.items()):
        code = int(status, 16) if status else None
        cls = _status_class_of(code)
        chips.append(
            f"<span class='chip st-{cls}' title='{esc(status_text(code))}'>"
            f"{esc(status or 'none')}: {n}</span>"
        )
    return " ".join(chips)


def _status_class_of(status: int | None) -> str:
    if status is None:
        return "unanswered"
    if status == 0x0000:
        return "success"
    if status in (0xFF00, 0xFF01):
        return "pending"
    if status == 0xFE00:
        return "cancel"
    if status == 0x0001 or status == 0x0107 or status == 0x0116 or 0xB000 <= status <= 0xBFFF:
        return "warning"
    return "failure"


def _outcome_text(a: dict[str, Any]) -> str:
    outcome = a["outcome"]
    extra = []
    if a.get("reject"):
        r = a["reject"]
        extra.append(f"{r.get('reason')} ({r.get('result')}, {r.get('source')})")
    if a.get("abort"):
        ab = a["abort"]
        extra.append(f"A-ABORT by {ab.get('sender')}: {ab.get('source')}, {ab.get('reason')}")
    if a.get("end") and a["end"] != "released":
        extra.append(f"ended: {a['end']}")
    elif a.get("end") == "released":
        extra.append("released")
    return outcome + ("; " + "; ".join(extra) if extra else "")


def _contexts_html(contexts: list[dict[str, Any]]) -> str:
    if not contexts:
        return "<span class='muted'>not seen</span>"
    accepted = sum(1 for pc in contexts if pc.get("result") == "acceptance")
    rows = []
    for pc in contexts[:MAX_CONTEXTS_SHOWN]:
        result = pc.get("result") or "not answered"
        cls = "ok" if result == "acceptance" else "bad" if pc.get("result") else "muted"
        ts = pc.get("accepted_transfer_syntax_name") or (
            "proposed: " + ", ".join(pc.get("transfer_syntaxes_proposed") or []) or "-"
        )
        rows.append(
            f"<tr><td>{esc(pc.get('context_id'))}</td>"
            f"<td>{esc(pc.get('abstract_syntax_name') or pc.get('abstract_syntax') or '?')}</td>"
            f"<td class='{cls}'>{esc(result)}</td><td>{esc(ts)}</td></tr>"
        )
    more = len(contexts) - MAX_CONTEXTS_SHOWN
    if more > 0:
        rows.append(f"<tr><td colspan='4'>… and {more} more</td></tr>")
    return (
        f"<details{' open' if len(contexts) <= 4 else ''}>"
        f"<summary>{accepted} of {len(contexts)} accepted</summary>"
        "<table class='ctx'><tr><th>id</th><th>abstract syntax</th><th>result</th>"
        f"<th>transfer syntax</th></tr>{''.join(rows)}</table></details>"
    )


def _implementations_html(a: dict[str, Any]) -> str:
    """Both sides' software: "SCU DCMTK OFFIS_DCMTK_367" / "SCP <uid> <version>"."""
    lines = []
    for side, who in (("requestor_implementation", "SCU"), ("acceptor_implementation", "SCP")):
        impl = a.get(side)
        if impl is None:
            continue
        name = impl.get("product") or impl.get("class_uid") or "-"
        lines.append(
            f"{who} <code title='{esc(impl.get('class_uid'))}'>{esc(name)}</code> "
            f"{esc(impl.get('version_name') or '-')}"
        )
    return "<br>".join(lines) or "-"


def associations_section(assocs: list[dict[str, Any]], total: int | None = None) -> str:
    """The associations table: at most MAX_ASSOC_ROWS of ``assocs`` (the records the
    summary kept), out of ``total`` associations in the capture (all listed if None)."""
    total = len(assocs) if total is None else total
    shown = pick_assocs(assocs, MAX_ASSOC_ROWS)
    rows = []
    for a in shown:
        start, end = a.get("start_ts"), a.get("end_ts")
        dur = (end - start) if start is not None and end is not None else None
        pdata = a.get("pdata_bytes") or {}
        store = (a.get("dimse") or {}).get("C-STORE") or {}
        others = {
            cmd: sum(s.values()) for cmd, s in (a.get("dimse") or {}).items() if cmd != "C-STORE"
        }
        other_txt = ", ".join(f"{cmd} {n}" for cmd, n in sorted(others.items()))
        tcp = []
        for key, label in (
            ("retransmissions", "retrans"),
            ("zero_windows", "zero-win"),
            ("resets", "RST"),
        ):
            if a.get(key):
                tcp.append(f"{label} {a[key]}")
        if a.get("missed_bytes"):
            tcp.append(f"missed {byte_size(a['missed_bytes'], largest_unit='TB')}")
        if a.get("unanswered"):
            tcp.append(f"unanswered {a['unanswered']}")
        outcome_cls = {
            "accepted": "ok",
            "rejected": "bad",
            "aborted-before-accept": "bad",
        }.get(a["outcome"], "muted")
        if a["outcome"] == "accepted" and (a.get("abort") or a.get("end") in ("aborted", "reset")):
            outcome_cls = "warn"
        rows.append(
            f"<tr id='assoc-{esc(a['flow_id'])}' data-flow='{esc(a['flow_id'])}'>"
            f"<td class='num'>{esc(a['flow_id'])}</td>"
            f"<td>{esc(a.get('client'))}<br>→ {esc(a.get('server'))}</td>"
            f"<td><b>{esc(a.get('calling_ae'))}</b><br>→ <b>{esc(a.get('called_ae'))}</b></td>"
            f"<td class='{outcome_cls}'>{esc(_outcome_text(a))}</td>"
            f"<td>{esc(utc(start, date=False, ms=True))}<br>{esc(duration(dur))}</td>"
            f"<td>{_contexts_html(a.get('presentation_contexts') or [])}</td>"
            f"<td>{_implementations_html(a)}</td>"
            f"<td class='num'>↑ {esc(byte_size(pdata.get('requestor', 0), largest_unit='TB'))}"
            f"<br>↓ {esc(byte_size(pdata.get('acceptor', 0), largest_unit='TB'))}</td>"
            f"<td>{_status_chips(store)}"
            + (f"<br><span class='muted'>{esc(other_txt)}</span>" if other_txt else "")
            + f"</td><td>{esc(', '.join(tcp) or '-')}</td></tr>"
        )
    note = ""
    if len(shown) < total:
        listed = (
            "lists all"
            if len(assocs) == total
            else f"lists {len(assocs)}: the worst problems and a uniform sample of the rest"
        )
        note = (
            f"<p class='note'>Showing {len(shown)} of {total} associations (those "
            f"with problems first); <code>dicomsniffd analyze --json</code> {listed}.</p>"
        )
    if not rows:
        body = "<p class='none'>No DICOM association was seen.</p>"
    else:
        body = (
            "<div class='scroll'><table id='associations-table' class='grid'><thead><tr>"
            "<th>flow</th><th>client → server</th><th>calling → called AE</th>"
            "<th>outcome</th><th>start (UTC)<br>duration</th><th>presentation contexts</th>"
            "<th>software (SCU, SCP)<br>version name</th>"
            "<th>P-DATA bytes<br>↑ SCU ↓ SCP</th><th>C-STOREs by status</th>"
            "<th>TCP / capture</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
        )
    return f"<section id='associations'><h2>Associations ({total})</h2>{note}{body}</section>"


def dimse_section(dimse: dict[str, Any]) -> str:
    if not dimse:
        return ""
    rows = [
        f"<tr><td>{esc(command)}</td><td>{label}</td><td class='num'>{p['count']}</td>"
        f"<td class='num'>{one_decimal(p['p50'])}</td><td class='num'>{one_decimal(p['p95'])}</td>"
        f"<td class='num'>{one_decimal(p['p99'])}</td><td class='num'>{one_decimal(p['max'])}</td></tr>"
        for command, label, p in timing_rows(dimse, first_response_label=True)
    ]
    status_rows = "".join(
        f"<tr><td>{esc(command)}</td><td class='num'>{s['requests']}</td>"
        f"<td>{_status_chips(s['responses'])}</td><td class='num'>{s['unanswered']}</td>"
        f"<td class='num'>{esc(byte_size(s.get('dataset_bytes'), largest_unit='TB'))}</td>"
        f"<td class='num'>{one_decimal(s.get('effective_mbps'))}</td>"
        f"<td class='num'>{one_decimal(s.get('throughput_mbps'))}</td></tr>"
        for command, s in dimse.items()
    )
    return (
        "<section id='dimse'><h2>DIMSE statistics</h2>"
        "<table class='grid'><thead><tr><th>command</th><th>requests</th>"
        "<th>responses by status</th><th>unanswered</th><th>data set bytes</th>"
        "<th title='data set bytes ÷ wall time with an operation in progress'>effective "
        "Mbit/s</th><th title='data set bytes ÷ summed per-object transfer times'>per object "
        "on the wire Mbit/s</th></tr></thead>"
        f"<tbody>{status_rows}</tbody></table>"
        "<p class='note'>Timing (ms). <b>transfer</b> = network upload of the request "
        "(first packet → last data set fragment); <b>service</b> = SCP time from the "
        "complete request to its first response (storage write, database commit); "
        "<b>response</b> = transfer of the final response (first to last packet: "
        "microseconds, unless the SCP split it and waited for an ACK); "
        "<b>total</b> = first packet of the request → final response.</p>"
        "<table class='grid'><thead><tr><th>command</th><th>phase</th><th>count</th>"
        "<th>p50</th><th>p95</th><th>p99</th><th>max</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def tcp_section(tcp: dict[str, Any], tls: list[dict[str, Any]], errors: dict[str, int]) -> str:
    def pair(counts: dict[str, int]) -> str:
        return f"SCU {counts.get('requestor', 0)} · SCP {counts.get('acceptor', 0)}"

    rtt = tcp.get("handshake_rtt_ms") or {"count": 0}
    rows = [
        ("Retransmissions", pair(tcp.get("retransmissions") or {})),
        ("Zero windows", pair(tcp.get("zero_windows") or {})),
        ("Resets", pair(tcp.get("resets") or {})),
        (
            "Handshake RTT",
            (
                f"p50 {one_decimal(rtt['p50'])} ms · p95 {one_decimal(rtt['p95'])} ms · max "
                f"{one_decimal(rtt['max'])} ms ({rtt['count']} handshakes)"
            )
            if rtt.get("count")
            else "-",
        ),
    ]
    for failure in tcp.get("connection_failures") or []:
        rows.append(
            (
                f"Connections {failure['reason']}",
                f"{failure['server']}: {plural(failure['count'], 'attempt')}",
            )
        )
    rows += [("Stalls", line) for line in stall_lines(tcp.get("stalls") or [])]
    for t in tls:
        rows.append(("TLS", f"{t['server']}: {t['outcome']} {t['count']}"))
    if errors:
        rows.append(("Protocol errors", ", ".join(f"{k} {n}" for k, n in sorted(errors.items()))))
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<section id='tcp'><h2>TCP health</h2><table class='kv'>{body}</table></section>"


def trace_section(records: list[dict[str, Any]], assocs: list[dict[str, Any]], dropped: int) -> str:
    rows_data = _pick_rows(records, MAX_TRACE_ROWS)
    by_flow = {a["flow_id"]: a for a in assocs}
    rows = []
    for r in rows_data:
        a = by_flow.get(r["flow_id"])
        pair = _pair(a) if a else "?"
        cls = r["status_class"] or "unanswered"
        status = r["status"]
        status_cell = (
            f"{status_hex(status)} {status_text(status)}"
            if status is not None
            else r["outcome"].replace("-", " ")
        )
        sop = uid_display_name(r["sop_class_uid"]) if r["sop_class_uid"] else ""
        rows.append(
            f"<tr data-assoc='{esc(r['flow_id'])}' data-status='{esc(cls)}' class='st-{esc(cls)}'>"
            f"<td>{esc(utc(r['request_ts'], date=False, ms=True))}</td>"
            f"<td>{esc(r['flow_id'])} {esc(pair)}</td>"
            f"<td>{esc(command_by_role(r['command'], r.get('request_sender') == 'acceptor'))}"
            f"</td><td>{esc(sop)}</td>"
            f"<td class='num'>{esc(r['message_id'])}</td>"
            f"<td><span class='chip st-{esc(cls)}'>{esc(status_cell)}</span></td>"
            f"<td class='num'>{seconds_as_ms(r['request_transfer_seconds'])}</td>"
            f"<td class='num'>{seconds_as_ms(r['response_latency_seconds'])}</td>"
            f"<td class='num'>{seconds_as_ms(r.get('response_transfer_seconds'))}</td>"
            f"<td class='num'>{seconds_as_ms(r['duration_seconds'])}</td>"
            f"<td class='num'>{esc(byte_size(r['request_dataset_bytes'], largest_unit='TB'))}</td>"
            f"<td>{'yes' if r['complete'] else 'gap'}</td>"
            f"<td>{esc(r['error_comment'])}</td></tr>"
        )
    flows_in_rows = sorted({r["flow_id"] for r in rows_data})
    assoc_options = "".join(
        f"<option value='{esc(fid)}'>{esc(fid)}: "
        f"{esc(_pair(by_flow[fid]) if fid in by_flow else '?')}</option>"
        for fid in flows_in_rows[:1000]
    )
    classes = sorted({(r["status_class"] or "unanswered") for r in rows_data})
    status_options = "".join(f"<option value='{esc(c)}'>{esc(c)}</option>" for c in classes)
    total = len(records) + dropped
    note = f"{total} DIMSE transactions in the capture"
    if len(rows_data) < total:
        note += (
            f"; this table shows {len(rows_data)} (every failure, warning and unanswered "
            "request first, then successful ones spread evenly over the capture)"
        )
    if not rows:
        return (
            "<section id='trace'><h2>DIMSE transaction trace</h2>"
            "<p class='none'>No DIMSE transaction was seen.</p></section>"
        )
    return (
        "<section id='trace'><h2>DIMSE transaction trace</h2>"
        f"<p class='note'>{esc(note)}. Times are UTC.</p>"
        "<div class='filters'>"
        "<label>Association <select id='f-assoc'><option value=''>all</option>"
        f"{assoc_options}</select></label> "
        "<label>Status <select id='f-status'><option value=''>all</option>"
        "<option value='problem'>everything but success</option>"
        f"{status_options}</select></label> "
        "<span id='f-count'></span></div>"
        "<div class='scroll'><table id='trace-table' class='grid'><thead><tr>"
        "<th>request (UTC)</th><th>association</th><th>command</th><th>SOP class</th>"
        "<th>msg id</th><th>status</th><th>transfer ms</th><th>service ms</th><th>response ms</th>"
        "<th>total ms</th><th>data set</th><th>captured</th><th>error comment</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def moves_section(moves: list[dict[str, Any]], dropped: int = 0) -> str:
    """Each C-MOVE with its Move Destination, the sub-association the SCP opened to it, the
    time to the first sub-operation C-STORE and the sub-operation counts."""
    if not moves:
        return ""
    rows = []
    for m in moves[:MAX_MOVE_ROWS]:
        what, where = move_lines(m)
        rows.append(f"<tr><td>{esc(what)}</td><td>{esc(where)}</td></tr>")
    more = len(moves) + dropped - len(rows)
    note = f"<p class='note'>{more} more C-MOVEs not listed.</p>" if more else ""
    return (
        f"<section id='moves'><h2>C-MOVE and its sub-associations ({len(moves) + dropped})</h2>"
        "<p class='note'>Times from the C-MOVE-RQ; sub-operation counts from the final "
        "response. The SCP opens a separate association to the Move Destination: a long time "
        "to the first C-STORE is the SCP preparing (or failing to reach) the destination.</p>"
        "<table class='grid'><thead><tr><th>C-MOVE</th><th>sub-association</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{note}</section>"
    )


MAX_MOVE_ROWS = 200

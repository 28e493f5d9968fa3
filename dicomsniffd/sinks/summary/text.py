"""Text rendering of the ``analyze`` summary: pure formatting of ``Summary.to_dict``'s
output, 100 columns wide (``dicomsniffd analyze`` without ``--json``)."""

from __future__ import annotations

import re
import textwrap
from typing import Any

from dicomsniffd.dicom.events import ACCEPTOR, REQUESTOR
from dicomsniffd.formatting import (
    BREAK_COVERAGE,
    REORDERED_NOTE,
    byte_size,
    format_break,
    move_lines,
    one_decimal,
    plural,
    problem_score,
    stall_lines,
    timing_rows,
    utc,
)
from dicomsniffd.names import GET_SUBOPERATION_STORE, REVERSED_ROLE, status_text
from dicomsniffd.sinks.summary.software import render_software

_WIDTH = 100
_MAX_ROWS = 50  # associations listed; --json lists all


def render_text(data: dict[str, Any], scores: list[int] | None = None) -> str:
    """The whole text summary of ``data`` (``Summary.to_dict``); ``scores``: the
    ``problem_score`` of each of ``data["associations"]`` when the caller has them."""
    parts = [
        _render_capture(data["capture"]),
        _render_findings(data["findings"]),
        _render_associations(data, scores),
        _render_dimse(data["dimse"]),
        _render_moves(data.get("moves") or [], data.get("moves_dropped", 0)),
        _render_tcp(data["tcp"], data["protocol_errors"]),
        _render_violations(data.get("protocol_violations") or []),
        _render_evidence(data["capture"].get("evidence")),
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _heading(title: str) -> str:
    return f"{title}\n{'=' * len(title)}"


def _render_capture(capture: dict[str, Any]) -> str:
    files = capture.get("files") or []
    first, last = capture.get("first_ts"), capture.get("last_ts")
    span = f" ({last - first:.1f} s)" if first is not None and last is not None else ""
    lines = [
        _heading("dicomsniffd analyze"),
        _fit(f"Files:    {', '.join(files) or '-'}", _WIDTH),
        *_file_notes(capture),
        f"Packets:  {capture.get('packets', 0)}   Bytes: {byte_size(capture.get('bytes', 0))}",
        f"Time:     {utc(first)} → {utc(last)} UTC{span}",
    ]
    failed = (capture.get("flows") or {}).get("failed_connections")
    if failed:
        lines += _wrap(
            f"{failed} connection(s) left unanalysed after an internal error in dicomsniffd "
            "(a bug: the log names it once; please report it). They are ended as seen so far.",
            "Internal: ",
        )
    return "\n".join(lines) + "\n"


def _file_notes(capture: dict[str, Any]) -> list[str]:
    """Lines under the Files line: the order the files were read in (when it is not the
    order given) and where each broken file broke; none for a clean capture."""
    lines = []
    if capture.get("files_reordered"):
        lines.append(f"          ({REORDERED_NOTE})")
    for broken in capture.get("broken_files") or ():
        lines.extend(
            textwrap.wrap(
                f"{format_break(broken)}; {BREAK_COVERAGE}",
                _WIDTH,
                initial_indent="Broken:   ",
                subsequent_indent="          ",
            )
        )
    return lines


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH, initial_indent=indent, subsequent_indent=indent) or [indent]


def _render_findings(findings: list[dict[str, Any]]) -> str:
    lines = [_heading(f"Findings ({len(findings)})")]
    if not findings:
        lines.append("No problems found.")
    for finding in findings:
        lines.append(f"[{finding['severity'].upper()}] {finding['title']}  ({finding['code']})")
        lines.extend(_wrap(finding["detail"], "    "))
        for item in finding["evidence"]:
            lines.extend(
                textwrap.wrap(item, _WIDTH, initial_indent="    - ", subsequent_indent="      ")
            )
        lines.extend(_wrap("What to check: " + finding["advice"], "    "))
        lines.append("")
    return "\n".join(lines)


_CITED = re.compile(r"flow (\d+)\b")
_MAX_PAIRS = 20  # rows of the per-AE-pair rollup; --json lists all


def cited_flows(findings: list[dict[str, Any]]) -> set[int]:
    """The flow ids the findings' evidence lines cite (each starts ``flow N …``)."""
    cited: set[int] = set()
    for finding in findings:
        for item in finding["evidence"]:
            match = _CITED.match(item)
            if match:
                cited.add(int(match.group(1)))
    return cited


def pick_rows(
    assocs: list[dict[str, Any]],
    cited: set[int],
    protocol_errors: dict[str, int],
    cap: int = _MAX_ROWS,
    scores: list[int] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(problem rows worst first, other rows in time order): every cited flow, then the
    worst problems, then the other associations in time order, ``cap`` rows in all (more
    only when the findings cite more). ``scores``: the rows' ``problem_score``s, computed
    here when not given."""
    if scores is None:
        scores = [problem_score(a, protocol_errors.get(str(a["flow_id"]), 0)) for a in assocs]
    problems = sorted((i for i, s in enumerate(scores) if s), key=lambda i: (-scores[i], i))
    others = [i for i, s in enumerate(scores) if not s]
    chosen = {i for i, a in enumerate(assocs) if a["flow_id"] in cited}
    for i in problems + others:
        if len(chosen) >= cap:
            break
        chosen.add(i)
    return (
        [assocs[i] for i in problems if i in chosen],
        [assocs[i] for i in others if i in chosen],
    )


def _responses_column(dimse: dict[str, dict[str, int]]) -> str:
    """The SCP's responses; "+N" the requestor's (its answers to C-GET's C-STOREs), never
    summed with them: they answer requests going the other way."""
    scp = sum(sum(s.values()) for c, s in dimse.items() if c not in REVERSED_ROLE)
    scu = sum(sum(s.values()) for c, s in dimse.items() if c in REVERSED_ROLE)
    return f"{scp}+{scu}" if scu else str(scp)


# AssociationEnded.how values wider than the "end" column, and the legend printed under it
_END_SHORT = {"capture-ended": "cap-end*"}
_RESP_LEGEND = (
    "resp = responses from the SCP; +N = from the SCU (to C-GET's sub-operation C-STOREs)"
)
_END_LEGEND = (
    "cap-end* = still open when the capture ended (its requests in flight, not unanswered)"
)


def _assoc_rows(assocs: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"{'flow':>4} {'start':8} {'calling → called':30} {'server':21} "
        f"{'outcome':9} {'end':8} {'resp':>5} {'data':>8}"
    ]
    for a in assocs:
        responses = _responses_column(a["dimse"])
        outcome = "aborted*" if a["outcome"] == "aborted-before-accept" else a["outcome"]
        end = _END_SHORT.get(a["end"], a["end"])
        data = byte_size(sum(a["pdata_bytes"].values()))
        pair = _fit(f"{a['calling_ae']} → {a['called_ae']}", 30)
        lines.append(
            f"{a['flow_id']:>4} {utc(a['start_ts'], date=False):8} {pair:30} "
            f"{_fit(a['server'], 21):21} {outcome:9} {end or '-':8} {responses:>5} {data:>8}"
        )
    return lines


def _pair_rows(pairs: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"By AE pair ({len(pairs)}), p95 in ms",
        f"{'calling → called':30} {'assocs':>6} {'objects':>7} {'failures':>8} "
        f"{'transfer':>10} {'service':>10} {'response':>10} {'duration':>10}",
    ]
    for p in pairs[:_MAX_PAIRS]:
        pair = _fit(f"{p['calling_ae']} → {p['called_ae']}", 30)
        lines.append(
            f"{pair:30} {p['associations']:>6} {p['objects']:>7} {p['failures']:>8} "
            f"{one_decimal(p['request_transfer_ms']['p95']):>10} "
            f"{one_decimal(p['response_latency_ms']['p95']):>10} "
            f"{one_decimal(p.get('response_transfer_ms', {}).get('p95')):>10} "
            f"{one_decimal(p['duration_ms']['p95']):>10}"
        )
    if len(pairs) > _MAX_PAIRS:
        lines.append(f"… {len(pairs) - _MAX_PAIRS} more AE pairs (use --json for all)")
    note = _sketch_note(p[name] for p in pairs[:_MAX_PAIRS] for name in _PAIR_PHASES)
    return [*lines, *note]


_PAIR_PHASES = ("request_transfer_ms", "response_latency_ms", "duration_ms")


def _sketch_note(shown: Any) -> list[str]:
    """The line saying how exact the percentiles shown are, when some come from a sketch
    (``quantiles.Distribution``: a ``relative_error`` in their dict); none when exact."""
    errors = {p.get("relative_error") for p in shown} - {None}
    if not errors:
        return []
    return [
        f"(percentiles of phases with many samples come from a streaming sketch: each "
        f"within {max(errors):.0%} of the exact value; counts and max are exact)"
    ]


def _render_associations(data: dict[str, Any], scores: list[int] | None = None) -> str:
    """Problems (worst first, every cited flow among them), the per-AE-pair rollup, then
    the other associations in time order, up to ``_MAX_ROWS`` rows. Counts are exact (the
    ``association_totals``), the rows come from the records the summary kept."""
    assocs, pairs = data["associations"], data.get("pairs", [])
    errors = data.get("protocol_errors_by_flow", {})
    totals = data.get("association_totals") or {}
    total = totals.get("associations", len(assocs))
    lines = [_heading(f"Associations ({total})")]
    if not assocs:
        return "\n".join([*lines, "None.", ""])
    problems, others = pick_rows(assocs, cited_flows(data["findings"]), errors, scores=scores)
    total_problems = totals.get("with_problems")
    if total_problems is None:
        total_problems = sum(
            1 for a in assocs if problem_score(a, errors.get(str(a["flow_id"]), 0))
        )
    if problems:
        shown = "" if len(problems) == total_problems else f" of {total_problems}"
        lines += [f"With problems ({len(problems)}{shown}), worst first", *_assoc_rows(problems)]
        lines.append("")
    if pairs:
        lines += [*_pair_rows(pairs), ""]
    if others:
        title = "Other associations" if total_problems else "Associations"
        count = total - total_problems
        shown = "" if len(others) == count else f" of {count}"
        lines += [f"{title} ({len(others)}{shown}), in time order", *_assoc_rows(others)]
    more = total - len(problems) - len(others)
    if more:
        listed = len(assocs)
        where = (
            "use --json for all"
            if listed == total
            else f"--json lists {listed} of them: the worst problems and a uniform sample"
        )
        lines.append(f"… {more} more associations ({where})")
    if any(a["outcome"] == "aborted-before-accept" for a in problems):
        lines.append("aborted* = aborted or reset before the SCP answered the request")
    software = render_software(data.get("implementations", []))
    if software:
        lines += ["", *software]
    if any(a["end"] in _END_SHORT for a in problems + others):
        lines.append(_END_LEGEND)
    if any(c in REVERSED_ROLE for a in problems + others for c in a["dimse"]):
        lines.append(_RESP_LEGEND)
    return "\n".join(lines).rstrip("\n") + "\n"


def _render_dimse(dimse: dict[str, Any]) -> str:
    if not dimse:
        return ""
    lines = [
        _heading("DIMSE"),
        f"{'command':14} {'requests':>8} {'unanswered':>10}  responses by status",
    ]
    for command, s in dimse.items():
        statuses = ", ".join(
            f"{status} {status_text(int(status, 16)) if status else ''}: {n}".replace("  ", " ")
            for status, n in s["responses"].items()
        )
        wrapped = textwrap.wrap(statuses or "-", _WIDTH - 37) or ["-"]
        lines.append(f"{command:14} {s['requests']:>8} {s['unanswered']:>10}  {wrapped[0]}")
        lines.extend(f"{'':36}{more}" for more in wrapped[1:])
    in_flight = [
        f"{command} {s['in_flight']}" for command, s in dimse.items() if s.get("in_flight")
    ]
    if in_flight:
        lines.append(
            "In flight at capture end (not answered yet, not unanswered): " + ", ".join(in_flight)
        )
    lines += [
        "",
        "Timing (ms): transfer = network upload of the request, "
        "service = SCP time to first response,",
        "response = transfer of the final response, total = request start to response end",
        *(
            [
                f"{GET_SUBOPERATION_STORE} = C-GET sub-operations, SCP → SCU: download = their "
                "transfer, SCU time = storing"
            ]
            if GET_SUBOPERATION_STORE in dimse
            else []
        ),
        f"{'command':14} {'phase':9} {'count':>7} {'p50':>10} {'p95':>10} {'p99':>10} {'max':>10}",
    ]
    rows = list(timing_rows(dimse))
    for command, label, p in rows:
        lines.append(
            f"{command:14} {label:9} {p['count']:>7} {one_decimal(p['p50']):>10} "
            f"{one_decimal(p['p95']):>10} {one_decimal(p['p99']):>10} {one_decimal(p['max']):>10}"
        )
    lines += _sketch_note(p for _command, _label, p in rows)
    throughput = [
        f"{command} ({'download' if command in REVERSED_ROLE else 'upload'}): "
        f"{byte_size(s['dataset_bytes'])}, effective "
        f"{one_decimal(s.get('effective_mbps'))} Mbit/s, per object on the wire "
        f"{one_decimal(s['throughput_mbps'])} Mbit/s"
        for command, s in dimse.items()
        if s["throughput_mbps"] is not None or s.get("effective_mbps") is not None
    ]
    if throughput:
        lines += [
            "",
            "Throughput: effective = data set bytes ÷ wall time with an operation in progress,",
            "per object on the wire = data set bytes ÷ the summed per-object transfer times",
            *throughput,
        ]
    return "\n".join(lines) + "\n"


_MAX_MOVES = 20  # C-MOVEs listed; --json lists all kept


def _render_moves(moves: list[dict[str, Any]], dropped: int) -> str:
    if not moves:
        return ""
    lines = [
        _heading(f"C-MOVE ({len(moves) + dropped})"),
        "Times from the C-MOVE-RQ; sub-operation counts from the final response",
    ]
    for m in moves[:_MAX_MOVES]:
        what, where = move_lines(m)
        lines.extend(_wrap(what, ""))
        lines.extend(_wrap(where, "    "))
    more = len(moves) + dropped - min(len(moves), _MAX_MOVES)
    if more:
        lines.append(f"… {more} more C-MOVEs (use --json for the first {len(moves)})")
    return "\n".join(lines) + "\n"


def _render_violations(rows: list[dict[str, Any]]) -> str:
    """DESIGN §4b: each broken rule, the side that broke it and its software."""
    if not rows:
        return ""
    lines = [_heading("Conformance (rules broken)")]
    for r in sorted(rows, key=lambda r: -r["count"]):
        side = r["calling_ae"] if r["sender"] == REQUESTOR else r["called_ae"]
        software = r["implementation_version_name"] or r["implementation_class_uid"] or "?"
        lines.append(
            f"{r['kind']}: {r['count']} by the {r['sender']} {side} "
            f"({r['calling_ae']} → {r['called_ae']}), software {software}"
        )
    return "\n".join(lines) + "\n"


def _render_evidence(evidence: dict[str, Any] | None) -> str:
    """analyze --evidence: the PHI-scrubbed pcaps written for the vendor."""
    if evidence is None:
        return ""
    lines = [_heading("Evidence for the vendor (PHI-scrubbed)")]
    for f in evidence["files"]:
        lines.append(
            f"{f['file']}: flow {f['flow_id']} {f['calling_ae']} → {f['called_ae']}, "
            f"{f['frames']} frames"
        )
    if not evidence["files"]:
        lines.append("No association with a problem: no pcap written (--evidence-all).")
    lines.append(
        f"In {evidence['directory']}; {evidence['readme']} there says what was scrubbed "
        "(every data set byte and user-identity value overwritten, lengths kept)."
    )
    return "\n".join(lines) + "\n"


def _render_tcp(tcp: dict[str, Any], protocol_errors: dict[str, int]) -> str:
    def pair(counts: dict[str, int]) -> str:
        return f"requestor {counts.get(REQUESTOR, 0)}, acceptor {counts.get(ACCEPTOR, 0)}"

    rtt = tcp["handshake_rtt_ms"]
    lines = [
        _heading("TCP health"),
        f"Retransmissions:  {pair(tcp['retransmissions'])}",
        f"Zero windows:     {pair(tcp['zero_windows'])}",
        f"Resets:           {pair(tcp['resets'])}",
        "Handshake RTT:    "
        + (
            f"p50 {one_decimal(rtt['p50'])} ms, p95 {one_decimal(rtt['p95'])} ms, "
            f"max {one_decimal(rtt['max'])} ms ({rtt['count']} handshakes"
            + (f", p50/p95 within {rtt['relative_error']:.0%})" if "relative_error" in rtt else ")")
            if rtt["count"]
            else "-"
        ),
    ]
    for failure in tcp["connection_failures"]:
        lines.append(
            f"Connection {failure['reason']}: {failure['server']} "
            f"({plural(failure['count'], 'attempt')})"
        )
    before = tcp.get("lost_before_capture") or {}
    if any(before.values()):
        lines.insert(2, f"  of which filled a hole (lost before the capture point): {pair(before)}")
    lines += [f"Stalls:           {line}" for line in stall_lines(tcp.get("stalls") or [])]
    if protocol_errors:
        lines.append(
            "Protocol errors:  "
            + ", ".join(f"{kind} {n}" for kind, n in sorted(protocol_errors.items()))
        )
    return "\n".join(lines) + "\n"

"""The text and JSON of ``dicomsniffd compare`` (the document of ``diff.compare_sides``):
the overall verdict first, the rule it was decided by, then one block per AE pair (worst
first) with its commands' statuses, phases (p50/p95, samples), throughput and TCP health,
and the findings gone / still there / new."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from typing import Any

from dicomsniffd.compare.diff import TCP_COUNTS, pair_name, phase_word, statuses_text
from dicomsniffd.formatting import one_decimal, plural, utc

_WIDTH = 100


def render_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n"


def render_text(doc: Mapping[str, Any]) -> str:
    lines = [
        f"Verdict: {doc['verdict']}",
        _side_line("before", doc["before"]),
        _side_line("after", doc["after"]),
        *_wrap(f"Rule: {doc['rule']['text']}.", ""),
        *(line for caveat in doc["caveats"] for line in _wrap(f"Caveat: {caveat}", "")),
        "",
    ]
    for row in doc["pairs"]:
        lines += _pair_block(row)
        lines.append("")
    lines += _findings_block(doc["findings"])
    return "\n".join(lines).rstrip("\n") + "\n"


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH, initial_indent=indent, subsequent_indent=indent + "  ")


def _side_line(label: str, side: Mapping[str, Any]) -> str:
    files = " ".join(side["files"])
    what = "saved analyze --json" if side["source"] == "analyze-json" else "captures"
    span = f"{utc(side.get('first_ts'))} – {utc(side.get('last_ts'))}"
    return f"{label:6} {files} ({what}, {plural(side['associations'], 'association')}, {span})"


def _pair_block(row: Mapping[str, Any]) -> list[str]:
    lines = [f"{pair_name(row)}: {row['verdict']}"]
    lines += [wrapped for r in row["reasons"] for wrapped in _wrap(f"- {r}", "  ")]
    before, after = row["before"], row["after"]
    if before is None or after is None:
        return lines
    lines.append(
        f"  associations {before['associations']} → {after['associations']}, "
        f"requests {before['requests']} → {after['requests']}, "
        f"failed {before['failures']} → {after['failures']}"
    )
    lines.append(
        f"  {'command / phase':24} {'before p50/p95 (n)':>24} {'after p50/p95 (n)':>24} "
        f"{'Δ p95':>9}  judged"
    )
    for command in row["commands"]:
        lines += _command_lines(command)
    tcp = row["tcp"]
    lines.append(
        "  TCP "
        + ", ".join(
            f"{c.replace('_', ' ')} {tcp[c]['before']} → {tcp[c]['after']}" for c in TCP_COUNTS
        )
    )
    for state, word in (("gone", "gone"), ("still", "still there"), ("new", "new")):
        codes = [f["code"] for f in row["findings"][state]]
        if codes:
            lines.append(f"  findings {word}: {', '.join(codes)}")
    return lines


def _command_lines(command: Mapping[str, Any]) -> list[str]:
    before, after = command["before"], command["after"]
    if before is None or after is None:
        return [f"  {command['command']}: {command['verdict']} ({command['reasons'][0]})"]
    lines = [
        f"  {command['command']}: {command['verdict']}; requests {before['requests']} → "
        f"{after['requests']}; statuses {statuses_text(before)} → {statuses_text(after)}"
    ]
    for name, phase in command["phases"].items():
        change = phase["p95_change_ms"]
        lines.append(
            f"    {phase_word(name):22} {_cell(phase['before']):>24} {_cell(phase['after']):>24}"
            f" {('-' if change is None else f'{change:+.1f}'):>9}  {phase['judged']}"
        )
    throughput = command.get("throughput_mbps") or {}
    if throughput.get("before") is not None or throughput.get("after") is not None:
        pct = throughput.get("change_pct")
        lines.append(
            f"    {'throughput Mbit/s':22} {one_decimal(throughput.get('before')):>24} "
            f"{one_decimal(throughput.get('after')):>24} "
            f"{('-' if pct is None else f'{pct:+.0f} %'):>9}  shown, not judged"
        )
    return lines


def _cell(timing: Mapping[str, Any]) -> str:
    return f"{one_decimal(timing['p50'])} / {one_decimal(timing['p95'])} ({timing['count']})"


def _findings_block(findings: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["Findings (both whole captures; shown, not judged)"]
    for state, word in (("gone", "gone"), ("still", "still there"), ("new", "new")):
        items = findings[state]
        lines.append(f"  {word} ({len(items)})")
        for f in items:
            lines += _wrap(f"[{f['severity']}] {f['code']}: {f['title']}", "    ")
    return lines

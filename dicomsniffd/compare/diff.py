"""Both sides' per-AE-pair, per-command rollups set side by side: what changed and the
verdict of each command, pair and of the whole comparison (by rule.py). The result is the
``compare --json`` document (schema ``dicomsniffd-compare/1``); text and HTML render it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from dicomsniffd.compare import rule
from dicomsniffd.compare.sides import Pair, Side, phase_names
from dicomsniffd.findings.facts import TIMINGS

SCHEMA = "dicomsniffd-compare/1"
TCP_COUNTS = ("retransmissions", "zero_windows", "resets")
_COMMAND_IN_TITLE = re.compile(r"\b[CN]-[A-Z-]+[A-Z]\b")
_ORDER = {v: i for i, v in enumerate(rule.VERDICTS)}
_PHASE_WORDS = {
    "request_transfer_ms": "request transfer",
    "response_latency_ms": "SCP service time",
    "response_transfer_ms": "response transfer",
    "duration_ms": "duration",
}


def compare_sides(before: Side, after: Side) -> dict[str, Any]:
    """The comparison document of two loaded sides."""
    pairs_b, pairs_a = before.pairs, after.pairs
    findings = _findings_diff(
        before.data.get("findings") or [], after.data.get("findings") or [], {*pairs_b, *pairs_a}
    )
    rows = [
        _pair_diff(key, pairs_b.get(key), pairs_a.get(key), findings)
        for key in sorted({*pairs_b, *pairs_a})
    ]
    rows.sort(key=lambda r: (_ORDER[r["verdict"]], r["calling_ae"], r["called_ae"]))
    return {
        "schema": SCHEMA,
        "verdict": rule.worst(r["verdict"] for r in rows),
        "rule": rule.rule_dict(),
        "caveats": [*_caveats(before), *_caveats(after)],
        "before": before.describe(),
        "after": after.describe(),
        "pairs": rows,
        "findings": findings,
    }


def _caveats(side: Side) -> list[str]:
    """What makes a side's numbers lower bounds (the verdict still follows the rule)."""
    out = [f"{side.label}: {note}" for note in side.notes]
    if any(f.get("code") == "capture-incomplete" for f in side.data.get("findings") or ()):
        out.append(
            f"{side.label}: the capture is incomplete (finding capture-incomplete): requests "
            "unanswered or samples missing there may be the capture's, not the SCP's"
        )
    return out


def pair_name(row: Mapping[str, Any]) -> str:
    return f"{row['calling_ae'] or '?'} → {row['called_ae'] or '?'}"


def phase_word(name: str) -> str:
    """``response_latency_ms`` -> ``SCP service time`` (an unknown phase by its name)."""
    return _PHASE_WORDS.get(name, name.removesuffix("_ms").replace("_", " "))


# -- one AE pair ---------------------------------------------------------------------------


def _pair_diff(
    key: Pair,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    findings: Mapping[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    name = f"{key[0] or '?'} → {key[1] or '?'}"
    row: dict[str, Any] = {"calling_ae": key[0], "called_ae": key[1]}
    row["before"] = _pair_side(before)
    row["after"] = _pair_side(after)
    row["findings"] = {
        state: [f for f in items if name in f["pairs"]] for state, items in findings.items()
    }
    if before is None or after is None:
        where = "after" if before is None else "before"
        row.update(verdict=rule.NOT_COMPARABLE, reasons=[f"AE pair seen only {where}"])
        row["commands"], row["tcp"] = [], {}
        return row
    commands = [
        _command_diff(command, before["commands"].get(command), after["commands"].get(command))
        for command in sorted({*before["commands"], *after["commands"]})
    ]
    tcp = {
        count: {
            "before": before[count],
            "after": after[count],
            "judged": rule.judge_count(before[count], after[count]),
        }
        for count in TCP_COUNTS
    }
    failing_b = row["before"]["failing"] = _failing(before, after)
    failing_a = row["after"]["failing"] = _failing(after, before)
    judged = [t["judged"] for t in tcp.values()] if not (failing_b or failing_a) else []
    pair_level = rule.verdict(failing_b, failing_a, judged)
    comparable = [c["verdict"] for c in commands if c["verdict"] != rule.NOT_COMPARABLE]
    if not comparable and not (failing_b or failing_a) and commands:
        verdict = rule.NOT_COMPARABLE
    else:
        verdict = rule.worst([*comparable, pair_level])
    reasons = [f"{c['command']}: {reason}" for c in commands for reason in c["reasons"]]
    for what in ("rejected", "aborted"):
        if before[what] or after[what]:
            reasons.append(f"associations {what} {before[what]} → {after[what]}")
    reasons += [
        f"TCP {count.replace('_', ' ')} {t['before']} → {t['after']}: {t['judged']}"
        for count, t in tcp.items()
        if t["judged"] in (rule.UP, rule.DOWN)
    ]
    if verdict == rule.NOT_COMPARABLE:
        reasons.append("no DIMSE command seen on both sides")
    row.update(verdict=verdict, reasons=reasons, commands=commands, tcp=tcp)
    return row


def _pair_side(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    failures = sum(
        rule.failures_of(c["statuses"], c["unanswered"]) for c in row["commands"].values()
    )
    return {
        "associations": row["associations"],
        "rejected": row["rejected"],
        "aborted": row["aborted"],
        "requests": sum(c["requests"] for c in row["commands"].values()),
        "failures": failures,
        "failing": bool(failures or row["rejected"] or row["aborted"]),
    }


def _failing(row: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Failing as the verdict sees it: a rejected or aborted association, or a failure in a
    command the other side ran too (a failed command that was not run again is not
    "fixed"), or in any command when the other side ran none (its associations refused)."""
    commands = row["commands"]
    scope = commands.keys() & other["commands"].keys() if other["commands"] else commands.keys()
    return bool(
        row["rejected"]
        or row["aborted"]
        or any(rule.failures_of(commands[c]["statuses"], commands[c]["unanswered"]) for c in scope)
    )


# -- one command of a pair -----------------------------------------------------------------


def _command_diff(
    command: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "command": command,
        "before": _command_side(before),
        "after": _command_side(after),
    }
    if before is None or after is None:
        where = "after" if before is None else "before"
        out.update(verdict=rule.NOT_COMPARABLE, reasons=[f"seen only {where}"], phases={})
        out["throughput_mbps"] = None
        return out
    phases = {name: _phase_diff(before[name], after[name]) for name in _phases(before, after)}
    failing_b, failing_a = out["before"]["failing"], out["after"]["failing"]
    verdict = rule.verdict(failing_b, failing_a, (p["judged"] for p in phases.values()))
    reasons = []
    fb, fa = out["before"]["failures"], out["after"]["failures"]
    if fb or fa:
        reasons.append(
            f"failed {fb} of {before['requests']} → {fa} of {after['requests']}"
            f" ({statuses_text(before)} → {statuses_text(after)})"
        )
    reasons += [
        f"{phase_word(name)} p95 {_ms(p['before']['p95'])} → {_ms(p['after']['p95'])} ms "
        f"({_signed(p['p95_change_ms'])} ms, {_pct(p['p95_change_pct'])}): {p['judged']}"
        for name, p in phases.items()
        if p["judged"] in (rule.UP, rule.DOWN)
    ]
    out.update(verdict=verdict, reasons=reasons, phases=phases)
    out["throughput_mbps"] = {
        "before": before.get("throughput_mbps"),
        "after": after.get("throughput_mbps"),
        "change_pct": _change_pct(before.get("throughput_mbps"), after.get("throughput_mbps")),
    }
    return out


def _command_side(stats: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    failures = rule.failures_of(stats["statuses"], stats["unanswered"])
    return {
        "requests": stats["requests"],
        "statuses": dict(stats["statuses"]),
        "unanswered": stats["unanswered"],
        "failures": failures,
        "failing": failures > 0,
        "bytes": stats["bytes"],
    }


def _phases(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Phases on both sides, in TIMINGS order, then any other (a newer side's phase)."""
    common = set(phase_names(before)) & set(phase_names(after))
    return [n for n in TIMINGS if n in common] + sorted(common - set(TIMINGS))


def _phase_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    low, high = before.get("p95"), after.get("p95")
    return {
        "before": {k: before.get(k) for k in ("count", "p50", "p95")},
        "after": {k: after.get(k) for k in ("count", "p50", "p95")},
        "p95_change_ms": None if low is None or high is None else round(high - low, 3),
        "p95_change_pct": _change_pct(low, high),
        "judged": rule.judge_p95(before, after),
    }


def _change_pct(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before == 0:
        return None
    return round((after - before) / before * 100.0, 1)


def statuses_text(stats: Mapping[str, Any]) -> str:
    parts = [f"{s}×{n}" for s, n in sorted(stats["statuses"].items())]
    if stats["unanswered"]:
        parts.append(f"unanswered×{stats['unanswered']}")
    return " ".join(parts) or "none"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def _pct(value: float | None) -> str:
    return "n/a %" if value is None else f"{value:+.0f} %"


# -- findings ------------------------------------------------------------------------------


def _finding_key(f: Mapping[str, Any]) -> tuple[str, str]:
    """A finding's identity across captures: its code and the command its title names
    (titles also carry numbers, e.g. a retransmission ratio, that differ between runs)."""
    match = _COMMAND_IN_TITLE.search(f.get("title") or "")
    return (f["code"], match.group(0) if match else "")


def _findings_diff(
    before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]], pairs: set[Pair]
) -> dict[str, list[dict[str, Any]]]:
    """gone / still / new, each finding with the AE pairs its text names."""
    keyed_b = {_finding_key(f): f for f in before}
    keyed_a = {_finding_key(f): f for f in after}
    names = [f"{c or '?'} → {d or '?'}" for c, d in pairs]

    def item(f: Mapping[str, Any], other: Mapping[str, Any] | None = None) -> dict[str, Any]:
        text = " ".join([f.get("detail") or "", *(f.get("evidence") or [])])
        if other is not None:
            text += " " + " ".join([other.get("detail") or "", *(other.get("evidence") or [])])
        return {
            "code": f["code"],
            "severity": f["severity"],
            "title": f["title"],
            "pairs": sorted(n for n in names if n in text),
        }

    return {
        "gone": [item(f) for k, f in keyed_b.items() if k not in keyed_a],
        "still": [item(keyed_a[k], f) for k, f in keyed_b.items() if k in keyed_a],
        "new": [item(f) for k, f in keyed_a.items() if k not in keyed_b],
    }

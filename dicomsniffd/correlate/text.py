"""The text output of ``dicomsniffd correlate`` (from the result dict of run.py)."""

from __future__ import annotations

from typing import Any

from dicomsniffd.formatting import plural, utc

DIRECTION_NAMES = {"c2s": "client -> server", "s2c": "server -> client"}
MAX_TEXT_ITEMS = 5  # segments listed per kind in the text (the JSON has up to 20)


def ms(value: float | None) -> str:
    """Milliseconds to three decimals (capture timestamps resolve microseconds)."""
    return "-" if value is None else f"{value:.3f} ms"


def clock_line(clock: dict[str, Any]) -> str:
    line = f"clock offset FAR - NEAR {clock['offset_ms']:+.3f} ms ({clock['how']})"
    if clock.get("min_one_way_delay_ms") is not None:
        line += f"; fastest trip between the points {ms(clock['min_one_way_delay_ms'])}"
    return line


def totals_line(totals: dict[str, Any]) -> str:
    parts = [
        plural(totals["lost"], "segment") + " lost",
        plural(totals["added"], "segment") + " added",
        plural(totals["injected_resets"], "reset") + " injected",
        plural(totals["payload_changed"], "payload") + " changed",
    ]
    changes = totals["option_changes"]
    if changes:
        listed = ", ".join(f"{text}: {n}" for text, n in changes.items())
        parts.append(f"TCP options changed ({listed})")
    else:
        parts.append("no TCP option changed")
    if totals["translated"]:
        parts.append(plural(totals["translated"], "connection") + " address-translated (NAT)")
    return "; ".join(parts)


def association_line(c: dict[str, Any]) -> str:
    a = c.get("association")
    if not a:
        return "no DICOM association seen on it"
    return (
        f"{a['calling_ae']} -> {a['called_ae']} ({a['result']}, {a['end']}, "
        f"{plural(a['messages'], 'DIMSE message')} timed)"
    )


def item_line(item: dict[str, Any], what: str) -> str:
    where = item.get("dicom") or "no DICOM meaning"
    flags = "" if item["flags"] == "-" else f" {item['flags']}"
    return (
        f"{what}: seq +{item['rel_seq']} len {item['len']}{flags} at "
        f"{item['seen_at'].upper()} {utc(item['ts'], date=False, ms=True)}: {where}"
    )


def direction_lines(name: str, d: dict[str, Any]) -> list[str]:
    up = d["upstream"].upper()
    down = "FAR" if up == "NEAR" else "NEAR"
    delay = d["delay"]
    head = (
        f"  {DIRECTION_NAMES[name]} (reaches {up} first): {d['segments_upstream']} segments "
        f"at {up}, {d['segments_downstream']} at {down}; {d['lost']} lost, {d['added']} added"
    )
    if delay.get("samples"):
        head += (
            f"; delay between the points p50 {ms(delay['p50_ms'])}, p95 {ms(delay['p95_ms'])}"
            f", max {ms(delay['max_ms'])} ({delay['samples']} segments)"
        )
    lines = [head]
    if d["not_compared"]:
        lines.append(
            f"    {plural(d['not_compared'], 'segment')} not compared (outside the other "
            "capture's time, or past a segment cap)"
        )
    for item in d["lost_segments"][:MAX_TEXT_ITEMS]:
        lines.append("    " + item_line(item, f"lost x{item['copies_lost']}"))
    _more(lines, d["lost"], min(len(d["lost_segments"]), MAX_TEXT_ITEMS), "lost")
    added = [i for i in d["added_segments"] if "RST" not in i["flags"]]  # resets: below
    for item in added[:MAX_TEXT_ITEMS]:
        lines.append("    " + item_line(item, f"added x{item['copies_added']}"))
    for r in d["resets"]:
        lines.append("    " + item_line(r, f"reset x{r['copies']} {r['verdict']}"))
    for change in d["option_changes"]:
        first = change["first"]
        lines.append(
            f"    TCP options changed: {change['change']} "
            f"({plural(change['segments'], 'segment')}, first {first['flags']} at "
            f"{first['seen_at'].upper()} {utc(first['ts'], date=False, ms=True)})"
        )
    for item in d["payload_changed_segments"][:MAX_TEXT_ITEMS]:
        lines.append("    " + item_line(item, "payload changed"))
    return lines


def _more(lines: list[str], total: int, shown: int, what: str) -> None:
    if total > shown and shown:
        lines.append(f"    ... and more {what} (the JSON output lists up to 20 per direction)")


def connection_lines(c: dict[str, Any]) -> list[str]:
    near, far = c["near"], c["far"]
    lines = [
        f"Connection {c['number']}: {association_line(c)}",
        f"  NEAR {near['client']} -> {near['server']}   FAR {far['client']} -> {far['server']}",
    ]
    facts = [
        f"matched by {', '.join(c['matched_by'])}",
        f"client on the {c['client_side'].upper()} side",
    ]
    for t in c["translated"]:
        facts.append(f"{t['endpoint']} address translated {t['near']} -> {t['far']}")
    if c["isn_rewritten"]:
        names = ", ".join(DIRECTION_NAMES[n] for n in c["isn_rewritten"])
        facts.append(f"sequence numbers rewritten ({names})")
    lines.append("  " + "; ".join(facts))
    for name in ("c2s", "s2c"):
        lines.extend(direction_lines(name, c["directions"][name]))
    return lines


def render_text(result: dict[str, Any]) -> str:
    near, far = result["near"], result["far"]
    unmatched = result["unmatched"]
    lines = [
        f"NEAR {near['file']}: {near['packets']} packets, "
        f"{plural(near['connections'], 'TCP connection')}",
        f"FAR  {far['file']}: {far['packets']} packets, "
        f"{plural(far['connections'], 'TCP connection')}",
        f"{plural(len(result['connections']), 'connection')} seen at both points (matched by "
        f"their data, not their addresses); {len(unmatched['near'])} only at NEAR, "
        f"{len(unmatched['far'])} only at FAR",
        clock_line(result["clock"]),
        "",
        "Between the points: " + totals_line(result["totals"]),
    ]
    for point in ("near", "far"):
        if result[point]["broken"]:
            lines.append(f"note: {point.upper()}: {result[point]['broken']}: compared up to it")
        over = result[point]["segments_over_cap"]
        if over:
            lines.append(
                f"note: {point.upper()}: {over} segments past the caps ({result['max_segments']} "
                f"per connection and direction, {result['max_total_segments']} per capture) "
                "were not kept; those directions were compared up to the cap"
            )
    for c in result["connections"]:
        lines.append("")
        lines.extend(connection_lines(c))
    for point in ("near", "far"):
        for c in unmatched[point][:MAX_TEXT_ITEMS]:
            lines.append(
                f"only at {point.upper()}: {c['client']} -> {c['server']} from "
                f"{utc(c['first_ts'], ms=True)}"
            )
    return "\n".join(lines) + "\n"

"""``correlate``: two capture points of the same traffic, compared connection by connection.

    near, far = read_point(NEAR), read_point(FAR)       points.py
    matches = match_connections(...)                      matching.py (by data, through NAT)
    clock = estimate(...)                                 clock.py (offset, who is upstream)
    diff_direction(...) per matched connection and direction    diff.py
    meaning: the association and DIMSE message of each reported segment   meaning.py

The result is one JSON-ready dict (``--json`` prints it; text.py and html.py render it).
"""

from __future__ import annotations

from typing import Any

from dicomsniffd.config import Config
from dicomsniffd.correlate.clock import estimate, orient_alone, orientation
from dicomsniffd.correlate.diff import Span, diff_direction, sides
from dicomsniffd.correlate.matching import DIRECTIONS, Match, match_connections
from dicomsniffd.correlate.meaning import (
    Association,
    Conversations,
    find_association,
    place,
    read_conversations,
)
from dicomsniffd.correlate.points import (
    MAX_SEGMENTS,
    MAX_TOTAL_SEGMENTS,
    Connection,
    Point,
    read_point,
)
from dicomsniffd.dicom.events import ACCEPTOR, REQUESTOR
from dicomsniffd.formatting import format_break

_CLOCK_SLACK = 0.001  # seconds a clock may wander during one connection (NTP slewing)


class NothingInCommon(Exception):
    """The two captures share no TCP connection (or one has none): a user error."""


def correlate_files(
    near_path: str, far_path: str, config: Config, *, max_segments: int = MAX_SEGMENTS
) -> dict[str, Any]:
    """Compare the two captures; raises CaptureError (unreadable) or NothingInCommon."""
    near, far = read_point(near_path, max_segments), read_point(far_path, max_segments)
    for point, name in ((near, "NEAR"), (far, "FAR")):
        if not point.connections:
            raise NothingInCommon(
                f"{name} capture {point.path} has no TCP segment ({point.packets} packets)"
            )
    matches, lonely_near, lonely_far = match_connections(near.connections, far.connections)
    if not matches:
        raise NothingInCommon(_no_match(near, far))
    paired = _plausible_pairs(matches, lonely_near, lonely_far)
    if not paired:
        raise NothingInCommon(_no_match(near, far))
    clock = estimate([(o, c2s, s2c) for _m, (o, c2s, s2c) in paired])
    spans = {
        "near": Span(near.first_ts or 0.0, near.last_ts or 0.0),
        "far": Span(clock.to_near(far.first_ts or 0.0), clock.to_near(far.last_ts or 0.0)),
    }
    talks = {
        "near": read_conversations(near_path, config),
        "far": read_conversations(far_path, config),
    }
    connections = []
    for number, (match, (near_is_client, c2s, s2c)) in enumerate(paired, start=1):
        if near_is_client is None:
            near_is_client = orient_alone(c2s, s2c, clock)
        entry = _connection(number, match, near_is_client)
        entry["association"] = _association_summary(talks, match)
        side = sides(match)  # built again, one pair at a time, so memory holds one copy
        meaning = _meaning(talks, match)
        entry["directions"] = {
            name: diff_direction(
                name,
                side[name],
                near_is_client == (name == "c2s"),
                clock,
                spans,
                (match.near.direction(name).cap_ts, match.far.direction(name).cap_ts),
                meaning,
                match,
            )
            for name in DIRECTIONS
        }
        connections.append(entry)
    return {
        "near": _point(near, talks["near"]),
        "far": _point(far, talks["far"]),
        "clock": {
            "offset_ms": clock.offset * 1000,
            "min_one_way_delay_ms": None if clock.min_delay is None else clock.min_delay * 1000,
            "samples": clock.samples,
            "how": clock.how,
        },
        "max_segments": max_segments,
        "max_total_segments": MAX_TOTAL_SEGMENTS,
        "connections": connections,
        "unmatched": {
            "near": [_endpoints(c) for c in lonely_near],
            "far": [_endpoints(c) for c in lonely_far],
        },
        "totals": _totals(connections),
    }


Oriented = tuple[bool | None, list[float], list[float]]  # clock.orientation, the samples


def _plausible_pairs(
    matches: list[Match], lonely_near: list[Connection], lonely_far: list[Connection]
) -> list[tuple[Match, Oriented]]:
    """The matches whose timing one clock offset explains (those matched by ISN always),
    each with its orientation and clock samples; the others go back to the lonely lists."""
    paired = []
    for m in matches:
        side = sides(m)
        c2s, s2c = side["c2s"].samples, side["s2c"].samples
        if "ISN" in m.evidence or _consistent(c2s, s2c):
            paired.append((m, (orientation(c2s, s2c), c2s, s2c)))
        else:  # the same first bytes, but timing that no clock offset explains
            lonely_near.append(m.near)
            lonely_far.append(m.far)
    return paired


def _no_match(near: Point, far: Point) -> str:
    return (
        f"no TCP connection in common between {near.path} ({len(near.connections)} "
        f"connections) and {far.path} ({len(far.connections)}): not captures of the "
        "same traffic, or not taken at the same time"
    )


def _consistent(c2s: list[float], s2c: list[float]) -> bool:
    """Whether one clock offset explains a pair's timing: seen at both points, each
    direction's segments must take a non-negative time between them (clock.py), give or
    take ``_CLOCK_SLACK``. Two different associations with the same first bytes fail it."""
    if not c2s or not s2c:
        return True
    best = max(min(c2s) - max(s2c), min(s2c) - max(c2s)) / 2
    return best >= -_CLOCK_SLACK


def _point(point: Point, talk: Conversations) -> dict[str, Any]:
    over_cap = sum(c.c2s.over_cap + c.s2c.over_cap for c in point.connections)
    return {
        "file": point.path,
        "packets": point.packets,
        "first_ts": point.first_ts,
        "last_ts": point.last_ts,
        "connections": len(point.connections),
        "segments_over_cap": over_cap,
        "segments_without_options": point.no_options,
        "capture_duplicates": sum(c.c2s.duplicates + c.s2c.duplicates for c in point.connections),
        "dicom_messages_not_kept": talk.messages_dropped,
        "decode": point.decode,
        "broken": None if point.broken is None else format_break(point.broken),
    }


def _endpoints(conn: Connection) -> dict[str, Any]:
    return {"client": conn.client_text, "server": conn.server_text, "first_ts": conn.first_ts}


def _connection(number: int, match: Match, near_is_client: bool) -> dict[str, Any]:
    near, far = match.near, match.far
    translated = []
    for role in ("client", "server"):
        a, b = getattr(near, f"{role}_text"), getattr(far, f"{role}_text")
        if a != b:
            translated.append({"endpoint": role, "near": a, "far": b})
    rewritten = [
        name
        for name in DIRECTIONS
        if None not in (near.direction(name).isn, far.direction(name).isn)
        and near.direction(name).isn != far.direction(name).isn
    ]
    return {
        "number": number,
        "near": _endpoints(near),
        "far": _endpoints(far),
        "matched_by": list(match.evidence),
        "client_side": "near" if near_is_client else "far",
        "translated": translated,
        "isn_rewritten": rewritten,
        "sequence_basis": dict(match.basis),
    }


def _association_summary(talks: dict[str, Conversations], match: Match) -> dict[str, Any] | None:
    for point, conn in (("near", match.near), ("far", match.far)):
        assoc = _find(talks[point], conn)
        if assoc is not None:
            return assoc.summary() | {"seen_at": point}
    return None


def _find(talk: Conversations, conn: Connection) -> Association | None:
    return find_association(talk, conn.client_text, conn.server_text, conn.first_ts, conn.last_ts)


def _meaning(talks: dict[str, Conversations], match: Match):
    cache: dict[str, Association | None] = {}

    def meaning(point: str, conn: Connection, direction: str, ts: float) -> str:
        if point not in cache:
            cache[point] = _find(talks[point], conn)
        return place(cache[point], REQUESTOR if direction == "c2s" else ACCEPTOR, ts)

    return meaning


def _totals(connections: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {
        "connections": len(connections),
        "lost": 0,
        "added": 0,
        "payload_changed": 0,
        "injected_resets": 0,
        "translated": sum(1 for c in connections if c["translated"]),
        "option_changes": {},
    }
    for c in connections:
        for d in c["directions"].values():
            totals["lost"] += d["lost"]
            totals["added"] += d["added"]
            totals["payload_changed"] += d["payload_changed"]
            totals["injected_resets"] += sum(
                r["copies"] for r in d["resets"] if r["verdict"].startswith("injected")
            )
            for change in d["option_changes"]:
                text = change["change"]
                totals["option_changes"][text] = (
                    totals["option_changes"].get(text, 0) + change["segments"]
                )
    return totals

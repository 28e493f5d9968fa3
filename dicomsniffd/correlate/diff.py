"""What happened to one connection between the two points, per direction.

Both points see the segments the endpoints sent, minus what was lost before them. So, per
distinct segment (keyed by sequence numbers relative to each point's own base), the
upstream point (the one the direction reaches first) seeing it more often than the
downstream one means copies lost between the points; the downstream point seeing it more
often (or alone) means segments made between the points: a reset injected by a firewall,
an ACK from a proxy. Counting copies instead of sets keeps retransmissions exact: a
segment dropped once and retransmitted is seen twice upstream and once downstream.

Segments seen at both are compared: their payload (digest) and their TCP options (MSS and
window scale with their values, the other options by kind), and, seen once at each, how
long they took between the points (clock.py corrects for the two clocks).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dicomsniffd.correlate.clock import Clock
from dicomsniffd.correlate.matching import DIRECTIONS, Match
from dicomsniffd.correlate.points import (
    FIN,
    OPTION_NAMES,
    RST,
    SYN,
    Direction,
    Options,
    Seen,
    SegmentKey,
)

_MASK = 0xFFFFFFFF
MAX_LISTED = 20  # segments listed per kind and direction (all are counted)
MAX_DELAY_SAMPLES = 100_000

# Names what a segment at a relative position means for the DICOM conversation:
# (point "near"|"far", the point's connection, direction, timestamp on that point) -> text.
Meaning = Callable[[str, Any, str, float], str]


@dataclass(slots=True)
class Side:
    """One direction of a matched pair, with keys relative to each point's bases."""

    near: dict[SegmentKey, Seen]
    far: dict[SegmentKey, Seen]
    samples: list[float] = field(default_factory=list)  # t_far - t_near, seen once at each


def relative(d: Direction, base: int, peer_base: int) -> dict[SegmentKey, Seen]:
    out: dict[SegmentKey, Seen] = {}
    for (seq, length, control, ack), seen in d.segments.items():
        rel_ack = (ack - peer_base) & _MASK if ack >= 0 else -1
        out[((seq - base) & _MASK, length, control, rel_ack)] = seen
    return out


def sides(match: Match) -> dict[str, Side]:
    """Both directions of a pair made comparable, with their clock samples."""
    bases = {name: match.bases(name) for name in DIRECTIONS}
    out = {}
    for name, other in (("c2s", "s2c"), ("s2c", "c2s")):
        (nb, fb), (npb, fpb) = bases[name], bases[other]
        near = relative(match.near.direction(name), nb, npb)
        far = relative(match.far.direction(name), fb, fpb)
        side = Side(near, far)
        for key, n in near.items():
            f = far.get(key)
            if f is not None and n.count == 1 and f.count == 1:
                side.samples.append(f.first_ts - n.first_ts)
                if len(side.samples) >= MAX_DELAY_SAMPLES:
                    break
        out[name] = side
    return out


def flags_text(control: int, ack: int) -> str:
    names = [n for bit, n in ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST")) if control & bit]
    if ack >= 0:  # kept only for segments without data that carry the ACK flag
        names.append("ACK")
    return ",".join(names) or "-"


@dataclass(frozen=True, slots=True)
class Span:
    """When one point was capturing (on the near point's clock): a segment missing there is
    only missing if it would have passed while the capture ran."""

    start: float
    end: float

    def holds(self, ts: float) -> bool:
        return self.start <= ts <= self.end


# A segment to list: (its key, its record at the point named, that point).
Listed = tuple[SegmentKey, Seen, str]
MAX_RESETS = 100  # resets listed per direction (all are counted)


def diff_direction(
    name: str,
    side: Side,
    near_is_upstream: bool,
    clock: Clock,
    spans: dict[str, Span],
    caps: tuple[float | None, float | None],
    meaning: Meaning,
    match: Match,
) -> dict[str, Any]:
    """The comparison of one direction. ``spans``: when each point captured; ``caps``: when
    each point's cap was reached (near, far), past which nothing is compared."""
    up, down = (side.near, side.far) if near_is_upstream else (side.far, side.near)
    up_name, down_name = ("near", "far") if near_is_upstream else ("far", "near")
    conns = {"near": match.near, "far": match.far}
    far_cap = None if caps[1] is None else clock.to_near(caps[1])
    cuts = [c for c in (caps[0], far_cap) if c is not None]
    cut = min(cuts, default=None)
    delays = _one_way(side, near_is_upstream, clock)
    fastest, slowest = (min(delays), max(delays)) if delays else (0.0, 0.0)
    up_span, down_span = spans[up_name], spans[down_name]
    lost = added = not_compared = 0
    lost_list: list[tuple[Listed, int]] = []
    added_list: list[tuple[Listed, int]] = []
    resets: list[tuple[Listed, str, int]] = []
    changed: list[Listed] = []
    changes: dict[str, list[Any]] = {}  # change -> [segments, first Listed]

    for key in up.keys() | down.keys():
        u, d = up.get(key), down.get(key)
        ref = u or d
        assert ref is not None
        at = ref.first_ts if ref is side.near.get(key) else clock.to_near(ref.first_ts)
        if cut is not None and at >= cut - slowest:
            not_compared += 1  # past a point's cap: that point stopped keeping segments
            continue
        if d is None and not (down_span.holds(at + fastest) and down_span.holds(at + slowest)):
            not_compared += 1  # it would have passed before or after the other capture ran
            continue
        if u is None and not (up_span.holds(at - slowest) and up_span.holds(at - fastest)):
            not_compared += 1
            continue
        gap = (u.count if u else 0) - (d.count if d else 0)
        if gap > 0 and u is not None:
            lost += gap
            lost_list.append(((key, u, up_name), gap))
            if key[2] & RST:
                resets.append(((key, u, up_name), "lost between the points", gap))
        elif gap < 0 and d is not None:
            added -= gap
            added_list.append(((key, d, down_name), -gap))
            if key[2] & RST:
                verdict = (
                    "injected between the points: the sender never sent it"
                    if u is None
                    else "sent more often downstream than upstream"
                )
                resets.append(((key, d, down_name), verdict, -gap))
        elif key[2] & RST and u is not None:
            resets.append(((key, u, up_name), "sent by the endpoint", u.count))
        if u is not None and d is not None and u.count == 1 == d.count:
            # Only one-to-one: two different segments with the same key (ACKs differing
            # only in window or SACK blocks) may be taken in another order at each point.
            _compare((key, u, up_name), d, changed, changes)

    def item(listed: Listed) -> dict[str, Any]:
        key, seen, point = listed
        return {
            "rel_seq": key[0],
            "len": key[1],
            "flags": flags_text(key[2], key[3]),
            "seen_at": point,
            "ts": seen.first_ts,
            "dicom": meaning(point, conns[point], name, seen.first_ts),
        }

    return {
        "upstream": up_name,
        "segments_upstream": sum(s.count for s in up.values()),
        "segments_downstream": sum(s.count for s in down.values()),
        "lost": lost,
        "lost_segments": [item(x) | {"copies_lost": n} for x, n in _earliest(lost_list)],
        "added": added,
        "added_segments": [item(x) | {"copies_added": n} for x, n in _earliest(added_list)],
        "payload_changed": len(changed),
        "payload_changed_segments": [item(x) for x in _earliest(changed, own=True)],
        "option_changes": [
            {"change": text, "segments": n, "first": item(first)}
            for text, (n, first) in sorted(changes.items(), key=lambda c: -c[1][0])
        ],
        "resets": [
            item(x) | {"verdict": verdict, "copies": n}
            for x, verdict, n in _earliest(resets, MAX_RESETS)
        ],
        "delay": _delay(delays),
        "not_compared": not_compared,
        "over_cap": {
            "near": match.near.direction(name).over_cap,
            "far": match.far.direction(name).over_cap,
        },
    }


def _earliest(entries: list, n: int = MAX_LISTED, *, own: bool = False) -> list:
    """The ``n`` entries seen first: each entry is a ``Listed`` (``own``) or a tuple whose
    first element is one."""
    if own:
        return heapq.nsmallest(n, entries, key=lambda e: e[1].first_ts)
    return heapq.nsmallest(n, entries, key=lambda e: e[0][1].first_ts)


def _compare(up: Listed, d: Seen, changed: list[Listed], changes: dict[str, list[Any]]) -> None:
    """Payload and options of one segment seen once at each point."""
    u = up[1]
    if u.digest is not None and d.digest is not None and u.digest != d.digest:
        changed.append(up)
    if u.options is not None and d.options is not None and u.options != d.options:
        for text in option_changes(u.options, d.options):
            entry = changes.get(text)
            if entry is None:
                changes[text] = [1, up]
            else:
                entry[0] += 1
                if u.first_ts < entry[1][1].first_ts:
                    entry[1] = up


def option_changes(up: Options, down: Options) -> list[str]:
    """What a middlebox did to the options, in words: ``MSS 1460 -> 1200``,
    ``window-scale removed``, ``SACK-permitted added``."""
    a, b = dict(up), dict(down)
    out = []
    for kind in sorted(a.keys() | b.keys()):
        name = OPTION_NAMES.get(kind, f"option {kind}")
        if kind not in b:
            out.append(f"{name} removed")
        elif kind not in a:
            out.append(f"{name} added")
        elif a[kind] != b[kind] and kind in (2, 3):
            out.append(f"{name} {a[kind]} -> {b[kind]}")
    if not out and [k for k, _ in up] != [k for k, _ in down]:
        out.append("options reordered")
    return out


def _one_way(side: Side, near_is_upstream: bool, clock: Clock) -> list[float]:
    """The one-way delays between the points (seconds), clock offset removed."""
    if near_is_upstream:
        return [d - clock.offset for d in side.samples]
    return [clock.offset - d for d in side.samples]


def _delay(one_way: list[float]) -> dict[str, Any]:
    delays = sorted(one_way)
    if not delays:
        return {"samples": 0}

    def pick(q: float) -> float:
        return delays[min(len(delays) - 1, int(q * len(delays)))]

    return {
        "samples": len(delays),
        "min_ms": delays[0] * 1000,
        "p50_ms": pick(0.5) * 1000,
        "p95_ms": pick(0.95) * 1000,
        "max_ms": delays[-1] * 1000,
    }

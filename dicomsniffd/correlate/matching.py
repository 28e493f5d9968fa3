"""Which connection at one point is which at the other: matched by their data.

Addresses and ports are no evidence: a NAT between the points rewrites them. What
survives a NAT (and most firewalls) is what the endpoints wrote: the SYN's initial sequence
number, and the payload of the first data segments at their sequence numbers. Each
connection gets a set of tokens:

    ("isn", dir, isn)                       the SYN's (or SYN-ACK's) ISN
    ("abs", dir, seq, length, digest)       the first data segments, absolute seq numbers
    ("rel", dir, seq - isn, length, digest) the same relative to the point's ISN (survives a
                                            firewall that rewrites sequence numbers)

Two connections that share tokens are candidates; an ISN counts for more than a data
segment (two associations of the same SCU with the same files carry the same first bytes,
never the same random ISN). Pairs are taken greedily by score, ties in time order, each
connection at most once. A pair that shares no ISN (a firewall rewrote them, or a capture
started midstream) must also share at least half of the data segments of the smaller one,
else identical first bytes would pair two different associations of the same SCU.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass

from dicomsniffd.correlate.points import Connection, Direction, data_segments

FIRST_SEGMENTS = 4  # data segments per direction used as tokens
_ISN_WEIGHT = 4
_SAMPLE = 256  # data segments of the smaller connection checked for a pair without ISN
_MASK = 0xFFFFFFFF
DIRECTIONS = ("c2s", "s2c")


@dataclass(frozen=True, slots=True)
class Match:
    """A pair of connections, and per direction which sequence bases line them up:
    ``basis[dir]`` is "isn" (each point's own ISN), "absolute" (the numbers as seen) or
    "relative" (each point's first sequence number; both captures started with the same
    segment)."""

    near: Connection
    far: Connection
    score: int
    evidence: tuple[str, ...]  # "ISN", "first data segments", ...
    basis: dict[str, str]

    def bases(self, direction: str) -> tuple[int, int]:
        """(near base, far base) of ``direction``'s sequence numbers."""
        n, f = self.near.direction(direction), self.far.direction(direction)
        how = self.basis[direction]
        if how == "absolute":
            return 0, 0
        return n.base(), f.base()


def tokens(conn: Connection) -> set[Hashable]:
    out: set[Hashable] = set()
    for name in DIRECTIONS:
        d = conn.direction(name)
        if d.isn is not None:
            out.add(("isn", name, d.isn))
        base = d.base()
        for key, seen in _first_data(d, base):
            seq, length = key[0], key[1]
            out.add(("abs", name, seq, length, seen.digest))
            out.add(("rel", name, (seq - base) & _MASK, length, seen.digest))
    return out


def _first_data(d: Direction, base: int) -> list:
    return heapq.nsmallest(
        FIRST_SEGMENTS, data_segments(d), key=lambda item: (item[0][0] - base) & _MASK
    )


def match_connections(
    near: list[Connection], far: list[Connection]
) -> tuple[list[Match], list[Connection], list[Connection]]:
    """(matches in the near point's time order, unmatched near, unmatched far)."""
    far_tokens = [tokens(c) for c in far]
    index: dict[Hashable, list[int]] = defaultdict(list)
    for j, toks in enumerate(far_tokens):
        for tok in toks:
            index[tok].append(j)
    candidates: list[tuple[int, int, int]] = []
    near_tokens = []
    for i, conn in enumerate(near):
        toks = tokens(conn)
        near_tokens.append(toks)
        scores: dict[int, int] = defaultdict(int)
        for tok in toks:
            weight = _ISN_WEIGHT if tok[0] == "isn" else 1  # type: ignore[index]
            for j in index.get(tok, ()):
                scores[j] += weight
        candidates.extend((-score, i, j) for j, score in scores.items())
    candidates.sort()
    taken_near: set[int] = set()
    taken_far: set[int] = set()
    matches: list[Match] = []
    prints: dict[int, tuple[set[int], set[int]]] = {}
    for neg_score, i, j in candidates:
        if i in taken_near or j in taken_far:
            continue
        shared = near_tokens[i] & far_tokens[j]
        by_isn = any(tok[0] == "isn" for tok in shared)  # type: ignore[index]
        if not by_isn and not _plausible(_prints(prints, near[i]), _prints(prints, far[j])):
            continue
        taken_near.add(i)
        taken_far.add(j)
        matches.append(_match(near[i], far[j], -neg_score, shared))
    matches.sort(key=lambda m: m.near.first_ts)
    return (
        matches,
        [c for i, c in enumerate(near) if i not in taken_near],
        [c for j, c in enumerate(far) if j not in taken_far],
    )


def _prints(cache: dict[int, tuple[set[int], set[int]]], conn: Connection):
    """The connection's data segments as hashes: (absolute numbers, relative numbers)."""
    key = id(conn)
    if key not in cache:
        absolute: set[int] = set()
        rel: set[int] = set()
        for name in DIRECTIONS:
            d = conn.direction(name)
            base = d.base()
            for (seq, length, _c, _a), seen in data_segments(d):
                absolute.add(hash((name, seq, length, seen.digest)))
                rel.add(hash((name, (seq - base) & _MASK, length, seen.digest)))
        cache[key] = (absolute, rel)
    return cache[key]


def _plausible(a: tuple[set[int], set[int]], b: tuple[set[int], set[int]]) -> bool:
    """At least half of a sample of the smaller connection's data segments is in the other
    (by absolute or by relative sequence numbers)."""
    for x, y in zip(a, b, strict=True):
        small, big = (x, y) if len(x) <= len(y) else (y, x)
        if not small:
            return True
        sample = list(small)[:_SAMPLE]
        if 2 * sum(1 for h in sample if h in big) >= len(sample):
            return True
    return False


def _match(near: Connection, far: Connection, score: int, shared: set[Hashable]) -> Match:
    kinds = {tok[0] for tok in shared}  # type: ignore[index]
    evidence = []
    if "isn" in kinds:
        evidence.append("ISN")
    if kinds & {"abs", "rel"}:
        evidence.append("first data segments")
    basis = {}
    for name in DIRECTIONS:
        n, f = near.direction(name), far.direction(name)
        by_kind = {tok[0] for tok in shared if tok[1] == name}  # type: ignore[index]
        if n.isn is not None and f.isn is not None:
            basis[name] = "isn"
        elif "abs" in by_kind or "rel" not in by_kind:
            basis[name] = "absolute"
        else:
            basis[name] = "relative"
    return Match(near, far, score, tuple(evidence), basis)

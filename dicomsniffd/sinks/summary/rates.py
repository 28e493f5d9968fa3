"""The effective transfer rate of the objects a command moved: data set bytes ÷ the wall
time during which at least one of its operations was in progress (first packet of a
request to its final response; overlapping operations counted once).

Next to it the summary keeps the per-object on-the-wire rate (``Command.throughput_mbps``:
bytes ÷ the summed per-object transfer times). The two answer different questions: the
wire rate is how fast one object moves once it is sent (the network path), the effective
rate how fast the sender got its objects stored, service times and pauses included (what
the throughput chart shows). Summing per-object times made a 1,168 Mbit/s "throughput"
next to a chart that never passed 100.
"""

from __future__ import annotations

from array import array

from dicomsniffd.names import GET_SUBOPERATION_STORE

# Commands whose data sets are the objects moved: a rate of C-FIND identifiers or N-SET
# attribute lists means nothing (and printed "0.0 Mbit/s" lines).
OBJECT_COMMANDS = frozenset({"C-STORE", GET_SUBOPERATION_STORE})


# Memory: the intervals are merged into their union whenever MAX_SPANS pairs have piled
# up (lossless: overlapping operations are counted once anyway). A day of a busy site still
# has a busy period per quiet gap, so past MAX_SPANS disjoint periods the oldest half is
# summed into a total and forgotten; an operation that began before the last forgotten
# period ended is then counted from that end (it cannot be told which part of it overlapped
# the forgotten periods). Operations arrive in the order they end, so that takes one
# operation longer than ~MAX_SPANS / 2 busy periods; ``clipped`` counts them.
MAX_SPANS = 65_536


class _Spans:
    """One command's intervals: a flat array (start, end, start, end, ...) and what was
    folded out of it."""

    __slots__ = ("pairs", "folded_seconds", "horizon", "clipped")

    def __init__(self) -> None:
        self.pairs = array("d")
        self.folded_seconds = 0.0  # the union of the forgotten periods, in seconds
        self.horizon = float("-inf")  # the end of the last forgotten period
        self.clipped = 0

    def add(self, start: float, end: float) -> None:
        if start < self.horizon:
            self.clipped += 1
            start = self.horizon
            if end <= start:
                return
        pairs = self.pairs
        pairs.append(start)
        pairs.append(end)
        if len(pairs) >= 2 * MAX_SPANS:
            self._compact()

    def _compact(self) -> None:
        merged = _union(self.pairs)
        if len(merged) > MAX_SPANS // 2:  # still many disjoint periods: forget the oldest
            keep = len(merged) - MAX_SPANS // 4
            self.folded_seconds += sum(e - s for s, e in merged[:keep])
            self.horizon = merged[keep - 1][1]
            merged = merged[keep:]
        self.pairs = array("d", [x for pair in merged for x in pair])

    def seconds(self) -> float:
        return self.folded_seconds + sum(e - s for s, e in _union(self.pairs))


def _union(flat: array) -> list[tuple[float, float]]:
    """The disjoint intervals whose union is that of the (start, end) pairs in ``flat``."""
    pairs = sorted(zip(flat[::2], flat[1::2], strict=True))
    out: list[tuple[float, float]] = []
    for start, end in pairs:
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


class BusyTime:
    """Per command, the (start, end) intervals of its operations that carried data, kept
    as their union (bounded: see MAX_SPANS)."""

    __slots__ = ("_intervals", "_bytes")

    def __init__(self) -> None:
        self._intervals: dict[str, _Spans] = {}
        self._bytes: dict[str, int] = {}

    def add(self, command: str, start: float, end: float, nbytes: int) -> None:
        if command not in OBJECT_COMMANDS or end < start:
            return
        spans = self._intervals.get(command)
        if spans is None:
            spans = self._intervals[command] = _Spans()
        spans.add(start, end)
        self._bytes[command] = self._bytes.get(command, 0) + nbytes

    def seconds(self, command: str) -> float:
        """Wall time with at least one operation of ``command`` in progress."""
        spans = self._intervals.get(command)
        return spans.seconds() if spans is not None else 0.0

    def effective_mbps(self, command: str) -> float | None:
        seconds = self.seconds(command)
        if seconds <= 0:
            return None
        return round(self._bytes.get(command, 0) * 8 / seconds / 1e6, 3)

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


class BusyTime:
    """Per command, the (start, end) intervals of its operations that carried data."""

    __slots__ = ("_intervals", "_bytes")

    def __init__(self) -> None:
        self._intervals: dict[str, array] = {}
        self._bytes: dict[str, int] = {}

    def add(self, command: str, start: float, end: float, nbytes: int) -> None:
        if command not in OBJECT_COMMANDS or end < start:
            return
        spans = self._intervals.get(command)
        if spans is None:
            spans = self._intervals[command] = array("d")
        spans.append(start)
        spans.append(end)
        self._bytes[command] = self._bytes.get(command, 0) + nbytes

    def seconds(self, command: str) -> float:
        """Wall time with at least one operation of ``command`` in progress."""
        spans = self._intervals.get(command)
        if not spans:
            return 0.0
        pairs = sorted(zip(spans[::2], spans[1::2], strict=True))
        total = 0.0
        cur_start, cur_end = pairs[0]
        for start, end in pairs[1:]:
            if start > cur_end:
                total += cur_end - cur_start
                cur_start, cur_end = start, end
            elif end > cur_end:
                cur_end = end
        return total + cur_end - cur_start

    def effective_mbps(self, command: str) -> float | None:
        seconds = self.seconds(command)
        if seconds <= 0:
            return None
        return round(self._bytes.get(command, 0) * 8 / seconds / 1e6, 3)

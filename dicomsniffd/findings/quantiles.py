"""Timing distributions whose memory does not grow with the capture: exact up to a number
of samples, then a DDSketch (the ``ddsketch`` library, DataDog's reference implementation
of Masson, Rim & Lee, "DDSketch: a fast and fully-mergeable quantile sketch with
relative-error guarantees", VLDB 2019).

Why DDSketch rather than a t-digest: its error is a guarantee that can be printed next to
the number -- every quantile it returns is within ``RELATIVE_ERROR`` (1 %) of the value of
the sample at that rank, whatever the distribution -- while a t-digest's error depends on
the data and has no bound to state. Timings span six decades (a C-ECHO in 0.1 ms, a
stalled C-MOVE in minutes): relative error is the right kind, and the sketch's size grows
only with the logarithm of the range (about 700 one-percent bins from 0.01 ms to an hour).

The count, sum, minimum and maximum stay exact in every mode.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable
from itertools import repeat
from typing import Any

from ddsketch import DDSketch, LogarithmicMapping

RELATIVE_ERROR = 0.01  # of every quantile of a sketched distribution (DDSketch's guarantee)
EXACT_LIMIT = 20_000  # samples kept exactly before a distribution becomes a sketch
_FLUSH = 2_048  # once sketched: samples buffered before they are bucketed in one pass

# The mapping DDSketch uses for this accuracy (its default, LogarithmicMapping): the batch
# path below buckets values with it and adds each bucket's representative value with its
# count as the weight, which lands in the same bucket as adding every value one by one
# (tests/test_quantiles.py checks this) at about half the cost per value.
_MAPPING = LogarithmicMapping(RELATIVE_ERROR)
_KEY = _MAPPING.key
_VALUE = _MAPPING.value
_SMALLEST = _MAPPING.min_possible


class Distribution:
    """Samples of one timing (ms): ``append`` them, read ``percentiles()``.

    Up to ``exact_limit`` samples are kept as they are (``array('d')``, 8 bytes each) and
    the percentiles are exact, as before; beyond that the samples go into a DDSketch with
    ``RELATIVE_ERROR`` and the percentiles say so (``relative_error`` in their dict).

    A hot caller may append to ``buffer`` directly (a C call, no Python method) and call
    ``compact()`` now and then: memory is then bounded by what it appends in between.
    """

    __slots__ = ("buffer", "_limit", "_sketch", "count", "total", "max")

    def __init__(self, exact_limit: int = EXACT_LIMIT) -> None:
        self.buffer = array("d")  # the samples not in the sketch (all of them while exact)
        self._limit = max(exact_limit, 1)
        self._sketch: DDSketch | None = None
        self.count = 0  # samples flushed into the sketch (see __len__ for all)
        self.total = 0.0  # their sum
        self.max = float("-inf")

    def append(self, value: float) -> None:
        buffer = self.buffer
        buffer.append(value)
        if len(buffer) >= self._limit:
            self._flush()

    def compact(self) -> None:
        """Bucket the buffered samples into the sketch once they reach the limit."""
        if len(self.buffer) >= self._limit:
            self._flush()

    def extend(self, values: Iterable[float]) -> None:
        for value in values:
            self.append(value)

    def __len__(self) -> int:
        return self.count + len(self.buffer)

    @property
    def exact(self) -> bool:
        """True while every sample is kept (no sketch yet): the percentiles are exact."""
        return self._sketch is None

    def sum(self) -> float:
        """The exact sum of all samples."""
        return self.total + sum(self.buffer)

    def values(self) -> list[float]:
        """Every sample when exact; else one value per sample, each its bucket's value
        (within ``RELATIVE_ERROR``), for histograms with coarser bins than the sketch's."""
        if self._sketch is None:
            return list(self.buffer)
        self._flush()
        out: list[float] = []
        sketch = self._sketch
        if sketch._zero_count:  # no public iterator over the buckets
            out.extend(repeat(0.0, int(sketch._zero_count)))
        store = sketch._store
        for index, n in enumerate(store.bins):
            if n:
                out.extend(repeat(_VALUE(index + store.offset), int(n)))
        return out

    def percentiles(self) -> dict[str, Any]:
        """{count, p50, p95, p99, max}, plus ``relative_error`` once sketched."""
        if self._sketch is None:
            return percentiles(self.buffer)
        self._flush()
        sketch = self._sketch
        out: dict[str, Any] = {"count": self.count}
        for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
            value = sketch.get_quantile_value(q)
            out[name] = round(min(value, self.max), 3) if value is not None else None
        out["max"] = round(self.max, 3)
        out["relative_error"] = RELATIVE_ERROR
        return out

    def _flush(self) -> None:
        buffer = self.buffer
        if not buffer:
            return
        sketch = self._sketch
        if sketch is None:
            sketch = self._sketch = DDSketch(RELATIVE_ERROR)
            self._limit = _FLUSH
        self.count += len(buffer)
        self.total += sum(buffer)
        self.max = max(self.max, max(buffer))
        positive = [v for v in buffer if v > _SMALLEST]
        for key, n in Counter(map(_KEY, positive)).items():
            sketch.add(_VALUE(key), n)
        if len(positive) < len(buffer):
            for value in buffer:
                if value <= _SMALLEST:  # zero and negative: the sketch's own buckets
                    sketch.add(value)
        del buffer[:]


def percentiles(samples: Iterable[float] | Distribution) -> dict[str, Any]:
    """{count, p50, p95, p99, max} with linear interpolation between closest ranks (a
    ``Distribution`` gives its own: exact, or from its sketch with ``relative_error``)."""
    if isinstance(samples, Distribution):
        return samples.percentiles()
    values = sorted(samples)
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}

    def at(q: float) -> float:
        pos = q * (len(values) - 1)
        low = int(pos)
        high = min(low + 1, len(values) - 1)
        return round(values[low] + (values[high] - values[low]) * (pos - low), 3)

    return {
        "count": len(values),
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(values[-1], 3),
    }

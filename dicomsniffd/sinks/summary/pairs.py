"""The per-AE-pair rollup of the ``analyze`` summary: for each calling → called AE pair,
its associations, objects (C-STORE requests), failed responses and the p95 of each DIMSE
timing phase (``Summary.to_dict()["pairs"]``, the "By AE pair" table of the text).

The timings are ``Distribution``s with a smaller exact limit than the per-command ones
(a site may have hundreds of pairs): beyond it, a DDSketch with 1 % relative error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomsniffd.findings.facts import TIMINGS, percentiles
from dicomsniffd.findings.quantiles import Distribution

Pair = tuple[str, str]
PAIR_EXACT_LIMIT = 1_000  # samples per pair and phase kept exactly


class PairTimings:
    """Objects and timing samples (ms) of one AE pair, filled while the capture replays."""

    __slots__ = ("objects", "samples", "buffers")

    def __init__(self) -> None:
        self.objects = 0
        self.samples = {name: Distribution(PAIR_EXACT_LIMIT) for name in TIMINGS}
        self.buffers = {name: d.buffer for name, d in self.samples.items()}  # see Command


def rollup(
    assocs: Mapping[Pair, int],
    timings: Mapping[Pair, PairTimings],
    failures: Mapping[tuple[str, int, str, str], int],
) -> list[dict[str, Any]]:
    """One dict per AE pair (``assocs``: the exact association count of each), the pairs
    with failures first, then the busiest."""
    failed: dict[Pair, int] = {}
    for (_command, _status, calling, called), n in failures.items():
        failed[(calling, called)] = failed.get((calling, called), 0) + n
    rows = []
    for key in set(assocs) | set(timings) | set(failed):
        pair = timings.get(key)
        row: dict[str, Any] = {
            "calling_ae": key[0],
            "called_ae": key[1],
            "associations": assocs.get(key, 0),
            "objects": pair.objects if pair is not None else 0,
            "failures": failed.get(key, 0),
        }
        for name in TIMINGS:
            row[name] = percentiles(pair.samples[name] if pair is not None else ())
        rows.append(row)
    rows.sort(key=lambda r: (-r["failures"], -r["associations"], r["calling_ae"], r["called_ae"]))
    return rows

"""The association records the ``analyze`` summary keeps: a bounded set, whatever the
number of associations in the capture, with exact totals over all of them.

A record is decided on when its association has ended: it is counted in the totals
(``findings.facts.AssociationTotals``), then kept if it has a problem (the worst
``problem_cap`` of those, by ``formatting.problem_score``; SOP classes refused count as
a problem of weight 1 here) or if it falls in a uniform random sample of the others
(reservoir sampling, Vitter's algorithm R, ``sample_cap`` records, a fixed seed so the
same capture gives the same output). Findings count from the totals and cite flows from
the kept records; the outputs say "showing N of M" when records were left out.
"""

from __future__ import annotations

import heapq
import random

from dicomsniffd.findings.facts import Association, AssociationTotals, refused_contexts
from dicomsniffd.formatting import problem_score

PROBLEM_CAP = 5_000  # problem associations kept, the worst first
SAMPLE_CAP = 5_000  # other associations kept, a uniform sample


class KeptAssociations:
    """Bounded association records plus exact totals (see the module docstring)."""

    def __init__(
        self, problem_cap: int = PROBLEM_CAP, sample_cap: int = SAMPLE_CAP, seed: int = 0
    ) -> None:
        self.totals = AssociationTotals()
        self.problem_cap = problem_cap
        self.sample_cap = sample_cap
        self._problems: list[tuple[int, int, Association]] = []  # min-heap: (score, -seq, a)
        self._sample: list[Association] = []
        self._others = 0  # associations without a problem seen so far
        self._seq = 0
        self._rng = random.Random(seed)
        self._sorted: list[Association] | None = None  # records(), until the next add

    def add(self, a: Association) -> None:
        """Count one ended association and keep its record or not."""
        if not (a.dicom_seen or any(a.pdata.values())):
            return  # a connection without DICOM: not an association
        self._sorted = None
        refused = refused_contexts(a)
        fields = a.problem_fields()
        score = a.problem_score = problem_score(fields, a.protocol_errors)
        self.totals.add(a, score > 0, refused, fields)
        self._seq += 1
        if score or refused[1]:
            self._keep_problem((score * 2 + bool(refused[1]), -self._seq, a))
        else:
            self._keep_sampled(a)

    def _keep_problem(self, item: tuple[int, int, Association]) -> None:
        heap = self._problems
        if len(heap) < self.problem_cap:
            heapq.heappush(heap, item)
        elif self.problem_cap and item[:2] > heap[0][:2]:  # worse than the mildest kept
            heapq.heapreplace(heap, item)

    def _keep_sampled(self, a: Association) -> None:
        self._others += 1
        if len(self._sample) < self.sample_cap:
            self._sample.append(a)
            return
        slot = self._rng.randrange(self._others)
        if slot < self.sample_cap:
            self._sample[slot] = a

    def records(self) -> list[Association]:
        """The kept records in start time order (sorted once: the outputs ask for them
        several times after the last add)."""
        if self._sorted is None:
            kept = [item[2] for item in self._problems] + self._sample
            self._sorted = sorted(kept, key=lambda a: (a.start_ts or 0.0, a.flow_id))
        return list(self._sorted)

    def __len__(self) -> int:
        return len(self._problems) + len(self._sample)

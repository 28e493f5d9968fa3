"""quantiles.Distribution: exact percentiles up to its limit, a DDSketch with a stated
relative error beyond it; count, sum and max always exact."""

from __future__ import annotations

import random

from ddsketch import DDSketch

from dicomsniffd.findings.quantiles import RELATIVE_ERROR, Distribution, percentiles


def _exact_at_rank(values: list[float], q: float) -> float:
    """The sample at rank q·(n-1), DDSketch's definition of the q-quantile."""
    return sorted(values)[int(q * (len(values) - 1))]


def test_below_its_limit_a_distribution_is_exact_as_before() -> None:
    values = [float(v) for v in range(1, 101)]
    d = Distribution(exact_limit=1_000)
    d.extend(values)
    assert d.exact and len(d) == 100 and d.sum() == 5050.0
    assert d.percentiles() == percentiles(values)
    assert "relative_error" not in d.percentiles()
    assert d.values() == values


def test_beyond_its_limit_every_quantile_is_within_the_stated_error() -> None:
    rng = random.Random(7)
    # six decades, as DICOM timings (a C-ECHO in 0.1 ms, a stalled C-MOVE in minutes)
    values = [rng.lognormvariate(2.0, 2.5) for _ in range(60_000)] + [0.0] * 50
    d = Distribution(exact_limit=5_000)
    for v in values:
        d.append(v)
    p = d.percentiles()
    assert not d.exact
    assert p["relative_error"] == RELATIVE_ERROR == 0.01
    assert p["count"] == len(values) == len(d)
    assert p["max"] == round(max(values), 3)
    assert abs(d.sum() - sum(values)) < 1e-6 * sum(values)
    for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        exact = _exact_at_rank(values, q)
        assert abs(p[name] - exact) <= RELATIVE_ERROR * exact + 0.001, (name, p[name], exact)


def test_the_batch_path_gives_the_sketch_of_adding_every_value() -> None:
    rng = random.Random(3)
    values = [rng.expovariate(0.02) for _ in range(30_000)]
    d = Distribution(exact_limit=1)  # sketched from the first value: every flush batched
    d.extend(values)
    one_by_one = DDSketch(RELATIVE_ERROR)
    for v in values:
        one_by_one.add(v)
    d.percentiles()  # flushes the last batch
    for q in (0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999):
        want = one_by_one.get_quantile_value(q)
        got = d._sketch.get_quantile_value(q)  # the same bucket, so the same value
        assert abs(got - want) < 1e-9 * want, q


def test_values_of_a_sketch_fall_in_their_samples_buckets() -> None:
    values = [0.0, 0.5, 1.0, 2.0, 3.0, 250.0, 250.0, 9000.0]
    d = Distribution(exact_limit=2)
    d.extend(values)
    got = d.values()
    assert len(got) == len(values)
    for v, g in zip(sorted(values), sorted(got), strict=True):
        assert abs(g - v) <= RELATIVE_ERROR * v + 1e-12


def test_memory_does_not_grow_with_the_samples() -> None:
    d = Distribution(exact_limit=1_000)
    rng = random.Random(1)
    for _ in range(200_000):
        d.append(rng.lognormvariate(3.0, 1.0))
    assert len(d.buffer) < 2_100  # the flush buffer, not the samples
    assert len(d._sketch._store.bins) < 1_500  # bins of 1 %: log-range, not count

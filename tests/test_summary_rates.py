"""The two throughput figures (dicomsniffd/sinks/summary/rates.py), each meaning one thing."""

from __future__ import annotations

import pytest
from sink_fakes import Flow
from summary_fakes import capture_info, store

from dicomsniffd.sinks.summary import Summary
from dicomsniffd.sinks.summary.rates import BusyTime


def test_busy_time_counts_overlapping_operations_once() -> None:
    busy = BusyTime()
    busy.add("C-STORE", 10.0, 11.0, 1)
    busy.add("C-STORE", 10.5, 12.0, 1)  # overlaps the first (two associations in parallel)
    busy.add("C-STORE", 20.0, 20.5, 1)  # after a pause: the pause is not counted
    busy.add("C-FIND", 0.0, 100.0, 1)  # identifiers are not objects: no rate at all
    assert busy.seconds("C-STORE") == pytest.approx(2.5)
    assert busy.effective_mbps("C-FIND") is None


def test_effective_and_per_object_rates() -> None:
    """Ten 1 MB objects, each 0.1 s on the wire and 0.4 s of service, back to back: on the
    wire 80 Mbit/s, effective 16 Mbit/s (what the chart shows); an echo gets no rate."""
    s = Summary()
    flow = Flow()
    for i in range(10):
        t = 100.0 + 0.5 * i
        s.handle(
            store(
                transfer=0.1,
                latency=0.4,
                message_id=i + 1,
                request_ts=t,
                request_complete_ts=t + 0.1,
                response_ts=t + 0.5,
                response_complete_ts=t + 0.5,
                final_response_ts=t + 0.5,
            ),
            flow,
        )
    s.handle(store(command="C-ECHO", request_dataset_bytes=0, transfer=0.0), flow)
    dimse = s.to_dict(capture_info())["dimse"]
    assert dimse["C-STORE"]["throughput_mbps"] == pytest.approx(80.0)
    assert dimse["C-STORE"]["effective_mbps"] == pytest.approx(16.0)
    assert dimse["C-ECHO"]["throughput_mbps"] is None
    assert dimse["C-ECHO"]["effective_mbps"] is None
    text = s.render_text(capture_info())
    assert "effective 16.0 Mbit/s, per object on the wire 80.0 Mbit/s" in text
    assert "C-ECHO (upload)" not in text


def _naive_union_seconds(intervals: list[tuple[float, float]]) -> float:
    """The union's length by brute force over a 1 ms grid (intervals on whole ms)."""
    covered = set()
    for s, e in intervals:
        covered.update(range(round(s * 1000), round(e * 1000)))
    return len(covered) / 1000


def test_busy_time_stays_exact_when_its_intervals_are_merged(monkeypatch) -> None:
    # Merging the stored intervals into their union (whenever MAX_SPANS pieced up) loses
    # nothing: 2,000 overlapping operations of 10 parallel senders, in the order they end.
    from dicomsniffd.sinks.summary import rates

    monkeypatch.setattr(rates, "MAX_SPANS", 64)
    busy = BusyTime()
    ops = []
    for i in range(2_000):
        start = (i // 10) * 0.3 + (i % 10) * 0.011 + (2.0 if i >= 1_000 else 0.0)
        ops.append((round(start, 3), round(start + 0.25 + (i % 7) * 0.01, 3)))
    for s, e in sorted(ops, key=lambda op: op[1]):
        busy.add("C-STORE", s, e, 1)
    assert busy.seconds("C-STORE") == pytest.approx(_naive_union_seconds(ops), abs=1e-6)
    spans = busy._intervals["C-STORE"]
    assert len(spans.pairs) < 2 * 64 and spans.clipped == 0


def test_busy_time_memory_is_bounded_on_a_day_of_separate_operations(monkeypatch) -> None:
    # Every operation alone (a quiet gap before the next): the union cannot shrink, so the
    # oldest periods are summed and forgotten. The total stays exact; one operation that
    # began before the forgotten periods ended is counted from their end, and counted.
    from dicomsniffd.sinks.summary import rates

    monkeypatch.setattr(rates, "MAX_SPANS", 64)
    busy = BusyTime()
    for i in range(10_000):
        busy.add("C-STORE", i * 1.0, i * 1.0 + 0.5, 1)
        assert len(busy._intervals["C-STORE"].pairs) < 2 * 64
    assert busy.seconds("C-STORE") == pytest.approx(5_000.0)
    busy.add("C-STORE", 0.25, 10_000.25, 1)  # began long ago, ends now
    spans = busy._intervals["C-STORE"]
    assert spans.clipped == 1
    # exact: 10,000.25 s; counted: the forgotten periods (each 0.5 s, up to the horizon,
    # one ending there) and everything from the horizon on
    h = spans.horizon
    assert h > 5_000
    assert busy.seconds("C-STORE") == pytest.approx((h + 0.5) * 0.5 + 10_000.25 - h)

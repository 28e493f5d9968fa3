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

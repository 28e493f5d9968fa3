"""The interoperability findings (findings/interop.py) from sink events: thresholds and
wording (real traffic: tests/test_interop_real.py)."""

from __future__ import annotations

from sink_fakes import Flow
from summary_fakes import codes, feed_store, good_association

from dicomsniffd.dicom.events import DimseRequestSeen, DimseResponseSeen
from dicomsniffd.sinks.summary import Summary

ECHO = "1.2.840.10008.1.1"


def test_single_store_associations_below_the_threshold_say_nothing() -> None:
    summary = Summary()
    for n in range(4):
        good_association(summary, Flow(flow_id=n + 1))
    assert "one-association-per-object" not in codes(summary)


def test_single_store_associations_as_a_pattern() -> None:
    summary = Summary()
    for n in range(5):
        good_association(summary, Flow(flow_id=n + 1))
    good_association(summary, Flow(flow_id=9), n=20)  # one association of many: fine
    finding = codes(summary)["one-association-per-object"]
    (line,) = finding["evidence"]
    # 3 s each (RQ 100.0 -> end 103.0), of which the C-STORE took 0.15 s
    assert line.startswith("MODALITY → PACS: 5 of 6 associations (83 %)")
    assert "each spent 2.9 s outside its C-STORE" in line
    assert "A-ASSOCIATE-RQ → AC 10 ms" in line


def _echo(summary: Summary, flow: Flow) -> None:
    summary.handle(DimseRequestSeen(101.0, "requestor", "C-ECHO", ECHO, 1, 1), flow)
    summary.handle(DimseResponseSeen(101.1, "acceptor", "C-ECHO", 0, "success", 1, 1), flow)


def test_partial_service_needs_a_working_service_next_to_a_failing_one() -> None:
    summary = Summary()
    flow = Flow()
    good_association(summary, flow, status=0xA700)  # only failures: dimse-failures' job
    assert "partial-service" not in codes(summary)
    _echo(summary, flow)
    finding = codes(summary)["partial-service"]
    assert finding["evidence"] == [
        "MODALITY → PACS: works: C-ECHO (1); fails: C-STORE: 0xA700 Refused: out of resources ×1"
    ]


def test_partial_service_ignores_a_service_that_also_succeeds() -> None:
    summary = Summary()
    flow = Flow()
    good_association(summary, flow)
    feed_store(summary, flow, status=0xA700)
    _echo(summary, flow)
    assert "partial-service" not in codes(summary)

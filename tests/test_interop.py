"""The interoperability findings (findings/interop.py) from sink events: thresholds and
wording (real traffic: tests/test_interop_real.py)."""

from __future__ import annotations

from sink_fakes import Flow
from summary_fakes import CT, accepted, codes, feed_store, good_association, requested

from dicomsniffd.dicom.events import (
    Aborted,
    AssociationEnded,
    DimseRequestSeen,
    DimseResponseSeen,
    PresentationContext,
    ProtocolError,
)
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


def _compressed_refused(summary: Summary, flow: Flow, *, request: bool) -> None:
    jpeg, evle = "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.1"
    proposed = (
        PresentationContext(1, CT, (jpeg,)),
        PresentationContext(3, CT, (evle,)),
    )
    answered = (
        PresentationContext(1, CT, (jpeg,), 4, ""),
        PresentationContext(3, CT, (evle,), 0, evle),
    )
    summary.handle(requested(proposed), flow)
    summary.handle(accepted(answered), flow)
    if request:
        feed_store(summary, flow, context_id=3)
    summary.handle(Aborted(100.5, "requestor", "service-user", "not-specified", 0, 0), flow)
    summary.handle(AssociationEnded(100.5, "aborted", 0.5), flow)


def test_an_scu_giving_up_after_its_transfer_syntax_was_refused() -> None:
    summary = Summary()
    _compressed_refused(summary, Flow(), request=False)
    found = codes(summary)
    assert "aborts" not in found
    (line,) = found["no-context-for-transfer-syntax"]["evidence"]
    assert line == (
        "flow 1 MODALITY → PACS: CT Image Storage as JPEG Lossless, Non-Hierarchical, "
        "First-Order Prediction (Process 14 [Selection Value 1]) refused, accepted only as "
        "Explicit VR Little Endian; then no request, A-ABORT from the SCU after 500 ms"
    )


def test_a_refused_syntax_is_no_finding_when_the_scu_went_on() -> None:
    summary = Summary()
    _compressed_refused(summary, Flow(), request=True)
    found = codes(summary)
    assert "no-context-for-transfer-syntax" not in found
    assert "aborts" in found


def test_plain_request_answered_with_a_tls_record() -> None:
    """The framer reads a TLS alert (0x15 0x03 …) as PDU type 0x15 (pdu.py's detail)."""
    summary = Summary()
    flow = Flow()
    summary.handle(requested(), flow)
    summary.handle(ProtocolError(100.1, "acceptor", "bad-pdu-type", "PDU type 0x15"), flow)
    summary.handle(AssociationEnded(100.2, "closed", 0.2), flow)
    (line,) = codes(summary)["plain-to-tls-port"]["evidence"]
    assert line == (
        "flow 1 MODALITY → PACS to 10.9.9.9:104: A-ASSOCIATE-RQ answered with a TLS record "
        "(first byte 0x15)"
    )

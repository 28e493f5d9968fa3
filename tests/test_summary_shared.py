"""Summary records share what is the same for many associations (the speed work of issue
15): sharing must never let one association's facts show up on another."""

from __future__ import annotations

from sink_fakes import Flow
from summary_fakes import EXPLICIT_LE, accepted, capture_info, requested

from dicomsniffd.dicom.events import PresentationContext
from dicomsniffd.findings.facts import Association, refused_contexts
from dicomsniffd.sinks.summary import Summary

CONTEXTS = (PresentationContext(1, "1.2.840.10008.1.1", (EXPLICIT_LE,), 0, EXPLICIT_LE),)


def _two_associations(summary: Summary) -> tuple[Flow, Flow]:
    first, second = Flow(flow_id=1), Flow(flow_id=2)
    for flow in (first, second):
        summary.handle(requested(CONTEXTS), flow)
        summary.handle(accepted(CONTEXTS), flow)
    return first, second


def test_tcp_events_of_one_association_are_not_counted_on_another() -> None:
    summary = Summary()
    first, second = _two_associations(summary)
    summary.tcp_event("retransmission", "requestor", first)
    summary.tcp_event("reset", "acceptor", first)
    summary.tcp_event("zero-window", "acceptor", second)
    rows = {a["flow_id"]: a for a in summary.to_dict(capture_info())["associations"]}
    assert (rows[1]["retransmissions"], rows[1]["resets"], rows[1]["zero_windows"]) == (1, 1, 0)
    assert (rows[2]["retransmissions"], rows[2]["resets"], rows[2]["zero_windows"]) == (0, 0, 1)
    # and a fresh record still counts nothing
    fresh = Association(Flow(flow_id=3))
    assert dict(fresh.retransmissions) == dict(fresh.resets) == {"requestor": 0, "acceptor": 0}


def test_associations_of_one_negotiation_report_the_same_contexts() -> None:
    summary = Summary()
    _two_associations(summary)
    first, second = summary.to_dict(capture_info())["associations"]
    assert first["presentation_contexts"] == second["presentation_contexts"]
    assert first["presentation_contexts"][0]["abstract_syntax_name"] == "Verification SOP Class"


def test_refused_contexts_follow_each_association_not_the_first_asked() -> None:
    refused = (PresentationContext(1, "1.2.840.10008.1.1", (EXPLICIT_LE,), 3, ""),)
    ok, bad = Association(Flow(flow_id=1)), Association(Flow(flow_id=2))
    ok.accepted = bad.accepted = True
    ok.contexts, bad.contexts = CONTEXTS, refused
    assert refused_contexts(ok) == (False, {})
    none_accepted, by_class = refused_contexts(bad)
    assert none_accepted
    assert by_class == {
        "1.2.840.10008.1.1": ({"Explicit VR Little Endian"}, "abstract-syntax-not-supported")
    }
    assert refused_contexts(ok) == (False, {})  # asked again: still its own answer

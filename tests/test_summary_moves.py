"""C-MOVE linked to its sub-association (dicomsniffd/sinks/summary/moves.py), with the
Summary sink fed events by hand: which association is the C-MOVE's, and when none is."""

from __future__ import annotations

from sink_fakes import Flow
from summary_fakes import capture_info, store

from dicomsniffd.dicom.events import AssociationRequested, DimseRequestSeen, UserInformation
from dicomsniffd.sinks.summary import Summary

CT = "1.2.840.10008.5.1.4.1.1.2"
MOVE = "1.2.840.10008.5.1.4.1.2.1.2"


def _requested(summary: Summary, flow: Flow, ts: float) -> None:
    summary.handle(
        AssociationRequested(ts, flow.calling_ae, flow.called_ae, "", (), UserInformation()),
        flow,
    )


def _move(summary: Summary, flow: Flow, ts: float, end: float, dest: str = "STORE") -> None:
    summary.handle(DimseRequestSeen(ts, "requestor", "C-MOVE", MOVE, 1, 1), flow)
    summary.handle(
        store(
            command="C-MOVE",
            sop_class_uid=MOVE,
            request_ts=ts,
            response_complete_ts=end,
            move_destination=dest,
            suboperations_completed=2,
            suboperations_failed=1,
            suboperations_warning=0,
        ),
        flow,
    )


def test_the_move_finds_the_association_the_scp_opened_to_its_destination() -> None:
    s = Summary()
    mover = Flow(flow_id=1, calling_ae="WS", called_ae="QR")
    earlier = Flow(flow_id=2, calling_ae="QR", called_ae="STORE")  # before the C-MOVE-RQ
    other_ae = Flow(flow_id=3, calling_ae="OTHER", called_ae="STORE")  # same time, wrong SCP
    sub = Flow(flow_id=4, calling_ae="QR", called_ae="STORE")
    _requested(s, mover, 100.0)
    _requested(s, earlier, 99.0)
    _requested(s, other_ae, 100.2)
    _requested(s, sub, 100.5)
    s.handle(DimseRequestSeen(101.25, "requestor", "C-STORE", CT, 1, 1), sub)
    s.handle(DimseRequestSeen(101.5, "requestor", "C-STORE", CT, 1, 2), sub)
    _move(s, mover, 100.1, 130.0)
    (move,) = s.to_dict(capture_info())["moves"]
    assert (move["move_destination"], move["completed"], move["failed"]) == ("STORE", 2, 1)
    linked = move["sub_association"]
    assert linked["flow_id"] == 4
    assert linked["opened_after_s"] == 0.4
    assert linked["first_store_after_s"] == 1.15
    text = " ".join(s.render_text(capture_info()).split())  # wrapped lines joined
    assert "flow 1 WS → QR, to STORE: 0x0000; completed 2, failed 1, warning 0" in text
    assert "first C-STORE after 1150.0 ms" in text


def test_no_sub_association_in_the_capture_is_said_so() -> None:
    s = Summary()
    mover = Flow(flow_id=1, calling_ae="WS", called_ae="QR")
    late = Flow(flow_id=2, calling_ae="QR", called_ae="STORE")  # after the final response
    _requested(s, mover, 100.0)
    _requested(s, late, 140.0)
    _move(s, mover, 100.1, 130.0)
    (move,) = s.to_dict(capture_info())["moves"]
    assert move["sub_association"] is None
    text = " ".join(s.render_text(capture_info()).split())
    assert "no association to the destination in this capture" in text


def test_the_report_lists_the_move_and_its_sub_association() -> None:
    from dicomsniffd.sinks.report import render_report

    s = Summary()
    mover = Flow(flow_id=1, calling_ae="WS", called_ae="QR")
    sub = Flow(flow_id=4, calling_ae="QR", called_ae="STORE")
    _requested(s, mover, 100.0)
    _requested(s, sub, 100.5)
    s.handle(DimseRequestSeen(101.25, "requestor", "C-STORE", CT, 1, 1), sub)
    _move(s, mover, 100.1, 130.0)
    html = render_report(s, capture_info())
    assert "<section id='moves'>" in html
    assert "sub-association flow 4 QR → STORE" in html

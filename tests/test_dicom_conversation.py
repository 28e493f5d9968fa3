"""DIMSE correlation, timings (DESIGN §3), gaps, resync and caps of DicomConversation."""

from __future__ import annotations

import struct

import pytest
from test_dicom_streams import (
    CT,
    FIND_STUDY,
    GET_STUDY,
    MOVE_STUDY,
    VERIFICATION,
    associate_ac,
    associate_rq,
    dimse,
    feed_all,
)

from dicomsniffd.dicom.acse import AssociateDecoder
from dicomsniffd.dicom.conversation import DicomConversation
from dicomsniffd.dicom.events import (
    DimseRequestSeen,
    DimseResponseSeen,
    DimseTransaction,
    ProtocolError,
    Resynchronised,
)
from dicomsniffd.dicom.transactions import COMMAND_MEMO_ENTRIES


def _assoc(conv, contexts=((1, CT, ("1.2.840.10008.1.2.1",)),), ts=0.0):
    results = tuple((c[0], 0, c[2][0]) for c in contexts)
    feed_all(
        conv, [(0, associate_rq(contexts=contexts), ts), (1, associate_ac(results=results), ts)]
    )


def _of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def _store_rq(mid=7, dataset=b"\x10\x00" * 30000, max_pdu=16382):
    return dimse(
        "C_STORE_RQ",
        MessageID=mid,
        AffectedSOPClassUID=CT,
        AffectedSOPInstanceUID="1.2.3.4.5",
        Priority=0,
        dataset=dataset,
        max_pdu=max_pdu,
    )


def _store_rsp(mid=7, status=0x0000, **kw):
    return dimse(
        "C_STORE_RSP",
        MessageIDBeingRespondedTo=mid,
        AffectedSOPClassUID=CT,
        AffectedSOPInstanceUID="1.2.3.4.5",
        Status=status,
        **kw,
    )


def test_c_echo():
    conv = DicomConversation()
    _assoc(conv, ((1, VERIFICATION, ("1.2.840.10008.1.2",)),))
    rq = dimse("C_ECHO_RQ", MessageID=3, AffectedSOPClassUID=VERIFICATION)
    rsp = dimse(
        "C_ECHO_RSP", MessageIDBeingRespondedTo=3, AffectedSOPClassUID=VERIFICATION, Status=0
    )
    ev = feed_all(conv, [(0, rq[0], 1.0), (1, rsp[0], 1.004)])
    assert ev[0] == DimseRequestSeen(1.0, "requestor", "C-ECHO", VERIFICATION, 1, 3)
    assert ev[1] == DimseResponseSeen(1.004, "acceptor", "C-ECHO", 0, "success", 1, 3)
    t = ev[2]
    assert (t.command, t.status, t.status_class, t.outcome, t.complete) == (
        "C-ECHO",
        0,
        "success",
        "answered",
        True,
    )
    assert t.request_transfer_seconds == 0.0
    assert t.response_latency_seconds == pytest.approx(0.004)
    assert t.response_transfer_seconds == 0.0  # one packet
    assert t.duration_seconds == pytest.approx(0.004)


def test_c_store_multi_fragment_exact_timings():
    conv = DicomConversation()
    _assoc(conv)
    rq = _store_rq(dataset=b"\x10\x00" * 30000, max_pdu=4096)  # command + 15 dataset PDUs
    assert len(rq) == 16
    # the command PDU arrives split over two packets at 100.0 and 100.001;
    # dataset PDUs at 100.01, 100.02, ...; the last one completes the request.
    chunks = [(0, rq[0][:5], 100.0), (0, rq[0][5:], 100.001)]
    for i, p in enumerate(rq[1:]):
        chunks.append((0, p, 100.01 * 1 + 0.01 * i))
    last_rq_ts = chunks[-1][2]
    rsp = _store_rsp()
    chunks += [(1, rsp[0][:20], 100.5), (1, rsp[0][20:], 100.52)]
    ev = feed_all(conv, chunks)
    (t,) = _of(ev, DimseTransaction)
    assert t.request_ts == 100.0
    assert t.request_complete_ts == last_rq_ts
    assert t.response_ts == 100.5
    assert t.response_complete_ts == 100.52
    assert t.request_transfer_seconds == pytest.approx(last_rq_ts - 100.0)
    assert t.response_latency_seconds == pytest.approx(100.5 - last_rq_ts)
    assert t.duration_seconds == pytest.approx(0.52)
    # the response split over two packets: its second piece came 20 ms later
    assert t.final_response_ts == 100.5
    assert t.response_transfer_seconds == pytest.approx(0.02)
    phases = t.request_transfer_seconds + t.response_latency_seconds + t.response_transfer_seconds
    assert phases == pytest.approx(t.duration_seconds)
    assert t.request_dataset_bytes == 60000 and t.response_dataset_bytes == 0
    assert t.affected_sop_instance_uid == ""  # not kept unless configured
    assert t.complete
    req = _of(ev, DimseRequestSeen)[0]
    assert (req.ts, req.command, req.sop_class_uid, req.message_id) == (100.0, "C-STORE", CT, 7)
    assert conv.pdata_bytes[0] == sum(len(p) for p in rq)


def test_instance_uid_kept_when_configured():
    conv = DicomConversation(keep_instance_uids=True)
    _assoc(conv)
    ev = feed_all(conv, [(0, p) for p in _store_rq()] + [(1, p) for p in _store_rsp()])
    assert _of(ev, DimseTransaction)[0].affected_sop_instance_uid == "1.2.3.4.5"


def test_c_store_a700_failure():
    conv = DicomConversation()
    _assoc(conv)
    ev = feed_all(
        conv,
        [(0, p) for p in _store_rq()]
        + [(1, p) for p in _store_rsp(status=0xA700, ErrorComment="disk full " * 20)],
    )
    (t,) = _of(ev, DimseTransaction)
    assert (t.status, t.status_class) == (0xA700, "failure")
    assert len(t.error_comment) <= 64 and t.error_comment.startswith("disk full")
    assert _of(ev, DimseResponseSeen)[0].status_class == "failure"


def test_c_find_with_pending_responses():
    conv = DicomConversation()
    _assoc(conv, ((1, FIND_STUDY, ("1.2.840.10008.1.2",)),))
    ident = b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "
    chunks = [
        (0, p, 1.0)
        for p in dimse(
            "C_FIND_RQ", MessageID=1, AffectedSOPClassUID=FIND_STUDY, Priority=0, dataset=ident
        )
    ]
    for i in range(3):
        for p in dimse(
            "C_FIND_RSP",
            MessageIDBeingRespondedTo=1,
            AffectedSOPClassUID=FIND_STUDY,
            Status=0xFF00,
            dataset=ident,
        ):
            chunks.append((1, p, 2.0 + i))
    chunks += [
        (1, p, 6.0)
        for p in dimse(
            "C_FIND_RSP", MessageIDBeingRespondedTo=1, AffectedSOPClassUID=FIND_STUDY, Status=0
        )
    ]
    final = chunks.pop()[1]
    chunks += [(1, final[:10], 6.0), (1, final[10:], 6.04)]  # the final response split
    ev = feed_all(conv, chunks)
    rsps = _of(ev, DimseResponseSeen)
    assert [r.status_class for r in rsps] == ["pending"] * 3 + ["success"]
    (t,) = _of(ev, DimseTransaction)
    assert t.pending_responses == 3
    assert t.response_ts == 2.0 and t.response_complete_ts == 6.04
    assert t.response_latency_seconds == pytest.approx(1.0)
    assert t.duration_seconds == pytest.approx(5.04)
    # the fourth phase is the final response's own transfer, not first response -> end
    assert t.final_response_ts == 6.0
    assert t.response_transfer_seconds == pytest.approx(0.04)
    assert t.request_dataset_bytes == len(ident) and t.response_dataset_bytes == 3 * len(ident)


def test_c_move_suboperations_and_b000_warning():
    conv = DicomConversation()
    _assoc(conv, ((1, MOVE_STUDY, ("1.2.840.10008.1.2",)),))
    ident = b"\x20\x00\x0d\x00\x04\x00\x00\x001.2\x00"
    chunks = [
        (0, p, 1.0)
        for p in dimse(
            "C_MOVE_RQ",
            MessageID=5,
            AffectedSOPClassUID=MOVE_STUDY,
            Priority=0,
            MoveDestination="WS1",
            dataset=ident,
        )
    ]
    for i in range(2):
        for p in dimse(
            "C_MOVE_RSP",
            MessageIDBeingRespondedTo=5,
            AffectedSOPClassUID=MOVE_STUDY,
            Status=0xFF00,
            NumberOfRemainingSuboperations=2 - i,
            NumberOfCompletedSuboperations=i,
            NumberOfFailedSuboperations=0,
            NumberOfWarningSuboperations=0,
        ):
            chunks.append((1, p, 2.0 + i))
    chunks += [
        (1, p, 9.0)
        for p in dimse(
            "C_MOVE_RSP",
            MessageIDBeingRespondedTo=5,
            AffectedSOPClassUID=MOVE_STUDY,
            Status=0xB000,
            NumberOfRemainingSuboperations=0,
            NumberOfCompletedSuboperations=2,
            NumberOfFailedSuboperations=1,
            NumberOfWarningSuboperations=0,
        )
    ]
    ev = feed_all(conv, chunks)
    (t,) = _of(ev, DimseTransaction)
    assert (t.command, t.status, t.status_class, t.pending_responses) == (
        "C-MOVE",
        0xB000,
        "warning",
        2,
    )
    assert t.move_destination == "WS1"
    assert (t.suboperations_completed, t.suboperations_failed, t.suboperations_warning) == (2, 1, 0)
    assert t.suboperations_remaining == 0


def test_c_get_suboperation_store_flows_acceptor_to_requestor():
    conv = DicomConversation()
    _assoc(conv, ((1, GET_STUDY, ("1.2.840.10008.1.2",)), (3, CT, ("1.2.840.10008.1.2",))))
    chunks = [
        (0, p, 1.0)
        for p in dimse(
            "C_GET_RQ", MessageID=1, AffectedSOPClassUID=GET_STUDY, Priority=0, dataset=b"\x00" * 8
        )
    ]
    chunks += [
        (1, p, 2.0)
        for p in dimse(
            "C_STORE_RQ",
            ctx=3,
            MessageID=1,
            AffectedSOPClassUID=CT,
            AffectedSOPInstanceUID="1.2",
            Priority=0,
            dataset=b"\x01" * 100,
        )
    ]
    chunks += [
        (0, p, 3.0)
        for p in dimse(
            "C_STORE_RSP", ctx=3, MessageIDBeingRespondedTo=1, AffectedSOPClassUID=CT, Status=0
        )
    ]
    chunks += [
        (1, p, 4.0)
        for p in dimse(
            "C_GET_RSP",
            MessageIDBeingRespondedTo=1,
            AffectedSOPClassUID=GET_STUDY,
            Status=0,
            NumberOfCompletedSuboperations=1,
            NumberOfFailedSuboperations=0,
            NumberOfWarningSuboperations=0,
            NumberOfRemainingSuboperations=0,
        )
    ]
    ev = feed_all(conv, chunks)
    reqs = _of(ev, DimseRequestSeen)
    assert [(r.command, r.sender) for r in reqs] == [
        ("C-GET", "requestor"),
        ("C-STORE", "acceptor"),
    ]
    txns = _of(ev, DimseTransaction)
    assert [(t.command, t.status_class) for t in txns] == [
        ("C-STORE", "success"),
        ("C-GET", "success"),
    ]
    assert conv.requestor_direction == 0


def test_midstream_start_resyncs_and_counts_commands():
    conv = DicomConversation(requestor_direction=1)  # wrong guess by the flow table
    rq1 = _store_rq(mid=1, max_pdu=4096)
    stream_tail = b"".join(rq1)[3000:]  # capture starts in the middle of a dataset PDV
    rsp1 = _store_rsp(mid=1)
    rq2 = _store_rq(mid=2, max_pdu=4096)
    ev = feed_all(
        conv,
        [(0, stream_tail, 1.0), (1, rsp1[0], 2.0)]
        + [(0, p, 3.0) for p in rq2]
        + [(1, _store_rsp(mid=2)[0], 4.0)],
    )
    resync = _of(ev, Resynchronised)
    assert resync and resync[0].skipped_bytes > 0
    # the first response has no request: seen and counted, no transaction
    assert [r.message_id_being_responded_to for r in _of(ev, DimseResponseSeen)] == [1, 2]
    (t,) = _of(ev, DimseTransaction)
    assert (t.message_id, t.complete, t.request_dataset_bytes) == (2, True, 60000)
    assert (conv.calling_ae, conv.called_ae) == ("unknown", "unknown")
    assert conv.requestor_direction == 0  # corrected by the C-STORE request
    assert _of(ev, DimseRequestSeen)[0].sender == "requestor"
    assert not _of(ev, ProtocolError)
    end = conv.close("fin", 5.0)
    assert end[-1].duration_seconds is None and end[-1].how == "closed"


def test_gap_inside_dataset_stays_in_sync():
    conv = DicomConversation()
    _assoc(conv)
    rq = b"".join(_store_rq(max_pdu=16382))
    cut = len(rq) - 20000  # well inside the dataset PDVs
    ev = conv.feed(0, rq[:cut], 1.0)
    ev += conv.gap(0, 1000, 1.1)
    ev += conv.feed(0, rq[cut + 1000 :], 1.2)
    ev += feed_all(conv, [(1, p, 1.5) for p in _store_rsp()])
    assert not _of(ev, Resynchronised) and not _of(ev, ProtocolError)
    (t,) = _of(ev, DimseTransaction)
    assert t.complete is False and t.status_class == "success"
    assert t.request_dataset_bytes == 60000 and t.request_complete_ts == 1.2
    assert conv.missed_bytes == [1000, 0]


def test_gap_across_pdu_header_resyncs():
    conv = DicomConversation()
    _assoc(conv)
    pdus = _store_rq(mid=1, max_pdu=4096)
    stream = b"".join(pdus)
    hdr_at = sum(len(p) for p in pdus[:5])  # the 6th PDU's header
    ev = conv.feed(0, stream[: hdr_at - 10], 1.0)
    ev += conv.gap(0, 30, 1.1)
    ev += conv.feed(0, stream[hdr_at + 20 :], 1.2)
    ev += feed_all(conv, [(1, p, 1.5) for p in _store_rsp(mid=1)])
    ev += feed_all(
        conv,
        [(0, p, 2.0) for p in _store_rq(mid=2, max_pdu=4096)]
        + [(1, p, 2.5) for p in _store_rsp(mid=2)],
    )
    (rs,) = _of(ev, Resynchronised)
    assert rs.skipped_bytes > 0
    txns = {t.message_id: t for t in _of(ev, DimseTransaction)}
    assert txns[1].complete is False and txns[1].request_complete_ts is not None
    assert txns[2].complete is True


def test_pdata_claiming_4gb_is_just_skipped_counted():
    conv = DicomConversation()
    _assoc(conv)
    hdr = struct.pack(">BBI", 4, 0, 0xFFFFFFFF) + struct.pack(">IBB", 0xFFFFFFFF - 4, 1, 0)
    ev = conv.feed(0, hdr + b"\x00" * 100000, 1.0)
    # nothing but what the header breaks: over the acceptor's Maximum Length, an odd PDV
    assert [(type(e).__name__, e.kind) for e in ev] == [
        ("ProtocolViolation", "max-pdu-length-exceeded"),
        ("ProtocolViolation", "odd-pdv-length"),
    ]
    assert conv._framers[0].skip == 0xFFFFFFFF - 6 - 100000
    assert conv.close("fin", 2.0)[-1].how == "closed"


def test_pdv_without_last_flag_forever_is_bounded():
    conv = DicomConversation(transaction_timeout=60)
    _assoc(conv)
    cmd = _store_rq()[0]
    conv.feed(0, cmd, 1.0)
    frag = (
        struct.pack(">BBI", 4, 0, 4096 + 6)
        + struct.pack(">IBB", 4096 + 2, 1, 0)
        + b"\x08\x00\x05\x00CS\x0a\x00"  # an Explicit VR element header (the first is read)
        + b"\x00" * 4088
    )
    for i in range(2000):
        assert conv.feed(0, frag, 1.0 + i * 0.01) == ()
    assert conv._framers[0].pdata_bytes > 8_000_000
    assert sum(len(m.buf or b"") for m in conv._dimse.messages.values()) == 0
    assert conv.expire(30.0) == ()  # activity at t=20.99 keeps it open
    (t,) = conv.expire(100.0)
    assert (t.outcome, t.status, t.status_class, t.request_complete_ts) == (
        "unanswered-timeout",
        None,
        "unanswered",
        None,
    )
    assert t.request_dataset_bytes == 2000 * 4096


def test_command_set_that_never_ends_hits_cap():
    conv = DicomConversation(max_command_bytes=1024)
    _assoc(conv)
    frag = struct.pack(">BBI", 4, 0, 200 + 6) + struct.pack(">IBB", 200 + 2, 1, 1) + b"\x00" * 200
    errors = []
    for _ in range(500):
        errors += _of(conv.feed(0, frag, 1.0), ProtocolError)
        assert all(len(m.buf or b"") <= 1024 for m in conv._dimse.messages.values())
    assert [e.kind for e in errors] == ["command-too-large"]
    # a single command PDV over the cap is refused at its header, never buffered
    big = struct.pack(">BBI", 4, 0, 5000 + 6) + struct.pack(">IBB", 5000 + 2, 3, 3) + b"\x00" * 5000
    ev = conv.feed(0, big, 2.0)
    assert [e.kind for e in _of(ev, ProtocolError)] == ["command-too-large"]
    # the stream is still in sync afterwards
    ev = feed_all(
        conv, [(0, p, 3.0) for p in _store_rq(mid=9)] + [(1, p, 3.1) for p in _store_rsp(mid=9)]
    )
    assert _of(ev, DimseTransaction)[0].message_id == 9


def test_unanswered_at_close_and_timeout():
    conv = DicomConversation(transaction_timeout=10.0)
    _assoc(conv, ((1, VERIFICATION, ("1.2.840.10008.1.2",)),))
    feed_all(conv, [(0, dimse("C_ECHO_RQ", MessageID=1, AffectedSOPClassUID=VERIFICATION)[0], 1.0)])
    feed_all(conv, [(0, dimse("C_ECHO_RQ", MessageID=2, AffectedSOPClassUID=VERIFICATION)[0], 8.0)])
    (t1,) = conv.expire(12.0)
    assert (t1.message_id, t1.outcome, t1.request_complete_ts) == (1, "unanswered-timeout", 1.0)
    ev = conv.close("reset", 13.0)
    t2 = _of(ev, DimseTransaction)[0]
    assert (t2.message_id, t2.outcome, t2.status, t2.duration_seconds) == (
        2,
        "unanswered-ended",
        None,
        None,
    )
    assert ev[-1].how == "reset"


def test_open_request_at_capture_end_is_in_flight_not_unanswered():
    """A capture stops mid-transfer (tcpdump ended, editcap -r): the association ends
    "capture-ended" and its open C-STORE is in flight, not unanswered."""
    conv = DicomConversation()
    _assoc(conv)
    rq = _store_rq(dataset=b"\x10\x00" * 30000, max_pdu=4096)
    feed_all(conv, [(0, p, 2.0 + 0.01 * i) for i, p in enumerate(rq[:5])])  # cut after 5 PDUs
    ev = conv.close("end", 2.5)
    (t,) = _of(ev, DimseTransaction)
    assert (t.outcome, t.status_class, t.status) == ("in-flight-at-capture-end", "in-flight", None)
    assert t.request_complete_ts is None and t.response_transfer_seconds is None
    assert ev[-1].how == "capture-ended"


def test_release_under_way_at_capture_end_is_closed_not_capture_ended():
    """The SCU asked to release (one-sided capture, or the reply lost): not cut by the
    capture; a request still open then was not answered before the release."""
    conv = DicomConversation()
    _assoc(conv)
    feed_all(conv, [(0, p, 2.0) for p in _store_rq()])
    feed_all(conv, [(0, b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00", 3.0)])
    ev = conv.close("end", 4.0)
    assert ev[-1].how == "closed"
    assert _of(ev, DimseTransaction)[0].outcome == "unanswered-ended"


def test_released_association_at_capture_end_stays_released():
    conv = DicomConversation()
    _assoc(conv)
    feed_all(conv, [(0, b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00", 3.0)])
    feed_all(conv, [(1, b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00", 3.1)])
    assert conv.close("end", 4.0)[-1].how == "released"


def test_c_store_sent_by_the_acceptor_is_the_acceptors_request():
    """C-GET: the SCP sends the sub-operation C-STOREs on the requestor's association
    (DESIGN §3: roles follow the message); the transaction says who sent the request."""
    conv = DicomConversation()
    _assoc(conv)
    chunks = [(1, p, 5.0) for p in _store_rq()] + [(0, p, 5.2) for p in _store_rsp()]
    ev = feed_all(conv, chunks)
    (req,) = _of(ev, DimseRequestSeen)
    (rsp,) = _of(ev, DimseResponseSeen)
    (t,) = _of(ev, DimseTransaction)
    assert (req.sender, rsp.sender, t.request_sender) == ("acceptor", "requestor", "acceptor")
    assert t.response_latency_seconds == pytest.approx(0.2)


def test_a_slow_upload_does_not_time_out_while_its_bytes_arrive():
    """A data set skipped by the framer (no item per packet) arriving over more than the
    transaction timeout: the request is not quiet, it is answered; a request whose bytes
    stop is still given up."""
    conv = DicomConversation(transaction_timeout=10.0)
    _assoc(conv)
    rq = b"".join(_store_rq(dataset=b"\x10\x00" * 30000))
    chunks = [rq[i : i + 1000] for i in range(0, len(rq), 1000)]
    ts = 1.0
    for chunk in chunks:  # 61 chunks, 1 s apart: 60 s for one object
        assert not _of(feed_all(conv, [(0, chunk, ts)]), DimseTransaction)
        assert not conv.expire(ts)
        ts += 1.0
    (t,) = _of(feed_all(conv, [(1, p, ts + 1.0) for p in _store_rsp()]), DimseTransaction)
    assert t.outcome == "answered" and t.request_transfer_seconds == pytest.approx(60.0)
    feed_all(conv, [(0, rq[:2000], 100.0)])  # the next object stops after 2,000 bytes
    conv.expire(105.0)
    (gone,) = conv.expire(115.0)
    assert gone.outcome == "unanswered-timeout"


def test_pending_cap():
    conv = DicomConversation(max_pending=3)
    _assoc(conv, ((1, VERIFICATION, ("1.2.840.10008.1.2",)),))
    ev = feed_all(
        conv,
        [
            (0, dimse("C_ECHO_RQ", MessageID=i, AffectedSOPClassUID=VERIFICATION)[0])
            for i in range(5)
        ],
    )
    assert len(_of(ev, DimseRequestSeen)) == 5
    assert [e.kind for e in _of(ev, ProtocolError)] == ["too-many-pending"] * 2
    assert len(conv._dimse.transactions) == 3


def test_parser_exception_is_contained(monkeypatch):
    conv = DicomConversation()
    _assoc(conv)

    def boom(*a, **k):
        raise RuntimeError("secret bytes here")

    monkeypatch.setattr("dicomsniffd.dicom.transactions.decode_command", boom)
    ev = feed_all(conv, [(0, p, 1.0) for p in _store_rq()])
    errs = _of(ev, ProtocolError)
    assert errs[0].kind == "parser-exception" and "secret" not in errs[0].detail
    monkeypatch.undo()
    # the direction resyncs and later messages are decoded again
    ev = feed_all(
        conv, [(0, p, 2.0) for p in _store_rq(mid=8)] + [(1, p, 2.1) for p in _store_rsp(mid=8)]
    )
    assert _of(ev, DimseTransaction)[0].message_id == 8


def test_nothing_raises_for_bad_direction():
    conv = DicomConversation()
    assert _of(conv.feed(7, b"abc", 1.0), ProtocolError)[0].kind == "parser-exception"
    assert _of(conv.gap(-5, 3, 1.0), ProtocolError)


def _echo_association(decoder, status=0x0000):
    """One association with one C-ECHO, fed through a conversation using ``decoder``."""
    conv = DicomConversation(associate_decoder=decoder)
    _assoc(conv, contexts=((1, VERIFICATION, ("1.2.840.10008.1.2",)),))
    rq = dimse("C_ECHO_RQ", MessageID=1, AffectedSOPClassUID=VERIFICATION)
    rsp = dimse(
        "C_ECHO_RSP", MessageIDBeingRespondedTo=1, AffectedSOPClassUID=VERIFICATION, Status=status
    )
    events = feed_all(conv, [(0, rq[0], 1.0), (1, rsp[0], 1.5)])
    return events + list(conv.close("fin", 2.0))


def test_command_memo_changes_no_event():
    """The pipeline's shared memo of decoded command sets: the second association's
    byte-identical C-ECHO-RQ/RSP come from it, and give exactly the events a fresh decoder
    gives (a different status in the same place is not mistaken for the memoised one)."""
    shared = AssociateDecoder()
    first = _echo_association(shared)
    assert len(shared.commands) == 2  # the RQ and the RSP
    again = _echo_association(shared)
    assert again == first == _echo_association(AssociateDecoder())
    failed = _echo_association(shared, status=0x0110)
    assert _of(failed, DimseTransaction)[0].status == 0x0110
    assert _of(again, DimseTransaction)[0].status == 0x0000


def test_command_memo_is_bounded():
    """Distinct command sets (a C-STORE names its instance) never grow the memo past its
    bound, and with instance UIDs kept there is no memo at all."""
    shared = AssociateDecoder()
    conv = DicomConversation(associate_decoder=shared)
    _assoc(conv)
    for mid in range(1, COMMAND_MEMO_ENTRIES + 50):
        rq = dimse("C_ECHO_RQ", MessageID=mid, AffectedSOPClassUID=VERIFICATION)
        feed_all(conv, [(0, rq[0], 1.0)])
        assert len(shared.commands) <= COMMAND_MEMO_ENTRIES
    kept = AssociateDecoder()
    conv = DicomConversation(keep_instance_uids=True, associate_decoder=kept)
    _assoc(conv)
    events = feed_all(conv, [(0, _store_rq(dataset=b"\x10\x00" * 8)[0], 1.0)])
    assert _of(events, DimseRequestSeen) and not kept.commands


def _store_association(decoder, instance):
    conv = DicomConversation(associate_decoder=decoder)
    _assoc(conv)
    rq = dimse("C_STORE_RQ", MessageID=1, AffectedSOPClassUID=CT,
               AffectedSOPInstanceUID=instance, Priority=0, dataset=b"\x10\x00" * 8)  # fmt: skip
    rsp = dimse("C_STORE_RSP", MessageIDBeingRespondedTo=1, AffectedSOPClassUID=CT,
                AffectedSOPInstanceUID=instance, Status=0xB000)  # fmt: skip
    events = feed_all(conv, [(0, b"".join(rq), 1.0), (1, rsp[0], 1.5)])
    return events + list(conv.close("fin", 2.0))


def test_command_shape_memo_changes_no_event():
    """C-STOREs naming other instances come from the shape memo (one entry each for the
    RQ and the RSP) and give exactly the events a fresh decoder gives."""
    shared = AssociateDecoder()
    first = _store_association(shared, "1.2.3")
    assert len(shared.command_shapes) == 2 and not shared.commands
    again = _store_association(shared, "1.2.3.4.5.6.7.8.9")
    assert len(shared.command_shapes) == 2
    assert again == first == _store_association(AssociateDecoder(), "1.2.3.4.5.6.7.8.9")
    assert _of(again, DimseTransaction)[0].status == 0xB000

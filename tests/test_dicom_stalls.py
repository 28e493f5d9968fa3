"""Stalls, the DICOM half (DESIGN §3): the core counts a gap the transport reports only
when it fell inside a request or response transfer, and adds it to that transaction and
to the association. Hand-built PDUs, the transport's reports as plain calls."""

from __future__ import annotations

import pytest
from test_dicom_conversation import _assoc, _of, _store_rq, _store_rsp
from test_dicom_streams import feed_all

from dicomsniffd.dicom.conversation import DicomConversation
from dicomsniffd.dicom.events import AssociationEnded, DimseTransaction, Stalled


def test_a_response_split_after_its_headers_stalls_inside_the_response_transfer():
    conv = DicomConversation()
    _assoc(conv)
    rq = _store_rq(dataset=b"\x10\x00" * 100)
    rsp = _store_rsp()[0]
    ev = feed_all(conv, [(0, p, 1.0) for p in rq] + [(1, rsp[:12], 1.001)])
    # the transport: 40 ms without acceptor data, then the rest
    stalled = conv.stall(1, "delayed-ack", 0.04, 1.041)
    assert stalled == [Stalled(1.041, "acceptor", "delayed-ack", 0.04)]
    ev = feed_all(conv, [(1, rsp[12:], 1.041)])
    (t,) = _of(ev, DimseTransaction)
    assert t.stall_seconds == pytest.approx(0.04)
    assert t.stalls == (("acceptor", "delayed-ack", 1, 0.04),)
    (end,) = _of(conv.close("fin", 2.0), AssociationEnded)
    assert end.stalls == (("acceptor", "delayed-ack", 1, 0.04),)


def test_a_stall_between_the_pdus_of_one_data_set_counts_for_that_request():
    conv = DicomConversation()
    _assoc(conv)
    rq = _store_rq(dataset=b"\x10\x00" * 30000, max_pdu=4096)
    feed_all(conv, [(0, p, 1.0) for p in rq[:5]])
    assert conv.stall(0, "sender-idle", 0.3, 1.3)
    ev = feed_all(conv, [(0, p, 1.3) for p in rq[5:]] + [(1, _store_rsp()[0], 1.31)])
    (t,) = _of(ev, DimseTransaction)
    assert t.stalls == (("requestor", "sender-idle", 1, 0.3),)


def test_a_pause_between_objects_is_not_a_stall():
    conv = DicomConversation()
    _assoc(conv)
    ev = feed_all(conv, [(0, p, 1.0) for p in _store_rq(mid=1)] + [(1, _store_rsp(1)[0], 1.01)])
    assert conv.stall(0, "sender-idle", 2.0, 3.0) == ()  # the SCU reads its next file
    assert conv.stall(1, "sender-idle", 2.0, 3.0) == ()
    ev = feed_all(conv, [(0, p, 3.0) for p in _store_rq(mid=2)] + [(1, _store_rsp(2)[0], 3.01)])
    assert all(t.stalls == () and t.stall_seconds == 0.0 for t in _of(ev, DimseTransaction))
    (end,) = _of(conv.close("fin", 4.0), AssociationEnded)
    assert end.stalls == ()


def test_a_lost_request_tail_resent_stalls_that_request():
    # The capture saw the whole request; its last segment was lost after the capture point
    # and resent after the RTO: the transport reports loss-recovery, the core gives it to
    # the request that completed when the gap began (the SCP still waits for those bytes).
    conv = DicomConversation()
    _assoc(conv)
    feed_all(conv, [(0, p, 1.0) for p in _store_rq(dataset=b"\x10\x00" * 100)])
    assert conv.stall(0, "sender-idle", 0.2, 1.2) == ()  # not a resend: between messages
    assert conv.stall(0, "loss-recovery", 0.2, 1.2) == [
        Stalled(1.2, "requestor", "loss-recovery", 0.2)
    ]
    (t,) = _of(feed_all(conv, [(1, _store_rsp()[0], 1.21)]), DimseTransaction)
    assert t.stalls == (("requestor", "loss-recovery", 1, 0.2),)
    # long after the request completed, a resend is not that request's stall
    assert conv.stall(0, "loss-recovery", 0.2, 5.0) == ()

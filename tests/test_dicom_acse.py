"""Association PDUs decoded from pynetdicom-encoded bytes, plus malformed cases."""

from __future__ import annotations

import struct

import pytest
from pynetdicom import pdu_primitives
from test_dicom_streams import (
    APP_CONTEXT,
    CT,
    EVLE,
    IMPL_UID,
    IVLE,
    PASSCODE,
    USERNAME,
    VERIFICATION,
    abort,
    associate_ac,
    associate_rj,
    associate_rq,
    feed_all,
    release_rp,
    release_rq,
)

from dicomsniffd.dicom import acse
from dicomsniffd.dicom.conversation import DicomConversation
from dicomsniffd.dicom.events import (
    Aborted,
    AssociationAccepted,
    AssociationEnded,
    AssociationRejected,
    AssociationRequested,
    ProtocolError,
    ReleaseReplied,
    ReleaseRequested,
)


def _extras():
    role = pdu_primitives.SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CT
    role.scu_role = True
    role.scp_role = False
    asyn = pdu_primitives.AsynchronousOperationsWindowNegotiation()
    asyn.maximum_number_operations_invoked = 5
    asyn.maximum_number_operations_performed = 3
    ext = pdu_primitives.SOPClassExtendedNegotiation()
    ext.sop_class_uid = CT
    ext.service_class_application_information = b"\x01\x02"
    common = pdu_primitives.SOPClassCommonExtendedNegotiation()
    common.sop_class_uid = CT
    common.service_class_uid = "1.2.840.10008.4.2"
    common.related_general_sop_class_identification = ["1.2.840.10008.5.1.4.1.1.2.1"]
    return (role, asyn, ext, common)


def test_associate_rq_ac_decode_and_merge():
    conv = DicomConversation()
    rq = associate_rq(
        calling="CT01",
        called="PACS_MAIN",
        contexts=((1, CT, (EVLE, IVLE)), (3, VERIFICATION, (IVLE,))),
        extra=_extras(),
    )
    ac = associate_ac(calling="CT01", called="PACS_MAIN", results=((1, 0, EVLE), (3, 3, IVLE)))
    ev = feed_all(conv, [(0, rq, 10.0), (1, ac, 10.25)])
    req, acc = ev
    assert isinstance(req, AssociationRequested)
    assert (req.calling_ae, req.called_ae, req.application_context) == (
        "CT01",
        "PACS_MAIN",
        APP_CONTEXT,
    )
    assert [
        (p.context_id, p.abstract_syntax, p.transfer_syntaxes) for p in req.presentation_contexts
    ] == [
        (1, CT, (EVLE, IVLE)),
        (3, VERIFICATION, (IVLE,)),
    ]
    ui = req.user_info
    assert ui.max_pdu_length == 16382
    assert ui.implementation_class_uid == IMPL_UID
    assert ui.implementation_version_name == "PYNETDICOM_TEST"
    assert (ui.async_ops_invoked, ui.async_ops_performed) == (5, 3)
    assert [(r.sop_class_uid, r.scu_role, r.scp_role) for r in ui.role_selections] == [(CT, 1, 0)]
    assert ui.extended_negotiation_sop_classes == (CT,)
    assert isinstance(acc, AssociationAccepted)
    assert acc.setup_seconds == pytest.approx(0.25)
    assert acc.user_info.max_pdu_length == 32768
    merged = [
        (p.context_id, p.abstract_syntax, p.result, p.accepted_transfer_syntax)
        for p in acc.presentation_contexts
    ]
    assert merged == [(1, CT, 0, EVLE), (3, VERIFICATION, 3, "")]
    assert (conv.calling_ae, conv.called_ae) == ("CT01", "PACS_MAIN")


def test_user_identity_keeps_only_type_and_flag_and_never_leaks():
    conv = DicomConversation()
    rq = associate_rq(identity=True)
    assert USERNAME in rq and PASSCODE in rq
    events = feed_all(conv, [(0, rq, 1.0), (1, associate_ac(), 1.1)])
    events += conv.close("fin", 2.0)
    ui = events[0].user_info
    assert ui.user_identity_type == 2 and ui.user_identity_positive_response_requested
    text = repr(events) + str(events)
    for secret in (USERNAME, PASSCODE):
        assert secret.decode() not in text
        assert secret not in text.encode()


def test_user_identity_malformed_error_does_not_quote_content():
    rq = bytearray(associate_rq(identity=True))
    # corrupt the secondary-field length so the sub-item no longer adds up
    i = rq.index(PASSCODE)
    struct.pack_into(">H", rq, i - 2, len(PASSCODE) + 1)
    events = feed_all(DicomConversation(), [(0, bytes(rq))])
    assert [type(e) for e in events] == [ProtocolError]
    assert events[0].kind == "bad-pdu"
    assert PASSCODE.decode() not in repr(events) and USERNAME.decode() not in repr(events)


@pytest.mark.parametrize(
    "result,source,reason,labels",
    [
        (1, 1, 7, ("permanent", "service-user", "called-ae-not-recognized")),
        (1, 1, 3, ("permanent", "service-user", "calling-ae-not-recognized")),
        (1, 1, 2, ("permanent", "service-user", "application-context-name-not-supported")),
        (2, 1, 1, ("transient", "service-user", "no-reason-given")),
        (1, 2, 2, ("permanent", "service-provider-acse", "protocol-version-not-supported")),
        (2, 3, 1, ("transient", "service-provider-presentation", "temporary-congestion")),
        (2, 3, 2, ("transient", "service-provider-presentation", "local-limit-exceeded")),
    ],
)
def test_reject_reasons(result, source, reason, labels):
    conv = DicomConversation()
    events = feed_all(
        conv, [(0, associate_rq(), 5.0), (1, associate_rj(result, source, reason), 5.5)]
    )
    events += conv.close("fin", 6.0)
    rj = events[1]
    assert isinstance(rj, AssociationRejected)
    assert (rj.result, rj.source, rj.reason) == labels
    assert (rj.result_code, rj.source_code, rj.reason_code) == (result, source, reason)
    assert rj.setup_seconds == pytest.approx(0.5)
    assert events[-1] == AssociationEnded(6.0, "closed", 1.0)


def test_reject_reserved_codes_are_bounded_labels():
    body = bytes([0, 9, 8, 200])
    assert acse.decode_reject(body)[3:] == ("reserved", "reserved", "reserved")


@pytest.mark.parametrize(
    "source,reason,labels",
    [
        (0, 0, ("service-user", "not-specified")),
        (2, 0, ("service-provider", "not-specified")),
        (2, 1, ("service-provider", "unrecognized-pdu")),
        (2, 2, ("service-provider", "unexpected-pdu")),
        (2, 4, ("service-provider", "unrecognized-pdu-parameter")),
        (2, 5, ("service-provider", "unexpected-pdu-parameter")),
        (2, 6, ("service-provider", "invalid-pdu-parameter-value")),
    ],
)
def test_abort(source, reason, labels):
    conv = DicomConversation()
    events = feed_all(
        conv, [(0, associate_rq(), 1.0), (1, associate_ac(), 1.0), (1, abort(source, reason), 3.0)]
    )
    events += conv.close("reset", 3.1)
    ab = events[2]
    assert isinstance(ab, Aborted)
    assert (ab.source, ab.reason, ab.source_code, ab.reason_code) == (*labels, source, reason)
    assert ab.sender == "acceptor"
    # aborted wins over the TCP reset that usually follows
    assert events[-1].how == "aborted"


def test_release():
    conv = DicomConversation()
    events = feed_all(
        conv,
        [
            (0, associate_rq(), 1.0),
            (1, associate_ac(), 1.1),
            (0, release_rq(), 4.0),
            (1, release_rp(), 4.2),
        ],
    )
    events += conv.close("fin", 4.3)
    assert events[2] == ReleaseRequested(4.0, "requestor")
    assert events[3] == ReleaseReplied(4.2, "acceptor")
    assert events[4] == AssociationEnded(4.3, "released", pytest.approx(3.3))
    assert conv.close("fin", 5.0) == ()  # idempotent


@pytest.mark.parametrize(
    "how,expected",
    [("reset", "reset"), ("idle", "timeout"), ("fin", "closed"), ("end", "capture-ended")],
)
def test_end_how(how, expected):
    conv = DicomConversation()
    feed_all(conv, [(0, associate_rq(), 1.0), (1, associate_ac(), 1.1)])
    assert conv.close(how, 2.0)[-1].how == expected


def test_malformed_associate_items_are_protocol_errors():
    rq = bytearray(associate_rq())
    rq[6 + 68 + 2 : 6 + 68 + 4] = b"\xff\xff"  # application context item length overruns
    events = feed_all(DicomConversation(), [(0, bytes(rq))])
    assert [(type(e), e.kind) for e in events] == [(ProtocolError, "bad-pdu")]


def test_association_pdu_claiming_4gb_is_an_error_not_a_buffer():
    conv = DicomConversation()
    feed_all(conv, [(0, associate_rq()), (1, associate_ac())])
    events = conv.feed(0, b"\x01\x00\xff\xff\xff\xff" + b"\x00" * 100, 1.0)
    assert [(type(e), e.kind) for e in events] == [(ProtocolError, "bad-pdu-length")]
    assert len(conv._framers[0]._buf) == 0


@pytest.mark.parametrize("kept", [6 + 68, 6 + 68 + 30, 200])
def test_associate_rq_cut_by_a_gap_still_counts_with_its_titles(kept):
    """A snaplen or a lost segment cuts the A-ASSOCIATE-RQ: the fixed part carries the AE
    titles, so the request is still reported once, and the framer stays aligned for the
    A-ASSOCIATE-AC that follows."""
    contexts = tuple((2 * i + 1, CT, (EVLE, IVLE)) for i in range(40))  # a long RQ
    rq = associate_rq(calling="CT_SCANNER", called="ARCHIVE", contexts=contexts)
    conv = DicomConversation()
    events = list(conv.feed(0, rq[:kept], 1.0)) + list(conv.gap(0, len(rq) - kept, 1.1))
    events += conv.feed(1, associate_ac(calling="CT_SCANNER", called="ARCHIVE"), 1.2)
    requested = [e for e in events if isinstance(e, AssociationRequested)]
    assert [(e.calling_ae, e.called_ae) for e in requested] == [("CT_SCANNER", "ARCHIVE")]
    assert len([e for e in events if isinstance(e, AssociationAccepted)]) == 1
    assert not [e for e in events if isinstance(e, ProtocolError)]


def test_associate_rq_cut_before_its_titles_is_not_guessed():
    rq = associate_rq(calling="CT_SCANNER", called="ARCHIVE")
    conv = DicomConversation()
    events = list(conv.feed(0, rq[:30], 1.0)) + list(conv.gap(0, len(rq) - 30, 1.1))
    assert not [e for e in events if isinstance(e, AssociationRequested)]

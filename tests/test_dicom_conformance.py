"""DESIGN §4b in the sans-IO core: byte-level tests of every checked violation kind.

Clean traffic is built with pynetdicom's encoders (tests/test_dicom_streams.py); the
rule-breaking PDUs by hand (tests/peers/rawscu.py's builders), each breaking one rule.
"""

from __future__ import annotations

import struct

import pytest
from peers.rawscu import _item, _pdu, pdata
from peers.rulebreaker import echo_rq
from pynetdicom import pdu_primitives
from test_dicom_streams import (
    CT,
    EVLE,
    IVLE,
    VERIFICATION,
    associate_ac,
    associate_rj,
    associate_rq,
    dimse,
    feed_all,
    release_rp,
    release_rq,
)

from dicomsniffd.dicom.conformance import ae_title_problem, nonstandard_status
from dicomsniffd.dicom.conversation import DicomConversation
from dicomsniffd.dicom.events import (
    AssociationRequested,
    DimseRequestSeen,
    DimseTransaction,
    ProtocolError,
    ProtocolViolation,
    Resynchronised,
)
from dicomsniffd.dicom.problems import PROTOCOL_VIOLATIONS

EXPLICIT_HEAD = b"\x08\x00\x05\x00CS\x0a\x00"  # (0008,0005) CS, length 10
IMPLICIT_HEAD = b"\x08\x00\x05\x00\x0a\x00\x00\x00"  # the same, Implicit VR
RQ = associate_rq(contexts=((1, VERIFICATION, (IVLE,)), (3, CT, (IVLE, EVLE))))
AC = associate_ac(results=((1, 0, IVLE), (3, 0, EVLE)))


def kinds(events) -> list[tuple[str, str]]:
    return [(e.kind, e.sender) for e in events if isinstance(e, ProtocolViolation)]


def echo(mid: int = 1, ctx: int = 1) -> list[bytes]:
    return dimse("C_ECHO_RQ", ctx=ctx, MessageID=mid, AffectedSOPClassUID=VERIFICATION)


def echo_rsp(mid: int = 1, ctx: int = 1, status: int = 0) -> list[bytes]:
    return dimse(
        "C_ECHO_RSP",
        ctx=ctx,
        MessageIDBeingRespondedTo=mid,
        AffectedSOPClassUID=VERIFICATION,
        Status=status,
    )


def session(*middle) -> list:
    """RQ, AC, ``middle`` (direction, bytes) chunks, release; every event."""
    conv = DicomConversation()
    chunks = [(0, RQ), (1, AC), *middle, (0, release_rq()), (1, release_rp())]
    return feed_all(conv, chunks) + list(conv.close("fin", 9.0))


def test_every_kind_is_registered_once_with_reference_and_advice():
    assert len(PROTOCOL_VIOLATIONS) == 18
    for kind in PROTOCOL_VIOLATIONS:
        assert kind.reference.startswith("PS3.") and kind.advice and kind.meaning


def test_a_clean_exchange_breaks_nothing():
    events = session(*[(0, p) for p in echo()], *[(1, p) for p in echo_rsp()])
    assert kinds(events) == []
    assert not [e for e in events if isinstance(e, ProtocolError)]


@pytest.mark.parametrize(
    ("pdv", "kind"),
    [
        ((5, 0x03), "pdv-on-unaccepted-context"),
        ((2, 0x03), "even-presentation-context-id"),
        ((1, 0x07), "pdv-reserved-bits"),
    ],
)
def test_pdv_header_rules(pdv, kind):
    ctx, mch = pdv
    events = session((0, pdata([(ctx, mch, echo_rq(1))])), *[(1, p) for p in echo_rsp()])
    assert kinds(events)[0] == (kind, "requestor")


def test_odd_pdv_length_and_max_pdu_length_of_the_receiver():
    # the acceptor announced 32768 (associate_ac), the requestor 16382 (associate_rq)
    store = dimse("C_STORE_RQ", ctx=3, MessageID=1, AffectedSOPClassUID=CT,
                  AffectedSOPInstanceUID="1.2", Priority=0, dataset=b"")[0]  # fmt: skip
    # (0008,0005) CS, Explicit VR as context 3's accepted transfer syntax; under 32768 bytes
    big = pdata([(3, 0x02, EXPLICIT_HEAD + b"\0" * 19990)])
    odd = pdata([(3, 0x00, b"\0" * 7), (3, 0x02, b"\0" * 9)])
    events = session((0, store), (0, big))
    assert kinds(events) == []
    events = session((0, store), (0, odd))
    assert kinds(events) == [("odd-pdv-length", "requestor")] * 2
    over = _pdu(0x04, struct.pack(">IBB", 16384 + 2, 1, 0x02) + b"\0" * 16384)
    events = session(*[(0, p) for p in echo()], (1, over))
    assert ("max-pdu-length-exceeded", "acceptor") in kinds(events)


def test_pdata_outside_the_association():
    conv = DicomConversation()
    events = feed_all(conv, [(0, RQ + echo()[0])])  # P-DATA before the AC, one chunk
    assert kinds(events) == [("pdata-outside-association", "requestor")]
    conv = DicomConversation()
    events = feed_all(conv, [(0, RQ), (1, associate_rj(1, 1, 7)), (0, echo()[0])])
    assert kinds(events) == [("pdata-outside-association", "requestor")]
    conv = DicomConversation()
    chunks = [(0, RQ), (1, AC), (0, release_rq()), (1, release_rp()), (1, echo_rsp()[0])]
    assert kinds(feed_all(conv, chunks)) == [("pdata-outside-association", "acceptor")]


def test_a_gap_while_waiting_for_the_ac_makes_no_violation_up():
    conv = DicomConversation()
    events = feed_all(conv, [(0, RQ)])
    events += conv.gap(1, len(AC), 1.0)  # the AC was never captured
    events += feed_all(conv, [(0, p) for p in echo()])
    assert kinds(events) == []


def test_fragments_interleaved_keeps_both_messages():
    first = echo_rq(1)
    rq = associate_rq(contexts=((1, VERIFICATION, (IVLE,)), (3, VERIFICATION, (IVLE,))))
    ac = associate_ac(results=((1, 0, IVLE), (3, 0, IVLE)))
    conv = DicomConversation()
    events = feed_all(
        conv,
        [
            (0, rq),
            (1, ac),
            (0, pdata([(1, 0x01, first[:20])])),
            (0, pdata([(3, 0x03, echo_rq(2))])),
            (1, echo_rsp(2, ctx=3)[0]),
            (0, pdata([(1, 0x03, first[20:])])),
            (1, echo_rsp(1, ctx=1)[0]),
        ],
    )
    assert kinds(events) == [("fragments-interleaved", "requestor")]
    assert not [e for e in events if isinstance(e, ProtocolError)]  # no bad-command-set
    assert sorted(e.message_id for e in events if isinstance(e, DimseRequestSeen)) == [1, 2]


def test_response_rules():
    assert kinds(session(*[(0, p) for p in echo()], *[(1, p) for p in echo_rsp(mid=9)])) == [
        ("response-to-unknown-request", "acceptor")
    ]
    rq = associate_rq(contexts=((1, VERIFICATION, (IVLE,)), (3, VERIFICATION, (IVLE,))))
    ac = associate_ac(results=((1, 0, IVLE), (3, 0, IVLE)))
    conv = DicomConversation()
    chunks = [(0, rq), (1, ac), (0, echo()[0]), (1, echo_rsp(ctx=3)[0])]
    assert kinds(feed_all(conv, chunks)) == [("response-on-other-context", "acceptor")]
    pending = session(*[(0, p) for p in echo()], *[(1, p) for p in echo_rsp(status=0xFF00)])
    assert ("nonstandard-status", "acceptor") in kinds(pending)


def test_midstream_responses_are_not_blamed():
    conv = DicomConversation()  # no A-ASSOCIATE seen: requests may predate the capture
    events = feed_all(conv, [(1, p) for p in echo_rsp(mid=9)])
    assert kinds(events) == []


def test_async_window_and_sop_class_context():
    two = [(0, p) for p in echo(1) + echo(2)] + [(1, p) for p in echo_rsp(1) + echo_rsp(2)]
    assert kinds(session(*two)) == [("async-window-exceeded", "requestor")]
    wrong = pdata([(1, 0x03, echo_rq(1, CT))])
    assert kinds(session((0, wrong), *[(1, p) for p in echo_rsp()])) == [
        ("sop-class-context-mismatch", "requestor")
    ]


def _store_from_acceptor() -> list:
    return [(1, p) for p in dimse("C_STORE_RQ", ctx=3, MessageID=7, AffectedSOPClassUID=CT,
            AffectedSOPInstanceUID="1.2", Priority=0, dataset=b"\0\0")]  # fmt: skip


def test_role_not_negotiated_and_negotiated():
    assert ("role-not-negotiated", "acceptor") in kinds(session(*_store_from_acceptor()))
    role = pdu_primitives.SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid, role.scu_role, role.scp_role = CT, False, True
    # the AC grants the requestor the SCP role for CT (PS3.7 D.3.3.4)
    rq = associate_rq(contexts=((1, VERIFICATION, (IVLE,)), (3, CT, (IVLE, EVLE))), extra=[role])
    conv = DicomConversation()
    granted = _ac_with_role(AC)
    events = feed_all(conv, [(0, rq), (1, granted), *_store_from_acceptor()])
    assert ("role-not-negotiated", "acceptor") not in kinds(events)


def _ac_with_role(ac: bytes) -> bytes:
    """``ac`` with a role selection sub-item (CT: SCU 0, SCP 1) appended to its user info."""
    uid = CT.encode()
    sub = _item(0x54, struct.pack(">H", len(uid)) + uid + b"\0\1")
    body = ac[6:]
    out = body[:68]
    p = 68
    while p < len(body):
        itype, _, ilen = struct.unpack(">BBH", body[p : p + 4])
        value = body[p + 4 : p + 4 + ilen]
        out += _item(itype, value + sub) if itype == 0x50 else body[p : p + 4 + ilen]
        p += 4 + ilen
    return _pdu(0x02, out)


def test_context_answer_mismatch():
    not_proposed_ts = associate_ac(results=((1, 0, EVLE), (3, 0, EVLE)))  # ctx 1: IVLE only
    assert kinds(session_with_ac(not_proposed_ts)) == [("context-answer-mismatch", "acceptor")]
    omitted = associate_ac(results=((1, 0, IVLE),))
    assert kinds(session_with_ac(omitted)) == [("context-answer-mismatch", "acceptor")]
    extra = associate_ac(results=((1, 0, IVLE), (3, 0, EVLE), (5, 0, IVLE)))
    assert kinds(session_with_ac(extra)) == [("context-answer-mismatch", "acceptor")]


def session_with_ac(ac: bytes) -> list:
    conv = DicomConversation()
    return feed_all(conv, [(0, RQ), (1, ac)])


def _rq(contexts: bytes, user_info: bytes, calling: bytes = b"MOD".ljust(16)) -> bytes:
    app = _item(0x10, b"1.2.840.10008.3.1.1.1")
    body = struct.pack(">HH", 1, 0) + b"PACS".ljust(16) + calling + b"\0" * 32
    return _pdu(0x01, body + app + contexts + _item(0x50, user_info))


def _pc(cid: int, *subs: bytes) -> bytes:
    return _item(0x20, bytes([cid, 0, 0, 0]) + b"".join(subs))


UI = _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4")
AS = _item(0x30, VERIFICATION.encode())
TS = _item(0x40, IVLE.encode())


@pytest.mark.parametrize(
    ("rq", "kind"),
    [
        (_rq(_pc(1, AS), UI), "malformed-context-proposal"),  # no transfer syntax
        (_rq(_pc(1, AS, AS, TS), UI), "malformed-context-proposal"),  # two abstract
        (_rq(_pc(1, AS, TS) + _pc(1, AS, TS), UI), "malformed-context-proposal"),
        (_rq(_pc(2, AS, TS), UI), "even-presentation-context-id"),
        (_rq(_pc(1, AS, TS), _item(0x51, struct.pack(">I", 0))), "missing-user-information"),
        (_rq(_pc(1, AS, TS), UI, b" " * 16), "invalid-ae-title"),
        (_rq(_pc(1, AS, TS), UI, b"MOD\\1".ljust(16)), "invalid-ae-title"),
    ],
)
def test_association_rules(rq, kind):
    events = feed_all(DicomConversation(), [(0, rq)])
    assert kinds(events) == [(kind, "requestor")]
    assert [type(e) for e in events][0] is AssociationRequested


def test_unknown_items_and_sub_items_are_skipped():
    rq = _rq(_pc(1, AS, _item(0x99, b"x"), TS) + _item(0x77, b"?"), UI + _item(0x5F, b"\1\2"))
    events = feed_all(DicomConversation(), [(0, rq)])
    assert [type(e) for e in events] == [AssociationRequested]
    assert events[0].presentation_contexts[0].transfer_syntaxes == (IVLE,)
    assert events[0].user_info.implementation_class_uid == "1.2.3.4"


def test_an_rq_over_the_buffer_cap_is_decoded_and_framing_continues():
    token = b"t" * 65400
    identity = _item(0x58, struct.pack(">BBH", 5, 0, len(token)) + token + b"\0\0")
    rq = _rq(_pc(1, AS, TS), UI + identity)
    assert len(rq) > 65536 + 6
    conv = DicomConversation()
    events = feed_all(conv, [(0, rq[:1000]), (0, rq[1000:]), (1, AC)])
    events += feed_all(conv, [(0, p) for p in echo()])
    assert [type(e).__name__ for e in events][:2] == ["AssociationRequested", "AssociationAccepted"]
    assert events[0].user_info.implementation_class_uid == "1.2.3.4"
    assert not [e for e in events if isinstance(e, ProtocolError | Resynchronised)]
    assert [e.message_id for e in events if isinstance(e, DimseRequestSeen)] == [1]


def test_protocol_version_2_at_stream_start_is_an_rq():
    rq = bytearray(RQ)
    rq[6:8] = b"\0\2"
    events = feed_all(DicomConversation(), [(0, bytes(rq)), (1, associate_rj(1, 2, 2))])
    assert [type(e).__name__ for e in events] == ["AssociationRequested", "AssociationRejected"]


def test_ae_title_and_status_helpers():
    assert ae_title_problem(b"STORESCU".ljust(16)) == ""
    assert ae_title_problem(b" " * 16) == "is all spaces"
    assert "0x5C" in ae_title_problem(b"A\\B".ljust(16))
    assert "0x00" in ae_title_problem(b"ABC".ljust(16, b"\0"))
    assert not nonstandard_status("C-FIND", 0xFF00)
    assert nonstandard_status("C-STORE", 0xFF00)
    assert nonstandard_status("C-STORE", 0xFE00)
    assert not nonstandard_status("C-STORE", 0xA700)
    assert not nonstandard_status("C-STORE", 0xB000)
    assert nonstandard_status("C-ECHO", 0x9999)


def test_the_readme_lists_every_kind_with_its_reference():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for kind in PROTOCOL_VIOLATIONS:
        assert f"| `{kind.name}` | {kind.severity} | {kind.reference} |" in readme, kind.name


@pytest.mark.parametrize(
    ("ctx", "head", "broken"),
    [
        (3, EXPLICIT_HEAD, False),  # context 3 accepted Explicit VR Little Endian
        (3, IMPLICIT_HEAD, True),
        (1, IMPLICIT_HEAD, False),  # context 1 accepted Implicit VR Little Endian
        (1, EXPLICIT_HEAD, True),
    ],
)
def test_dataset_encoding_against_the_accepted_transfer_syntax(ctx, head, broken):
    rq = associate_rq(contexts=((1, CT, (IVLE,)), (3, CT, (EVLE,))))
    store = dimse("C_STORE_RQ", ctx=ctx, MessageID=1, AffectedSOPClassUID=CT,
                  AffectedSOPInstanceUID="1.2", Priority=0, dataset=b"")[0]  # fmt: skip
    # the head split over three chunks: the verdict does not depend on where chunks end
    data = pdata([(ctx, 0x02, head + b"\0" * 100)])
    conv = DicomConversation()
    chunks = [(0, rq), (1, AC), (0, store), (0, data[:9]), (0, data[9:13]), (0, data[13:])]
    found = kinds(feed_all(conv, chunks))
    assert found == ([("dataset-encoding-mismatch", "requestor")] if broken else [])


@pytest.mark.parametrize(
    ("ctx", "head", "broken"),
    [(3, EXPLICIT_HEAD, False), (3, IMPLICIT_HEAD, True), (1, EXPLICIT_HEAD, True)],
)
def test_dataset_encoding_with_its_command_in_one_chunk(ctx, head, broken):
    """A command and its data set PDU in one chunk (the framer reads the head in its
    P-DATA fast path), and that chunk cut at every byte: the same verdict and detail, and
    the data set's bytes counted the same."""
    rq = associate_rq(contexts=((1, CT, (IVLE,)), (3, CT, (EVLE,))))
    store = dimse("C_STORE_RQ", ctx=ctx, MessageID=1, AffectedSOPClassUID=CT,
                  AffectedSOPInstanceUID="1.2", Priority=0, dataset=b"")[0]  # fmt: skip
    stream = store + pdata([(ctx, 0x02, head + b"\0" * 100)])
    seen = set()
    for cut in range(len(stream) + 1):
        conv = DicomConversation()
        parts = [(0, part) for part in (stream[:cut], stream[cut:]) if part]
        events = feed_all(conv, [(0, rq), (1, AC), *parts])
        found = [(e.kind, e.detail) for e in events if isinstance(e, ProtocolViolation)]
        (txn,) = [e for e in conv.close("fin", 1.0) if isinstance(e, DimseTransaction)]
        seen.add((tuple(found), txn.request_dataset_bytes, conv.pdata_bytes[0]))
    (only,) = seen
    assert [kind for kind, _ in only[0]] == (["dataset-encoding-mismatch"] if broken else [])
    assert only[1] == len(head) + 100 and only[2] == len(stream)

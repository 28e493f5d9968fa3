"""Byte-stream builders for the dicom core tests, using pynetdicom's own encoders.

The expected values in the tests then come from an independent implementation of
PS3.8/PS3.7 rather than from our decoder. (Kept in a test_dicom_* module so it sits in
the dicom test namespace; it also self-checks the builders.)
"""

from __future__ import annotations

from io import BytesIO

from pynetdicom import dimse_messages as dm
from pynetdicom import dimse_primitives as dp
from pynetdicom import pdu, pdu_primitives
from pynetdicom.presentation import PresentationContext as PnPC

from dicomsniffd.dicom.conversation import DicomConversation

CT = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
FIND_STUDY = "1.2.840.10008.5.1.4.1.2.2.1"
MOVE_STUDY = "1.2.840.10008.5.1.4.1.2.2.2"
GET_STUDY = "1.2.840.10008.5.1.4.1.2.2.3"
IVLE = "1.2.840.10008.1.2"
EVLE = "1.2.840.10008.1.2.1"
APP_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPL_UID = "1.2.826.0.1.3680043.9.3811.2.0.0"

USERNAME = b"radiology-user-7f3a"
PASSCODE = b"s3cr3t-Passc0de!"


def _pcs(contexts):
    out = []
    for ctx_id, abstract, syntaxes in contexts:
        pc = PnPC()
        pc.context_id = ctx_id
        pc.abstract_syntax = abstract
        pc.transfer_syntax = list(syntaxes)
        out.append(pc)
    return out


def _user_info(max_pdu=16382, identity=False, extra=()):
    items = []
    ml = pdu_primitives.MaximumLengthNotification()
    ml.maximum_length_received = max_pdu
    items.append(ml)
    ic = pdu_primitives.ImplementationClassUIDNotification()
    ic.implementation_class_uid = IMPL_UID
    items.append(ic)
    iv = pdu_primitives.ImplementationVersionNameNotification()
    iv.implementation_version_name = "PYNETDICOM_TEST"
    items.append(iv)
    if identity:
        ui = pdu_primitives.UserIdentityNegotiation()
        ui.user_identity_type = 2
        ui.positive_response_requested = True
        ui.primary_field = USERNAME
        ui.secondary_field = PASSCODE
        items.append(ui)
    items.extend(extra)
    return items


def associate_rq(
    calling="MODALITY1", called="PACS", contexts=((1, CT, (EVLE, IVLE)),), identity=False, extra=()
) -> bytes:
    prim = pdu_primitives.A_ASSOCIATE()
    prim.application_context_name = APP_CONTEXT
    prim.calling_ae_title = calling
    prim.called_ae_title = called
    prim.presentation_context_definition_list = _pcs(contexts)
    prim.user_information = _user_info(identity=identity, extra=extra)
    rq = pdu.A_ASSOCIATE_RQ()
    rq.from_primitive(prim)
    return rq.encode()


def associate_ac(calling="MODALITY1", called="PACS", results=((1, 0, EVLE),)) -> bytes:
    prim = pdu_primitives.A_ASSOCIATE()
    prim.application_context_name = APP_CONTEXT
    prim.calling_ae_title = calling
    prim.called_ae_title = called
    prim.result = 0
    pcs = []
    for ctx_id, result, ts in results:
        pc = PnPC()
        pc.context_id = ctx_id
        pc.result = result
        pc.transfer_syntax = [ts]
        pcs.append(pc)
    prim.presentation_context_definition_results_list = pcs
    prim.user_information = _user_info(max_pdu=32768)
    ac = pdu.A_ASSOCIATE_AC()
    ac.from_primitive(prim)
    return ac.encode()


def associate_rj(result: int, source: int, reason: int) -> bytes:
    prim = pdu_primitives.A_ASSOCIATE()
    prim.result = result
    prim.result_source = source
    prim.diagnostic = reason
    rj = pdu.A_ASSOCIATE_RJ()
    rj.from_primitive(prim)
    return rj.encode()


def release_rq() -> bytes:
    return pdu.A_RELEASE_RQ().encode()


def release_rp() -> bytes:
    return pdu.A_RELEASE_RP().encode()


def abort(source: int, reason: int) -> bytes:
    prim = pdu_primitives.A_P_ABORT() if source == 2 else pdu_primitives.A_ABORT()
    if source == 2:
        prim.provider_reason = reason
    else:
        prim.abort_source = source
    ab = pdu.A_ABORT_RQ()
    ab.from_primitive(prim)
    return ab.encode()


_MESSAGES = {
    "C_ECHO_RQ": (dp.C_ECHO, dm.C_ECHO_RQ),
    "C_ECHO_RSP": (dp.C_ECHO, dm.C_ECHO_RSP),
    "C_STORE_RQ": (dp.C_STORE, dm.C_STORE_RQ),
    "C_STORE_RSP": (dp.C_STORE, dm.C_STORE_RSP),
    "C_FIND_RQ": (dp.C_FIND, dm.C_FIND_RQ),
    "C_FIND_RSP": (dp.C_FIND, dm.C_FIND_RSP),
    "C_MOVE_RQ": (dp.C_MOVE, dm.C_MOVE_RQ),
    "C_MOVE_RSP": (dp.C_MOVE, dm.C_MOVE_RSP),
    "C_GET_RQ": (dp.C_GET, dm.C_GET_RQ),
    "C_GET_RSP": (dp.C_GET, dm.C_GET_RSP),
}


def dimse(
    kind: str, ctx: int = 1, dataset: bytes | None = None, max_pdu: int = 16382, **fields
) -> list[bytes]:
    """P-DATA-TF PDUs (one per fragment, as pynetdicom sends them) for one DIMSE message."""
    prim_cls, msg_cls = _MESSAGES[kind]
    prim = prim_cls()
    for name, value in fields.items():
        setattr(prim, name, value)
    if dataset is not None:
        attr = {
            "C_STORE_RQ": "DataSet",
            "C_FIND_RQ": "Identifier",
            "C_FIND_RSP": "Identifier",
            "C_MOVE_RQ": "Identifier",
            "C_MOVE_RSP": "Identifier",
            "C_GET_RQ": "Identifier",
            "C_GET_RSP": "Identifier",
        }[kind]
        setattr(prim, attr, BytesIO(dataset))
    msg = msg_cls()
    msg.primitive_to_message(prim)
    out = []
    for pdata in msg.encode_msg(ctx, max_pdu):
        p = pdu.P_DATA_TF()
        p.from_primitive(pdata)
        out.append(p.encode())
    return out


def feed_all(conv: DicomConversation, chunks, ts: float = 0.0) -> list:
    """Feed (direction, bytes[, ts]) tuples; returns every event in order."""
    events = []
    for chunk in chunks:
        if len(chunk) == 3:
            d, data, t = chunk
        else:
            (d, data), t = chunk, ts
        events.extend(conv.feed(d, data, t))
    return events


def test_builders_produce_wire_bytes():
    rq = associate_rq()
    assert rq[0] == 0x01 and int.from_bytes(rq[2:6], "big") == len(rq) - 6
    pdus = dimse("C_ECHO_RQ", MessageID=1, AffectedSOPClassUID=VERIFICATION)
    assert len(pdus) == 1 and pdus[0][0] == 0x04 and pdus[0][11] == 0x03

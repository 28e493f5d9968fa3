"""Stream detection (streams/detect.py, streams/tls.py): the first bytes of a flow.

The A-ASSOCIATE-RQ check is the framer's own (dicom/pdu.plausible_associate_header);
detection differs from the framer's resync scan only where its comments say why: a
larger length bound, and the reserved field after the protocol version is not tested.
"""

from __future__ import annotations

import struct

from test_dicom_streams import associate_ac, associate_rq

from dicomsniffd.dicom.pdu import PduFramer
from dicomsniffd.streams.detect import MAX_DETECTED_ASSOCIATE_LENGTH, looks_like_associate_rq
from dicomsniffd.streams.tls import looks_like_tls


def _header(pdu_type: int = 1, length: int = 200, version: int = 1, reserved: int = 0) -> bytes:
    return struct.pack(">BBIHH", pdu_type, 0, length, version, reserved)


def test_a_real_rq_is_dicom_an_ac_is_not_a_flow_start():
    assert looks_like_associate_rq(associate_rq())
    assert not looks_like_associate_rq(associate_ac())
    assert not looks_like_associate_rq(associate_rq()[:9])


def test_length_bounds_and_protocol_version():
    assert looks_like_associate_rq(_header(length=68))
    assert not looks_like_associate_rq(_header(length=67))
    assert looks_like_associate_rq(_header(length=MAX_DETECTED_ASSOCIATE_LENGTH))
    assert not looks_like_associate_rq(_header(length=MAX_DETECTED_ASSOCIATE_LENGTH + 1))
    assert not looks_like_associate_rq(_header(version=2))
    assert not looks_like_associate_rq(b"\x01\x01" + _header()[2:])  # reserved byte set


def test_detection_agrees_with_the_framer_where_their_bounds_overlap():
    framer = PduFramer()  # max_association_pdu_bytes 65536
    for length in (0, 67, 68, 1000, 65536):
        for version in (0, 1, 2):
            h = _header(length=length, version=version)
            assert looks_like_associate_rq(h) == framer._plausible(h, 0), (length, version)
    # where they differ, on purpose: the framer's bound and its reserved-field test
    assert looks_like_associate_rq(_header(length=65537)) and not framer._plausible(
        _header(length=65537), 0
    )
    assert looks_like_associate_rq(_header(reserved=1)) and not framer._plausible(
        _header(reserved=1), 0
    )


def test_tls_client_hello():
    assert looks_like_tls(b"\x16\x03\x01\x02\x00")
    assert looks_like_tls(b"\x16\x03\x04\x00\x10")
    assert not looks_like_tls(b"\x16\x03\x05\x00\x10")
    assert not looks_like_tls(b"\x17\x03\x03\x00\x10")
    assert not looks_like_tls(b"\x16\x03\x01\x02")

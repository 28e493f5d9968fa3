"""Stream detection (streams/detect.py, streams/tls.py): the first bytes of a flow.

The A-ASSOCIATE-RQ check is the framer's own (dicom/pdu.plausible_associate_header);
at a connection's start the framer believes what detection believes (any legal length, any
protocol version); its resync scan differs where its comments say why: the
max_association_pdu_bytes bound, protocol version 1 and the reserved field tested.
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
    # another protocol version is DICOM on a DICOM port (the acceptor rejects it with
    # protocol-version-not-supported), not off the DICOM ports
    assert looks_like_associate_rq(_header(version=2))
    assert not looks_like_associate_rq(_header(version=2), any_version=False)
    assert looks_like_associate_rq(_header(version=1), any_version=False)
    assert not looks_like_associate_rq(b"\x01\x01" + _header()[2:])  # reserved byte set


def test_detection_agrees_with_the_framer_at_stream_start():
    top = MAX_DETECTED_ASSOCIATE_LENGTH
    for length in (0, 67, 68, 1000, 65536, 65537, top, top + 1):
        for version in (0, 1, 2):
            for reserved in (0, 1):
                h = _header(length=length, version=version, reserved=reserved)
                assert looks_like_associate_rq(h) == PduFramer()._plausible(h, 0), (
                    length,
                    version,
                    reserved,
                )


def test_resync_scan_is_stricter_than_stream_start():
    # after the stream start the framer's own bound, version 1 and the reserved field
    framer = PduFramer()  # max_association_pdu_bytes 65536
    framer.unsync()
    assert framer._plausible(_header(length=65536), 0)
    assert not framer._plausible(_header(length=65537), 0)
    assert not framer._plausible(_header(version=2), 0)
    assert not framer._plausible(_header(reserved=1), 0)


def test_tls_client_hello():
    assert looks_like_tls(b"\x16\x03\x01\x02\x00")
    assert looks_like_tls(b"\x16\x03\x04\x00\x10")
    assert not looks_like_tls(b"\x16\x03\x05\x00\x10")
    assert not looks_like_tls(b"\x17\x03\x03\x00\x10")
    assert not looks_like_tls(b"\x16\x03\x01\x02")

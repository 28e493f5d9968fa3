"""The evidence walker (sans-IO): which stream bytes are kept, which are scrubbed."""

from __future__ import annotations

import struct

from pynetdicom import pdu, pdu_primitives
from test_dicom_streams import (
    CT,
    PASSCODE,
    USERNAME,
    abort,
    associate_ac,
    associate_rq,
    dimse,
    release_rq,
)

from dicomsniffd.evidence.walker import KeepMap, PduWalker, scrub_user_identity

CANARY = b"EVIDENCE^CANARY"
PATIENT_ID = b"CANARY12345"
DATASET = (b"\x10\x00\x10\x00PN\x10\x00" + CANARY + b" " + b"\x10\x00\x20\x00LO\x0c\x00"
           + PATIENT_ID + b" ") * 50  # fmt: skip


def _store(mid: int = 1, dataset: bytes = DATASET, max_pdu: int = 1000) -> list[bytes]:
    return dimse(
        "C_STORE_RQ", MessageID=mid, AffectedSOPClassUID=CT, AffectedSOPInstanceUID="1.2.3.4",
        Priority=0, dataset=dataset, max_pdu=max_pdu,
    )  # fmt: skip


def _walk(stream: bytes, chunk: int = 7) -> PduWalker:
    walker = PduWalker()
    for i in range(0, len(stream), chunk):
        walker.feed(stream[i : i + chunk])
    return walker


def _ac_with_response(response: bytes) -> bytes:
    ac = bytearray(associate_ac())
    sub = bytes([0x59, 0]) + struct.pack("!HH", 2 + len(response), len(response)) + response
    # Append the sub-item to the user information item (the last item) and fix lengths.
    at = 74
    while ac[at] != 0x50:
        at += 4 + int.from_bytes(ac[at + 2 : at + 4], "big")
    ac[at + 2 : at + 4] = (int.from_bytes(ac[at + 2 : at + 4], "big") + len(sub)).to_bytes(2, "big")
    ac += sub
    ac[2:6] = (len(ac) - 6).to_bytes(4, "big")
    return bytes(ac)


def test_command_sets_and_headers_kept_data_set_scrubbed():
    stream = associate_rq() + associate_ac() + b"".join(_store()) + release_rq()
    walker = _walk(stream)
    out = walker.keep.overlay(0, len(stream))
    assert len(out) == len(stream)
    assert CANARY not in out and PATIENT_ID not in out
    assert CANARY in stream  # the test data really carries it
    # Everything but the data-set values is byte-identical.
    fragments = _store()
    command = fragments[0]
    start = len(associate_rq()) + len(associate_ac())
    assert out[:start] == stream[:start]
    assert out[start : start + len(command)] == command
    assert out[-len(release_rq()) :] == release_rq()
    assert walker.stats.command_fragments == 1
    assert walker.stats.dataset_fragments == len(fragments) - 1
    assert walker.stats.dataset_bytes == len(DATASET)
    assert not walker.lost


def test_data_set_pdv_headers_kept_values_zero():
    fragments = _store()
    stream = b"".join(fragments)
    out = _walk(stream, chunk=1).keep.overlay(0, len(stream))
    at = len(fragments[0])
    for fragment in fragments[1:]:
        assert out[at : at + 12] == fragment[:12]  # PDU header + PDV header
        assert out[at + 12 : at + len(fragment)] == bytes(len(fragment) - 12)
        at += len(fragment)


def test_user_identity_values_scrubbed_lengths_kept():
    rq = associate_rq(identity=True)
    assert USERNAME in rq and PASSCODE in rq
    out = _walk(rq).keep.overlay(0, len(rq))
    assert USERNAME not in out and PASSCODE not in out
    assert len(out) == len(rq)
    decoded = pdu.A_ASSOCIATE_RQ()
    decoded.decode(out)  # still a well-formed PDU, every length as before
    identity = [i for i in decoded.user_information.user_data if i.item_type == 0x58][0]
    assert identity.primary_field == bytes(len(USERNAME))
    assert identity.secondary_field == bytes(len(PASSCODE))
    differing = [i for i in range(len(rq)) if rq[i] != out[i]]
    assert len(differing) <= len(USERNAME) + len(PASSCODE)


def test_user_identity_server_response_scrubbed():
    ac = _ac_with_response(b"SERVER-TOKEN-42")
    decoded = pdu.A_ASSOCIATE_AC()
    decoded.decode(ac)  # the hand-built sub-item is valid
    walker = _walk(ac)
    out = walker.keep.overlay(0, len(ac))
    assert b"SERVER-TOKEN-42" not in out and len(out) == len(ac)
    assert walker.stats.user_identity_fields == 1
    assert out[: len(ac) - 15] == ac[: len(ac) - 15]


def test_user_identity_length_past_its_item_scrubs_the_rest():
    rq = bytearray(associate_rq(identity=True))
    at = rq.index(USERNAME) - 2
    rq[at : at + 2] = (0xFFFF).to_bytes(2, "big")  # primary field length past the PDU
    scrub_user_identity(rq)
    assert USERNAME not in rq and PASSCODE not in rq


def test_gap_inside_a_data_set_stays_in_step():
    fragments = _store()
    stream = b"".join(fragments)
    walker = PduWalker()
    cut = len(fragments[0]) + 12 + 100  # 100 bytes into the first data-set value
    walker.feed(stream[:cut])
    walker.gap(50)
    walker.feed(stream[cut + 50 :])
    assert not walker.lost
    out = walker.keep.overlay(0, len(stream))
    assert out[: len(fragments[0])] == fragments[0]
    assert CANARY not in out


def test_gap_across_a_header_loses_the_place_and_scrubs_everything_after():
    fragments = _store() + _store(mid=2)
    stream = b"".join(fragments)
    walker = PduWalker()
    first = len(fragments[0])
    walker.feed(stream[: first + 3])  # into the next PDU header
    walker.gap(10)
    walker.feed(stream[first + 13 :])
    assert walker.lost and walker.stats.lost_at == first + 3
    out = walker.keep.overlay(0, len(stream))
    assert out[first + 13 :] == bytes(len(stream) - first - 13)


def test_not_a_pdu_loses_the_place():
    stream = associate_rq() + b"\x99" + bytes(100) + b"".join(_store())
    walker = _walk(stream)
    assert walker.lost and walker.stats.lost_at == len(associate_rq())
    out = walker.keep.overlay(0, len(stream))
    assert out[len(associate_rq()) :] == bytes(len(stream) - len(associate_rq()))


def test_pdv_longer_than_its_pdu_skips_that_pdu_only():
    bad = bytearray(_store()[1])
    bad[6:10] = (len(bad)).to_bytes(4, "big")  # PDV length past the PDU
    good = b"".join(_store(mid=2))
    stream = bytes(bad) + good + abort(0, 0)
    walker = _walk(stream)
    assert not walker.lost
    out = walker.keep.overlay(0, len(stream))
    assert out[:6] == bad[:6] and out[12 : len(bad)] == bytes(len(bad) - 12)
    assert out[len(bad) : len(bad) + len(_store(mid=2)[0])] == _store(mid=2)[0]
    assert out.endswith(abort(0, 0))


def test_pdu_claiming_4gb_is_walked_by_its_pdvs():
    head = b"\x04\x00" + (0xFFFFFFF0).to_bytes(4, "big")
    pdv = (1002).to_bytes(4, "big") + b"\x01\x00" + CANARY * 66 + b"\0" * 10
    walker = _walk(head + pdv)
    assert walker.keep.overlay(0, 12) == head + pdv[:6]
    assert CANARY not in walker.keep.overlay(0, len(head + pdv))


def test_oversized_association_pdu_body_scrubbed_walk_goes_on():
    body = CANARY * 200
    big = b"\x07\x00" + len(body).to_bytes(4, "big") + body  # an A-ABORT of 3000 bytes
    stream = big + release_rq()
    out = _walk(stream).keep.overlay(0, len(stream))
    assert CANARY not in out and out.endswith(release_rq())


def test_keep_map_overlay_partial_ranges():
    keep = KeepMap()
    keep.add(10, b"abcd")
    keep.add(14, b"ef")  # merged with the previous run
    keep.add(30, b"xyz")
    assert keep.starts == [10, 30]
    assert keep.overlay(0, 12) == bytes(10) + b"ab"
    assert keep.overlay(12, 20) == b"cdef" + bytes(14) + b"xy"
    assert keep.overlay(40, 5) == bytes(5)
    assert keep.kept_bytes == 9


def test_release_and_abort_kept_whole():
    rj = pdu.A_ASSOCIATE_RJ()
    prim = pdu_primitives.A_ASSOCIATE()
    prim.result, prim.result_source, prim.diagnostic = 1, 1, 7
    rj.from_primitive(prim)
    stream = rj.encode() + release_rq() + abort(2, 1)
    assert _walk(stream, chunk=1).keep.overlay(0, len(stream)) == stream


def test_random_bytes_and_gaps_never_raise_and_never_keep_more_than_headers():
    import random

    rng = random.Random(14)
    for _ in range(300):
        walker = PduWalker()
        stream = bytearray()
        for _ in range(rng.randrange(1, 12)):
            choice = rng.random()
            if choice < 0.3:
                chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
            elif choice < 0.6:
                chunk = b"\x04\x00" + rng.randrange(0, 400).to_bytes(4, "big")
                chunk += rng.randrange(0, 400).to_bytes(4, "big") + bytes([rng.randrange(256)] * 2)
            else:
                chunk = CANARY * rng.randrange(1, 5)
            if rng.random() < 0.2:
                walker.gap(len(chunk))
            else:
                walker.feed(chunk)
            stream += chunk
        out = walker.keep.overlay(0, walker.pos)
        assert len(out) == walker.pos
        assert walker.keep.kept_bytes <= walker.pos

"""Property tests: segmentation independence and "nothing ever raises"."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_dicom_streams import (
    CT,
    FIND_STUDY,
    abort,
    associate_ac,
    associate_rq,
    dimse,
    release_rp,
    release_rq,
)

from dicomsniffd.dicom.conversation import DicomConversation


def _session() -> list[tuple[int, bytes]]:
    out = [
        (
            0,
            associate_rq(
                contexts=((1, CT, ("1.2.840.10008.1.2",)), (3, FIND_STUDY, ("1.2.840.10008.1.2",)))
            ),
        ),
        (1, associate_ac(results=((1, 0, "1.2.840.10008.1.2"), (3, 0, "1.2.840.10008.1.2")))),
    ]
    for mid in (1, 2):
        for p in dimse(
            "C_STORE_RQ",
            MessageID=mid,
            AffectedSOPClassUID=CT,
            AffectedSOPInstanceUID="1.2",
            Priority=0,
            dataset=bytes(range(256)) * 20,
            max_pdu=1024,
        ):
            out.append((0, p))
        for p in dimse(
            "C_STORE_RSP", MessageIDBeingRespondedTo=mid, AffectedSOPClassUID=CT, Status=0
        ):
            out.append((1, p))
    for p in dimse(
        "C_FIND_RQ",
        ctx=3,
        MessageID=3,
        AffectedSOPClassUID=FIND_STUDY,
        Priority=0,
        dataset=b"\x00" * 12,
    ):
        out.append((0, p))
    for status in (0xFF00, 0xFF00, 0x0000):
        for p in dimse(
            "C_FIND_RSP",
            ctx=3,
            MessageIDBeingRespondedTo=3,
            AffectedSOPClassUID=FIND_STUDY,
            Status=status,
        ):
            out.append((1, p))
    out += [(0, release_rq()), (1, release_rp())]
    return out


SESSION = _session()
STREAMS = [b"".join(p for d, p in SESSION if d == k) for k in (0, 1)]


def _run(split_points: list[list[int]], prefix: bytes) -> list:
    """Feed each direction's stream (with a garbage prefix on direction 0) split at points."""
    conv = DicomConversation()
    events = []
    for d in (0, 1):
        data = (prefix + STREAMS[0]) if d == 0 else STREAMS[1]
        cuts = sorted({c % (len(data) + 1) for c in split_points[d]} | {0, len(data)})
        for a, b in zip(cuts, cuts[1:], strict=False):
            events.extend(conv.feed(d, data[a:b], 1.0))
    events.extend(conv.close("fin", 2.0))
    return events


REFERENCE = {}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=60),
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=30),
    st.sampled_from([b"", b"\x04\x00\x00", bytes(range(50)), b"\x00" * 7 + b"\x02"]),
)
def test_any_segmentation_yields_identical_events(cuts0, cuts1, prefix):
    if prefix not in REFERENCE:
        REFERENCE[prefix] = _run([[], []], prefix)
    assert _run([cuts0, cuts1], prefix) == REFERENCE[prefix]


def test_reference_session_is_fully_decoded():
    events = _run([[], []], b"")
    names = [type(e).__name__ for e in events]
    assert names.count("DimseTransaction") == 3
    assert "ProtocolError" not in names and names[-1] == "AssociationEnded"
    assert events[-1].how == "released"


_valid = b"".join(STREAMS)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=3000),
        st.builds(
            lambda pos, junk: _valid[:pos] + junk + _valid[pos + len(junk) :],
            st.integers(min_value=0, max_value=len(_valid)),
            st.binary(min_size=1, max_size=16),
        ),
        st.builds(lambda n: abort(2, 1) * n + b"\x01\x00\xff\xff\xff\xff", st.integers(0, 3)),
    ),
    st.lists(st.tuples(st.integers(0, 1), st.integers(1, 700), st.integers(0, 50)), max_size=20),
)
def test_arbitrary_bytes_never_raise(data, ops):
    conv = DicomConversation()
    pos = 0
    ts = 0.0
    for d, size, gap in ops or [(0, len(data), 0)]:
        ts += 1.0
        conv.feed(d, data[pos : pos + size], ts)
        pos += size
        if gap:
            conv.gap(d, gap, ts)
    conv.feed(0, data[pos:], ts)
    conv.expire(ts + 1000)
    conv.close("reset", ts + 1001)
    # bounded buffers whatever happened
    for f in conv._framers:
        assert len(f._buf) <= 65536 and len(f._scan) < 12

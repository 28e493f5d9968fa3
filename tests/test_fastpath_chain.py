"""The compiled lease walks the PDU headers of a data set (dicom/pdvchain.py, _fastpath.c).

Real DCMTK storescu traffic where P-DATA-TF boundaries fall everywhere in the segments:
to a pynetdicom SCP announcing a 1,024-byte Maximum Length over a 1500-byte MTU (one or
two PDU headers in most segments, some split by a segment's end), and to storescp over
loopback (16 KB PDUs in 64 KB segments: several whole PDUs per segment). On each:

- the compiled path gives the same metrics, events, summary and TCP counts as pure
  Python, at small batch sizes (test_fastpath's comparison);
- after every batch, the state the write-back left (every framer's counters, state,
  PDV length and header time; every transaction's bytes and last data time) equals what
  pure Python's own framing left: the chain is exact between batches, not only at the end;
- the chain really ran: most segments never reached Python (else this proves nothing).

And, on hand-built segments (unit tests of the C walk alone), every header the framer
would not take silently ends the walk: a last fragment, a command, another context, an
odd PDV length, a PDU over the receiver's maximum, two PDVs in one PDU, a header split by
the segment's end; what a walk writes back is exact.
"""

from __future__ import annotations

import pytest
from helpers_pcap import ethernet, ipv4, tcp
from netns import VethPair
from peers import make_ct
from scenarios.plumbing import (
    SCP_PORT,
    dcmtk,
    require_all_tools,
    start_pyscp,
    start_storescp,
    stop,
)
from test_fastpath import A, B, _assert_same, _batch, _bypass, _Half, array_of

from dicomsniffd import accel
from dicomsniffd.capture import FileSource
from dicomsniffd.config import load_config
from dicomsniffd.decode import Decoder
from dicomsniffd.pipeline import Pipeline

SMALL_PDU = 1024  # well under one segment: PDU headers land anywhere in the segments


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    require_all_tools()
    outdir = str(tmp_path_factory.mktemp("chain-images"))
    return [path for path, _uid in make_ct.make_series(outdir, 4, 320)]


def _storescu(net: VethPair, side: str, host: str, called: str, images: list[str]) -> None:
    argv = [dcmtk("storescu"), "-aet", "STORESCU", "-aec", called, host, str(SCP_PORT)]
    p = net.run(side, [*argv, *images], check=False)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.fixture(scope="module")
def small_pdus(images, tmp_path_factory) -> str:
    work = tmp_path_factory.mktemp("chain-small")
    pcap = str(work / "small-pdus.pcap")
    with VethPair(ipv6=False) as net, net.capture("b", pcap):
        scp = start_pyscp(net, "b", str(work), {"ae_title": "PYSCP", "max_pdu": SMALL_PDU})
        try:
            _storescu(net, "a", net.ip("b"), "PYSCP", images)
        finally:
            stop(scp)
    return pcap


@pytest.fixture(scope="module")
def loopback(images, tmp_path_factory) -> str:
    pcap = str(tmp_path_factory.mktemp("chain-lo") / "loopback.pcap")
    with VethPair(ipv6=False) as net, net.capture("a", pcap, iface="lo"):
        scp = start_storescp(net, "a", SCP_PORT, "STORESCP")
        try:
            _storescu(net, "a", "127.0.0.1", "STORESCP", images)
        finally:
            stop(scp)
    return pcap


# -- after every batch: the same state in both paths -----------------------------------


def _pipeline(pure: bool, monkeypatch) -> tuple[Pipeline, Decoder]:
    """A pipeline and an Ethernet decoder, compiled or pure Python (chosen when built)."""
    with monkeypatch.context() as m:
        if pure:
            m.setattr(accel, "fastpath", None)
        return Pipeline(load_config(None), []), Decoder(1)


_FRAMER = ("state", "skip", "pdata_bytes", "_pdv_len", "_pdu_ts", "_pdv_ts", "_ctx", "_last")


def _state(pipeline: Pipeline) -> dict:
    """Every DICOM flow's framers and open transactions, keyed by the flow's handler order."""
    out = {}
    for i, handler in enumerate(pipeline.handlers.values()):
        conv = handler.conv
        framers = tuple(tuple(getattr(f, a) for a in _FRAMER) for f in conv._framers)
        txns = tuple(
            (key, t.request_bytes, t.response_bytes, t.last_ts)
            for key, t in sorted(conv._dimse.transactions.items())
        )
        out[i] = (framers, txns)
    return out


def _step_by_step(pcap: str, batch_size: int, monkeypatch) -> tuple[int, int, int]:
    compiled, c_decoder = _pipeline(False, monkeypatch)
    pure, p_decoder = _pipeline(True, monkeypatch)
    assert c_decoder.accelerated and compiled.flows._bypass is not None
    assert not p_decoder.accelerated and pure.flows._bypass is None
    batches = followed = 0
    with FileSource(pcap) as source:
        for data, records in source.batches(batch_size):
            compiled.process_batch(c_decoder, data, records)
            pure.process_batch(p_decoder, data, records)
            compiled.flows.sync()  # the leases written back: what anything reading does first
            state = _state(compiled)
            assert state == _state(pure), f"after batch {batches}"
            batches += 1
            followed += bool(state)
    assert followed > batches / 2, "the DICOM flows were followed"
    flows = compiled.flows
    return flows.segments, flows._bypass.consumed, batches


@pytest.mark.netns
@pytest.mark.parametrize("batch_size", [64, 7])
def test_small_pdus_step_by_step(small_pdus, batch_size, monkeypatch):
    in_python, consumed, _ = _step_by_step(small_pdus, batch_size, monkeypatch)
    # ~1.4 PDUs per segment: without the chain nearly every data segment ends a PDV and
    # goes to Python; with it only commands, responses and association PDUs do
    # (without the chain no lease is even granted: no PDV has a segment's worth left)
    assert consumed > 2 * in_python, (consumed, in_python)


@pytest.mark.netns
@pytest.mark.parametrize("batch_size", [5, 2])  # 64 KB segments: few packets
def test_loopback_step_by_step(loopback, batch_size, monkeypatch):
    in_python, consumed, _ = _step_by_step(loopback, batch_size, monkeypatch)
    # few but large segments, most of them ending a PDV inside: still consumed
    assert consumed > 0, (consumed, in_python)


@pytest.mark.netns
@pytest.mark.parametrize("batch_size", [64, 7])
def test_small_pdus_same_results(small_pdus, batch_size, monkeypatch):
    _assert_same([small_pdus], monkeypatch, batch_size)


@pytest.mark.netns
def test_loopback_same_results(loopback, monkeypatch):
    _assert_same([loopback], monkeypatch, 3)


# -- the walk alone, on hand-built segments -----------------------------------------------

CTX, LIMIT = 1, 1024


def _pdata(dlen: int, ctx: int = CTX, mch: int = 0, length: int | None = None) -> bytes:
    """A P-DATA-TF header and its first PDV header (the data bytes not included)."""
    pdv = dlen + 2
    length = pdv + 4 if length is None else length
    return bytes([0x04, 0]) + length.to_bytes(4, "big") + pdv.to_bytes(4, "big") + bytes([ctx, mch])


def _walk(payload: bytes, budget: int = 100, pdv_len: int = 500):
    """Lease a direction with ``budget`` bytes left of a ``pdv_len`` PDV and a chain, feed
    one segment: (consumed?, what was written back)."""
    b, synced, sent = _bypass()
    chain = (CTX, LIMIT, pdv_len, 5.0)
    assert b.grant(_Half(), A, 40000, B, 104, 1000, budget, -1, float("inf"), 10.0, chain)
    frame = ethernet(ipv4(tcp(40000, 104, 1000, 5000, payload=payload), A, B, ip_id=1))
    buf, records = _batch([frame])
    b_ts = records[0][0] + records[0][1] * 1e-6
    accel.fastpath.decode_batch(0, lambda f: None, buf, array_of(records), b)
    b.revoke_all()
    return len(sent) == 0, synced[0], b_ts  # the batch-end write-back, or the lease end


def test_a_walk_across_two_pdus_writes_back_what_framing_would_leave():
    payload = b"x" * 100 + _pdata(200) + b"y" * 200 + _pdata(1000 - 6) + b"z" * 50
    consumed, synced, ts = _walk(payload)
    assert consumed
    taken, chained = synced[2], synced[10]
    assert taken == len(payload)
    # 2 PDVs ended (the leased one, 500 bytes, and the 200-byte one), 944 bytes left of the
    # third (994 - 50), whose header came with this segment
    assert chained == (2, 700, ts, ts, 944, 994)


def test_a_walk_that_ends_at_a_pdu_end_leaves_the_lease_at_the_boundary():
    consumed, synced, ts = _walk(b"x" * 100 + _pdata(200) + b"y" * 200)
    assert consumed and synced[10] == (2, 700, ts, ts, 0, 200)
    consumed, synced, ts = _walk(b"x" * 100)  # the leased PDV's end, no header after it
    assert consumed and synced[10] == (1, 500, ts, 5.0, 0, 500)


_DATA = b"y" * 20


@pytest.mark.parametrize(
    "after",
    [
        _pdata(200, mch=2) + _DATA,  # the data set's last fragment: its message completes
        _pdata(200, mch=1) + _DATA,  # a command fragment
        _pdata(200, mch=4) + _DATA,  # reserved bits: a DESIGN §4b violation
        _pdata(200, ctx=3) + _DATA,  # another presentation context
        _pdata(201)[:6] + (203).to_bytes(4, "big") + bytes([CTX, 0]) + _DATA,  # odd length
        _pdata(LIMIT) + _DATA,  # PDU longer than the receiver's maximum (LIMIT + 6)
        _pdata(200, length=200 + 2 + 4 + 50) + _DATA,  # a second PDV follows in the PDU
        bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0]),  # an A-ABORT
        _pdata(200)[:11],  # a header split by the segment's end
        _pdata(200)[:1],
    ],
)
def test_the_walk_refuses_every_header_the_framer_would_not_take_silently(after):
    consumed, synced, _ = _walk(b"x" * 100 + after)
    assert not consumed  # the segment went to Python, the lease ended untouched
    assert synced[2] == 0 and synced[10] is None

"""The compiled hot path (dicomsniffd._fastpath) against the pure-Python one.

Both must give identical results: the same segments and decode counters frame by frame,
and the same metrics, events and summary for whole captures -- real DCMTK/pynetdicom
traffic (every scenario, IPv6, VLAN, loss, midstream, snaplen, `-i any` included) and
damaged copies of it (loss, SPAN duplicates, reordering, cut frames, flipped bytes) at
several batch sizes, which is what exercises the leases' hand-back paths.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import random
import struct

import dpkt
import pytest
from helpers_pcap import ACK, FIN, PSH, SYN, ethernet, ipv4, ipv6, sll, sll2, tcp

from dicomsniffd import accel
from dicomsniffd.analyze import analyze_files
from dicomsniffd.config import load_config
from dicomsniffd.decode import DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2, Decoder
from dicomsniffd.sinks.eventlog import EventLog
from dicomsniffd.sinks.metrics import MetricsStore
from dicomsniffd.sinks.summary import Summary


def test_the_compiled_path_is_built_and_used_by_default():
    # CI installs a compiler (scripts/test.sh): a missing extension there is a failure,
    # not a silent fall-back to the slower path.
    module = importlib.import_module("dicomsniffd._fastpath")
    assert accel.fastpath is module, accel.describe()
    assert Decoder(DLT_EN10MB).accelerated
    assert "compiled" in accel.describe()


# -- decode: compiled decode_batch == Python decode, frame by frame -----------------------


def _python_reference(linktype, buf, records):
    dec = Decoder(linktype, accelerate=False)
    out = []
    for sec, usec, off, caplen in records:
        seg = dec.decode(buf[off : off + caplen])
        if seg is not None:
            out.append((sec + usec * 1e-6, seg))
    return out, dec.counters()


def _compiled(linktype, buf, records):
    dec = Decoder(linktype, accelerate=True)
    assert dec.accelerated
    out: list = []
    res = dec.decode_batch(buf, records, lambda ts, *seg: out.append((ts, seg)))
    assert res[:2] == (len(records), sum(r[3] for r in records))
    return out, dec.counters()


def _batch(frames):
    buf, records, off = b"", [], 0
    for i, f in enumerate(frames):
        records.append((1_700_000_000 + i, (i * 37) % 1_000_000, off, len(f)))
        buf += f
        off += len(f)
    return buf, records


def _cooked(build, l3: bytes, etype: int, vlans) -> bytes:
    """A cooked (SLL/SLL2) frame; with VLAN tags the protocol field is the first TPID
    and each tag is TCI + the next type, as the kernel writes them."""
    if not vlans:
        return build(l3, etype)
    types = [tpid for tpid, _ in vlans[1:]] + [etype]
    tags = b"".join(
        struct.pack("!HH", vid, nxt) for (_, vid), nxt in zip(vlans, types, strict=True)
    )
    return build(tags + l3, vlans[0][0])


_LINKS = {
    DLT_EN10MB: lambda l3, et, vl: ethernet(l3, et, vl),
    DLT_LINUX_SLL: lambda l3, et, vl: _cooked(sll, l3, et, vl),
    DLT_LINUX_SLL2: lambda l3, et, vl: _cooked(sll2, l3, et, vl),
}


def _random_frame(rng: random.Random, linktype: int) -> bytes:
    payload = bytes(rng.randrange(256) for _ in range(rng.choice((0, 0, 1, 13, 200, 1460))))
    seg = tcp(
        sport=rng.choice((104, 11112, 40000)),
        dport=rng.choice((104, 11112, 40001)),
        seq=rng.randrange(1 << 32),
        ack=rng.randrange(1 << 32),
        flags=rng.choice((ACK, ACK | PSH, SYN, ACK | FIN)),
        window=rng.choice((0, 512, 65535)),
        payload=payload,
        options=rng.choice((b"", bytes(12))),
    )
    v6 = rng.random() < 0.3
    l3 = ipv6(seg) if v6 else ipv4(seg, ip_id=rng.randrange(65536))
    vlans = [(rng.choice((0x8100, 0x88A8, 0x9100)), rng.randrange(4096))] * rng.choice((0, 0, 1, 2))
    frame = bytearray(_LINKS[linktype](l3, 0x86DD if v6 else 0x0800, vlans))
    for _ in range(rng.choice((0, 0, 0, 1, 3))):  # damage: any byte, headers included
        frame[rng.randrange(len(frame))] = rng.randrange(256)
    if rng.random() < 0.2:  # cut by a snaplen
        frame = frame[: rng.randrange(len(frame) + 1)]
    if rng.random() < 0.1:  # Ethernet padding or trailing junk
        frame += bytes(rng.randrange(1, 30))
    return bytes(frame)


@pytest.mark.parametrize("linktype", [DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2])
def test_compiled_decode_batch_equals_python_decode_on_damaged_frames(linktype):
    rng = random.Random(linktype)
    seen_segments = 0
    for _ in range(400):
        frames = [_random_frame(rng, linktype) for _ in range(rng.randint(1, 12))]
        buf, records = _batch(frames)
        buf += bytes(rng.randrange(80))  # whatever follows the batch in the buffer
        got, got_counters = _compiled(linktype, buf, records)
        want, want_counters = _python_reference(linktype, buf, records)
        assert got == want
        assert got_counters == want_counters
        seen_segments += len(want)
    assert seen_segments > 1000  # most frames are still decodable: the test has teeth


def test_compiled_decode_batch_never_reads_past_the_buffer():
    # Records that claim more bytes than the buffer holds (a corrupt batch): clamped,
    # exactly as Python's slicing clamps, never an out-of-bounds read.
    frame = ethernet(ipv4(tcp(payload=b"x" * 100)))
    buf = frame[:50]
    records = [(1, 0, 0, len(frame)), (2, 0, 40, 500), (3, 0, 10_000, 60)]
    got, got_counters = _compiled(DLT_EN10MB, buf, records)
    want, want_counters = _python_reference(DLT_EN10MB, buf, records)
    assert got == want and got_counters == want_counters
    assert got_counters["packets"] == 3


def test_compiled_decode_batch_reads_unaligned_record_buffers():
    frames = [ethernet(ipv4(tcp(seq=i, payload=b"y" * i))) for i in range(1, 6)]
    buf, records = _batch(frames)
    packed = memoryview(b"\0" + array_of(records).tobytes())[1:]  # misaligned by one byte
    got: list = []
    accel.fastpath.decode_batch(0, lambda f: None, buf, packed, lambda ts, *seg: got.append(seg))
    assert [seg[4] for seg in got] == [1, 2, 3, 4, 5]


# -- the Bypass table: leases, hand-back, bounds ------------------------------------------


def test_an_uninitialised_bypass_refuses_instead_of_crashing():
    b = accel.fastpath.Bypass.__new__(accel.fastpath.Bypass)
    for call in (lambda: b.grant(_Half(), A, 1, B, 2, 0, 10, 0), lambda: b.revoke(A, 1, B, 2),
                 b.sync, b.revoke_all):  # fmt: skip
        with pytest.raises(RuntimeError):
            call()
    buf, records = _batch([ethernet(ipv4(tcp()))])
    with pytest.raises(RuntimeError):
        accel.fastpath.decode_batch(0, lambda f: None, buf, array_of(records), b)


class _Half:
    """Stands in for flows.state._Half: the bypass only holds and returns it."""


def _bypass(max_leases=8):
    synced: list = []
    sent: list = []
    b = accel.fastpath.Bypass(
        lambda ts, *seg: sent.append((ts, seg)), lambda *a: synced.append(a), max_leases
    )
    return b, synced, sent


A, B = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def test_bypass_consumes_in_order_skipped_bytes_and_hands_back_the_rest():
    b, synced, sent = _bypass()
    h = _Half()
    assert b.grant(h, A, 40000, B, 104, 1000, 3000, 5000)
    frames = [
        ethernet(ipv4(tcp(40000, 104, 1000, 5000, payload=b"a" * 1000), A, B, ip_id=1)),
        ethernet(ipv4(tcp(104, 40000, 5000, 2000, flags=ACK), B, A)),  # reverse pure ACK
        ethernet(ipv4(tcp(40000, 104, 2000, 5000, payload=b"b" * 1000), A, B, ip_id=2)),
        # 1000 bytes left in the budget: this one (1000) must reach Python (PDV end)
        ethernet(ipv4(tcp(40000, 104, 3000, 5000, payload=b"c" * 1000), A, B, ip_id=3)),
        ethernet(ipv4(tcp(40000, 104, 4000, 5000, payload=b"d" * 10), A, B, ip_id=4)),
    ]
    buf, records = _batch(frames)
    accel.fastpath.decode_batch(0, lambda f: None, buf, array_of(records), b)
    assert b.consumed == 3 and b.leases == 0
    # ended by packet 4, before it went to Python: next seq, 2000 bytes taken, 2 records
    (half, nxt, taken, last_seen, nrec, last, prev, ended, fwd_ack, rev_ack, chained) = synced[0]
    assert half is h and ended == 1 and chained is None  # no chain was granted
    # the reverse direction's pure ACK, for the stall causes; no forward pure ACK
    assert fwd_ack is None and rev_ack == (2000, records[1][0] + records[1][1] * 1e-6)
    assert (nxt, taken, nrec) == (3000, 2000, 2)
    assert last[:4] == (2000, 1000, 2, 5000) and prev[:4] == (1000, 1000, 1, 5000)
    assert last_seen == records[2][0] + records[2][1] * 1e-6
    assert [seg[4] for _, seg in sent] == [3000, 4000]  # the rest, in order, as tuples


def test_bypass_leaves_a_gap_longer_than_stall_after_to_python():
    # flows/stalls.py: Python names a stall's cause, so the segment that ends one is not
    # consumed, however small; one within stall_after of the last data segment is.
    b, synced, sent = _bypass()
    h = _Half()
    frames = [
        ethernet(ipv4(tcp(40000, 104, 1000, 5000, payload=b"a" * 100), A, B, ip_id=1)),
        ethernet(ipv4(tcp(40000, 104, 1100, 5000, flags=ACK), A, B)),  # forward pure ACK
        ethernet(ipv4(tcp(40000, 104, 1100, 5000, payload=b"b" * 100), A, B, ip_id=2)),
    ]
    buf, records = _batch(frames)
    ts = [sec + usec * 1e-6 for sec, usec, *_ in records]
    assert ts[2] - ts[0] > 0.0005
    assert b.grant(h, A, 40000, B, 104, 1000, 100_000, 5000, ts[0] - 0.0001, 0.0005)
    accel.fastpath.decode_batch(0, lambda f: None, buf, array_of(records), b)
    assert b.consumed == 2 and [seg[4] for _, seg in sent] == [1100]
    half, nxt, taken, last_seen, nrec, last, prev, ended, fwd_ack, rev_ack, _chained = synced[0]
    assert (nxt, taken, nrec, ended) == (1100, 100, 1, 1) and last[4] == ts[0]
    assert fwd_ack == (5000, ts[1]) and rev_ack is None


@pytest.mark.parametrize(
    "frame",
    [
        ethernet(ipv4(tcp(40000, 104, 999, 5000, payload=b"x" * 10), A, B)),  # not in order
        ethernet(ipv4(tcp(40000, 104, 1000, 5000, flags=ACK | FIN), A, B)),  # FIN
        ethernet(ipv4(tcp(40000, 104, 1000, 5000, window=0, payload=b"x"), A, B)),  # zero win
        ethernet(ipv4(tcp(104, 40000, 5000, 1, payload=b"resp"), B, A)),  # reverse data
        ethernet(ipv4(tcp(104, 40000, 4999, 1, flags=ACK), B, A)),  # reverse ACK, wrong seq
        ethernet(ipv4(tcp(40000, 104, 1000, 5000, payload=b"x" * 20), A, B))[:-5],  # cut
        ethernet(ipv4(tcp(40000, 104, 1000, 5000, payload=b"x"), A, B, options=bytes(4))),
    ],
    ids=["out-of-order", "fin", "zero-window", "reverse-data", "reverse-seq", "cut", "ip-opts"],
)
def test_bypass_ends_the_lease_before_python_sees_any_other_packet_of_the_flow(frame):
    b, synced, sent = _bypass()
    assert b.grant(_Half(), A, 40000, B, 104, 1000, 100_000, 5000)
    general = Decoder(DLT_EN10MB, accelerate=False)._ethernet_general
    buf, records = _batch([frame])
    accel.fastpath.decode_batch(0, general, buf, array_of(records), b)
    assert b.consumed == 0 and b.leases == 0
    assert len(synced) == 1 and synced[0][7] == 1  # ended ...
    assert len(sent) == 1  # ... then the packet went to Python


def test_bypass_leaves_other_flows_alone_and_writes_back_at_batch_end():
    b, synced, sent = _bypass()
    assert b.grant(_Half(), A, 40000, B, 104, 1000, 100_000, -1)  # no reverse ACKs
    frames = [
        ethernet(ipv4(tcp(40001, 104, 7, 1, payload=b"other"), A, B)),  # another flow
        ethernet(ipv4(tcp(40000, 104, 1000, 5000, payload=b"x" * 100), A, B)),
    ]
    buf, records = _batch(frames)
    accel.fastpath.decode_batch(0, lambda f: None, buf, array_of(records), b)
    assert b.consumed == 1 and b.leases == 1 and len(sent) == 1
    assert len(synced) == 1 and synced[0][7] == 0 and synced[0][2] == 100  # kept, synced
    # reverse pure ACKs were not allowed (rev_next -1): that one ends the lease
    buf, records = _batch([ethernet(ipv4(tcp(104, 40000, 5000, 1100, flags=ACK), B, A))])
    accel.fastpath.decode_batch(0, lambda f: None, buf, array_of(records), b)
    assert b.leases == 0 and synced[-1][7] == 1 and synced[-1][3] is None  # nothing new


def test_bypass_without_batch_end_sync_writes_back_on_end_and_on_sync_only():
    # The flow table's Bypass (sync_each_batch=False): a lease that goes on is written
    # back by sync(), once, with everything consumed since -- across batches -- and a
    # lease that ends in between (taken off the middle of the dirty list) exactly once.
    synced: list = []
    b = accel.fastpath.Bypass(
        lambda ts, *seg: None, lambda *a: synced.append(a), 8, sync_each_batch=False
    )
    for port in (40000, 40001, 40002):
        assert b.grant(_Half(), A, port, B, 104, 1000, 100_000, -1)
    data = [ethernet(ipv4(tcp(p, 104, 1000, 5000, payload=b"x" * 100), A, B)) for p in
            (40000, 40001, 40002)]  # fmt: skip
    buf, records = _batch(data)
    accel.fastpath.decode_batch(0, lambda f: None, buf, array_of(records), b)
    assert b.consumed == 3 and synced == []  # no write-back at the batch end
    # the middle lease ends (its reverse pure ACK is not allowed), the others go on
    buf, records = _batch(
        [
            ethernet(ipv4(tcp(104, 40001, 5000, 1100, flags=ACK), B, A)),
            ethernet(ipv4(tcp(40000, 104, 1100, 5000, payload=b"y" * 50), A, B)),
        ]
    )
    accel.fastpath.decode_batch(0, lambda f: None, buf, array_of(records), b)
    assert [(s[1], s[2], s[7]) for s in synced] == [(1100, 100, 1)]  # ended: next, taken
    b.sync()
    got = sorted((s[1], s[2], s[4], s[7]) for s in synced[1:])
    assert got == [(1100, 100, 1, 0), (1150, 150, 2, 0)]  # both, once, two batches summed
    b.sync()
    assert len(synced) == 3 and b.leases == 2  # nothing new: nothing written back


def test_bypass_is_bounded_and_refuses_what_it_cannot_hold():
    b, synced, _ = _bypass(max_leases=4)
    granted = [b.grant(_Half(), A, 1000 + i, B, 104, 0, 10_000, 0) for i in range(5)]
    assert granted == [True, True, True, True, False]  # full
    assert b.revoke(A, 1003, B, 104)
    assert not b.grant(_Half(), B, 104, A, 1000, 0, 10_000, 0)  # the reverse key is taken
    assert not b.grant(_Half(), A, 104, A, 104, 0, 10_000, 0)  # a self-connection
    assert not b.grant(_Half(), A + b"x", 1, B, 2, 0, 10_000, 0)  # not an address
    assert not b.grant(_Half(), A, 5, B, 6, 0, 0, 0)  # nothing to skip
    assert b.revoke(B, 104, A, 1002)  # either direction's key finds the lease
    assert not b.revoke(B, 104, A, 1002)
    b.revoke_all()
    assert b.leases == 0 and len(synced) == 4 and all(s[7] == 1 for s in synced)
    assert b.grant(_Half(), A, 5, B, 6, 0, 10, 0)  # room again


def test_bypass_table_survives_random_grant_and_revoke_orders():
    # Open addressing with backward-shift deletion: check it against a dict model.
    rng = random.Random(5)
    b, _, _ = _bypass(max_leases=200)  # starts at 64: grows twice on the way
    model: dict = {}
    max_seen = 0
    for _ in range(5000):
        port = rng.randrange(400)
        key = (A, 30000 + port, B, 104)
        if rng.random() < 0.55:
            ok = b.grant(_Half(), *key, 0, 10_000, 0)
            assert ok == (key not in model and len(model) < 200)
            if ok:
                model[key] = True
        else:
            rev = (B, 104, A, 30000 + port)
            assert b.revoke(*(key if rng.random() < 0.5 else rev)) == (key in model)
            model.pop(key, None)
        assert b.leases == len(model)
        max_seen = max(max_seen, len(model))
    assert b.stats()["capacity"] == 200 and max_seen == 200


def array_of(records):
    import array

    return array.array("I", [w for r in records for w in r])


# -- whole pipeline: compiled == pure Python on real and damaged captures -----------------


def _analyze(paths, pure: bool, batch_size: int, monkeypatch) -> dict:
    with monkeypatch.context() as m:
        if pure:
            m.setattr(accel, "fastpath", None)
        config = load_config(None)
        config = dataclasses.replace(
            config, capture=dataclasses.replace(config.capture, batch_size=batch_size)
        )
        metrics = MetricsStore(config.metrics)
        summary = Summary()
        events = io.StringIO()
        log = EventLog(events)
        info = analyze_files(paths, config, [metrics, summary, log], labels=metrics)
        pipeline = info.pop("_pipeline")
        bypass = pipeline.flows._bypass
        return {
            "metrics": metrics.exposition().decode(),
            "events": events.getvalue(),
            "summary": json.dumps(summary.to_dict(info), sort_keys=True, default=str),
            "segments": pipeline.flows.segments_total,
            "tcp": (pipeline.flows.duplicates, pipeline.flows.retransmissions),
            "consumed": bypass.consumed if bypass is not None else 0,
        }


def _assert_same(paths, monkeypatch, batch_size=512) -> dict:
    c = _analyze(paths, False, batch_size, monkeypatch)
    p = _analyze(paths, True, batch_size, monkeypatch)
    assert p["consumed"] == 0
    for part in ("metrics", "events", "summary", "segments", "tcp"):
        assert c[part] == p[part], f"{part} differ for {paths} (batch size {batch_size})"
    return c


def test_compiled_equals_pure_python_on_every_real_scenario(
    real_traffic, more_traffic, monkeypatch
):
    consumed = {}
    for name, sc in {**real_traffic, **more_traffic}.items():
        consumed[name] = _assert_same([sc.pcap], monkeypatch)["consumed"]
    # The C-STORE scenarios really took the bypass (else this test would prove nothing):
    # a good part of their packets are continuation bytes of a PDV (small images here).
    assert consumed["a_store50"] > 0.25 * _packets(real_traffic["a_store50"].pcap)
    assert consumed["l_vlan"] > 0 and consumed["k_ipv6"] > 0


def _packets(path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in dpkt.pcap.UniversalReader(f))


def _damaged_copy(src: str, dst: str, seed: int) -> None:
    """Loss, SPAN duplicates, swapped neighbours, snaplen cuts, flipped bytes."""
    rng = random.Random(seed)
    with open(src, "rb") as f:
        reader = dpkt.pcap.UniversalReader(f)
        linktype = reader.datalink()
        packets = list(reader)
    out = []
    i = 0
    while i < len(packets):
        ts, frame = packets[i]
        r = rng.random()
        if r < 0.01:  # lost
            i += 1
            continue
        if r < 0.02 and i + 1 < len(packets):  # swapped with the next one
            out.append(packets[i + 1])
            out.append((ts, frame))
            i += 2
            continue
        frame = bytearray(frame)
        if r < 0.03:
            frame = frame[: rng.randrange(54, max(55, len(frame)))]
        elif r < 0.035:
            frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
        out.append((ts, bytes(frame)))
        if rng.random() < 0.01:  # mirrored twice
            out.append((ts, bytes(frame)))
        i += 1
    with open(dst, "wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=262144, linktype=linktype)
        for ts, frame in out:
            w.writepkt(frame, ts=ts)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("scenario", ["a_store50", "l_vlan", "j_loss"])
def test_compiled_equals_pure_python_on_damaged_real_traffic(
    real_traffic, monkeypatch, tmp_path, seed, scenario
):
    path = str(tmp_path / f"{scenario}-{seed}.pcap")
    _damaged_copy(real_traffic[scenario].pcap, path, seed)
    # small and odd batch sizes move the batch-end write-backs everywhere
    for batch_size in (1, 7, 512):
        result = _assert_same([path], monkeypatch, batch_size)
        assert result["consumed"] > 0


def test_compiled_equals_pure_python_across_files_of_different_link_types(
    real_traffic, monkeypatch, tmp_path
):
    # One capture split in two files, the second as raw IP (a link type only the Python
    # decoder reads), through one flow table: the leases open at the end of the first
    # file must end before Python decodes the rest of those same flows.
    with open(real_traffic["a_store50"].pcap, "rb") as f:
        packets = list(dpkt.pcap.UniversalReader(f))
    half = len(packets) // 2
    first, second = str(tmp_path / "first.pcap"), str(tmp_path / "second.pcap")
    for path, part, linktype, strip in (
        (first, packets[:half], 1, 0),
        (second, packets[half:], 101, 14),
    ):
        with open(path, "wb") as f:
            w = dpkt.pcap.Writer(f, snaplen=262144, linktype=linktype)
            for ts, frame in part:
                w.writepkt(frame[strip:], ts=ts)
    assert not Decoder(101).accelerated
    result = _assert_same([first, second], monkeypatch)
    assert result["consumed"] > 0


def test_span_duplicates_interleaved_with_leased_segments(real_traffic, monkeypatch, tmp_path):
    # A mirror port shows frame k again after frame k+1. With k and k+1 consumed in C, the
    # copy must still be recognised as a duplicate (not a retransmission): the write-back
    # has to hand over the last *two* segments, not one.
    with open(real_traffic["a_store50"].pcap, "rb") as f:
        packets = list(dpkt.pcap.UniversalReader(f))
    data_idx = []
    for i, (_ts, frame) in enumerate(packets):
        tcp_seg = getattr(dpkt.ethernet.Ethernet(frame).data, "data", None)
        if not isinstance(tcp_seg, dpkt.tcp.TCP):
            continue
        if len(tcp_seg.data) >= 1000 and tcp_seg.dport == real_traffic["a_store50"].ports[0]:
            data_idx.append(i)
    # frame k, the flow's next data frame k+1, then frame k again (same capture time)
    picks = data_idx[20:-1:40]
    copies = {data_idx[data_idx.index(i) + 1]: packets[i] for i in picks}
    out = []
    for i, pkt in enumerate(packets):
        out.append(pkt)
        if i in copies:
            out.append((pkt[0], copies[i][1]))
    path = str(tmp_path / "interleaved-dups.pcap")
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=262144, linktype=1)
        for ts, frame in out:
            w.writepkt(frame, ts=ts)
    original = _analyze([real_traffic["a_store50"].pcap], False, 512, monkeypatch)
    result = _assert_same([path], monkeypatch)
    assert result["consumed"] > 0 and len(copies) >= 5
    assert result["tcp"] == (original["tcp"][0] + len(copies), original["tcp"][1])


def test_stalls_inside_leased_transfers_are_the_same_in_both_paths(
    real_traffic, monkeypatch, tmp_path
):
    # The compiled lease must leave the segment that ends a stall to Python and write back
    # the times and ACKs the stall's cause is judged by. Shift the clock by 0.3 s in the
    # middle of every 40th data set segment run: a gap inside a leased PDV (sender-idle),
    # exactly where the lease consumes packets.
    with open(real_traffic["a_store50"].pcap, "rb") as f:
        packets = list(dpkt.pcap.UniversalReader(f))
    port = real_traffic["a_store50"].ports[0]
    shift, out, big, shifts = 0.0, [], 0, 0
    for ts, frame in packets:
        tcp_seg = getattr(dpkt.ethernet.Ethernet(frame).data, "data", None)
        if isinstance(tcp_seg, dpkt.tcp.TCP) and tcp_seg.dport == port and len(tcp_seg.data) > 1000:
            big += 1
            if big % 40 == 20:
                shift += 0.3
                shifts += 1
        out.append((ts + shift, frame))
    path = str(tmp_path / "stalled.pcap")
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=262144, linktype=1)
        for ts, frame in out:
            w.writepkt(frame, ts=ts)
    for batch_size in (7, 512):
        result = _assert_same([path], monkeypatch, batch_size)
        assert result["consumed"] > 0
    # The real capture may have requestor sender-idle stalls of its own (storescu paused
    # past stall_after, 10 ms, on a loaded machine: 11.7 ms seen): the injected ones are
    # the stalls of 300 ms and more, one per shift (at most one shift may land between two
    # messages, not a stall); any shorter one must be one of the capture's own.
    idle = _idle_requestor_stalls(result["events"])
    unshifted = _analyze([real_traffic["a_store50"].pcap], True, 512, monkeypatch)
    own = _idle_requestor_stalls(unshifted["events"])
    injected = [s["ms"] for s in idle if s["ms"] >= 300]
    short = [s["ms"] for s in idle if s["ms"] < 300]
    long_own = sum(1 for o in own if o["ms"] >= 300)
    assert shifts - 1 <= len(injected) <= shifts + long_own, (shifts, injected, own)
    assert len(short) <= len(own), (short, own)
    assert all(any(abs(ms - o["ms"]) < 0.01 for o in own) for ms in short), (short, own)


def _idle_requestor_stalls(events: str) -> list:
    """The requestor's sender-idle stalls of the DIMSE events in an event log."""
    stalls = [
        s
        for line in events.splitlines()
        if json.loads(line)["type"] == "dimse"
        for s in json.loads(line).get("stalls", ())
    ]
    return [s for s in stalls if (s["sender"], s["cause"]) == ("requestor", "sender-idle")]


# -- the super-packet limit: the MSS of the SYNs, read identically in C -------------------


def _mss_syn(mss, l3=lambda l4: ipv4(l4), **kw):
    options = b"\x01\x01" + struct.pack("!BBH", 2, 4, mss) + b"\x04\x02\x01\x03\x03\x07"
    return ethernet(l3(tcp(flags=SYN, seq=1, ack=0, options=options)), **kw)


def _bulk(size, l3=lambda l4: ipv4(l4), **kw):
    return ethernet(l3(tcp(payload=bytes(size))), **kw)


def _ip_options(l4):  # IHL 6: not a clean shape, the general (Python) path decodes it
    return ipv4(l4, options=b"\x01\x01\x01\x00")


def _both(frames):
    buf, records = _batch(frames)
    got, got_counters = _compiled(DLT_EN10MB, buf, records)
    want, want_counters = _python_reference(DLT_EN10MB, buf, records)
    assert got == want and got_counters == want_counters
    return want_counters["super_packets"]


def test_compiled_reads_the_syn_mss_as_python_does():
    assert _both([_mss_syn(8960)] + [_bulk(8960)] * 3) == 0
    assert _both([_mss_syn(8960), _bulk(8960), _bulk(8961)]) == 1
    assert _both([_mss_syn(1460), _bulk(1460), _bulk(3000)]) == 1
    assert _both([_bulk(3000), _mss_syn(8960), _bulk(3000)]) == 1  # before the SYN: 1460
    assert _both([_mss_syn(65495), _bulk(65495), _bulk(9000, vlans=[(0x8100, 7)])]) == 0
    v6 = lambda l4: ipv6(l4)  # noqa: E731
    assert _both([_mss_syn(8940, v6, etype=0x86DD), _bulk(8940, v6, etype=0x86DD)]) == 0


def test_the_limit_crosses_between_the_c_and_the_general_path():
    # A SYN the general path decodes raises the limit for the C path, and the other way.
    assert _both([_mss_syn(8960, _ip_options), _bulk(8960), _bulk(8961)]) == 1
    assert _both([_mss_syn(8960), _bulk(8960, _ip_options), _bulk(8961, _ip_options)]) == 1
    # ... and across batches: the limit lives in the Decoder.
    dec = Decoder(DLT_EN10MB, accelerate=True)
    for frames in ([_mss_syn(8960)], [_bulk(8960)], [_bulk(8960, _ip_options)]):
        buf, records = _batch(frames)
        dec.decode_batch(buf, records, lambda ts, *seg: None)
    assert dec.mss == 8960 and dec.super_packets == 0


def _random_options(rng):
    """Linux-like options, an MSS among them, and junk: cut lengths, ends, zero lengths."""
    parts = [b"\x01", b"\x00", b"\x04\x02", b"\x03\x03\x07", b"\x08\x0a" + bytes(8)]
    out = b""
    for _ in range(rng.randint(0, 8)):
        r = rng.random()
        if r < 0.3:
            out += struct.pack("!BBH", 2, 4, rng.randrange(65536))
        elif r < 0.8:
            out += rng.choice(parts)
        else:
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
    out = out[:40]
    return out + b"\x01" * (-len(out) % 4)


def test_compiled_equals_python_on_random_syn_options():
    rng = random.Random(12)
    raised = 0
    for _ in range(300):
        frames = []
        for _ in range(rng.randint(1, 6)):
            options = _random_options(rng)
            flags = SYN if rng.random() < 0.8 else ACK
            l3 = rng.choice([lambda l4: ipv4(l4), _ip_options])
            frames.append(ethernet(l3(tcp(flags=flags, options=options))))
            frames.append(_bulk(rng.choice([100, 1461, 3000, 8960, 30000]), l3))
        _both(frames)
        reference = Decoder(DLT_EN10MB, accelerate=False)
        for frame in frames:
            reference.decode(frame)
        raised += reference.mss > 1460
    assert raised > 20  # random options announce an MSS often enough: the test has teeth


def test_decode_batch_without_an_owner_keeps_the_limit_for_one_call_only():
    def super_packets(frames):
        buf, records = _batch(frames)
        emit = lambda ts, *seg: None  # noqa: E731
        return accel.fastpath.decode_batch(0, lambda f: None, buf, array_of(records), emit)[3]

    assert super_packets([_mss_syn(8960), _bulk(8960)]) == 0
    assert super_packets([_bulk(8960)]) == 1


# -- decode: shared address and port objects (_fastpath.c, shared_addr/shared_u16) --------


def test_compiled_segments_share_address_and_port_objects_and_equal_python_decode():
    """The compiled decoder hands out one bytes object per address while it stays in its
    direct-mapped cache, and one int per port and TCP window value. 12,000 random
    addresses in its 2^15 slots: thousands collide and take slots over from each other,
    and every segment must still equal the Python decoder's, field by field."""
    rng = random.Random(15)
    frames = []
    for i in range(12_000):
        v6 = i % 3 == 0
        alen = 16 if v6 else 4
        src = rng.randbytes(alen) if i % 2 else (bytes(alen - 1) + b"\x01")
        dst = rng.randbytes(alen)
        l4 = tcp(
            sport=rng.randrange(65536),
            dport=rng.choice((104, 257, 11112, 65535)),
            window=rng.randrange(65536),
        )
        l3 = ipv6(l4, src, dst) if v6 else ipv4(l4, src, dst)
        frames.append(ethernet(l3, 0x86DD if v6 else 0x0800))
    buf, records = _batch(frames)
    got, got_counters = _compiled(DLT_EN10MB, buf, records)
    want, want_counters = _python_reference(DLT_EN10MB, buf, records)
    assert len(got) == len(frames)
    assert got == want
    assert got_counters == want_counters
    # the same address and port again: the very objects of the first packet
    again, _ = _compiled(DLT_EN10MB, *_batch([frames[1], frames[1]]))
    (_, first), (_, second) = again
    assert first[0] is second[0] and first[2] is second[2] and first[3] is second[3]
    assert first[7] is second[7]  # the window
    assert first[:4] == want[1][1][:4]

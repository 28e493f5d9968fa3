"""Flow table and TCP reassembly: segments are built as plain tuples, as decode emits them."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomsniffd.config import FlowsConfig
from dicomsniffd.flows import ACK, FIN, RST, SYN, FlowInfo, FlowTable

C = bytes([10, 0, 0, 1])  # client
S = bytes([10, 0, 0, 2])  # server
CP, SP = 40000, 104
PSH_ACK = 0x18

_ids = itertools.count(1)


def seg(src, sport, dst, dport, seq, payload=b"", *, ack=1, flags=PSH_ACK, window=65535,
        seg_len=None, ip_id=None):  # fmt: skip
    """A Segment tuple; IP IDs increment per packet like a real IPv4 stack."""
    if seg_len is None:
        seg_len = len(payload)
    if ip_id is None:
        ip_id = next(_ids) & 0xFFFF
    return (src, sport, dst, dport, seq & 0xFFFFFFFF, ack, flags, window, payload, seg_len, ip_id)


def c2s(seq, payload=b"", **kw):
    return seg(C, CP, S, SP, seq, payload, **kw)


def s2c(seq, payload=b"", **kw):
    return seg(S, SP, C, CP, seq, payload, **kw)


class Rec:
    """Recording StreamHandler."""

    def __init__(self, info: FlowInfo, direction: int, first: bytes) -> None:
        self.info = info
        self.first = (direction, bytes(first))
        self.calls: list[tuple] = []

    def data(self, direction, data, ts):
        self.calls.append(("data", direction, bytes(data)))

    def gap(self, direction, nbytes, ts):
        self.calls.append(("gap", direction, nbytes))

    def tcp_event(self, kind, direction, ts, value=0.0):
        self.calls.append(("event", kind, direction, value))

    def close(self, how, ts):
        self.calls.append(("close", how))

    def stream(self, direction: int) -> bytes:
        return b"".join(c[2] for c in self.calls if c[0] == "data" and c[1] == direction)

    def of(self, kind: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == kind]

    def events(self, kind: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == "event" and c[1] == kind]


class Env:
    def __init__(self, ignore: bool = False, **cfg) -> None:
        self.handlers: list[Rec] = []
        self.failures: list[tuple] = []
        self.ignore = ignore
        self.classified = 0
        self.table = FlowTable(FlowsConfig(**cfg), self.classify, self.on_failure)

    def classify(self, info, direction, first):
        self.classified += 1
        if self.ignore:
            return None
        h = Rec(info, direction, first)
        self.handlers.append(h)
        return h

    def on_failure(self, ip, port, reason, ts):
        self.failures.append((ip, port, reason, ts))

    def feed(self, *segs, ts=0.0, step=0.001):
        for s in segs:
            self.table.segment(ts, s)
            ts += step
        return ts

    @property
    def h(self) -> Rec:
        assert len(self.handlers) == 1
        return self.handlers[0]


def handshake(env: Env, isn_c: int = 1000, isn_s: int = 5000, ts: float = 0.0) -> float:
    env.table.segment(ts, c2s(isn_c, flags=SYN, ack=0))
    env.table.segment(ts + 0.010, s2c(isn_s, flags=SYN | ACK, ack=isn_c + 1))
    env.table.segment(ts + 0.012, c2s(isn_c + 1, flags=ACK, ack=isn_s + 1))
    return ts + 0.02


# ---------------------------------------------------------------- delivery and ISN


def test_in_order_delivery_after_handshake_with_rtt():
    env = Env()
    ts = handshake(env)
    env.feed(c2s(1001, b"abc"), c2s(1004, b"def"), s2c(5001, b"XY"), c2s(1007, b"g"), ts=ts)
    h = env.h
    assert h.stream(0) == b"abcdefg"
    assert h.stream(1) == b"XY"
    assert h.first == (0, b"abc")
    assert h.calls[0] == ("event", "handshake-rtt", 0, pytest.approx(0.012))
    info = h.info
    assert (info.client_ip, info.client_port, info.server_ip, info.server_port) == (C, CP, S, SP)
    assert info.syn_seen
    assert not h.of("gap")
    assert env.table.segments == 7


def test_isn_from_syn_first_data_must_start_at_isn_plus_one():
    env = Env()
    handshake(env, isn_c=7)
    env.table.segment(1.0, c2s(10, b"late"))  # bytes 8..9 missing: buffered, not delivered
    assert not env.handlers
    assert env.table.buffered_bytes == 4
    env.table.segment(1.1, c2s(8, b"ab"))
    assert env.h.stream(0) == b"ablate"
    assert env.table.buffered_bytes == 0


def test_midstream_client_is_higher_port_and_anchor_on_first_segment():
    env = Env()
    env.feed(s2c(777, b"hello"), c2s(4242, b"world"), s2c(782, b"!"))
    h = env.h
    assert not h.info.syn_seen
    assert (h.info.client_port, h.info.server_port) == (CP, SP)
    assert h.first == (1, b"hello")
    assert h.stream(1) == b"hello!"
    assert h.stream(0) == b"world"


def test_midstream_port_tie_first_sender_is_client():
    env = Env()
    env.table.segment(0.0, seg(S, 5000, C, 5000, 1, b"x"))
    assert env.h.info.client_ip == S and env.h.first[0] == 0


def test_midstream_ack_only_jump_is_not_a_gap():
    env = Env()
    env.feed(s2c(100, b"resp"), c2s(9000, flags=ACK), c2s(9000, flags=ACK), c2s(12000, b"data"))
    h = env.h
    assert h.stream(0) == b"data"
    assert not h.of("gap")
    assert env.table.out_of_order == 0


# ---------------------------------------------------------------- reordering


def test_out_of_order_reordered():
    env = Env()
    ts = handshake(env)
    env.feed(c2s(1001, b"aa"), c2s(1005, b"cc"), c2s(1007, b"dd"), c2s(1003, b"bb"), ts=ts)
    assert env.h.stream(0) == b"aabbccdd"
    assert env.table.out_of_order == 2
    assert len(env.h.events("out-of-order")) == 2
    assert env.table.buffered_bytes == 0


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_permutation_with_duplicates_delivers_the_stream(data):
    isn = data.draw(st.integers(0, 2**32 - 1), label="isn")  # exercises wrap-around too
    stream = data.draw(st.binary(min_size=1, max_size=2000), label="stream")
    n = len(stream)
    cuts = data.draw(st.lists(st.integers(1, max(1, n - 1)), max_size=25)) if n > 1 else []
    bounds = sorted({0, n, *cuts})
    pieces = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    extra = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 300)), max_size=5))
    pieces += [(a, min(n, a + ln)) for a, ln in extra]  # overlapping retransmissions
    segs = []
    for i, (a, b) in enumerate(pieces):
        flags = PSH_ACK | (FIN if i == len(bounds) - 2 else 0)  # FIN on the last piece
        segs.append(c2s(isn + 1 + a, stream[a:b], flags=flags, ip_id=i))
    dups = data.draw(st.lists(st.sampled_from(range(len(segs))), max_size=8))
    order = data.draw(st.permutations(segs + [segs[i] for i in dups]))
    env = Env()
    ts = handshake(env, isn_c=isn)
    ts = env.feed(*order, ts=ts, step=0.0001)
    env.feed(s2c(5001, flags=FIN | ACK), ts=ts)
    h = env.h
    assert h.stream(0) == stream
    assert not h.of("gap")
    assert h.of("close") == [("close", "fin")]
    assert env.table.buffered_bytes == 0


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_losses_are_gaps_at_the_right_offsets(data):
    """Data and gaps always tile the stream exactly: lost bytes are never glued over."""
    stream = data.draw(st.binary(min_size=2, max_size=1500), label="stream")
    n = len(stream)
    cuts = data.draw(st.lists(st.integers(1, n - 1), min_size=1, max_size=30))
    bounds = sorted({0, n, *cuts})
    pieces = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    lost = data.draw(st.sets(st.sampled_from(range(len(pieces)))), label="lost")
    kept = [p for i, p in enumerate(pieces) if i not in lost]
    order = data.draw(st.permutations(kept))
    env = Env(max_out_of_order_segments=data.draw(st.integers(1, 5)))
    ts = handshake(env, isn_c=2**32 - 100)
    env.feed(*(c2s(2**32 - 99 + a, stream[a:b]) for a, b in order), ts=ts)
    env.table.close_all(ts + 1)
    off = 0
    for h in env.handlers:  # at most one
        for c in h.calls:
            if c[0] == "data":
                assert c[2] == stream[off : off + len(c[2])]
                off += len(c[2])
            elif c[0] == "gap":
                off += c[2]
    trailing_loss = sum(b - a for a, b in pieces if (a, b) not in kept and a >= max(
        (b2 for a2, b2 in kept), default=0))  # fmt: skip
    assert off + trailing_loss == n


# ---------------------------------------------------------------- retransmissions


def test_span_duplicate_vs_retransmission_ipv4():
    env = Env()
    ts = handshake(env)
    a = c2s(1001, b"abcd", ip_id=10)
    env.feed(a, ts=ts)
    env.table.segment(ts + 0.0005, a)  # the same frame mirrored twice
    env.table.segment(ts + 0.3, c2s(1001, b"abcd", ip_id=11))  # RTO retransmission: new ID
    env.table.segment(ts + 0.4, a)  # same ID but long after: not a capture duplicate
    h = env.h
    assert h.stream(0) == b"abcd"
    assert env.table.duplicates == 1 and len(h.events("duplicate")) == 1
    assert env.table.retransmissions == 2 and len(h.events("retransmission")) == 2


def test_span_duplicates_interleaved_with_the_next_frame():
    env = Env()
    ts = handshake(env)
    a1, a2 = c2s(1001, b"aa", ip_id=1), c2s(1003, b"bb", ip_id=2)
    env.feed(a1, a2, a1, a2, ts=ts, step=0.00001)
    assert env.h.stream(0) == b"aabb"
    assert env.table.duplicates == 2 and env.table.retransmissions == 0


def test_span_duplicate_vs_retransmission_ipv6_uses_ack():
    env = Env()
    ts = handshake(env)
    env.feed(c2s(1001, b"abcd", ack=77, ip_id=-1), c2s(1001, b"abcd", ack=77, ip_id=-1), ts=ts,
             step=0.0001)  # fmt: skip
    env.feed(c2s(1001, b"abcd", ack=78, ip_id=-1), ts=ts + 0.0003)  # fast retransmit, new ack
    assert env.table.duplicates == 1 and env.table.retransmissions == 1


def test_duplicate_of_buffered_out_of_order_segment():
    env = Env()
    ts = handshake(env)
    c = c2s(1005, b"cc", ip_id=5)
    env.feed(c2s(1001, b"aa"), c, c, ts=ts, step=0.0001)  # c is buffered, then mirrored again
    assert env.table.duplicates == 1 and env.table.buffered_bytes == 2
    env.feed(c2s(1005, b"cc", ip_id=9), ts=ts + 0.3)  # a real retransmission of buffered data
    assert env.table.retransmissions == 1
    env.feed(c2s(1003, b"bb"), ts=ts + 0.4)
    assert env.h.stream(0) == b"aabbcc"
    assert env.table.buffered_bytes == 0


def test_partial_overlap_delivers_only_new_bytes():
    env = Env()
    ts = handshake(env)
    env.feed(c2s(1001, b"0123456789"), c2s(1006, b"56789ABCDE"), ts=ts)
    assert env.h.stream(0) == b"0123456789ABCDE"
    assert env.table.retransmissions == 1


def test_keepalive_is_not_a_retransmission():
    env = Env()
    ts = handshake(env)
    env.feed(c2s(1001, b"abc"), c2s(1003, b"\x00"), c2s(1003, flags=ACK), ts=ts)
    assert env.table.retransmissions == 0 and env.h.stream(0) == b"abc"


def test_sequence_wrap_around():
    env = Env()
    ts = handshake(env, isn_c=2**32 - 5, isn_s=2**32 - 1)  # server data starts at 0
    env.feed(
        c2s(2**32 - 4, b"abc"),
        c2s(2**32 - 1 + 4, b"ghi"),  # out of order, beyond the wrap
        c2s(2**32 - 1, b"defX"),  # crosses 2**32
        s2c(0, b"srv"),
        ts=ts,
    )
    h = env.h
    assert h.stream(0) == b"abcdefXghi"
    assert h.stream(1) == b"srv"
    assert not h.of("gap")


# ---------------------------------------------------------------- TCP facts


def test_zero_window_once_per_episode():
    env = Env()
    ts = handshake(env)
    env.feed(c2s(1001, b"req"), s2c(5001, b"r", window=0), s2c(5002, flags=ACK, window=0),
             s2c(5002, flags=ACK, window=0), ts=ts)  # fmt: skip
    assert len(env.h.events("zero-window")) == 1
    env.feed(s2c(5002, flags=ACK, window=100), s2c(5002, flags=ACK, window=0), ts=ts + 1)
    zw = env.h.events("zero-window")
    assert len(zw) == 2 and all(e[2] == 1 for e in zw)
    env.feed(s2c(5002, b"more", window=10), ts=ts + 2)
    assert env.h.stream(1) == b"rmore"


def test_reset_closes_and_later_packets_are_ignored():
    env = Env()
    ts = handshake(env)
    env.feed(c2s(1001, b"abc"), s2c(5001, flags=RST | ACK), c2s(1004, b"zzz"), ts=ts)
    h = env.h
    assert h.calls[-2:] == [("event", "reset", 1, 0.0), ("close", "reset")]
    assert h.stream(0) == b"abc"
    assert env.table.flows_active == 1  # lingers for the closed timeout
    env.table.expire(ts + 11)
    assert env.table.flows_active == 0
    assert env.table.evictions == {"capacity": 0, "idle": 0, "memcap": 0}


def test_fin_both_ways_closes_after_all_data_delivered():
    env = Env()
    ts = handshake(env)
    # The client's FIN arrives before its last data segment (reordered on the mirror).
    ts = env.feed(c2s(1001, b"aa"), c2s(1005, flags=FIN | ACK), s2c(5001, flags=FIN | ACK), ts=ts)
    assert not env.h.of("close")
    env.feed(c2s(1003, b"bb"), c2s(1006, flags=ACK), ts=ts)
    assert env.h.stream(0) == b"aabb"
    assert env.h.of("close") == [("close", "fin")]
    env.feed(c2s(1005, flags=FIN | ACK), ts=ts + 0.1)  # retransmitted FIN: nothing new
    assert env.h.of("close") == [("close", "fin")]


def test_fin_with_data_and_one_sided_fin_times_out_as_fin():
    env = Env()
    ts = env.feed(c2s(1, b"only the client side is mirrored", flags=PSH_ACK | FIN))
    assert env.table.flows_active == 1
    env.table.expire(ts + 5)
    assert not env.h.of("close")
    env.table.expire(ts + 11)
    assert env.h.of("close") == [("close", "fin")]
    assert env.table.flows_active == 0


def test_handshake_rtt_value_uses_latest_syn():
    env = Env()
    env.table.segment(10.0, c2s(99, flags=SYN, ack=0))
    env.table.segment(11.0, c2s(99, flags=SYN, ack=0))  # SYN retry: not a new flow
    env.table.segment(11.004, s2c(500, flags=SYN | ACK, ack=100))
    env.table.segment(11.005, c2s(100, flags=ACK, ack=501))
    assert env.table.flows_active == 1
    env.table.segment(11.006, c2s(100, b"A"))
    rtt = env.h.events("handshake-rtt")
    assert len(rtt) == 1 and rtt[0][3] == pytest.approx(0.005)


def test_refused_syn():
    env = Env()
    env.feed(c2s(1, flags=SYN, ack=0), s2c(0, flags=RST | ACK, ack=2), ts=3.0)
    assert env.failures == [(S, SP, "refused", pytest.approx(3.001))]
    assert not env.handlers


def test_unanswered_syn_reported_once_despite_retries():
    env = Env(syn_timeout_s=10.0)
    for t in (0.0, 1.0, 3.0, 7.0):
        env.table.segment(t, c2s(42, flags=SYN, ack=0))
    env.table.expire(9.0)
    assert env.failures == []
    env.table.expire(11.0)
    assert env.failures == [(S, SP, "unanswered", 11.0)]
    env.table.segment(15.0, c2s(42, flags=SYN, ack=0))
    env.table.segment(31.0, c2s(42, flags=SYN, ack=0))
    for t in range(12, 90):
        env.table.expire(float(t))
    assert len(env.failures) == 1
    assert env.table.flows_active == 1  # lingering until 31 + 64
    env.table.expire(97.0)
    assert env.table.flows_active == 0


def test_one_sided_syn_then_client_ack_is_not_unanswered():
    env = Env()
    env.feed(c2s(1, flags=SYN, ack=0), c2s(2, flags=ACK, ack=9), c2s(2, b"hi"))
    env.table.expire(100.0)
    assert env.failures == []
    assert env.h.stream(0) == b"hi"


# ---------------------------------------------------------------- gaps


def test_gap_after_out_of_order_segment_bound():
    env = Env(max_out_of_order_segments=3)
    ts = handshake(env)
    ts = env.feed(c2s(1001, b"aa"), ts=ts)  # 1003..1012 (10 bytes) lost by the capture
    ts = env.feed(*(c2s(1013 + 2 * i, b"%02d" % i) for i in range(3)), ts=ts)
    assert env.h.of("gap") == []
    env.feed(c2s(1019, b"03"), ts=ts)
    h = env.h
    assert h.of("gap") == [("gap", 0, 10)]
    assert h.stream(0) == b"aa00010203"
    assert env.table.gap_bytes == 10


def test_gap_after_out_of_order_byte_bound():
    env = Env(max_out_of_order_bytes=10)
    ts = handshake(env)
    env.feed(c2s(1001, b"a"), c2s(1005, b"x" * 8), c2s(1013, b"y" * 5), ts=ts)
    h = env.h
    assert h.of("gap") == [("gap", 0, 3)]
    assert h.stream(0) == b"a" + b"x" * 8 + b"y" * 5


def test_gap_for_snaplen_truncated_segments():
    env = Env()
    ts = handshake(env)
    env.feed(c2s(1001, b"head", seg_len=1460), c2s(2461, b"next"), ts=ts)
    h = env.h
    assert [c for c in h.calls if c[0] != "event"] == [
        ("data", 0, b"head"),
        ("gap", 0, 1456),
        ("data", 0, b"next"),
    ]


def test_gap_for_truncated_out_of_order_segment():
    env = Env()
    ts = handshake(env)
    env.feed(c2s(1001, b"a"), c2s(1003, b"cc", seg_len=10), c2s(1002, b"b"), c2s(1013, b"z"),
             ts=ts)  # fmt: skip
    h = env.h
    assert [c for c in h.calls if c[0] in ("data", "gap")] == [
        ("data", 0, b"a"),
        ("data", 0, b"b"),
        ("data", 0, b"cc"),
        ("gap", 0, 8),
        ("data", 0, b"z"),
    ]


def test_gap_before_classification_is_reported_after_it():
    env = Env(max_out_of_order_segments=1)
    ts = handshake(env)
    env.feed(c2s(1011, b"x"), c2s(1012, b"y"), ts=ts)  # first 10 bytes never seen
    h = env.h
    assert h.first == (0, b"x")
    assert [c for c in h.calls if c[0] in ("data", "gap")] == [
        ("gap", 0, 10),
        ("data", 0, b"x"),
        ("data", 0, b"y"),
    ]


# ---------------------------------------------------------------- table bounds


def _open_flow(env: Env, port: int, ts: float) -> None:
    env.table.segment(ts, seg(C, port, S, SP, 1, b"x"))


def test_capacity_eviction_is_approximately_lru():
    env = Env(capacity=3)
    for i in range(3):
        _open_flow(env, 50000 + i, float(i))
    env.table.segment(3.0, seg(C, 50000, S, SP, 2, b"y"))  # flow 0 is busy again
    _open_flow(env, 50003, 4.0)
    assert env.table.flows_active == 3
    assert env.table.evictions["capacity"] == 1
    closes = [(h.info.client_port, h.of("close")) for h in env.handlers]
    assert closes[1] == (50001, [("close", "evicted-capacity")])
    assert all(c == [] for p, c in closes if p != 50001)


def test_idle_timeout():
    env = Env(idle_timeout_s=600.0)
    env.feed(c2s(1, b"x"), ts=100.0)
    env.table.segment(400.0, c2s(2, b"y"))
    env.table.expire(900.0)
    assert env.h.of("close") == []
    env.table.expire(1002.0)
    assert env.h.of("close") == [("close", "idle")]
    assert env.table.evictions["idle"] == 1
    assert env.table.flows_active == 0


def test_closed_timeout_keeps_finished_flow_briefly():
    env = Env(closed_timeout_s=10.0)
    ts = handshake(env)
    ts = env.feed(c2s(1001, b"x", flags=PSH_ACK | FIN), s2c(5001, flags=FIN | ACK),
                  c2s(1003, flags=ACK), ts=ts)  # fmt: skip
    assert env.h.of("close") == [("close", "fin")]
    env.table.expire(ts + 5)
    assert env.table.flows_active == 1
    env.feed(s2c(5001, flags=FIN | ACK), ts=ts + 6)  # late retransmission: no new flow
    assert len(env.handlers) == 1
    env.table.expire(ts + 17)
    assert env.table.flows_active == 0
    assert env.h.of("close") == [("close", "fin")]
    assert env.table.evictions["idle"] == 0


def test_memcap_evicts_another_buffering_flow():
    env = Env(memcap_bytes=1000)
    env.feed(seg(C, 50001, S, SP, 1, b"a"), seg(C, 50001, S, SP, 10, b"A" * 600))
    assert env.table.buffered_bytes == 600
    env.feed(seg(C, 50002, S, SP, 1, b"b"), seg(C, 50002, S, SP, 10, b"B" * 600), ts=1.0)
    first, second = env.handlers
    assert env.table.evictions["memcap"] == 1
    assert [c for c in first.calls if c[0] != "event"] == [
        ("data", 0, b"a"),
        ("gap", 0, 8),
        ("data", 0, b"A" * 600),
        ("close", "evicted-memcap"),
    ]
    assert second.of("close") == []
    assert env.table.buffered_bytes == 600
    assert env.table.flows_active == 1


def test_ignored_flow_keeps_no_buffers():
    env = Env(ignore=True)
    ts = handshake(env)
    ts = env.feed(c2s(1001, b"GET /"), c2s(2000, b"z" * 500), c2s(1500, b"q" * 100), ts=ts)
    assert env.table.ignored_flows == 1 and env.classified == 1
    assert env.table.buffered_bytes == 0 and env.table.out_of_order == 0
    env.feed(c2s(2500, flags=FIN | ACK), s2c(5001, flags=FIN | ACK), ts=ts)
    env.table.expire(ts + 11)
    assert env.table.flows_active == 0
    assert env.table.evictions["idle"] == 0


def test_syn_flood_stays_at_capacity():
    env = Env(capacity=1000)
    t = env.table
    for i in range(100_000):
        src = (0x0A000000 + i).to_bytes(4, "big")
        t.segment(i * 1e-5, (src, 1024 + i % 60000, S, SP, i, 0, SYN, 1024, b"", 0, i & 0xFFFF))
    assert t.flows_active == 1000
    assert t.evictions["capacity"] == 99_000
    assert len(t._halves) == 2000 and sum(map(len, t._wheel.values())) == 1000
    t.expire(100.0)  # all unanswered
    t.expire(200.0)
    assert t.flows_active == 0 and len(env.failures) == 1000


def test_flood_within_one_second_evicts_the_oldest_not_the_newest():
    """Regression: eviction took the newest flow of a timer bucket, so under a flood
    faster than capacity per second every new flow (a legitimate one too) was evicted by
    the next arrival."""
    env = Env(capacity=200)
    t = env.table

    def flood(first: int, count: int, ts: float) -> None:
        for i in range(first, first + count):  # connections that send a little and idle
            src = (0x0B000000 + i).to_bytes(4, "big")
            t.segment(ts, (src, 40000, S, SP, 1, 0, PSH_ACK, 1024, b"junk", 4, 1))

    flood(0, 300, 0.1)
    t.segment(0.2, c2s(1, b"legit"))  # the legitimate flow arrives mid-flood...
    for k in range(6):  # ...and keeps talking while the flood goes on
        flood(300 + 50 * k, 50, 0.3 + k * 0.01)
        t.segment(0.305 + k * 0.01, c2s(6 + k, b"+"))
    legit = [h for h in env.handlers if h.first == (0, b"legit")]
    assert len(legit) == 1 and legit[0].of("close") == []
    assert legit[0].stream(0) == b"legit" + b"+" * 6
    assert t.evictions["capacity"] == 600 + 1 - 200


def test_handler_exception_is_contained():
    class Boom(Rec):
        def data(self, direction, data, ts):
            if data == b"boom":
                raise ValueError("parser bug")
            super().data(direction, data, ts)

    env = Env()
    env.classify = lambda info, d, first: (
        env.handlers.append(Boom(info, d, first)) or (env.handlers[-1])
    )
    env.table._classify_fn = env.classify
    env.feed(c2s(1, b"ok"), c2s(3, b"boom"), c2s(7, b"after"))
    env.feed(seg(C, 50001, S, SP, 1, b"other"), seg(C, 50001, S, SP, 6, b"fine"))
    bad, good = env.handlers
    assert env.table.handler_errors == 1
    assert bad.stream(0) == b"ok"
    assert good.stream(0) == b"otherfine"
    assert env.table.flows_active == 2


def test_close_all_ends_every_flow_and_flushes_buffers():
    env = Env()
    env.feed(c2s(1, b"a"), c2s(5, b"e"))
    env.table.close_all(1.0)
    h = env.h
    assert [c for c in h.calls if c[0] != "event"] == [
        ("data", 0, b"a"),
        ("gap", 0, 3),
        ("data", 0, b"e"),
        ("close", "end"),
    ]
    assert env.table.flows_active == 0 and env.table.buffered_bytes == 0


# ---------------------------------------------------------------- hot path

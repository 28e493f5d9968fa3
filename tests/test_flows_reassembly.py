"""TCP reassembly (dicomsniffd/flows/reassembly.py): reordering, SPAN duplicates vs
retransmissions, zero window, gaps, memcap."""

from __future__ import annotations

from flows_env import (
    ACK,
    FIN,
    PSH_ACK,
    SP,
    C,
    Env,
    S,
    c2s,
    handshake,
    s2c,
    seg,
)
from hypothesis import given, settings
from hypothesis import strategies as st


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


def test_span_duplicate_vs_retransmission_ipv4():
    env = Env()
    ts = handshake(env)
    a = c2s(1001, b"abcd", ip_id=10)
    env.feed(a, ts=ts)
    env.table.segment(ts + 0.0005, *a)  # the same frame mirrored twice
    env.table.segment(ts + 0.3, *c2s(1001, b"abcd", ip_id=11))  # RTO retransmission: new ID
    env.table.segment(ts + 0.4, *a)  # same ID but long after: not a capture duplicate
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


def test_a_segment_filling_a_hole_is_a_retransmission_lost_before_the_capture():
    # DESIGN §3: the original never passed the capture point, the retransmission fills the
    # hole an RTT or more later. The handshake RTT here is 12 ms.
    env = Env()
    ts = handshake(env)
    env.feed(c2s(1001, b"aa"), c2s(1005, b"cc"), c2s(1007, b"dd"), ts=ts, step=0.0001)
    env.feed(c2s(1003, b"bb"), ts=ts + 0.2)  # RTO later
    assert env.h.stream(0) == b"aabbccdd"
    assert env.table.retransmissions == 1
    assert env.h.events("retransmission") == [("event", "retransmission", 0, 1.0)]


def test_a_hole_filled_within_half_an_rtt_is_reordering():
    env = Env()
    ts = handshake(env)
    env.feed(c2s(1001, b"aa"), c2s(1005, b"cc"), c2s(1003, b"bb"), ts=ts, step=0.001)
    assert env.h.stream(0) == b"aabbcc"
    assert env.table.retransmissions == 0 and env.table.out_of_order == 1


def test_a_hole_between_buffered_segments_filled_is_a_retransmission():
    env = Env()
    ts = handshake(env)
    env.feed(c2s(1001, b"aa"), c2s(1005, b"cc"), c2s(1009, b"ee"), ts=ts, step=0.0001)
    env.feed(c2s(1007, b"dd"), ts=ts + 0.2)  # the second hole, still behind the first
    env.feed(c2s(1003, b"bb"), ts=ts + 0.3)
    assert env.h.stream(0) == b"aabbccddee"
    assert env.table.retransmissions == 2
    assert [e[3] for e in env.h.events("retransmission")] == [1.0, 1.0]


def test_a_repeat_is_a_retransmission_lost_after_the_capture():
    env = Env()
    ts = handshake(env)
    env.feed(c2s(1001, b"aa", ip_id=1), ts=ts)
    env.feed(c2s(1001, b"aa", ip_id=2), ts=ts + 0.2)
    assert env.h.events("retransmission") == [("event", "retransmission", 0, 0.0)]

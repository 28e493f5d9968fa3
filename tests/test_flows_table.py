"""FlowTable (dicomsniffd/flows/table.py): delivery, midstream roles, handler binding, flow ends."""

from __future__ import annotations

import pytest
from flows_env import (
    ACK,
    CP,
    FIN,
    RST,
    SP,
    C,
    Env,
    Rec,
    S,
    c2s,
    handshake,
    s2c,
    seg,
)


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
    env.table.segment(1.0, *c2s(10, b"late"))  # bytes 8..9 missing: buffered, not delivered
    assert not env.handlers
    assert env.table.buffered_bytes == 4
    env.table.segment(1.1, *c2s(8, b"ab"))
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
    env.table.segment(0.0, *seg(S, 5000, C, 5000, 1, b"x"))
    assert env.h.info.client_ip == S and env.h.first[0] == 0


def test_midstream_ack_only_jump_is_not_a_gap():
    env = Env()
    env.feed(s2c(100, b"resp"), c2s(9000, flags=ACK), c2s(9000, flags=ACK), c2s(12000, b"data"))
    h = env.h
    assert h.stream(0) == b"data"
    assert not h.of("gap")
    assert env.table.out_of_order == 0


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
    assert bad.of("close") == [("close", "handler-failed")]  # once, what it opened ends
    assert good.of("close") == []
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

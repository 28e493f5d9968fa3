"""The timer wheel (dicomsniffd/flows/timers.py): idle/closed/SYN timeouts, capacity eviction."""

from __future__ import annotations

from flows_env import (
    ACK,
    FIN,
    PSH_ACK,
    SP,
    SYN,
    C,
    Env,
    S,
    c2s,
    handshake,
    s2c,
    seg,
)


def test_fin_with_data_and_one_sided_fin_times_out_as_fin():
    env = Env()
    ts = env.feed(c2s(1, b"only the client side is mirrored", flags=PSH_ACK | FIN))
    assert env.table.flows_active == 1
    env.table.expire(ts + 5)
    assert not env.h.of("close")
    env.table.expire(ts + 11)
    assert env.h.of("close") == [("close", "fin")]
    assert env.table.flows_active == 0


def _open_flow(env: Env, port: int, ts: float) -> None:
    env.table.segment(ts, *seg(C, port, S, SP, 1, b"x"))


def test_capacity_eviction_is_approximately_lru():
    env = Env(capacity=3)
    for i in range(3):
        _open_flow(env, 50000 + i, float(i))
    env.table.segment(3.0, *seg(C, 50000, S, SP, 2, b"y"))  # flow 0 is busy again
    _open_flow(env, 50003, 4.0)
    assert env.table.flows_active == 3
    assert env.table.evictions["capacity"] == 1
    closes = [(h.info.client_port, h.of("close")) for h in env.handlers]
    assert closes[1] == (50001, [("close", "evicted-capacity")])
    assert all(c == [] for p, c in closes if p != 50001)


def test_idle_timeout():
    env = Env(idle_timeout_s=600.0)
    env.feed(c2s(1, b"x"), ts=100.0)
    env.table.segment(400.0, *c2s(2, b"y"))
    env.table.expire(900.0)
    assert env.h.of("close") == []
    env.table.expire(1002.0)
    assert env.h.of("close") == [("close", "idle")]
    # it ended at its last packet, not when the timer found it (1002.0): the idle timeout
    # is no part of the association's duration
    assert env.h.closed_at == 400.0
    assert env.table.evictions["idle"] == 1
    assert env.table.flows_active == 0


def test_idle_eviction_after_a_capture_gap_ends_at_the_last_packet():
    """Offline, days of nothing in a capture file: the flow still ended at its last packet."""
    env = Env(idle_timeout_s=600.0)
    env.feed(c2s(1, b"x"), ts=100.0)
    env.table.segment(130.0, *c2s(2, b"y"))
    env.table.expire(100.0 + 3 * 86400)
    assert env.h.of("close") == [("close", "idle")]
    assert env.h.closed_at == 130.0


def test_one_sided_fin_timeout_ends_at_the_last_packet():
    env = Env()
    env.feed(c2s(1, b"bye", flags=PSH_ACK | FIN), ts=5.0)
    env.table.expire(65.0)
    assert env.h.of("close") == [("close", "fin")]
    assert env.h.closed_at == 5.0


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


def test_syn_flood_stays_at_capacity():
    env = Env(capacity=1000)
    t = env.table
    for i in range(100_000):
        src = (0x0A000000 + i).to_bytes(4, "big")
        t.segment(i * 1e-5, src, 1024 + i % 60000, S, SP, i, 0, SYN, 1024, b"", 0, i & 0xFFFF)
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
            t.segment(ts, src, 40000, S, SP, 1, 0, PSH_ACK, 1024, b"junk", 4, 1)

    flood(0, 300, 0.1)
    t.segment(0.2, *c2s(1, b"legit"))  # the legitimate flow arrives mid-flood...
    for k in range(6):  # ...and keeps talking while the flood goes on
        flood(300 + 50 * k, 50, 0.3 + k * 0.01)
        t.segment(0.305 + k * 0.01, *c2s(6 + k, b"+"))
    legit = [h for h in env.handlers if h.first == (0, b"legit")]
    assert len(legit) == 1 and legit[0].of("close") == []
    assert legit[0].stream(0) == b"legit" + b"+" * 6
    assert t.evictions["capacity"] == 600 + 1 - 200


def test_capture_end_closes_a_half_closed_flow_as_fin():
    env = Env()
    env.feed(c2s(1, b"open"), ts=1.0)
    env.table.close_all(2.0)
    assert env.h.of("close") == [("close", "end")]
    env = Env()
    env.feed(c2s(1, b"bye", flags=PSH_ACK | FIN), ts=1.0)
    env.table.close_all(2.0)  # within the closed timeout: the FIN says it was closing
    assert env.h.of("close") == [("close", "fin")]

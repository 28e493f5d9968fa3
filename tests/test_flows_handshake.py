"""The TCP handshake (dicomsniffd/flows/handshake.py): RTT, refused and unanswered SYNs."""

from __future__ import annotations

import pytest
from flows_env import (
    ACK,
    RST,
    SP,
    SYN,
    Env,
    S,
    c2s,
    s2c,
)


def test_handshake_rtt_value_uses_latest_syn():
    env = Env()
    env.table.segment(10.0, *c2s(99, flags=SYN, ack=0))
    env.table.segment(11.0, *c2s(99, flags=SYN, ack=0))  # SYN retry: not a new flow
    env.table.segment(11.004, *s2c(500, flags=SYN | ACK, ack=100))
    env.table.segment(11.005, *c2s(100, flags=ACK, ack=501))
    assert env.table.flows_active == 1
    env.table.segment(11.006, *c2s(100, b"A"))
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
        env.table.segment(t, *c2s(42, flags=SYN, ack=0))
    env.table.expire(9.0)
    assert env.failures == []
    env.table.expire(11.0)
    assert env.failures == [(S, SP, "unanswered", 11.0)]
    env.table.segment(15.0, *c2s(42, flags=SYN, ack=0))
    env.table.segment(31.0, *c2s(42, flags=SYN, ack=0))
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

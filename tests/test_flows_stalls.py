"""Stalls, the TCP half (dicomsniffd/flows/stalls.py, DESIGN §3): a gap in one direction's
data longer than max(10 ms, 3 x handshake RTT) is handed to the handler with its cause,
before the segment that ends it. The handshake here has a 12 ms RTT: threshold 36 ms."""

from __future__ import annotations

from flows_env import ACK, Env, Rec, c2s, handshake, s2c


class StallRec(Rec):
    def stall(self, direction, cause, seconds, ts):
        self.calls.append(("stall", direction, cause, round(seconds, 6)))


class StallEnv(Env):
    def classify(self, info, direction, first):
        self.classified += 1
        h = StallRec(info, direction, first)
        self.handlers.append(h)
        return h


def _stalls(env):
    return env.h.of("stall")


def test_nagle_meeting_a_delayed_ack_is_delayed_ack():
    # storescp: a 12-byte segment (PDU + PDV header), the SCU's ACK 40 ms later, then the
    # rest right after it
    env = StallEnv()
    ts = handshake(env)
    env.feed(c2s(1001, b"q" * 200), ts=ts)
    env.feed(s2c(5001, b"h" * 12, ack=1201), ts=ts + 0.001)
    env.feed(c2s(1201, flags=ACK, ack=5013), ts=ts + 0.041)
    env.feed(s2c(5013, b"r" * 158, ack=1201), ts=ts + 0.0411)
    assert _stalls(env) == [("stall", 1, "delayed-ack", 0.0401)]
    assert env.h.stream(1) == b"h" * 12 + b"r" * 158  # the stall came first, then the bytes


def test_a_resume_long_after_an_immediate_ack_is_sender_idle():
    env = StallEnv()
    ts = handshake(env)
    env.feed(c2s(1001, b"a" * 100), ts=ts)
    env.feed(s2c(5001, flags=ACK, ack=1101), ts=ts + 0.0001)  # acked at once
    env.feed(c2s(1101, b"b" * 100), ts=ts + 0.1)
    assert _stalls(env) == [("stall", 0, "sender-idle", 0.1)]


def test_a_full_segment_before_the_gap_is_not_nagle():
    env = StallEnv()
    ts = handshake(env)
    env.feed(c2s(1001, b"a" * 1460), ts=ts)
    env.feed(s2c(5001, flags=ACK, ack=2461), ts=ts + 0.04)
    env.feed(c2s(2461, b"b" * 100), ts=ts + 0.0401)
    assert _stalls(env) == [("stall", 0, "sender-idle", 0.0401)]


def test_a_receiver_advertising_zero_window_is_zero_window():
    env = StallEnv()
    ts = handshake(env)
    env.feed(c2s(1001, b"a" * 1000), ts=ts)
    env.feed(s2c(5001, flags=ACK, ack=2001, window=0), ts=ts + 0.001)
    env.feed(s2c(5001, flags=ACK, ack=2001, window=65535), ts=ts + 0.5)  # reads again
    env.feed(c2s(2001, b"b" * 1000), ts=ts + 0.5001)
    assert _stalls(env) == [("stall", 0, "zero-window", 0.5001)]


def test_a_gap_ended_by_a_repeat_is_loss_recovery():
    env = StallEnv()
    ts = handshake(env)
    env.feed(c2s(1001, b"a" * 1000, ip_id=1), ts=ts)
    env.feed(c2s(1001, b"a" * 1000, ip_id=2), ts=ts + 0.2)  # RTO
    assert _stalls(env) == [("stall", 0, "loss-recovery", 0.2)]


def test_a_gap_ended_by_a_hole_filled_is_loss_recovery():
    env = StallEnv()
    ts = handshake(env)
    env.feed(c2s(1001, b"a" * 100), c2s(1201, b"c" * 100), ts=ts, step=0.0001)
    env.feed(c2s(1101, b"b" * 100), ts=ts + 0.2)
    assert _stalls(env) == [("stall", 0, "loss-recovery", 0.1999)]
    assert env.h.stream(0) == b"a" * 100 + b"b" * 100 + b"c" * 100


def test_gaps_under_the_threshold_and_keepalives_are_not_stalls():
    env = StallEnv()
    ts = handshake(env)
    env.feed(c2s(1001, b"a" * 100), ts=ts)
    env.feed(c2s(1101, b"b" * 100), ts=ts + 0.035)  # under 3 x 12 ms
    env.feed(c2s(1200, b"\x00"), ts=ts + 5)  # keep-alive probe (seq = next - 1)
    assert _stalls(env) == []


def test_without_a_handshake_the_threshold_is_10_ms():
    env = StallEnv()
    env.feed(c2s(1001, b"a" * 100), ts=0.0)
    env.feed(c2s(1101, b"b" * 100), ts=0.011)
    assert _stalls(env) == [("stall", 0, "sender-idle", 0.011)]


def test_a_handler_without_stall_is_never_asked():
    env = Env()
    ts = handshake(env)
    env.feed(c2s(1001, b"a" * 100), ts=ts)
    env.feed(c2s(1101, b"b" * 100), ts=ts + 1)
    assert env.h.stream(0) == b"a" * 100 + b"b" * 100
    halves = env.table._halves.values()
    assert len(halves) == 2 and all(h.stall_after == float("inf") for h in halves)

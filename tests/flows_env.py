"""The flow-table test bench shared by tests/test_flows_*.py: segments built as plain tuples,
as decode emits them, a recording StreamHandler and a table around it."""

from __future__ import annotations

import itertools

from dicomsniffd.config import FlowsConfig
from dicomsniffd.flows import ACK, FIN, RST, SYN, FlowInfo, FlowTable

__all__ = ["ACK", "FIN", "RST", "SYN"]  # re-exported for the test modules

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
        self.closed_at: float | None = None  # the ts close() was given

    def data(self, direction, data, ts):
        self.calls.append(("data", direction, bytes(data)))

    def gap(self, direction, nbytes, ts):
        self.calls.append(("gap", direction, nbytes))

    def tcp_event(self, kind, direction, ts, value=0.0):
        self.calls.append(("event", kind, direction, value))

    def close(self, how, ts):
        self.calls.append(("close", how))
        self.closed_at = ts

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
            self.table.segment(ts, *s)
            ts += step
        return ts

    @property
    def h(self) -> Rec:
        assert len(self.handlers) == 1
        return self.handlers[0]


def handshake(env: Env, isn_c: int = 1000, isn_s: int = 5000, ts: float = 0.0) -> float:
    env.table.segment(ts, *c2s(isn_c, flags=SYN, ack=0))
    env.table.segment(ts + 0.010, *s2c(isn_s, flags=SYN | ACK, ack=isn_c + 1))
    env.table.segment(ts + 0.012, *c2s(isn_c + 1, flags=ACK, ack=isn_s + 1))
    return ts + 0.02

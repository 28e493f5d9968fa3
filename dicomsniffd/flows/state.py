"""What the flow table holds for one TCP connection: Flow, its two halves, the states.

One ``Flow`` per connection (it *is* the ``FlowInfo`` the classifier sees) and one
``_Half`` per direction (the bytes *sent* by one endpoint). The table stores each half
under its own directional key ``(src, sport, dst, dport)``, so a packet finds its half
with one tuple slice and one dict probe. Plain ``__slots__`` classes: the hot path reads
and writes their attributes for every packet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

FIN = 0x01
SYN = 0x02
RST = 0x04
ACK = 0x10

_MASK = 0xFFFFFFFF
_HALF = 0x80000000
_WRAP = 0x100000000
INF = float("inf")

# tcp_event("retransmission", ..., value): what the capture point saw of the lost segment.
# A repeat (the original was seen, so it was lost after the capture point) is 0.0; a
# segment that fills a hole (the original never passed: lost before it) is LOST_BEFORE.
LOST_AFTER = 0.0
LOST_BEFORE = 1.0

# Flow states. Order matters: everything >= S_CLOSED is finished and only lingers so that
# late packets do not resurrect the connection as a new midstream flow.
S_OPEN = 0  # established, or midstream (no handshake seen)
S_SYN = 1  # SYN seen, not answered yet
S_SYNACK = 2  # SYN/ACK seen, waiting for the client's ACK (handshake RTT)
S_CLOSED = 3  # FIN both ways, RST, or closed by us
S_FAILED = 4  # SYN reported unanswered; absorbs the client's SYN retries
S_GONE = 5  # removed from the table


def _off(seq: int, ref: int) -> int:
    """Signed distance seq - ref in 32-bit sequence space (handles wrap-around)."""
    d = (seq - ref) & _MASK
    return d - _WRAP if d >= _HALF else d


def _key(flow: FlowInfo, d: int) -> tuple:
    """The table key of direction ``d``'s packets: (src, sport, dst, dport) as sent."""
    if d == 0:
        return (flow.client_ip, flow.client_port, flow.server_ip, flow.server_port)
    return (flow.server_ip, flow.server_port, flow.client_ip, flow.client_port)


def _no_results(results: object) -> None:
    """``dispatch`` of a handler without ``deliver``: its ``data`` returns nothing."""


class FlowInfo:
    """What the classifier and the handler may know about a flow (one per flow).

    ``syn_seen`` is true when the roles come from the handshake (SYN or SYN/ACK seen);
    otherwise the client is guessed as the endpoint with the higher port.
    """

    __slots__ = ("client_ip", "client_port", "server_ip", "server_port", "syn_seen")

    def __init__(
        self, client_ip: bytes, client_port: int, server_ip: bytes, server_port: int, syn: bool
    ) -> None:
        self.client_ip = client_ip
        self.client_port = client_port
        self.server_ip = server_ip
        self.server_port = server_port
        self.syn_seen = syn


class Flow(FlowInfo):
    """Table entry. It *is* the FlowInfo given to the classifier: one object per flow."""

    __slots__ = (
        "h0",
        "h1",
        "handler",
        "ignored",
        "state",
        "last_seen",
        "fin_seen",
        "syn_first",
        "syn_ts",
        "syn_isn",
        "server_isn",
        "rtt",
        "rtt_ts",
        "sched",
        "sched_seen",
        "on_stall",
    )

    def __init__(
        self, client_ip: bytes, client_port: int, server_ip: bytes, server_port: int, syn: bool
    ) -> None:
        # FlowInfo's fields set here, not through super().__init__: one Python call less
        # per connection (a flow is made for every SYN; short associations, issue 15)
        self.client_ip = client_ip
        self.client_port = client_port
        self.server_ip = server_ip
        self.server_port = server_port
        self.syn_seen = syn
        self.h0 = _Half(self, 0)
        self.h1 = _Half(self, 1)
        self.handler: StreamHandler | None = None
        self.ignored = False
        self.state = S_OPEN
        self.last_seen = 0.0
        self.fin_seen = False
        self.syn_first = 0.0
        self.syn_ts: float | None = None
        self.syn_isn: int | None = None
        self.server_isn: int | None = None
        self.rtt: float | None = None
        self.rtt_ts = 0.0
        self.sched_seen = 0.0  # last_seen when last (re)scheduled: the "second chance" bit
        self.sched: int | None = None  # timer-wheel bucket this flow currently sits in
        # handler.stall(direction, cause, seconds, ts), bound at classification (or None)
        self.on_stall: Callable[[int, str, float, float], None] | None = None


class _Half:
    """Reassembly state of one direction (the bytes *sent* by one endpoint)."""

    __slots__ = (
        "flow",
        "d",
        "handler",
        "feed",
        "dispatch",
        "fast",
        "budget",
        "taken",
        "chain",
        "chained",
        "leased",
        "next",
        "prov",
        "ooo",
        "ooo_bytes",
        "ooo_ts",
        "ooo_high",
        "fin",
        "fin_done",
        "zw",
        "zw_ts",
        "last",
        "prev",
        "pregap",
        "data_ts",
        "stall_after",
        "ack_no",
        "ack_ts",
    )

    def __init__(self, flow: Flow, d: int) -> None:
        self.flow = flow
        self.d = d
        self.handler: StreamHandler | None = None  # copy of flow.handler: one load less
        # handler.deliver (or .data) and handler.dispatch, bound once at classification
        self.feed: Callable[[int, bytes, float], object] | None = None
        self.dispatch: Callable[[object], None] = _no_results
        self.fast = False  # the next in-order segment may take the hot path
        # handler.skip_budget / skip_taken when the compiled bypass may lease this half
        self.budget: Callable[[int], int] | None = None
        self.taken: Callable[[int, int], None] | None = None
        # handler.skip_chain / skip_chained: what the lease may walk past the budget's end
        self.chain: Callable[[int], tuple | None] | None = None
        self.chained: Callable[..., None] | None = None
        self.leased = False  # the C bypass holds this flow's in-order state right now
        self.next: int | None = None  # next expected sequence number
        self.prov: int | None = None  # provisional midstream anchor (pure ACKs only so far)
        self.ooo: dict[int, tuple] | None = None  # seq -> (payload, wire_len, ip_id, ack, ts)
        self.ooo_bytes = 0
        # When the buffer last went from empty to holding data (the hole appeared), and
        # the end of the highest buffered segment: a segment below it fills a hole.
        self.ooo_ts = 0.0
        self.ooo_high = 0
        self.fin: int | None = None  # sequence number of our FIN
        self.fin_done = False  # every byte before the FIN delivered
        self.zw = False  # inside a zero-window episode
        self.zw_ts = 0.0  # when this endpoint last advertised a zero window
        # The last two delivered segments (seq, wire_len, ip_id, ack, ts): enough to tell a
        # SPAN duplicate (the same frame mirrored twice, possibly interleaved with the next
        # frame) from a retransmission.
        self.last: tuple | None = None
        self.prev: tuple | None = None
        self.pregap = 0  # bytes given up before the flow was classified
        # Stalls (flows/stalls.py): when the last data segment was seen, the gap after it
        # that is a stall (inf: stalls not tracked), and this endpoint's latest pure ACK.
        self.data_ts = INF
        self.stall_after = INF
        self.ack_no = 0
        self.ack_ts = 0.0


def _break_cycle(flow: Flow) -> None:
    """A removed flow and its halves point at each other. Flows evicted or expired have
    lived long enough to reach the oldest GC generation, where cyclic garbage waits for
    a rare full collection: under a flood that is megabytes. Breaking the cycle frees
    them at once. Only called outside segment processing (expiry, eviction before a
    new flow is created), where nothing else holds the flow."""
    flow.h0.flow = flow.h1.flow = None  # type: ignore[assignment]


# -- what the table calls: the interface a stream handler offers (docs/architecture.md) --


class StreamHandler(Protocol):
    """What the table calls for one classified flow (docs/architecture.md).

    Optional split of ``data`` (the hot path, one Python call less per segment): a
    handler may also have ``deliver(direction, data, ts) -> results`` and
    ``dispatch(results)``, with ``data`` equivalent to "dispatch(r) if r is non-empty,
    r = deliver(...)". The table then calls ``deliver`` (which may be a bound method of
    another object, e.g. the protocol parser itself) and ``dispatch`` only for a
    non-empty result. It never looks at the results.

    Optional skipping contract (the compiled bypass): ``skip_budget(direction) -> int``
    is N such that ``data``/``deliver`` of any chunk shorter than N would produce nothing
    and only count it; ``skip_taken(direction, nbytes)`` must then be exactly equivalent
    to having delivered chunks totalling ``nbytes`` (< N).

    Optional, on top of it: ``skip_chain(direction) -> (ctx, pdu_limit, pdv_len, ts) | None``
    says that the bytes after the budget may be further P-DATA-TFs of the same data set
    (PS3.8 9.3.5: one dataset PDV each, context ``ctx``, not the last fragment, at most
    ``pdu_limit`` long), which the compiled lease then walks too; ``skip_chained(direction,
    nbytes, pdvs, pdv_bytes, done_ts, header_ts, skip_left, pdv_len)`` must be exactly
    equivalent to having delivered those ``nbytes`` (see ``_fastpath.c``, chain_walk).
    """

    def data(self, direction: int, data: bytes, ts: float) -> None: ...
    def gap(self, direction: int, nbytes: int, ts: float) -> None: ...
    def tcp_event(self, kind: str, direction: int, ts: float, value: float = 0.0) -> None: ...
    def close(self, how: str, ts: float) -> None: ...


Classify = Callable[[FlowInfo, int, bytes], "StreamHandler | None"]
ConnectionFailure = Callable[[bytes, int, str, float], None]

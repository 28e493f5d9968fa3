"""Bounded flow table and per-direction TCP reassembly (DESIGN.md §1, §2, §2b).

The table turns decoded segments into in-order bytes and explicit gaps for one
``StreamHandler`` per interesting flow. It knows nothing about DICOM.

Design notes (the why):
- Lookup: each flow is stored under *both* directional keys ``(src, sport, dst, dport)``,
  and the value is the per-direction half-stream itself. One tuple slice and one dict probe
  per packet, no canonicalisation (measured: 146 ns vs 183 ns canonical key vs 197 ns
  two probes, 20k flows).
- Ageing: no per-packet LRU bookkeeping. A packet only stores ``last_seen``. Every flow sits
  in exactly one 1-second bucket of a timer wheel (dict of dicts + heap of bucket keys)
  whose deadline is <= its real deadline; buckets are re-checked lazily when due, so a busy
  flow is moved at most once per timeout period. ``expire`` is O(flows due), never O(flows).
- Capacity eviction takes the flow with the earliest deadline from the same wheel, which is
  approximately LRU within a state and naturally prefers closed, then SYN-only, flows.
- Hot path: an in-order data segment of a classified flow is handed to the handler as the
  very ``payload`` object from the segment (no copy). All other cases go to ``_slow``.
- Bypass (when the compiled ``_fastpath`` is in use): a handler that can say how many of
  the next bytes it would skip unseen (``skip_budget``) gets a *lease* for that direction
  in the C table. The compiled decode_batch then consumes the flow's in-order segments
  shorter than the budget, and its in-order pure ACKs, without calling Python at all.
  Any other packet of the flow ends the lease first; every lease is written back at the
  end of each batch (``_lease_synced``), so between batches this table is exact, and
  ``_release`` ends a lease before a flow's state is torn down.
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from dicomsniffd import accel
from dicomsniffd.config import FlowsConfig

log = logging.getLogger(__name__)

# (src, sport, dst, dport, seq, ack, flags, window, payload, seg_len, ip_id), see
# docs/architecture.md; a plain tuple so that decode allocates nothing per packet.
Segment = tuple[bytes, int, bytes, int, int, int, int, int, bytes, int, int]

FIN = 0x01
SYN = 0x02
RST = 0x04
ACK = 0x10

_MASK = 0xFFFFFFFF
_HALF = 0x80000000
_WRAP = 0x100000000

# Flow states. Order matters: everything >= S_CLOSED is finished and only lingers so that
# late packets do not resurrect the connection as a new midstream flow.
S_OPEN = 0  # established, or midstream (no handshake seen)
S_SYN = 1  # SYN seen, not answered yet
S_SYNACK = 2  # SYN/ACK seen, waiting for the client's ACK (handshake RTT)
S_CLOSED = 3  # FIN both ways, RST, or closed by us
S_FAILED = 4  # SYN reported unanswered; absorbs the client's SYN retries
S_GONE = 5  # removed from the table

# Lease only when more than a full segment is left to skip: a lease that consumes nothing
# costs two C calls and a write-back for no packet saved.
LEASE_MIN_BUDGET = 1460
MAX_LEASES = 4096  # bounded C table: beyond it, flows simply take the Python path

# After "unanswered" the flow stays to absorb SYN retransmits without a second report;
# 64 s covers the Linux back-off gaps (1, 2, 4, 8, 16, 32 s) between retries.
SYN_RETRY_LINGER_S = 64.0


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
    """

    def data(self, direction: int, data: bytes, ts: float) -> None: ...
    def gap(self, direction: int, nbytes: int, ts: float) -> None: ...
    def tcp_event(self, kind: str, direction: int, ts: float, value: float = 0.0) -> None: ...
    def close(self, how: str, ts: float) -> None: ...


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


Classify = Callable[[FlowInfo, int, bytes], "StreamHandler | None"]
ConnectionFailure = Callable[[bytes, int, str, float], None]


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
    )

    def __init__(
        self, client_ip: bytes, client_port: int, server_ip: bytes, server_port: int, syn: bool
    ) -> None:
        super().__init__(client_ip, client_port, server_ip, server_port, syn)
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
        "leased",
        "next",
        "prov",
        "ooo",
        "ooo_bytes",
        "fin",
        "fin_done",
        "zw",
        "last",
        "prev",
        "pregap",
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
        self.leased = False  # the C bypass holds this flow's in-order state right now
        self.next: int | None = None  # next expected sequence number
        self.prov: int | None = None  # provisional midstream anchor (pure ACKs only so far)
        self.ooo: dict[int, tuple] | None = None  # seq -> (payload, wire_len, ip_id, ack, ts)
        self.ooo_bytes = 0
        self.fin: int | None = None  # sequence number of our FIN
        self.fin_done = False  # every byte before the FIN delivered
        self.zw = False  # inside a zero-window episode
        # The last two delivered segments (seq, wire_len, ip_id, ack, ts): enough to tell a
        # SPAN duplicate (the same frame mirrored twice, possibly interleaved with the next
        # frame) from a retransmission.
        self.last: tuple | None = None
        self.prev: tuple | None = None
        self.pregap = 0  # bytes given up before the flow was classified


def _off(seq: int, ref: int) -> int:
    """Signed distance seq - ref in 32-bit sequence space (handles wrap-around)."""
    d = (seq - ref) & _MASK
    return d - _WRAP if d >= _HALF else d


def _break_cycle(flow: Flow) -> None:
    """A removed flow and its halves point at each other. Flows evicted or expired have
    lived long enough to reach the oldest GC generation, where cyclic garbage waits for
    a rare full collection: under a flood that is megabytes. Breaking the cycle frees
    them at once. Only called outside segment processing (expiry, eviction before a
    new flow is created), where nothing else holds the flow."""
    flow.h0.flow = flow.h1.flow = None  # type: ignore[assignment]


class FlowTable:
    def __init__(
        self,
        config: FlowsConfig,
        classify: Classify,
        on_connection_failure: ConnectionFailure,
        accelerate: bool | None = None,
    ) -> None:
        """``accelerate``: keep a compiled Bypass (None: whenever _fastpath is built)."""
        self.config = config
        self._classify_fn = classify
        self._on_failure = on_connection_failure
        self._halves: dict[tuple, _Half] = {}
        self._wheel: dict[int, dict[Flow, None]] = {}
        self._heap: list[int] = []
        self._buffering: dict[Flow, None] = {}  # flows that may hold out-of-order data
        self._nflows = 0
        self._logged_error = False
        # Plain-int counters, published by the pipeline at scrape time.
        self.segments = 0
        self.duplicates = 0
        self.retransmissions = 0
        self.out_of_order = 0
        self.ignored_flows = 0
        self.handler_errors = 0
        self.gaps = 0
        self.gap_bytes = 0
        self.buffered_bytes = 0
        self.evictions = {"capacity": 0, "idle": 0, "memcap": 0}
        self._leasing = False  # this batch runs through the bypass: leases may be granted
        self._bypass = (
            accel.fastpath.Bypass(self.segment, self._lease_synced, MAX_LEASES)  # type: ignore[union-attr]
            if accel.use(accelerate)
            else None
        )

    @property
    def flows_active(self) -> int:
        return self._nflows

    @property
    def segments_total(self) -> int:
        """Segments seen, the ones the compiled bypass consumed included."""
        return self.segments + (self._bypass.consumed if self._bypass is not None else 0)

    def emit_for(self, decoder: object) -> object:
        """What a decoder's decode_batch should hand this batch's segments to.

        The Bypass only goes to a compiled decoder (it is not callable from Python);
        for any other decoder the leases end first, since Python is about to process
        those flows' packets itself.
        """
        bypass = self._bypass
        self._leasing = bypass is not None and getattr(decoder, "accelerated", False)
        if bypass is None:
            return self.segment
        if self._leasing:
            return bypass
        if bypass.leases:
            bypass.revoke_all()
        return self.segment

    # ------------------------------------------------------------------ hot path

    def segment(self, ts: float, seg: Segment) -> None:
        # Hot path. Measured with timeit (best of 7 x 100k segments, 2000 other flows in the
        # table, fresh address objects per packet as decode makes them, no-op handler,
        # CPython 3.11): 0.52 us per in-order data segment and 0.34 us per pure ACK, lookup
        # included. The SPAN-duplicate history (two stores + one small tuple) is ~0.08 us
        # of that; without it a mirrored copy could not be told from a retransmission.
        # One UNPACK_SEQUENCE into locals is cheaper than the eight seg[i] lookups it
        # replaces (about 60 ns per segment, measured on the C-STORE benchmark capture).
        self.segments += 1
        src, sport, dst, dport, seq, ack, flags, window, payload, seg_len, ip_id = seg
        h = self._halves.get((src, sport, dst, dport))
        if h is not None and h.fast and seq == h.next and not flags & 0x07 and window:
            n = len(payload)
            if n == seg_len:
                h.flow.last_seen = ts
                if n:
                    h.next = (seq + n) & _MASK
                    h.prev = h.last
                    h.last = (seq, n, ip_id, ack, ts)
                    try:
                        # handler.deliver: for DICOM the conversation's feed itself
                        results = h.feed(h.d, payload, ts)  # type: ignore[misc]
                        if results:
                            h.dispatch(results)
                        elif h.budget is not None:
                            self._lease(h)
                    except Exception as exc:
                        self._handler_failed(h.flow, exc)
                return
        self._slow(ts, seg, h)

    # ------------------------------------------------------------------ bypass leases

    def _lease(self, h: _Half) -> None:
        """Hand this half's in-order skipping to the compiled bypass, if worth it."""
        if not self._leasing:
            return
        budget = h.budget(h.d)  # type: ignore[misc]
        if budget <= LEASE_MIN_BUDGET or not h.fast:
            return
        flow = h.flow
        opp = flow.h1 if h.d == 0 else flow.h0
        # The other direction's pure ACKs are consumed too, if it is on the hot path.
        rev_next = opp.next if opp.fast and opp.next is not None else -1
        if self._bypass.grant(h, *_key(flow, h.d), h.next, budget, rev_next):  # type: ignore[union-attr]
            h.leased = True

    def _lease_synced(
        self,
        h: _Half,
        nxt: int,
        taken: int,
        last_seen: float | None,
        nrec: int,
        last: tuple | None,
        prev: tuple | None,
        ended: int,
    ) -> None:
        """The bypass writes a lease back: exactly what the hot path would have done for
        the packets it consumed (next seq, SPAN-duplicate history, last_seen, and the
        handler's skipped bytes)."""
        h.next = nxt
        if nrec:
            h.prev = prev if nrec >= 2 else h.last
            h.last = last
        if last_seen is not None and h.flow is not None:
            h.flow.last_seen = last_seen
        if taken:
            h.taken(h.d, taken)  # type: ignore[misc]
        if ended:
            h.leased = False

    def _end_lease(self, flow: Flow) -> None:
        if flow.h0.leased or flow.h1.leased:
            self._bypass.revoke(*_key(flow, 0))  # type: ignore[union-attr]

    # ------------------------------------------------------------------ slow path

    def _slow(self, ts: float, seg: Segment, h: _Half | None) -> None:
        flags = seg[6]
        if h is None:
            if flags & RST:
                return  # nothing to track: a reset of a flow we never saw (or forgot)
            h = self._new_flow(ts, seg)
        flow = h.flow
        flow.last_seen = ts
        if flags & RST:
            self._on_rst(flow, h, ts)
            return
        payload = seg[8]
        seq = seg[4]
        if flags & SYN:
            h = self._on_syn(ts, seg, h)
            if h is None or not (seg[9] or flags & FIN):
                return
            flow = h.flow
            seq = (seq + 1) & _MASK  # TFO data follows the SYN's sequence number
        elif flow.state == S_SYN or flow.state == S_SYNACK:
            self._handshake_progress(flow, h, seg, ts)
        if flow.state >= S_CLOSED:
            return
        if flow.ignored:
            if flags & FIN:
                self._ignored_fin(flow, h)
            return
        if flow.handler is not None and not flags & SYN:
            self._zero_window(h, seg[7], ts)
        opp = flow.h1 if h.d == 0 else flow.h0
        if opp.ooo and flags & ACK:
            self._acked_past_hole(opp, seg[5], ts)
        self._data(h, seq, payload, seg[9], flags & FIN, seg[10], seg[5], ts)
        if flow.state < S_CLOSED and h.fin_done and flow.h0.fin_done and flow.h1.fin_done:
            self._finish(flow, "fin", ts)
        self._refresh(h)

    def _new_flow(self, ts: float, seg: Segment) -> _Half:
        if self._nflows >= self.config.capacity:
            self._evict_capacity(ts)
        src, sport, dst, dport = seg[0], seg[1], seg[2], seg[3]
        flags = seg[6]
        # SYN: the sender is the client; SYN/ACK: the receiver. Midstream we guess the
        # higher port is the client (ephemeral port); a tie makes the first sender the client.
        client_is_src = not flags & ACK if flags & SYN else sport >= dport
        if client_is_src:
            flow = Flow(src, sport, dst, dport, bool(flags & SYN))
        else:
            flow = Flow(dst, dport, src, sport, bool(flags & SYN))
        flow.last_seen = ts
        # Reverse first: for a self-connection (same key both ways) direction 0 wins.
        self._halves[_key(flow, 1)] = flow.h1
        self._halves[_key(flow, 0)] = flow.h0
        self._nflows += 1
        self._schedule(flow)
        return flow.h0 if client_is_src else flow.h1

    def _on_syn(self, ts: float, seg: Segment, h: _Half) -> _Half | None:
        """Handshake bookkeeping. Returns the half to continue with (SYN data), or None."""
        flow = h.flow
        seq = seg[4]
        fresh = flow.syn_isn is None and flow.h0.next is None and flow.h1.next is None
        if seg[6] & ACK:  # SYN/ACK
            if h.d != 1 or flow.state >= S_CLOSED:
                return None
            if flow.server_isn != seq:
                flow.server_isn = seq
                if h.next is None or h.next == h.prov:  # no server data seen yet
                    h.next = (seq + 1) & _MASK
                    h.prov = None
                if flow.state == S_SYN or fresh:
                    flow.state = S_SYNACK
                    self._schedule(flow)
            return h
        if fresh:
            self._start_syn(flow, seq, ts)
            return h
        if flow.syn_isn == seq and h.d == 0:
            if flow.state == S_SYN:
                # A retried SYN: time the handshake from the SYN that got answered, so a
                # 1-3 s SYN retry shows up as loss, not as network RTT.
                flow.syn_ts = ts
            return None
        if flow.state == S_SYN and h.d == 0:
            self._start_syn(flow, seq, ts)  # new ISN on the same port: a fresh attempt
            return h
        # A new connection on a 4-tuple we still hold: the old one ended unseen.
        if flow.state < S_CLOSED:
            self._finish(flow, "idle", ts)
        self._remove(flow)
        nh = self._new_flow(ts, seg)
        self._start_syn(nh.flow, seq, ts)
        return nh

    def _start_syn(self, flow: Flow, seq: int, ts: float) -> None:
        flow.syn_isn = seq
        flow.syn_first = ts
        flow.syn_ts = ts
        flow.h0.next = (seq + 1) & _MASK
        flow.h0.prov = None
        flow.state = S_SYN
        self._schedule(flow)

    def _handshake_progress(self, flow: Flow, h: _Half, seg: Segment, ts: float) -> None:
        if h.d == 1:
            if flow.state == S_SYN:
                flow.state = S_OPEN  # the server talks: the SYN was answered (SYN/ACK lost)
            return
        if not seg[6] & ACK:
            return
        if flow.state == S_SYNACK:
            if flow.server_isn is not None and seg[5] == (flow.server_isn + 1) & _MASK:
                if flow.syn_ts is not None:
                    flow.rtt = ts - flow.syn_ts
                    flow.rtt_ts = ts
                    if flow.handler is not None:
                        self._event(flow, "handshake-rtt", 0, ts, flow.rtt)
                flow.state = S_OPEN
        else:
            # One-sided capture: a client only ACKs after it got the SYN/ACK we did not see.
            flow.state = S_OPEN

    def _on_rst(self, flow: Flow, h: _Half, ts: float) -> None:
        if flow.state >= S_CLOSED:
            return
        if flow.state == S_SYN and h.d == 1:
            self._connection_failure(flow, "refused", ts)
        self._flush(flow, ts)  # data sent before the reset is still data
        self._event(flow, "reset", h.d, ts)
        self._finish(flow, "reset", ts)

    def _ignored_fin(self, flow: Flow, h: _Half) -> None:
        # Minimal state for ignored flows: no sequence checks, only "FIN both ways".
        h.fin_done = True
        flow.fin_seen = True
        if flow.h0.fin_done and flow.h1.fin_done:
            flow.state = S_CLOSED
        self._schedule(flow)

    def _zero_window(self, h: _Half, window: int, ts: float) -> None:
        # One event per episode: a stalled receiver repeats window 0 in every ACK/probe.
        if not window:
            if not h.zw:
                h.zw = True
                self._event(h.flow, "zero-window", h.d, ts)
        elif h.zw:
            h.zw = False

    # ------------------------------------------------------------------ reassembly

    def _data(
        self,
        h: _Half,
        seq: int,
        payload: bytes,
        wlen: int,
        fin: int,
        ip_id: int,
        ack: int,
        ts: float,
    ) -> None:
        if h.next is None or (h.prov is not None and h.next == h.prov and seq != h.next):
            # Midstream: anchor on the first payload. Pure ACKs anchor only provisionally
            # and a later payload re-anchors without a gap (ACK-only jumps are not gaps).
            h.next = seq
            h.prov = None if (wlen or fin) else seq
        if fin:
            self._note_fin(h, (seq + wlen) & _MASK)
        if wlen:
            self._place(h, seq, payload, wlen, fin, ip_id, ack, ts)
        if h.next == h.fin and not h.fin_done:
            # Checked on every path: the FIN may ride on a segment whose bytes were
            # already delivered by an overlapping retransmission.
            h.fin_done = True
            h.next = (h.next + 1) & _MASK  # the FIN occupies one sequence number

    def _place(
        self,
        h: _Half,
        seq: int,
        payload: bytes,
        wlen: int,
        fin: int,
        ip_id: int,
        ack: int,
        ts: float,
    ) -> None:
        """Deliver, buffer or discard a segment's bytes according to where they fall."""
        off = _off(seq, h.next)  # type: ignore[arg-type]
        if off == 0:
            self._deliver(h, payload, wlen, 0, ts)
            h.prev = h.last
            h.last = (seq, wlen, ip_id, ack, ts)
            if h.ooo:
                self._drain(h, ts)
        elif off > 0:
            self._buffer(h, seq, off, (payload, wlen, ip_id, ack, ts), fin, ts)
        elif off + wlen <= 0:
            if wlen <= 1 and off == -1:
                return  # keep-alive probe (seq = next - 1), not a retransmission
            self._old_segment(h, seq, wlen, ip_id, ack, ts)
        else:
            # Partial overlap (repacketised retransmission): deliver only the new bytes.
            self.retransmissions += 1
            self._event(h.flow, "retransmission", h.d, ts)
            self._deliver(h, payload, wlen, -off, ts)
            if h.ooo:
                self._drain(h, ts)

    def _note_fin(self, h: _Half, fin_seq: int) -> None:
        if h.fin is None:
            h.fin = fin_seq
            h.flow.fin_seen = True
            self._schedule(h.flow)  # a FIN shortens the flow's timeout

    def _old_segment(self, h: _Half, seq: int, wlen: int, ip_id: int, ack: int, ts: float) -> None:
        if self._same_frame(h.last, seq, wlen, ip_id, ack, ts) or self._same_frame(
            h.prev, seq, wlen, ip_id, ack, ts
        ):
            self.duplicates += 1
            self._event(h.flow, "duplicate", h.d, ts)
        else:
            self.retransmissions += 1
            self._event(h.flow, "retransmission", h.d, ts)

    def _same_frame(
        self, rec: tuple | None, seq: int, wlen: int, ip_id: int, ack: int, ts: float
    ) -> bool:
        """A SPAN duplicate: the same frame again within the duplicate window.

        IPv4: same IP ID, seq and length; IPv6 has no ID, so same seq, length and ack.
        """
        if rec is None or rec[0] != seq or rec[1] != wlen:
            return False
        if abs(ts - rec[4]) > self.config.duplicate_window_s:
            return False
        return rec[2] == ip_id if ip_id >= 0 else rec[3] == ack

    def _deliver(self, h: _Half, payload: bytes, wlen: int, skip: int, ts: float) -> None:
        """Deliver payload[skip:], then a gap for any bytes cut by the snaplen; advance."""
        captured = len(payload)
        if skip < captured:
            self._h_data(h, payload[skip:] if skip else payload, ts)
            missing = wlen - captured
        else:
            missing = wlen - skip
        if missing > 0:
            self._gap(h, missing, ts)
        self._advance(h, wlen - skip)

    def _advance(self, h: _Half, n: int) -> None:
        h.next = nxt = (h.next + n) & _MASK  # type: ignore[operator]
        if nxt == h.fin and not h.fin_done:
            h.fin_done = True
            h.next = (nxt + 1) & _MASK  # the FIN occupies one sequence number

    def _drain(self, h: _Half, ts: float, own_ts: bool = False) -> None:
        """Deliver buffered segments that became in order; drop ones already covered.

        ``own_ts``: deliver each segment with its own capture time. Used when a hole is
        given up (the capture lost bytes the receiver did get): the data was on the wire
        when it was captured, not when we stopped waiting -- otherwise every DICOM time
        measured across it (response latency, transfer) would include our wait. When a
        retransmission fills the hole, the receiver only has the data now: ``ts``.
        """
        ooo = h.ooo
        while ooo:
            seq = h.next
            e = ooo.pop(seq, None)  # type: ignore[arg-type]
            if e is not None:
                self._unbuffer(h, e)
                self._deliver(h, e[0], e[1], 0, e[4] if own_ts else ts)
                h.prev = h.last
                h.last = (seq, e[1], e[2], e[3], e[4])  # so a later SPAN copy is recognised
                continue
            # No exact successor: look for overlapping or stale entries (rare).
            progressed = False
            for s in list(ooo):
                off = _off(s, h.next)  # type: ignore[arg-type]
                if off > 0:
                    continue
                e = ooo.pop(s)
                self._unbuffer(h, e)
                if off + e[1] > 0:
                    self._deliver(h, e[0], e[1], -off, e[4] if own_ts else ts)
                    progressed = True
                    break
            if not progressed:
                break

    def _buffer(self, h: _Half, seq: int, off: int, entry: tuple, fin: int, ts: float) -> None:
        cfg = self.config
        ooo = h.ooo
        if ooo is None:
            ooo = h.ooo = {}
        old = ooo.get(seq)
        if old is not None and old[1] >= entry[1] and len(old[0]) >= len(entry[0]):
            # Already buffered: a duplicate of the buffered frame or a retransmission of it.
            if self._same_frame((seq, *old[1:]), seq, entry[1], entry[2], entry[3], ts):
                self.duplicates += 1
                self._event(h.flow, "duplicate", h.d, ts)
            else:
                self.retransmissions += 1
                self._event(h.flow, "retransmission", h.d, ts)
            return
        n = len(entry[0])
        # Per-direction bounds: give up the oldest hole (reported as a gap) and go on with
        # the buffered data rather than wait forever for bytes the capture lost.
        while ooo and (
            len(ooo) >= cfg.max_out_of_order_segments
            or h.ooo_bytes + n > cfg.max_out_of_order_bytes
        ):
            self._give_up_hole(h, ts)
            if h.flow.handler is None and (h.flow.ignored or h.flow.state >= S_CLOSED):
                return
        off = _off(seq, h.next)  # type: ignore[arg-type]
        if off <= 0 or n > cfg.max_out_of_order_bytes:
            if off > 0:  # a single segment larger than the whole buffer: skip to it
                self._gap(h, off, ts)
                h.next = seq
            self._data(h, seq, entry[0], entry[1], fin, entry[2], entry[3], ts)
            return
        if self.buffered_bytes + n > cfg.memcap_bytes:
            self._memcap(h, n, ts)
            if h.flow.handler is None and (h.flow.ignored or h.flow.state >= S_CLOSED):
                return
            off = _off(seq, h.next)  # type: ignore[arg-type]
            if off <= 0:
                self._data(h, seq, entry[0], entry[1], fin, entry[2], entry[3], ts)
                return
        ooo = h.ooo
        if ooo is None:
            ooo = h.ooo = {}
        if old is not None and seq in ooo:
            self._unbuffer(h, ooo.pop(seq))
        ooo[seq] = entry
        h.ooo_bytes += n
        self.buffered_bytes += n
        self._buffering[h.flow] = None
        (h.flow.h1 if h.d == 0 else h.flow.h0).fast = False  # see _refresh
        self.out_of_order += 1
        self._event(h.flow, "out-of-order", h.d, ts)

    def _unbuffer(self, h: _Half, entry: tuple) -> None:
        n = len(entry[0])
        h.ooo_bytes -= n
        self.buffered_bytes -= n

    def _give_up_hole(self, h: _Half, ts: float) -> None:
        """Skip the bytes missing before the earliest buffered segment: a gap."""
        nxt = h.next
        first = min(h.ooo, key=lambda s: _off(s, nxt))  # type: ignore[arg-type]
        off = _off(first, nxt)  # type: ignore[arg-type]
        if off > 0:
            self._gap(h, off, h.ooo[first][4])  # the bytes were lost before that segment
            h.next = first
        self._drain(h, ts, own_ts=True)

    def _memcap(self, h: _Half, need: int, ts: float) -> None:
        """Global reassembly memory is full: evict the oldest other buffering flows."""
        cap = self.config.memcap_bytes
        for f in list(self._buffering):
            if self.buffered_bytes + need <= cap:
                return
            if f is h.flow:
                continue
            del self._buffering[f]
            if not (f.h0.ooo or f.h1.ooo) or f.state >= S_CLOSED:
                continue
            self.evictions["memcap"] += 1
            self._finish(f, "evicted-memcap", ts)
            self._remove(f)
        # Only this flow holds buffers: give up its own holes instead.
        for half in (h, h.flow.h1 if h.d == 0 else h.flow.h0):
            while half.ooo and self.buffered_bytes + need > cap:
                self._give_up_hole(half, ts)

    def _flush(self, flow: Flow, ts: float) -> None:
        """Before a flow ends: deliver what is buffered, with gaps for the holes."""
        for h in (flow.h0, flow.h1):
            while h.ooo and not flow.ignored:
                self._give_up_hole(h, ts)

    def _release(self, flow: Flow) -> None:
        self._end_lease(flow)  # its in-order state first: handlers may still be closed
        for h in (flow.h0, flow.h1):
            if h.ooo is not None:
                self.buffered_bytes -= h.ooo_bytes
                h.ooo_bytes = 0
                h.ooo.clear()  # also stops a _drain loop iterating this dict
                h.ooo = None
            h.handler = None
            h.feed = None
            h.dispatch = _no_results
            h.fast = False
            h.budget = h.taken = None
        self._buffering.pop(flow, None)

    def _refresh(self, h: _Half) -> None:
        h.fast = (
            h.handler is not None
            and h.next is not None
            and not h.ooo
            and not h.zw
            and h.fin is None
            # while the other direction has a hole, our ACKs are looked at (slow path)
            and not (h.flow.h1 if h.d == 0 else h.flow.h0).ooo
        )

    def _acked_past_hole(self, h: _Half, ack: int, ts: float) -> None:
        """The receiver acknowledged data buffered behind a hole in ``h``: it got the
        missing bytes, only the capture lost them, and no retransmission will ever fill
        the hole. Give it up now (a gap) instead of holding everything after it until a
        buffer limit or the end of the flow -- which would deliver requests after their
        responses and report answered transactions as unanswered."""
        while h.ooo:
            nxt = h.next
            first = min(h.ooo, key=lambda s: _off(s, nxt))  # type: ignore[arg-type]
            if _off(ack, first) < 0:  # the hole is not fully acknowledged: may be in flight
                return
            self._give_up_hole(h, ts)

    # ------------------------------------------------------------------ handler calls

    def _h_data(self, h: _Half, data: bytes, ts: float) -> None:
        flow = h.flow
        handler = flow.handler
        if handler is None:
            if flow.ignored or flow.state >= S_CLOSED:
                return
            handler = self._classify(flow, h.d, data, ts)
            if handler is None:
                return
        try:
            results = h.feed(h.d, data, ts)  # type: ignore[misc]
            if results:
                h.dispatch(results)
        except Exception as exc:
            self._handler_failed(flow, exc)

    def _classify(self, flow: Flow, d: int, data: bytes, ts: float) -> StreamHandler | None:
        try:
            handler = self._classify_fn(flow, d, data)
        except Exception as exc:
            self._handler_failed(flow, exc)
            return None
        if handler is None:
            self.ignored_flows += 1
            self._ignore(flow)
            return None
        flow.handler = flow.h0.handler = flow.h1.handler = handler
        deliver = getattr(handler, "deliver", None)
        if deliver is None:
            feed, dispatch = handler.data, _no_results
        else:
            feed, dispatch = deliver, handler.dispatch  # type: ignore[attr-defined]
        flow.h0.feed = flow.h1.feed = feed
        flow.h0.dispatch = flow.h1.dispatch = dispatch
        budget = getattr(handler, "skip_budget", None) if self._bypass is not None else None
        if budget is not None:
            flow.h0.budget = flow.h1.budget = budget
            flow.h0.taken = flow.h1.taken = handler.skip_taken  # type: ignore[attr-defined]
        if flow.rtt is not None:
            self._event(flow, "handshake-rtt", 0, flow.rtt_ts, flow.rtt)
        for h in (flow.h0, flow.h1):
            if h.pregap:
                n, h.pregap = h.pregap, 0
                self._gap(h, n, ts)
        self._refresh(flow.h0)
        self._refresh(flow.h1)
        return flow.handler

    def _ignore(self, flow: Flow) -> None:
        flow.ignored = True
        flow.handler = None
        self._release(flow)
        flow.h0.pregap = flow.h1.pregap = 0

    def _gap(self, h: _Half, n: int, ts: float) -> None:
        self.gaps += 1
        self.gap_bytes += n
        flow = h.flow
        if flow.handler is None:
            if not flow.ignored and flow.state < S_CLOSED:
                h.pregap += n  # handed over once the flow is classified
            return
        try:
            flow.handler.gap(h.d, n, ts)
        except Exception as exc:
            self._handler_failed(flow, exc)

    def _event(self, flow: Flow, kind: str, d: int, ts: float, value: float = 0.0) -> None:
        if flow.handler is None:
            return
        try:
            flow.handler.tcp_event(kind, d, ts, value)
        except Exception as exc:
            self._handler_failed(flow, exc)

    def _handler_failed(self, flow: Flow, exc: Exception) -> None:
        # A bug in one conversation must not stop the capture: drop that flow's handler.
        self.handler_errors += 1
        if not self._logged_error:
            self._logged_error = True
            log.error("stream handler failed; flow ignored from now on", exc_info=exc)
        else:
            log.debug("stream handler failed: %r", exc)
        self._ignore(flow)

    def _connection_failure(self, flow: Flow, reason: str, ts: float) -> None:
        try:
            self._on_failure(flow.server_ip, flow.server_port, reason, ts)
        except Exception as exc:
            self.handler_errors += 1
            log.debug("on_connection_failure failed: %r", exc)

    # ------------------------------------------------------------------ ending flows

    def _finish(self, flow: Flow, how: str, ts: float) -> None:
        """Flush buffered data, close the handler, keep the flow as closed (lingering)."""
        if flow.state >= S_CLOSED:
            return
        self._flush(flow, ts)
        handler = flow.handler
        flow.handler = None
        flow.state = S_CLOSED
        self._release(flow)
        if handler is not None:
            try:
                handler.close(how, ts)
            except Exception as exc:
                self.handler_errors += 1
                log.debug("stream handler close failed: %r", exc)
        self._schedule(flow)

    def _remove(self, flow: Flow) -> None:
        if flow.state == S_GONE:
            return
        self._release(flow)
        flow.handler = None
        flow.state = S_GONE
        key, rkey = _key(flow, 0), _key(flow, 1)
        if self._halves.get(key) in (flow.h0, flow.h1):
            del self._halves[key]
        if self._halves.get(rkey) in (flow.h0, flow.h1):
            del self._halves[rkey]
        if flow.sched is not None:
            bucket = self._wheel.get(flow.sched)
            if bucket is not None:
                bucket.pop(flow, None)
            flow.sched = None
        self._nflows -= 1

    # ------------------------------------------------------------------ timers

    def _deadline(self, flow: Flow) -> float:
        cfg = self.config
        st = flow.state
        if st == S_SYN:
            return flow.syn_first + cfg.syn_timeout_s
        if st == S_FAILED:
            return flow.last_seen + SYN_RETRY_LINGER_S
        if st == S_CLOSED or flow.fin_seen:
            # One FIN is enough to use the short timeout: with one-sided capture or a lost
            # FIN the other one may never be seen, and DICOM does not half-close for long.
            return flow.last_seen + cfg.closed_timeout_s
        return flow.last_seen + cfg.idle_timeout_s

    def _add(self, flow: Flow, b: int) -> None:
        if flow.sched is not None:  # invariant: a flow sits in exactly one bucket
            old = self._wheel.get(flow.sched)
            if old is not None:
                old.pop(flow, None)
        bucket = self._wheel.get(b)
        if bucket is None:
            # Ordered so capacity eviction takes the oldest flow of a bucket: a dict's
            # popitem() is LIFO, which under a flood evicted every new flow, legitimate
            # ones included, at the next arrival.
            bucket = self._wheel[b] = OrderedDict()
            heapq.heappush(self._heap, b)
        bucket[flow] = None
        flow.sched = b
        flow.sched_seen = flow.last_seen

    def _schedule(self, flow: Flow) -> None:
        """Make sure the flow's bucket is not later than its deadline (never per packet)."""
        b = int(self._deadline(flow)) + 1
        cur = flow.sched
        if cur is None or b < cur:
            self._add(flow, b)  # a later deadline is handled lazily when the bucket is due

    def expire(self, now: float) -> None:
        """Run the timeouts that are due at capture time ``now`` (about once a second)."""
        heap = self._heap
        wheel = self._wheel
        while heap and heap[0] <= now:
            bucket = wheel.pop(heapq.heappop(heap), None)
            if not bucket:
                continue
            for f in bucket:
                f.sched = None
            for f in bucket:
                if f.state != S_GONE:
                    self._expire_flow(f, now)
                if f.state == S_GONE:
                    _break_cycle(f)

    def _expire_flow(self, flow: Flow, now: float) -> None:
        dl = self._deadline(flow)
        if dl > now:
            self._add(flow, int(dl) + 1)  # touched since it was scheduled
            return
        st = flow.state
        if st == S_SYN:
            self._connection_failure(flow, "unanswered", now)
            flow.state = S_FAILED
            self._schedule(flow)
        elif st >= S_CLOSED:
            self._remove(flow)
        elif flow.fin_seen:
            self._finish(flow, "fin", now)  # half-closed and quiet: the other FIN was missed
            self._remove(flow)
        else:
            self.evictions["idle"] += 1
            self._finish(flow, "idle", now)
            self._remove(flow)

    def _evict_capacity(self, ts: float) -> None:
        """Drop the flow with the earliest deadline to make room for a new one."""
        if self._bypass is not None:
            self._bypass.sync()  # last_seen of leased flows, for the second chance
        heap = self._heap
        wheel = self._wheel
        while heap:
            b = heap[0]
            bucket = wheel.get(b)
            if not bucket:
                heapq.heappop(heap)
                wheel.pop(b, None)
                continue
            flow, _ = bucket.popitem(last=False)
            flow.sched = None
            if flow.last_seen > flow.sched_seen:
                # Busy since scheduled: a second chance at the back of its (new) bucket,
                # the CLOCK approximation of LRU without a reorder per packet.
                self._add(flow, max(b, int(self._deadline(flow)) + 1))
                continue
            if flow.state < S_CLOSED:
                self.evictions["capacity"] += 1
                self._finish(flow, "evicted-capacity", ts)
            self._remove(flow)
            _break_cycle(flow)
            return

    def close_all(self, ts: float) -> None:
        """End of capture: due timeouts first, then every open flow gets close("end")."""
        self.expire(ts)
        flows = [f for bucket in self._wheel.values() for f in bucket]
        for f in flows:
            if f.state < S_CLOSED:
                self._finish(f, "end", ts)
            self._remove(f)
        self._wheel.clear()
        self._heap.clear()
        self._halves.clear()
        self._buffering.clear()

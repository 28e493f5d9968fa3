"""FlowTable: the per-segment dispatch and the binding of a flow to its StreamHandler.

The table turns decoded segments into in-order bytes and explicit gaps for one
``StreamHandler`` per interesting flow. It knows nothing about DICOM.

- Lookup: each flow is stored under *both* directional keys ``(src, sport, dst, dport)``,
  and the value is the per-direction half-stream itself. One tuple slice and one dict probe
  per packet, no canonicalisation (measured: 146 ns vs 183 ns canonical key vs 197 ns
  two probes, 20k flows).
- Hot path: an in-order data segment of a classified flow is handed to the handler as the
  very ``payload`` object from the segment (no copy). All other cases go to ``_slow``.
- One class, several modules: ``FlowTable`` is assembled from the parts in
  ``handshake``, ``reassembly``, ``timers`` and ``lease`` (each a mixin of methods over
  the same instance state). A method found through the bases costs the same per call as
  one defined here (CPython caches attribute lookups per type), so the split adds
  nothing per packet: the hot loop and its bound methods are exactly as before.
"""

from __future__ import annotations

import logging

from dicomsniffd.config import FlowsConfig
from dicomsniffd.decode import Segment
from dicomsniffd.flows.handshake import Handshake
from dicomsniffd.flows.lease import Leases
from dicomsniffd.flows.reassembly import Reassembly
from dicomsniffd.flows.stalls import Stalls
from dicomsniffd.flows.state import (
    _MASK,
    ACK,
    FIN,
    INF,
    RST,
    S_CLOSED,
    S_GONE,
    S_SYN,
    S_SYNACK,
    SYN,
    Classify,
    ConnectionFailure,
    Flow,
    StreamHandler,
    _Half,
    _key,
    _no_results,
)
from dicomsniffd.flows.timers import Timers

# The close() reason of a handler that raised (its flow is ignored from then on): the
# DICOM core ends such an association as "capture-ended" (we stopped watching, no peer is
# to blame; dicom/conversation.py OBSERVER_FAILED_HOW), TLS counts no outcome.
HANDLER_FAILED = "handler-failed"

# The logger keeps the name of the module the table used to be (log configuration).
log = logging.getLogger("dicomsniffd.flows")


class FlowTable(Handshake, Reassembly, Timers, Leases, Stalls):
    """The bounded flow table: ``segment(ts, *seg)`` per decoded segment, ``expire(now)``
    about once a second, ``close_all(ts)`` at the end; plain-int counters for scrapes."""

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
        self.failed_flows = 0  # connections dropped after their handler raised
        self.gaps = 0
        self.gap_bytes = 0
        self.buffered_bytes = 0
        self.evictions = {"capacity": 0, "idle": 0, "memcap": 0}
        self._leasing = False  # this batch runs through the bypass: leases may be granted
        self._bypass = self._new_bypass(accelerate)

    @property
    def flows_active(self) -> int:
        return self._nflows

    # ------------------------------------------------------------------ hot path

    def segment(
        self,
        ts: float,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        payload: bytes,
        seg_len: int,
        ip_id: int,
    ) -> None:
        """One decoded segment: a Segment's fields as arguments (``segment(ts, *seg)``)."""
        # Hot path. Measured with timeit (best of 7 x 100k segments, 2000 other flows in the
        # table, fresh address objects per packet as decode makes them, no-op handler,
        # CPython 3.11): 0.52 us per in-order data segment and 0.34 us per pure ACK, lookup
        # included. The SPAN-duplicate history (two stores + one small tuple) is ~0.08 us
        # of that; without it a mirrored copy could not be told from a retransmission.
        # The fields come as arguments, not as a Segment tuple: the decoders (the compiled
        # one above all) then build no tuple per packet for this to unpack again (many.pcap:
        # -7 k instructions per short association, docs/performance.md).
        self.segments += 1
        h = self._halves.get((src, sport, dst, dport))
        if h is not None and h.fast and seq == h.next and not flags & 0x07 and window:
            n = len(payload)
            if n == seg_len:
                h.flow.last_seen = ts
                if n:
                    # a gap in this direction's data (flows/stalls.py): once per gap
                    if ts - h.data_ts > h.stall_after and self._stalled(h, h.last, ts, seq, n):
                        return
                    h.data_ts = ts
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
                        self._handler_failed(h.flow, exc, ts)
                else:
                    h.ack_no = ack  # a pure ACK: what a stall's cause is judged by
                    h.ack_ts = ts
                return
        # the slow path (handshake, FIN, RST, out of order, first data) reads a tuple
        seg = (src, sport, dst, dport, seq, ack, flags, window, payload, seg_len, ip_id)
        self._slow(ts, seg, h)

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
        if flow.handler is not None and not flags & SYN and (h.zw or not seg[7]):
            self._zero_window(h, seg[7], ts)  # only a zero window or its end changes state
        opp = flow.h1 if h.d == 0 else flow.h0
        if opp.ooo and flags & ACK:
            self._acked_past_hole(opp, seg[5], ts)
        wlen = seg[9]
        if wlen:
            if ts - h.data_ts > h.stall_after and self._stalled(h, h.last, ts, seq, wlen):
                return
            h.data_ts = ts
        elif flags & ACK:
            h.ack_no = seg[5]
            h.ack_ts = ts
        self._data(h, seq, payload, wlen, flags & FIN, seg[10], seg[5], ts)
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
        # The keys as _key(flow, d) makes them, from the segment's own fields.
        fwd, rev = (src, sport, dst, dport), (dst, dport, src, sport)
        halves = self._halves
        if client_is_src:
            halves[rev] = flow.h1
            halves[fwd] = flow.h0
        else:
            halves[fwd] = flow.h1
            halves[rev] = flow.h0
        self._nflows += 1
        if flags & (SYN | ACK) != SYN:
            # A bare SYN is scheduled right after by _on_syn (_start_syn: the SYN timeout,
            # always the earlier deadline): scheduling it for the idle timeout first only
            # moved it from one wheel bucket to another, once per connection.
            self._schedule(flow)
        return flow.h0 if client_is_src else flow.h1

    def _ignored_fin(self, flow: Flow, h: _Half) -> None:
        # Minimal state for ignored flows: no sequence checks, only "FIN both ways".
        h.fin_done = True
        flow.fin_seen = True
        if flow.h0.fin_done and flow.h1.fin_done:
            flow.state = S_CLOSED
        self._schedule(flow)

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
            self._handler_failed(flow, exc, ts)

    def _classify(self, flow: Flow, d: int, data: bytes, ts: float) -> StreamHandler | None:
        try:
            handler = self._classify_fn(flow, d, data)
        except Exception as exc:
            self._handler_failed(flow, exc, ts)
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
        flow.on_stall = getattr(handler, "stall", None)
        self._stall_threshold(flow)
        budget = getattr(handler, "skip_budget", None) if self._bypass is not None else None
        if budget is not None:
            flow.h0.budget = flow.h1.budget = budget
            flow.h0.taken = flow.h1.taken = handler.skip_taken  # type: ignore[attr-defined]
            chain = getattr(handler, "skip_chain", None)
            if chain is not None:
                flow.h0.chain = flow.h1.chain = chain
                flow.h0.chained = flow.h1.chained = handler.skip_chained  # type: ignore[attr-defined]
        if flow.rtt is not None:
            self._event(flow, "handshake-rtt", 0, flow.rtt_ts, flow.rtt)
        if flow.h0.pregap or flow.h1.pregap:  # rare: bytes lost before classification
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
            self._handler_failed(flow, exc, ts)

    def _event(self, flow: Flow, kind: str, d: int, ts: float, value: float = 0.0) -> None:
        if flow.handler is None:
            return
        try:
            flow.handler.tcp_event(kind, d, ts, value)
        except Exception as exc:
            self._handler_failed(flow, exc, ts)

    def _handler_failed(self, flow: Flow, exc: Exception, ts: float) -> None:
        # A bug in one conversation must not stop the capture: drop that flow's handler.
        self.handler_errors += 1
        self.failed_flows += 1  # (handler_errors also counts failed callbacks and closes)
        if not self._logged_error:
            self._logged_error = True
            log.error("stream handler failed; flow ignored from now on", exc_info=exc)
        else:
            log.debug("stream handler failed: %r", exc)
        handler = flow.handler
        self._ignore(flow)
        if handler is not None:
            # Closed as seen so far, once, like any other end: else what it opened stays
            # open for good (the association in dicom_associations_active, the summary's
            # record, the pipeline's reference to it).
            self._close_handler(handler, HANDLER_FAILED, ts)

    def _close_handler(self, handler: StreamHandler, how: str, ts: float) -> None:
        try:
            handler.close(how, ts)
        except Exception as exc:
            self.handler_errors += 1  # (a failing close is counted, not the flow again)
            log.debug("stream handler close failed: %r", exc)

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
        if flow.h0.ooo or flow.h1.ooo:  # (most flows end with nothing buffered)
            self._flush(flow, ts)
        handler = flow.handler
        flow.handler = None
        flow.state = S_CLOSED
        self._release(flow)
        if handler is not None:
            self._close_handler(handler, how, ts)
        self._schedule(flow)

    def _release(self, flow: Flow) -> None:
        if flow.h0.leased or flow.h1.leased:
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
            h.budget = h.taken = h.chain = h.chained = None
            h.stall_after = INF
        flow.on_stall = None
        self._buffering.pop(flow, None)

    def _remove(self, flow: Flow) -> None:
        if flow.state == S_GONE:
            return
        if flow.state != S_CLOSED:
            # A closed flow was released when it closed (_finish, _ignore before
            # _ignored_fin) and no packet reaches its halves' state since: not again.
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

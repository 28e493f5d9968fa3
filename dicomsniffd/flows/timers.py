"""The timer wheel: idle, closed and SYN timeouts, and eviction when the table is full.

- Ageing: no per-packet LRU bookkeeping. A packet only stores ``last_seen``. Every flow sits
  in exactly one 1-second bucket of a timer wheel (dict of dicts + heap of bucket keys)
  whose deadline is <= its real deadline; buckets are re-checked lazily when due, so a busy
  flow is moved at most once per timeout period. ``expire`` is O(flows due), never O(flows).
- Capacity eviction takes the flow with the earliest deadline from the same wheel, which is
  approximately LRU within a state and naturally prefers closed, then SYN-only, flows.
Every eviction is counted with its reason (``evictions``: capacity, idle; memcap is
reassembly's), as DESIGN.md §2b asks.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict

from dicomsniffd.config import FlowsConfig
from dicomsniffd.flows.state import S_CLOSED, S_FAILED, S_GONE, S_SYN, Flow, _break_cycle

# After "unanswered" the flow stays to absorb SYN retransmits without a second report;
# 64 s covers the Linux back-off gaps (1, 2, 4, 8, 16, 32 s) between retries.
SYN_RETRY_LINGER_S = 64.0


class Timers:
    """FlowTable's timer methods (a part of ``FlowTable``, not used alone).

    Uses from the table: ``_finish``, ``_remove``, ``_connection_failure``, ``sync``,
    ``_halves``, ``_buffering``, ``evictions``.
    """

    config: FlowsConfig
    _wheel: dict[int, dict[Flow, None]]
    _heap: list[int]

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
        self.sync()  # type: ignore[attr-defined]  # leased flows' last_seen, handler state
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
            # half-closed and quiet: the other FIN was missed
            self._finish(flow, "fin", flow.last_seen)
            self._remove(flow)
        else:
            # It ended at its last packet: ending it at ``now`` (eviction time) would add the
            # idle timeout, or a whole capture gap, to the association's duration.
            self.evictions["idle"] += 1
            self._finish(flow, "idle", flow.last_seen)
            self._remove(flow)

    def _evict_capacity(self, ts: float) -> None:
        """Drop the flow with the earliest deadline to make room for a new one."""
        self.sync()  # type: ignore[attr-defined]  # last_seen of leased flows: second chance
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
        """End of capture: due timeouts first, then every open flow gets close("end")
        (close("fin") when it had sent a FIN)."""
        self.expire(ts)
        flows = [f for bucket in self._wheel.values() for f in bucket]
        for f in flows:
            if f.state < S_CLOSED:
                # a FIN seen: the connection was closing, not cut by the end of the capture
                self._finish(f, "fin" if f.fin_seen else "end", ts)
            self._remove(f)
            _break_cycle(f)  # freed now, not left to a collection of the oldest generation
        self._wheel.clear()
        self._heap.clear()
        self._halves.clear()
        self._buffering.clear()

"""Per-direction TCP reassembly: in-order delivery, out-of-order buffer, duplicates, gaps.

Each ``_Half`` (state.py) is one direction's byte stream. A segment's bytes are
delivered, buffered or discarded according to where they fall against ``next``:
- out of order: buffered, bounded per direction (segments, bytes) and globally
  (``memcap_bytes``, evicting other buffering flows with reason ``memcap``); a hole
  that no retransmission will fill (the receiver ACKed past it, or a bound is hit) is
  given up as a gap and the buffered data goes on;
- old data: a SPAN duplicate (the same frame mirrored twice: same seq and length, same IP
  ID or for IPv6 same ACK, within ``duplicate_window_s``) is not a retransmission
  (DESIGN.md §2b); partial overlaps deliver only the new bytes;
- bytes the snaplen cut, or never seen at all, are gaps handed to the handler.
The in-order case of a classified flow never gets here: ``FlowTable.segment`` delivers it.
"""

from __future__ import annotations

from dicomsniffd.config import FlowsConfig
from dicomsniffd.flows.state import _MASK, LOST_BEFORE, S_CLOSED, Flow, _Half, _off


class Reassembly:
    """FlowTable's reassembly methods (a part of ``FlowTable``, not used alone).

    Uses from the table: ``_h_data``, ``_gap``, ``_event``, ``_finish``, ``_remove``,
    ``_schedule``, the counters, ``_buffering`` and ``buffered_bytes``.
    """

    config: FlowsConfig

    def _zero_window(self, h: _Half, window: int, ts: float) -> None:
        # One event per episode: a stalled receiver repeats window 0 in every ACK/probe.
        if not window:
            h.zw_ts = ts
            if not h.zw:
                h.zw = True
                self._event(h.flow, "zero-window", h.d, ts)
        elif h.zw:
            h.zw = False

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

    # The same parameters as _data: a segment's fields travel unpacked (no tuple per call).
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
            if h.ooo:
                self._hole_filled(h, ts)
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

    def _hole_filled(self, h: _Half, ts: float) -> None:
        """A segment arrived for a hole in front of buffered data: the retransmission of a
        segment lost before the capture point (DESIGN §3), unless it came so soon after
        the hole appeared that no retransmission could have: less than half the
        handshake RTT is reordering on the way, not loss (no RTT known: loss)."""
        rtt = h.flow.rtt
        if rtt is not None and ts - h.ooo_ts < rtt / 2:
            return
        self.retransmissions += 1
        self._event(h.flow, "retransmission", h.d, ts, LOST_BEFORE)

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
        end = (seq + entry[1]) & _MASK
        if not ooo:
            h.ooo_ts = ts
            h.ooo_high = end
        elif _off(end, h.ooo_high) > 0:
            h.ooo_high = end
        elif old is None:
            self._hole_filled(h, ts)  # a hole between buffered segments
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

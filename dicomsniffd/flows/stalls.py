"""Stalls, the TCP half (DESIGN §3): a gap in one direction's data, and its cause.

The flow table measures the time between consecutive data segments of each direction
(``_Half.data_ts``); a gap longer than ``stall_after`` = max(10 ms, 3 × handshake RTT) is
handed to the stream handler's ``stall(direction, cause, seconds, ts)`` *before* the
segment that ends it is delivered. The table names the TCP cause, the first that fits:

- ``zero-window``: the receiver advertised a zero window during the gap;
- ``delayed-ack``: the last segment before the gap was short (Nagle holds the next
  small write while it is unacknowledged), the peer's ACK covering it came during the gap,
  and the sender resumed right after that ACK;
- ``loss-recovery``: the gap ends with a retransmission (a repeat) or a hole filled;
- ``sender-idle``: none of these, the sending application was slow to write.

Whether the gap fell *inside* a request or response transfer is not the table's
business: only the DICOM layer knows where a message starts and ends (a pause between
two objects is not a stall). The hot path only compares two floats per data segment and
stores the ACK of a pure ACK; everything here runs once per gap.
"""

from __future__ import annotations

from dicomsniffd.flows.state import _MASK, INF, Flow, _Half, _off

STALL_MIN_S = 0.010  # DESIGN §3: a gap shorter than this is never a stall
STALL_RTTS = 3  # ... nor one shorter than three handshake RTTs
# "Short": below a full Ethernet segment. Not the SYN's MSS (the decoder reads it for the
# super-packet limit only): Nagle holds small writes (a PDU header, the tail of a write),
# and those are far below any MSS.
FULL_SEGMENT = 1460
# The sender resumed "right after" the peer's ACK: within two handshake RTTs of the ACK
# passing the capture point (it has to travel on to the sender), at least this much.
RESUME_MIN_S = 0.002

DELAYED_ACK = "delayed-ack"
ZERO_WINDOW = "zero-window"
LOSS_RECOVERY = "loss-recovery"
SENDER_IDLE = "sender-idle"
CAUSES = (DELAYED_ACK, ZERO_WINDOW, LOSS_RECOVERY, SENDER_IDLE)


class Stalls:
    """FlowTable's stall methods (a part of ``FlowTable``, not used alone).

    Uses from the table: ``_handler_failed``.
    """

    def _stall_threshold(self, flow: Flow) -> None:
        """Set both halves' ``stall_after`` (inf when the handler does not track stalls)."""
        after = INF
        if flow.on_stall is not None:
            rtt = flow.rtt
            after = STALL_MIN_S if rtt is None else max(STALL_MIN_S, STALL_RTTS * rtt)
        flow.h0.stall_after = flow.h1.stall_after = after

    def _stalled(self, h: _Half, last: tuple | None, ts: float, seq: int, wlen: int) -> bool:
        """A data segment at ``ts`` ends a gap longer than ``stall_after``. ``last`` is the
        direction's last delivered segment record. True if the handler failed on it (the
        flow is ignored from now on)."""
        cause = self._stall_cause(h, last, ts, seq, wlen)
        flow = h.flow
        if cause is None or flow.on_stall is None:
            return False
        try:
            flow.on_stall(h.d, cause, ts - h.data_ts, ts)
        except Exception as exc:
            self._handler_failed(flow, exc, ts)  # type: ignore[attr-defined]
            return True
        return False

    def _stall_cause(
        self, h: _Half, last: tuple | None, ts: float, seq: int, wlen: int
    ) -> str | None:
        start = h.data_ts
        off = _off(seq, h.next) if h.next is not None else 0
        if off == -1 and wlen <= 1:
            return None  # a keep-alive probe is not data resuming
        flow = h.flow
        peer = flow.h1 if h.d == 0 else flow.h0
        # Zero window first: the window update that ends it also acknowledges the last
        # segment and the sender resumes right after it, which looks like a delayed ACK
        # if only the peer's latest ACK is known (DESIGN's order; the two exclude each
        # other once the window is known).
        if peer.zw or peer.zw_ts > start:
            return ZERO_WINDOW
        if off >= 0 and last is not None and last[4] == start and last[1] < FULL_SEGMENT:
            # The peer's latest ACK: a pure ACK, or the one on its latest data segment.
            ack_no, ack_ts = peer.ack_no, peer.ack_ts
            plast = peer.last
            if plast is not None and plast[4] > ack_ts:
                ack_no, ack_ts = plast[3], plast[4]
            rtt = flow.rtt or 0.0
            if (
                ack_ts > start
                and _off(ack_no, (last[0] + last[1]) & _MASK) >= 0
                and ts - ack_ts <= max(2 * rtt, RESUME_MIN_S)
            ):
                return DELAYED_ACK
        if off < 0 or (off == 0 and h.ooo):
            return LOSS_RECOVERY
        return SENDER_IDLE

"""The TCP handshake and reset of a flow: roles, ISNs, handshake RTT, refused connections.

SYN, SYN/ACK and the client's ACK move a flow through S_SYN -> S_SYNACK -> S_OPEN and
time the handshake (DESIGN.md §3: SYN -> SYN/ACK -> ACK, from the SYN that got
answered). A RST ends the flow; a RST answering a SYN is a refused connection.
Slow path only: no in-order data segment of an established flow comes here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomsniffd.flows.state import _MASK, ACK, S_CLOSED, S_OPEN, S_SYN, S_SYNACK, Flow, _Half

if TYPE_CHECKING:
    from dicomsniffd.decode import Segment


class Handshake:
    """FlowTable's handshake methods (a part of ``FlowTable``, not used alone).

    Uses from the table: ``_schedule``, ``_finish``, ``_remove``, ``_new_flow``, ``_event``,
    ``_flush``, ``_connection_failure``.
    """

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
                        self._stall_threshold(flow)  # type: ignore[attr-defined]
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

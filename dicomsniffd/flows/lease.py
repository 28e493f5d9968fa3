"""Leases: the glue to the compiled Bypass (``dicomsniffd/_fastpath.c``).

When the compiled ``_fastpath`` is in use, a handler that can say how many of the next
bytes it would skip unseen (``skip_budget``) gets a *lease* for that direction in the C
table. The compiled decode_batch then consumes the flow's in-order segments shorter than
the budget, and its in-order pure ACKs, without calling Python at all. Any other packet
of the flow ends the lease first (its state is written back: ``_lease_synced``), and
``FlowTable._release`` ends a lease before a flow's state is torn down. A lease that goes
on is written back by ``sync()``, which everything that reads the table's or the
handlers' state from outside a batch calls first: ``expire`` (timeouts, and through it
``close_all``), capacity eviction, and the pipeline before handlers publish counters.
Not at the end of every batch: with 2,000 concurrent short associations a lease lived
across ~6 batches and each of those write-backs (a Python call) cost more than the
packets it had saved (many.pcap: 8,004 write-backs for 1,334 leases; see
docs/performance.md, fifth session).
"""

from __future__ import annotations

from typing import Any

from dicomsniffd import accel
from dicomsniffd.flows.state import Flow, _Half, _key

# Without a chain, lease only when more than a full segment is left to skip: a lease that
# consumes nothing costs two C calls and a write-back for no packet saved.
LEASE_MIN_BUDGET = 1460
MAX_LEASES = 4096  # bounded C table: beyond it, flows simply take the Python path


class Leases:
    """FlowTable's lease methods: grant, write back (sync), revoke.

    A part of ``FlowTable``, not used alone; ``_bypass`` is the table's compiled Bypass
    (None in pure Python), ``_leasing`` whether this batch runs through it.
    """

    _bypass: Any
    _leasing: bool
    segments: int

    def _new_bypass(self, accelerate: bool | None) -> Any:
        """The compiled Bypass for this table (None in pure Python). It calls back
        ``segment`` for every segment it does not consume and ``_lease_synced`` when it
        writes a lease back."""
        if not accel.use(accelerate):
            return None
        return accel.fastpath.Bypass(  # type: ignore[union-attr]
            self.segment, self._lease_synced, MAX_LEASES, sync_each_batch=False
        )

    def sync(self) -> None:
        """Write every lease back: the flows' and the handlers' state exact from here on
        (until the next batch). Call before reading that state outside a batch."""
        if self._bypass is not None:
            self._bypass.sync()

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

    def _lease(self, h: _Half) -> None:
        """Hand this half's in-order skipping to the compiled bypass, if worth it."""
        if not self._leasing:
            return
        budget = h.budget(h.d)  # type: ignore[misc]
        if budget <= 0 or not h.fast:
            return
        # What the lease may walk past the budget: the same data set's next PDUs. With
        # them a lease is worth it however little is left of this PDV (small PDUs).
        chain = h.chain(h.d) if h.chain is not None else None
        if budget <= LEASE_MIN_BUDGET and chain is None:
            return
        flow = h.flow
        opp = flow.h1 if h.d == 0 else flow.h0
        # The other direction's pure ACKs are consumed too, if it is on the hot path.
        rev_next = opp.next if opp.fast and opp.next is not None else -1
        grant = self._bypass.grant  # type: ignore[union-attr]
        key = _key(flow, h.d)
        if grant(h, *key, h.next, budget, rev_next, h.data_ts, h.stall_after, chain):
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
        fwd_ack: tuple | None = None,
        rev_ack: tuple | None = None,
        chained: tuple | None = None,
    ) -> None:
        """The bypass writes a lease back: exactly what the hot path would have done for
        the packets it consumed (next seq, SPAN-duplicate history, last data time,
        last_seen, the latest pure ACK of each direction, and the handler's skipped
        bytes; ``chained``: the PDVs it walked past the budget, see StreamHandler)."""
        h.next = nxt
        if nrec:
            h.prev = prev if nrec >= 2 else h.last
            h.last = last
            h.data_ts = last[4]  # type: ignore[index]
        if fwd_ack is not None:
            h.ack_no, h.ack_ts = fwd_ack
        flow = h.flow
        if flow is not None:
            if last_seen is not None:
                flow.last_seen = last_seen
            if rev_ack is not None:
                opp = flow.h1 if h.d == 0 else flow.h0
                opp.ack_no, opp.ack_ts = rev_ack
        if chained is not None:
            h.chained(h.d, taken, *chained)  # type: ignore[misc]
        elif taken:
            h.taken(h.d, taken)  # type: ignore[misc]
        if ended:
            h.leased = False

    def _end_lease(self, flow: Flow) -> None:
        if flow.h0.leased or flow.h1.leased:
            self._bypass.revoke(*_key(flow, 0))  # type: ignore[union-attr]

"""The StreamHandler of one DICOM TCP connection: bytes to the sans-IO core, events out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dicomsniffd.dicom.conversation import OBSERVER_FAILED_HOW, DicomConversation
from dicomsniffd.dicom.events import AssociationAccepted, AssociationRequested

from .context import FlowContext
from .emitter import Emitter

_TITLE_EVENTS = frozenset({AssociationRequested, AssociationAccepted})  # carry AE titles
_TCP_EVENTS_FOR_SINKS = frozenset({"retransmission", "zero-window", "reset", "handshake-rtt"})


class DicomFlowHandler:
    """flows.StreamHandler of one DICOM connection.

    ``on_close(handler)`` is told when the connection ends; ``learn_server(server)`` when
    the connection has shown AE titles (it spoke DICOM, so failed connections to that
    server are worth counting).
    """

    __slots__ = (
        "emitter",
        "routes",
        "ctx",
        "conv",
        "deliver",
        "skip_budget",
        "skip_taken",
        "skip_chain",
        "skip_chained",
        "_on_close",
        "_learn_server",
        "_flushed_pdata",
        "closed",
    )

    def __init__(
        self,
        emitter: Emitter,
        ctx: FlowContext,
        conv: DicomConversation,
        on_close: Callable[[DicomFlowHandler], None],
        learn_server: Callable[[str], None],
    ) -> None:
        self.emitter = emitter
        self.routes = emitter.routes  # per event type, the sinks' calls, for dispatch()
        self.ctx = ctx
        self.conv = conv
        # The flow table's split hot path (flows.StreamHandler): it calls the core's feed
        # directly and hands non-empty results to dispatch(), so an in-order data segment
        # costs one Python call (feed) instead of two (data -> feed). data() below is the
        # same thing in one call, for everyone else.
        self.deliver = conv.feed
        # The skipping contract (flows.StreamHandler): PDV bytes the core would skip
        # unseen may be consumed by the compiled bypass and handed over as a count.
        self.skip_budget = conv.skip_budget
        self.skip_taken = conv.skip_taken
        self.skip_chain = conv.skip_chain
        self.skip_chained = conv.skip_chained
        self._on_close = on_close
        self._learn_server = learn_server
        self._flushed_pdata = [0, 0]
        self.closed = False

    def data(self, direction: int, data: bytes, ts: float) -> None:
        events = self.conv.feed(direction, data, ts)
        if events:
            self.dispatch(events)

    def gap(self, direction: int, nbytes: int, ts: float) -> None:
        self.emitter.add_bytes("missed", self.conv.roles.sender(direction), nbytes, self.ctx)
        events = self.conv.gap(direction, nbytes, ts)
        if events:
            self.dispatch(events)

    def stall(self, direction: int, cause: str, seconds: float, ts: float) -> None:
        """flows: a gap of ``seconds`` in ``direction``'s data ended at ``ts`` (its TCP
        ``cause``); the core decides whether it was inside a transfer (a stall)."""
        events = self.conv.stall(direction, cause, seconds, ts)
        if events:
            self.dispatch(events)

    def tcp_event(self, kind: str, direction: int, ts: float, value: float = 0.0) -> None:
        if kind in _TCP_EVENTS_FOR_SINKS:
            self.emitter.tcp_event(kind, self.conv.roles.sender(direction), self.ctx, value, ts)

    def close(self, how: str, ts: float) -> None:
        """``how`` is the flow table's reason; the core maps it to AssociationEnded.how."""
        if self.closed:
            return
        self.closed = True
        try:
            events = self.conv.close(how, ts)  # (a list of its own, or the shared empty tuple)
            # a capture can be one-sided; after our own failure, silence proves nothing
            if how != OBSERVER_FAILED_HOW:
                one_sided = self.conv.one_direction_error(ts)
                if one_sided is not None:
                    events = [*events, one_sided]
            self.flush()
            self._dispatch_each(events)
        finally:
            self._on_close(self)  # also when a sink fails here: never left registered

    def _dispatch_each(self, events: Iterable[Any]) -> None:
        """The closing events one by one: a sink failing on one of them (an open
        transaction) must not keep AssociationEnded from the others, or the association
        stays in dicom_associations_active. The first failure is raised afterwards (the
        flow table counts and logs it)."""
        failure: Exception | None = None
        for event in events:
            try:
                self.dispatch((event,))
            except Exception as exc:  # noqa: BLE001 - re-raised below
                failure = failure or exc
        if failure is not None:
            raise failure

    def expire(self, now: float) -> None:
        events = self.conv.expire(now)
        if events:
            self.dispatch(events)

    def flush(self) -> None:
        """Publish P-DATA byte counts accumulated by the core since the last flush."""
        pdata = self.conv.pdata_bytes
        for direction in (0, 1):
            delta = pdata[direction] - self._flushed_pdata[direction]
            if delta:
                self._flushed_pdata[direction] = pdata[direction]
                sender = self.conv.roles.sender(direction)
                self.emitter.add_bytes("pdata", sender, delta, self.ctx)

    def dispatch(self, events: Iterable[Any]) -> None:
        ctx = self.ctx
        routes = self.routes
        for event in events:
            # set and dict probes on the exact type (event classes are final) instead of
            # isinstance() against a union on every event
            cls = type(event)
            if cls in _TITLE_EVENTS:
                self._learn_titles(event.calling_ae, event.called_ae)
            calls = routes.get(cls)
            if calls is None:
                calls = self.emitter.route(cls)
            for call in calls:  # Emitter.event, inlined: one call less per event
                call(event, ctx)

    def _learn_titles(self, calling: str, called: str) -> None:
        ctx = self.ctx
        if calling and calling != "unknown" and ctx.calling_ae != calling:
            ctx.calling_ae = calling
            ctx.calling_ae_label = self.emitter.ae_label(calling, "calling_ae")
        if called and called != "unknown" and ctx.called_ae != called:
            ctx.called_ae = called
            ctx.called_ae_label = self.emitter.ae_label(called, "called_ae")
        self._learn_server(ctx.server)

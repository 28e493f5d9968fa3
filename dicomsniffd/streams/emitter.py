"""The one way stream handlers reach the sinks: fan-out, plus the metric label functions.

Handlers get an ``Emitter`` instead of the pipeline: it calls every sink in order
(``dispatch.Sink``) and gives the capped label values for AE titles and servers. The
label functions are given explicitly (by the metrics store, which owns the caps and
counts what overflows), never looked up among the sinks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .context import FlowContext

if TYPE_CHECKING:
    from dicomsniffd.sinks.dispatch import Sink


class Labels(Protocol):
    """Metric label values under their cardinality caps (sinks.metrics.MetricsStore)."""

    def ae_label(self, title: str, label: str) -> str: ...

    def server_label(self, server: str) -> str: ...


def _same_title(title: str, label: str) -> str:
    return title


def _same_server(server: str) -> str:
    return server


class Emitter:
    """Fan-out of one pipeline's sink calls; ``Labels`` None: label values uncapped."""

    __slots__ = ("sinks", "routes", "ae_label", "server_label")

    def __init__(self, sinks: Sequence[Sink], labels: Labels | None = None) -> None:
        self.sinks = tuple(sinks)
        # Per exact event type, the sinks' calls it takes (see route()), filled on first
        # use: DicomFlowHandler.dispatch loops over them itself, one call per sink that
        # handles the type and none for the fan-out (hot path).
        self.routes: dict[type, tuple[Callable[[Any, Any], None], ...]] = {}
        self.ae_label: Callable[[str, str], str] = (
            labels.ae_label if labels is not None else _same_title
        )
        self.server_label: Callable[[str], str] = (
            labels.server_label if labels is not None else _same_server
        )

    def route(self, cls: type) -> tuple[Callable[[Any, Any], None], ...]:
        """The calls an event of exact type ``cls`` takes, in sink order: a sink that can say
        which of its handlers takes the type (``handler_for``, sinks.dispatch.EventSink) is
        called there directly or not at all (A-RELEASE events reach no metrics handler);
        any other sink through its ``handle``. Event classes are final: the exact type is
        the key. Bounded by the number of event classes."""
        calls = []
        for sink in self.sinks:
            handler_for = getattr(sink, "handler_for", None)
            call = handler_for(cls) if handler_for is not None else sink.handle
            if call is not None:
                calls.append(call)
        self.routes[cls] = route = tuple(calls)
        return route

    def tcp_event(self, kind: str, sender: str, ctx: FlowContext, value: float, ts: float) -> None:
        for sink in self.sinks:
            sink.tcp_event(kind, sender, ctx, value, ts=ts)

    def add_bytes(self, kind: str, sender: str, nbytes: int, ctx: FlowContext) -> None:
        for sink in self.sinks:
            sink.add_bytes(kind, sender, nbytes, ctx)

    def connection_failure(self, server_label: str, reason: str, ts: float) -> None:
        for sink in self.sinks:
            sink.connection_failure(server_label, reason, ts=ts)

    def tls_connection(self, server_label: str, outcome: str, ts: float | None) -> None:
        for sink in self.sinks:
            sink.tls_connection(server_label, outcome, ts=ts)

    def tls_handshake(
        self, ctx: FlowContext, outcome: str, detail: dict[str, str], ts: float | None
    ) -> None:
        """A TLS handshake's outcome with how it ended (streams/tls.py): to a sink's
        ``tls_handshake`` if it has one (EventSink's is its ``tls_connection``), else to
        its ``tls_connection``. Once per TLS connection, not per packet."""
        for sink in self.sinks:
            method = getattr(sink, "tls_handshake", None)
            if method is not None:
                method(ctx, outcome, detail, ts=ts)
            else:
                sink.tls_connection(ctx.server_label, outcome, ts=ts)

"""The sink interface and the one way events reach a sink's handlers.

Every sink offers the same five calls, fanned out by the pipeline. ``handle(event, flow)``
looks the event's exact type up in a table built once per instance from the class's
``EVENTS`` mapping (event class -> method name): one dict probe per event, no
``isinstance`` ladder (event classes are final, so the exact type is enough), and an
event type a sink does not list costs nothing. A sink whose ``handle`` must do more per
event (the summary touches the association first) still takes its handlers from the same
table, through ``bound_handlers``. ``handler_for(cls)`` says which call an event type
takes, so the pipeline can skip a sink for the types it does not list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol


class Sink(Protocol):
    """What the pipeline calls on every sink (``flow`` is the pipeline's flow context)."""

    def handle(self, event: Any, flow: Any) -> None: ...

    def tcp_event(
        self, kind: str, sender: str, flow: Any, value: float = 0.0, ts: float | None = None
    ) -> None: ...

    def add_bytes(self, kind: str, sender: str, nbytes: int, flow: Any) -> None: ...

    def connection_failure(
        self, server_label: str, reason: str, ts: float | None = None
    ) -> None: ...

    def tls_connection(self, server_label: str, outcome: str, ts: float | None = None) -> None: ...


Handler = Callable[[Any, Any], None]


def bound_handlers(sink: object, events: Mapping[type, str]) -> dict[type, Handler]:
    """``{event class: bound method}`` for ``sink``, from an ``EVENTS``-style mapping."""
    return {cls: getattr(sink, name) for cls, name in events.items()}


class EventSink:
    """Base of the sinks: ``handle`` dispatches by exact event type through ``EVENTS``.

    Subclasses set ``EVENTS`` and call ``super().__init__()``; the other sink calls
    default to doing nothing, so a sink implements only what it records.
    """

    EVENTS: ClassVar[Mapping[type, str]] = {}

    def __init__(self) -> None:
        self._handlers = bound_handlers(self, self.EVENTS)

    def handle(self, event: Any, flow: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event, flow)

    def handler_for(self, cls: type) -> Handler | None:
        """What ``handle`` does with an event of exact type ``cls``: its bound handler, or
        None when the sink ignores that type. The stream handlers call it directly (the
        Emitter's routes): one frame and one probe less per event and sink. A subclass
        whose ``handle`` does more than dispatch gets its ``handle`` for every type."""
        if type(self).handle is not EventSink.handle:
            return self.handle
        return self._handlers.get(cls)

    def tcp_event(
        self, kind: str, sender: str, flow: Any, value: float = 0.0, ts: float | None = None
    ) -> None:
        return None

    def add_bytes(self, kind: str, sender: str, nbytes: int, flow: Any) -> None:
        return None

    def connection_failure(self, server_label: str, reason: str, ts: float | None = None) -> None:
        return None

    def tls_connection(self, server_label: str, outcome: str, ts: float | None = None) -> None:
        return None

    def tls_handshake(
        self, flow: Any, outcome: str, detail: Mapping[str, str], ts: float | None = None
    ) -> None:
        """A TLS connection's outcome and how it ended (``detail``: ``how``, ``refused_by``,
        see streams/tls.py); optional: a sink without it gets ``tls_connection``."""
        self.tls_connection(flow.server_label, outcome, ts=ts)

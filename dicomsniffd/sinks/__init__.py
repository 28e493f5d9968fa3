"""Sinks: consumers of core events (metrics, JSON-lines event log, offline summary).

Every sink offers the same calls, fanned out by the pipeline (``dispatch.Sink``):
``handle(event, flow)``, ``tcp_event(kind, sender, flow, value, ts=)``,
``add_bytes(kind, sender, nbytes, flow)``, ``connection_failure(server, reason, ts=)`` and
``tls_connection(server, outcome, ts=)``; events reach a sink's handlers through one
table per sink (``dispatch.EventSink``).
"""

"""Sinks: consumers of core events (metrics, JSON-lines event log, offline summary).

Every sink offers the same calls, fanned out by the pipeline: ``handle(event, flow)``,
``tcp_event(kind, sender, flow, value)``, ``add_bytes(kind, sender, nbytes, flow)``,
``connection_failure(server, reason)`` and ``tls_connection(server, outcome)``.
"""

"""What sinks learn about the connection an event belongs to (the ``flow`` of every call)."""

from __future__ import annotations

import ipaddress


def format_endpoint(ip: bytes, port: int) -> str:
    """'10.0.0.1:104' or '[fd00::1]:104' (for the event log and report only)."""
    if len(ip) == 4:
        return f"{ip[0]}.{ip[1]}.{ip[2]}.{ip[3]}:{port}"
    return f"[{ipaddress.IPv6Address(ip).compressed}]:{port}"


class FlowContext:
    """One per connection, handed to sinks with every event of it.

    ``client`` / ``server`` ("ip:port") are for the event log and the offline summary,
    never metric labels; ``server_label`` and the ``*_ae_label`` are the capped metric
    label values ("other" past the cap). AE titles are "unknown" until seen.
    """

    __slots__ = (
        "flow_id",
        "client",
        "server",
        "server_label",
        "calling_ae",
        "called_ae",
        "calling_ae_label",
        "called_ae_label",
    )

    def __init__(self, flow_id: int, client: str, server: str, server_label: str) -> None:
        self.flow_id = flow_id
        self.client = client
        self.server = server
        self.server_label = server_label
        self.calling_ae = "unknown"
        self.called_ae = "unknown"
        self.calling_ae_label = "unknown"
        self.called_ae_label = "unknown"

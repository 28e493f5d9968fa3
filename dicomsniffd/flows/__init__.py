"""Flows layer (DESIGN.md §1, §2, §2b): bounded flow table and per-direction TCP reassembly.

    table       FlowTable: per-segment dispatch (the hot path), handler binding, flow ends
    state       Flow, FlowInfo, the per-direction _Half, flow states, TCP flag bits
    handshake   SYN / SYN-ACK / ACK, handshake RTT, RST and refused connections
    reassembly  out-of-order buffer, SPAN duplicate vs retransmission, gaps, memcap
    timers      timer wheel: idle/closed/SYN timeouts, capacity eviction
    lease       the compiled Bypass glue: grant, write back, revoke

Knows nothing about DICOM: a ``StreamHandler`` gets in-order bytes, gaps and TCP events.
The names below are the layer's public surface (``dicomsniffd.flows.X`` as before the split).
"""

from dicomsniffd.decode import Segment
from dicomsniffd.flows.state import (
    ACK,
    FIN,
    RST,
    SYN,
    Classify,
    ConnectionFailure,
    FlowInfo,
    StreamHandler,
)
from dicomsniffd.flows.table import FlowTable

__all__ = [
    "ACK",
    "FIN",
    "RST",
    "SYN",
    "Classify",
    "ConnectionFailure",
    "FlowInfo",
    "FlowTable",
    "Segment",
    "StreamHandler",
]

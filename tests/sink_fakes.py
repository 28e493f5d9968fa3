"""The flow context the pipeline hands to every sink (docs/architecture.md), as a plain
dataclass for sink tests that drive events by hand."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Flow:
    flow_id: int = 1
    client: str = "10.1.2.3:50000"
    server: str = "10.9.9.9:104"
    server_label: str = "10.9.9.9:104"
    calling_ae: str = "MODALITY"
    called_ae: str = "PACS"
    calling_ae_label: str = "MODALITY"
    called_ae_label: str = "PACS"

"""What sink tests share: the flow context the pipeline hands to every sink
(docs/architecture.md) as a plain dataclass, for tests that drive events by hand (the
``flow`` fixture of conftest.py gives one with these defaults), and the UIDs they name."""

from __future__ import annotations

from dataclasses import dataclass

# DICOM UIDs (PS3.6 Annex A) the sink tests put in their hand-made events.
CT = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
MR = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
ECHO = "1.2.840.10008.1.1"  # Verification SOP Class
EXPLICIT_LE = "1.2.840.10008.1.2.1"  # Explicit VR Little Endian
IMPLICIT_LE = "1.2.840.10008.1.2"  # Implicit VR Little Endian
J2K = "1.2.840.10008.1.2.4.90"  # JPEG 2000 Image Compression (Lossless Only)


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

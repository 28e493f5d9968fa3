"""Events for the summary and findings tests, and a ``Summary`` fed with them."""

from __future__ import annotations

from sink_fakes import Flow

from dicomsniffd.dicom.events import (
    AssociationAccepted,
    AssociationEnded,
    AssociationRequested,
    DimseRequestSeen,
    DimseResponseSeen,
    DimseTransaction,
    PresentationContext,
    UserInformation,
)
from dicomsniffd.sinks.summary import Summary

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
J2K = "1.2.840.10008.1.2.4.90"


def capture_info(**kw) -> dict:
    info = {
        "files": ["a.pcap"],
        "packets": 10_000,
        "bytes": 12_000_000,
        "first_ts": 100.0,
        "last_ts": 200.0,
        "truncated_packets": 0,
        "missed_bytes": 0,
        "decode": {"packets": 10_000},
    }
    info.update(kw)
    return info


def requested(contexts=None) -> AssociationRequested:
    return AssociationRequested(
        ts=100.0,
        calling_ae="MODALITY",
        called_ae="PACS",
        application_context="1.2.840.10008.3.1.1.1",
        presentation_contexts=contexts or (PresentationContext(1, CT, (EXPLICIT_LE,)),),
        user_info=UserInformation(
            implementation_class_uid="1.2.3.4", implementation_version_name="MOD_1"
        ),
    )


def accepted(contexts=None) -> AssociationAccepted:
    return AssociationAccepted(
        ts=100.01,
        setup_seconds=0.01,
        calling_ae="MODALITY",
        called_ae="PACS",
        presentation_contexts=contexts
        or (PresentationContext(1, CT, (EXPLICIT_LE,), 0, EXPLICIT_LE),),
        user_info=UserInformation(implementation_version_name="PACS_1"),
    )


def store(status: int = 0, transfer: float = 0.1, latency: float = 0.05, **kw) -> DimseTransaction:
    klass = {0: "success", 0xFF00: "pending"}.get(status, "failure")
    fields = {
        "command": "C-STORE",
        "sop_class_uid": CT,
        "context_id": 1,
        "message_id": 1,
        "status": status,
        "status_class": klass,
        "outcome": "answered",
        "request_ts": 101.0,
        "request_complete_ts": 101.0 + transfer,
        "response_ts": 101.0 + transfer + latency,
        "response_complete_ts": 101.0 + transfer + latency,
        "request_transfer_seconds": transfer,
        "response_latency_seconds": latency,
        "duration_seconds": transfer + latency,
        "request_dataset_bytes": 1_000_000,
        "response_dataset_bytes": 0,
        "pending_responses": 0,
        "complete": True,
        "final_response_ts": 101.0 + transfer + latency,
        "response_transfer_seconds": 0.0,  # a one-packet response
    }
    fields.update(kw)
    return DimseTransaction(**fields)


def feed_store(summary: Summary, flow: Flow, status: int = 0, **kw) -> None:
    summary.handle(DimseRequestSeen(101.0, "requestor", "C-STORE", CT, 1, 1), flow)
    summary.handle(
        DimseResponseSeen(
            101.2, "acceptor", "C-STORE", status, "success" if status == 0 else "failure", 1, 1
        ),
        flow,
    )
    summary.handle(store(status, **kw), flow)


def good_association(summary: Summary, flow: Flow, n: int = 1, **kw) -> None:
    summary.tcp_event("handshake-rtt", "requestor", flow, 0.0004)
    summary.handle(requested(), flow)
    summary.handle(accepted(), flow)
    for _ in range(n):
        feed_store(summary, flow, **kw)
    summary.add_bytes("pdata", "requestor", 1_000_000 * n, flow)
    summary.add_bytes("pdata", "acceptor", 200 * n, flow)
    summary.handle(AssociationEnded(103.0, "released", 3.0), flow)


def codes(summary: Summary, **info) -> dict[str, dict]:
    return {f["code"]: f for f in summary.to_dict(capture_info(**info))["findings"]}

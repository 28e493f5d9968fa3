"""Events for the metrics tests: one of every kind, and reading the exposition back."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from sink_fakes import Flow

from dicomsniffd.dicom.events import (
    Aborted,
    AssociationAccepted,
    AssociationEnded,
    AssociationRejected,
    AssociationRequested,
    DimseRequestSeen,
    DimseResponseSeen,
    DimseTransaction,
    PresentationContext,
    ProtocolError,
    ProtocolViolation,
    Resynchronised,
    Stalled,
    UserInformation,
)
from dicomsniffd.sinks.metrics import MetricsStore

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
ECHO = "1.2.840.10008.1.1"
MOVE_ROOT = "1.2.840.10008.5.1.4.1.2.2.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
PRIVATE_SOP = "1.3.6.1.4.1.99999.1.2.3"


def self_stats(worker: str = "0", packets: int = 10) -> dict:
    return {
        "worker": worker,
        "packets": packets,
        "bytes": packets * 100,
        "dropped": {"kernel": 1, "interface": 0},
        "flows_active": 3,
        "evictions": {"capacity": 0, "idle": 2, "memcap": 0},
        "buffered_bytes": 512,
        "evidence_files_written": 1,
        "evidence_bytes_written": 4096,
        "evidence_suppressed": {"memory": 2, "directory-budget": 0},
        "evidence_files_removed": 0,
        "evidence_memory_bytes": 2048,
        "evidence_recordings": 1,
    }


def request(ts: float = 100.0) -> AssociationRequested:
    return AssociationRequested(
        ts=ts,
        calling_ae="MODALITY",
        called_ae="PACS",
        application_context="1.2.840.10008.3.1.1.1",
        presentation_contexts=(PresentationContext(1, CT, (EXPLICIT_LE, IMPLICIT_LE)),),
        user_info=UserInformation(max_pdu_length=16384, implementation_class_uid="1.2.3"),
    )


def accepted(ts: float = 100.01) -> AssociationAccepted:
    return AssociationAccepted(
        ts=ts,
        setup_seconds=0.01,
        calling_ae="MODALITY",
        called_ae="PACS",
        presentation_contexts=(
            PresentationContext(1, CT, (EXPLICIT_LE, IMPLICIT_LE), 0, EXPLICIT_LE),
            PresentationContext(3, MR, (EXPLICIT_LE,), 3, ""),
        ),
        user_info=UserInformation(),
    )


def transaction(command: str = "C-STORE", **kw) -> DimseTransaction:
    fields = {
        "command": command,
        "sop_class_uid": CT,
        "context_id": 1,
        "message_id": 1,
        "status": 0,
        "status_class": "success",
        "outcome": "answered",
        "request_ts": 101.0,
        "request_complete_ts": 101.5,
        "response_ts": 101.7,
        "response_complete_ts": 101.7,
        "request_transfer_seconds": 0.5,
        "response_latency_seconds": 0.2,
        "duration_seconds": 0.7,
        "request_dataset_bytes": 500_000,
        "response_dataset_bytes": 0,
        "pending_responses": 0,
        "complete": True,
        "final_response_ts": 101.7,
        "response_transfer_seconds": 0.0,
    }
    fields.update(kw)
    return DimseTransaction(**fields)


def drive_everything(store: MetricsStore, flow: Flow) -> None:
    """One event of every kind, so every catalogue metric has at least one sample."""
    store.tcp_event("handshake-rtt", "requestor", flow, 0.002)
    store.handle(request(), flow)
    store.handle(accepted(), flow)
    store.handle(DimseRequestSeen(101.0, "requestor", "C-STORE", CT, 1, 1), flow)
    store.handle(DimseResponseSeen(101.7, "acceptor", "C-STORE", 0xA700, "failure", 1, 1), flow)
    store.handle(transaction(status=0xA700, status_class="failure"), flow)
    store.handle(
        transaction(
            "C-MOVE",
            sop_class_uid=MOVE_ROOT,
            request_dataset_bytes=200,
            suboperations_completed=5,
            suboperations_failed=1,
            suboperations_warning=0,
        ),
        flow,
    )
    store.handle(
        transaction(
            "C-FIND",
            status=None,
            status_class="unanswered",
            outcome="unanswered-ended",
            response_ts=None,
            response_complete_ts=None,
            response_latency_seconds=None,
            duration_seconds=None,
            final_response_ts=None,
            response_transfer_seconds=None,
        ),
        flow,
    )
    store.handle(ProtocolError(102.0, "acceptor", "bad-pdu-type"), flow)
    store.handle(ProtocolViolation(102.0, "requestor", "odd-pdv-length", "PDV length 7"), flow)
    store.handle(Resynchronised(102.1, "acceptor", 1000), flow)
    store.handle(Stalled(102.2, "acceptor", "delayed-ack", 0.04), flow)
    store.handle(Aborted(103.0, "requestor", "service-user", "not-specified", 0, 0), flow)
    store.handle(AssociationEnded(103.0, "aborted", 3.0), flow)
    rejected_flow = Flow(flow_id=2, called_ae="WRONG", called_ae_label="WRONG")
    store.handle(request(), rejected_flow)
    store.handle(
        AssociationRejected(
            104.0, 0.005, "permanent", "service-user", "called-ae-not-recognized", 1, 1, 7
        ),
        rejected_flow,
    )
    store.tcp_event("retransmission", "requestor", flow)
    store.tcp_event("zero-window", "acceptor", flow)
    store.tcp_event("reset", "acceptor", flow)
    store.tcp_event("duplicate", "acceptor", flow)  # ignored
    store.add_bytes("pdata", "requestor", 500_000, flow)
    store.add_bytes("missed", "acceptor", 1460, flow)
    store.connection_failure("10.9.9.9:11112", "refused")
    store.tls_connection("10.9.9.9:2762", "established")
    store.set_self_stats_source(lambda: self_stats())


def families(store: MetricsStore) -> dict:
    text = store.exposition().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        out[name] = family
    return out


def sample_value(family, suffix: str = "", **labels) -> float:
    for sample in family.samples:
        if sample.name == family.name + suffix and all(
            sample.labels.get(k) == v for k, v in labels.items()
        ):
            return sample.value
    raise AssertionError(f"no sample {family.name}{suffix} {labels}")

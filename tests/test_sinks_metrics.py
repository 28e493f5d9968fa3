"""MetricsStore: the event mapping onto the catalogue's counters, histogram math."""

from __future__ import annotations

import pytest
from metrics_events import ECHO, drive_everything, families, request, sample_value, transaction
from sink_fakes import Flow

from dicomsniffd.config import MetricsConfig
from dicomsniffd.dicom.events import AssociationEnded
from dicomsniffd.sinks.metrics import MetricsStore


def test_event_mapping_values() -> None:
    store = MetricsStore(MetricsConfig())
    flow = Flow()
    drive_everything(store, flow)
    f = families(store)
    ae = {"calling_ae": "MODALITY", "called_ae": "PACS"}
    assert sample_value(f["dicom_association_requests_total"], "_total", **ae) == 1
    assert sample_value(f["dicom_associations_active"], **ae) == 0
    assert (
        sample_value(
            f["dicom_presentation_contexts_total"],
            "_total",
            abstract_syntax="CTImageStorage",
            transfer_syntax="ExplicitVRLittleEndian",
            result="acceptance",
        )
        == 1
    )
    assert (
        sample_value(
            f["dicom_presentation_contexts_total"],
            "_total",
            abstract_syntax="MRImageStorage",
            transfer_syntax="",
            result="abstract-syntax-not-supported",
        )
        == 1
    )
    responses = f["dicom_dimse_responses_total"]
    assert sample_value(responses, "_total", status="0xA700", status_class="failure") == 1
    requests = f["dicom_dimse_requests_total"]
    assert sample_value(requests, "_total", command="C-STORE", sop_class="CTImageStorage") == 1
    sub = f["dicom_suboperations_total"]
    assert sample_value(sub, "_total", command="C-MOVE", outcome="completed") == 5
    assert sample_value(sub, "_total", command="C-MOVE", outcome="failed") == 1
    assert sample_value(f["dicom_dimse_unanswered_total"], "_total", command="C-FIND") == 1
    # The unanswered C-FIND has no latency: only the two answered commands are observed.
    latency = f["dicom_dimse_response_latency_seconds"]
    assert {s.labels["command"] for s in latency.samples} == {"C-STORE", "C-MOVE"}
    transfer = f["dicom_dimse_request_transfer_seconds"]
    assert sample_value(transfer, "_count", command="C-FIND") == 1
    response_transfer = f["dicom_dimse_response_transfer_seconds"]
    assert {s.labels["command"] for s in response_transfer.samples} == {"C-STORE", "C-MOVE"}
    errors = f["dicom_protocol_errors_total"]
    assert sample_value(errors, "_total", kind="resync") == 1
    assert sample_value(errors, "_total", kind="bad-pdu-type") == 1
    rejects = f["dicom_association_rejects_total"]
    assert (
        sample_value(
            rejects,
            "_total",
            called_ae="WRONG",
            result="permanent",
            source="service-user",
            reason="called-ae-not-recognized",
        )
        == 1
    )
    # The rejected association was requested but never ended: still active.
    assert sample_value(f["dicom_associations_active"], called_ae="WRONG") == 1
    assert sample_value(f["dicom_pdata_bytes_total"], "_total", sender="requestor") == 500_000
    assert sample_value(f["dicom_capture_missed_bytes_total"], "_total", sender="acceptor") == 1460
    assert sample_value(f["dicom_tcp_resets_total"], "_total", sender="acceptor") == 1
    failures = f["dicom_tcp_connection_failures_total"]
    assert sample_value(failures, "_total", server="10.9.9.9:11112", reason="refused") == 1
    assert sample_value(f["dicomsniffd_packets_total"], "_total", worker="0") == 10
    dropped = f["dicomsniffd_capture_dropped_packets_total"]
    assert sample_value(dropped, "_total", worker="0", where="kernel") == 1
    build = f["dicomsniffd_build_info"].samples[0]
    assert build.value == 1 and build.labels["version"]


def test_active_gauge_only_decrements_what_it_counted() -> None:
    store = MetricsStore(MetricsConfig())
    midstream = Flow(flow_id=7)
    store.handle(AssociationEnded(1.0, "closed", None), midstream)  # never requested
    store.handle(request(), Flow(flow_id=8))
    f = families(store)
    assert sample_value(f["dicom_associations_active"], **{"calling_ae": "MODALITY"}) == 1
    ends = f["dicom_association_ends_total"]
    assert sample_value(ends, "_total", how="closed") == 1
    assert not f["dicom_association_duration_seconds"].samples  # duration None: skipped


def test_histogram_bucket_math() -> None:
    config = MetricsConfig(latency_buckets=(0.1, 1.0, 10.0))
    store = MetricsStore(config)
    flow = Flow()
    for value in (0.05, 0.1, 0.5, 1.0, 5.0, 50.0):  # bounds are inclusive ("le")
        store.tcp_event("handshake-rtt", "requestor", flow, value)
    family = families(store)["dicom_tcp_handshake_rtt_seconds"]
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert buckets == {"0.1": 2, "1.0": 4, "10.0": 5, "+Inf": 6}
    assert sample_value(family, "_count") == 6
    assert sample_value(family, "_sum") == pytest.approx(56.65)


def test_each_histogram_uses_its_configured_buckets() -> None:
    config = MetricsConfig(latency_buckets=(0.5,), duration_buckets=(60.0,), size_buckets=(1024.0,))
    store = MetricsStore(config)
    drive_everything(store, Flow())
    f = families(store)

    def bounds(name: str) -> set[str]:
        return {s.labels["le"] for s in f[name].samples if s.name.endswith("_bucket")}

    assert bounds("dicom_dimse_duration_seconds") == {"0.5", "+Inf"}
    assert bounds("dicom_association_setup_seconds") == {"0.5", "+Inf"}
    assert bounds("dicom_association_duration_seconds") == {"60.0", "+Inf"}
    assert bounds("dicom_dimse_dataset_bytes") == {"1024.0", "+Inf"}


def test_dataset_bytes_histogram_skips_commands_without_a_dataset() -> None:
    store = MetricsStore(MetricsConfig())
    flow = Flow()
    store.handle(transaction("C-ECHO", sop_class_uid=ECHO, request_dataset_bytes=0), flow)
    store.handle(transaction("C-STORE", request_dataset_bytes=2048), flow)
    store.handle(transaction("N-GET", request_dataset_bytes=0, response_dataset_bytes=300), flow)
    family = families(store)["dicom_dimse_dataset_bytes"]
    assert {s.labels["command"] for s in family.samples} == {"C-STORE", "N-GET"}
    assert sample_value(family, "_sum", command="N-GET") == 300


def test_failing_self_stats_source_does_not_break_a_scrape() -> None:
    store = MetricsStore(MetricsConfig())

    def broken() -> dict:
        raise RuntimeError("boom")

    store.set_self_stats_source(broken)
    assert b"dicomsniffd_build_info" in store.exposition()

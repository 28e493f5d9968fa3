"""The catalogue: DESIGN §4 as catalogue.py lists it and as the exposition shows it."""

from __future__ import annotations

from metrics_events import drive_everything, families
from sink_fakes import Flow

from dicomsniffd.config import MetricsConfig
from dicomsniffd.sinks.metrics import CONFIG_RELOAD_FAILURES, FAMILIES, MetricsStore

AE = {"calling_ae", "called_ae"}
# DESIGN §4, transcribed by hand: metric name -> (type, full label set).
CATALOGUE = {
    "dicom_association_requests_total": ("counter", AE),
    "dicom_association_rejects_total": ("counter", AE | {"result", "source", "reason"}),
    "dicom_association_aborts_total": ("counter", AE | {"source", "reason"}),
    "dicom_association_ends_total": ("counter", AE | {"how"}),
    "dicom_associations_active": ("gauge", AE),
    "dicom_association_setup_seconds": ("histogram", AE),
    "dicom_association_duration_seconds": ("histogram", AE),
    "dicom_presentation_contexts_total": (
        "counter",
        AE | {"abstract_syntax", "transfer_syntax", "result"},
    ),
    "dicom_dimse_requests_total": ("counter", AE | {"command", "sop_class"}),
    "dicom_dimse_responses_total": ("counter", AE | {"command", "status", "status_class"}),
    "dicom_dimse_duration_seconds": ("histogram", AE | {"command"}),
    "dicom_dimse_request_transfer_seconds": ("histogram", AE | {"command"}),
    "dicom_dimse_response_latency_seconds": ("histogram", AE | {"command"}),
    "dicom_dimse_response_transfer_seconds": ("histogram", AE | {"command"}),
    "dicom_dimse_dataset_bytes": ("histogram", AE | {"command"}),
    "dicom_dimse_unanswered_total": ("counter", AE | {"command"}),
    "dicom_suboperations_total": ("counter", AE | {"command", "outcome"}),
    "dicom_pdata_bytes_total": ("counter", AE | {"sender"}),
    "dicom_tcp_retransmitted_segments_total": ("counter", AE | {"sender"}),
    "dicom_tcp_zero_window_total": ("counter", AE | {"sender"}),
    "dicom_tcp_resets_total": ("counter", AE | {"sender"}),
    "dicom_tcp_handshake_rtt_seconds": ("histogram", AE),
    "dicom_tcp_stalls_total": ("counter", AE | {"sender", "cause"}),
    "dicom_tcp_stall_seconds_total": ("counter", AE | {"sender", "cause"}),
    "dicom_capture_missed_bytes_total": ("counter", AE | {"sender"}),
    "dicom_protocol_errors_total": ("counter", AE | {"kind"}),
    "dicom_protocol_violations_total": ("counter", AE | {"kind", "sender"}),
    "dicom_tcp_connection_failures_total": ("counter", {"server", "reason"}),
    "dicom_tls_connections_total": ("counter", {"server", "outcome"}),
    "dicom_implementation_info": (
        "gauge",
        {"ae", "side", "implementation_class_uid", "implementation_version_name"},
    ),
    "dicomsniffd_packets_total": ("counter", {"worker"}),
    "dicomsniffd_bytes_total": ("counter", {"worker"}),
    "dicomsniffd_capture_dropped_packets_total": ("counter", {"worker", "where"}),
    "dicomsniffd_flows_active": ("gauge", {"worker"}),
    "dicomsniffd_flow_evictions_total": ("counter", {"worker", "reason"}),
    "dicomsniffd_reassembly_buffered_bytes": ("gauge", {"worker"}),
    # Added by issue 14 (docs/contract-changes.md): the flight recorder's self-metrics.
    "dicomsniffd_evidence_files_written_total": ("counter", {"worker"}),
    "dicomsniffd_evidence_written_bytes_total": ("counter", {"worker"}),
    "dicomsniffd_evidence_suppressed_total": ("counter", {"worker", "reason"}),
    "dicomsniffd_evidence_files_removed_total": ("counter", {"worker"}),
    "dicomsniffd_evidence_memory_bytes": ("gauge", {"worker"}),
    "dicomsniffd_evidence_recordings": ("gauge", {"worker"}),
    "dicomsniffd_label_overflow_total": ("counter", {"label"}),
    "dicomsniffd_build_info": ("gauge", {"version", "pcapy_ng", "libpcap", "python"}),
}


def test_every_catalogue_metric_has_the_contract_type_and_labels() -> None:
    store = MetricsStore(MetricsConfig())
    drive_everything(store, Flow())
    found = families(store)
    assert set(CATALOGUE) <= set(found), set(CATALOGUE) - set(found)
    for name, (kind, labels) in CATALOGUE.items():
        family = found[name]
        assert family.type == kind, name
        assert family.samples, f"{name} has no sample"
        for sample in family.samples:
            got = set(sample.labels) - ({"le"} if sample.name.endswith("_bucket") else set())
            assert got == labels, (name, sample)


def test_the_catalogue_module_lists_exactly_the_contract() -> None:
    """catalogue.py is the one table every writer reads: it must hold DESIGN §4 as
    transcribed above, plus the daemon's own family (served by the daemon's collector)."""
    names = [f.name for f in FAMILIES if f.source != "daemon"]
    assert sorted(names) == sorted(CATALOGUE)  # the table above is not in exposition order
    for family in FAMILIES:
        if family.source == "daemon":
            continue
        kind, labels = CATALOGUE[family.name]
        assert (family.kind, set(family.labels)) == (kind, labels), family.name
        assert bool(family.buckets) == (kind == "histogram"), family.name
    reload_failures = CONFIG_RELOAD_FAILURES
    assert [f for f in FAMILIES if f.source == "daemon"] == [reload_failures]
    assert (reload_failures.name, reload_failures.kind, reload_failures.labels) == (
        "dicomsniffd_config_reload_failures_total",
        "counter",
        (),
    )


def test_exposition_follows_the_catalogue_order() -> None:
    store = MetricsStore(MetricsConfig())
    drive_everything(store, Flow())
    assert list(families(store)) == [f.name for f in FAMILIES if f.source != "daemon"]


def test_no_client_address_or_uid_in_any_label_value() -> None:
    store = MetricsStore(MetricsConfig())
    drive_everything(store, Flow())
    for family in families(store).values():
        for sample in family.samples:
            for value in sample.labels.values():
                assert "10.1.2.3" not in value
                assert not value.startswith("1.2.840")

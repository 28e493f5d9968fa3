"""The cardinality caps: AE titles, servers, SOP classes folded into 'other', and counted."""

from __future__ import annotations

from metrics_events import CT, MR, PRIVATE_SOP, families, sample_value
from sink_fakes import Flow

from dicomsniffd.config import MetricsConfig
from dicomsniffd.dicom.events import (
    DimseRequestSeen,
)
from dicomsniffd.sinks.metrics import MetricsStore


def test_ae_title_cap_and_overflow_counting() -> None:
    store = MetricsStore(MetricsConfig(max_ae_titles=2))
    assert store.ae_label("A", "calling_ae") == "A"
    assert store.ae_label("B", "called_ae") == "B"
    assert store.ae_label("A", "called_ae") == "A"  # already admitted: no overflow
    assert store.ae_label("C", "calling_ae") == "other"
    assert store.ae_label("D", "called_ae") == "other"
    assert store.ae_label("E", "called_ae") == "other"
    assert store.ae_label("unknown") == "unknown"  # reserved, never takes a slot
    assert store.ae_label("") == "unknown"
    overflow = families(store)["dicomsniffd_label_overflow_total"]
    assert sample_value(overflow, "_total", label="calling_ae") == 1
    assert sample_value(overflow, "_total", label="called_ae") == 2
    assert sample_value(overflow, "_total", label="server") == 0


def test_server_cap_is_idempotent_on_labels() -> None:
    store = MetricsStore(MetricsConfig(max_servers=1))
    assert store.server_label("10.0.0.1:104") == "10.0.0.1:104"
    assert store.server_label("10.0.0.2:104") == "other"
    # the pipeline may pass the capped label to connection_failure: no double counting
    store.connection_failure("other", "unanswered")
    store.connection_failure("10.0.0.3:104", "refused")
    f = families(store)
    assert sample_value(f["dicomsniffd_label_overflow_total"], "_total", label="server") == 2
    failures = f["dicom_tcp_connection_failures_total"]
    assert sample_value(failures, "_total", server="other", reason="unanswered") == 1
    assert sample_value(failures, "_total", server="other", reason="refused") == 1


def test_sop_class_cap_and_private_uids() -> None:
    store = MetricsStore(MetricsConfig(max_sop_classes=1))
    flow = Flow()
    for uid in (CT, MR, PRIVATE_SOP, ""):
        store.handle(DimseRequestSeen(1.0, "requestor", "C-STORE", uid, 1, 1), flow)
    f = families(store)
    labels = {s.labels["sop_class"] for s in f["dicom_dimse_requests_total"].samples}
    assert labels == {"CTImageStorage", "other", "private", "unknown"}
    assert sample_value(f["dicomsniffd_label_overflow_total"], "_total", label="sop_class") == 1


def test_optional_labels_switched_off_keep_the_label_with_value_all() -> None:
    store = MetricsStore(MetricsConfig(ae_title_labels=False, sop_class_label=False))
    flow = Flow()
    assert store.ae_label("CT_SCANNER", "calling_ae") == "all"
    for uid in (CT, MR):
        store.handle(DimseRequestSeen(1.0, "requestor", "C-STORE", uid, 1, 1), flow)
    samples = families(store)["dicom_dimse_requests_total"].samples
    assert [(s.labels["sop_class"], s.value) for s in samples] == [("all", 2.0)]


def test_status_values_are_capped_and_counted() -> None:
    # A peer that answers with every 16-bit status would make a series per value per AE
    # pair and command: past MAX_STATUS_LABELS distinct values they count under "other".
    from dicomsniffd.dicom.events import DimseResponseSeen
    from dicomsniffd.sinks.metrics.labels import MAX_STATUS_LABELS

    store = MetricsStore(MetricsConfig())
    flow = Flow()
    # Standard statuses never take a slot: the alerts select 0xA7xx by value.
    for status in range(0xC001, 0xC001 + MAX_STATUS_LABELS + 100):
        store.handle(DimseResponseSeen(1.0, "acceptor", "C-STORE", status, "failure", 1, 1), flow)
    store.handle(DimseResponseSeen(1.0, "acceptor", "C-STORE", 0xC001, "failure", 2, 2), flow)
    for status in (0xA7FE, 0xA700, 0x0000, 0xC000):  # after the cap is full
        store.handle(DimseResponseSeen(2.0, "acceptor", "C-STORE", status, "failure", 3, 3), flow)
    f = families(store)
    responses = f["dicom_dimse_responses_total"]
    statuses = {s.labels["status"] for s in responses.samples if s.name.endswith("_total")}
    assert len(statuses) == MAX_STATUS_LABELS + 1 + 4 and "other" in statuses
    assert {"0xA7FE", "0xA700", "0x0000", "0xC000"} <= statuses
    assert sample_value(responses, "_total", status="0xC001", command="C-STORE") == 2
    assert sample_value(responses, "_total", status="other", command="C-STORE") == 100
    assert sample_value(f["dicomsniffd_label_overflow_total"], "_total", label="status") == 100

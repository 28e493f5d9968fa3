"""MetricsStore: the DESIGN §4 catalogue, histogram math, label caps, snapshots."""

from __future__ import annotations

import pickle

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sink_fakes import Flow

from dicomsniffd.config import MetricsConfig
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
    Resynchronised,
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
    "dicom_dimse_dataset_bytes": ("histogram", AE | {"command"}),
    "dicom_dimse_unanswered_total": ("counter", AE | {"command"}),
    "dicom_suboperations_total": ("counter", AE | {"command", "outcome"}),
    "dicom_pdata_bytes_total": ("counter", AE | {"sender"}),
    "dicom_tcp_retransmitted_segments_total": ("counter", AE | {"sender"}),
    "dicom_tcp_zero_window_total": ("counter", AE | {"sender"}),
    "dicom_tcp_resets_total": ("counter", AE | {"sender"}),
    "dicom_tcp_handshake_rtt_seconds": ("histogram", AE),
    "dicom_capture_missed_bytes_total": ("counter", AE | {"sender"}),
    "dicom_protocol_errors_total": ("counter", AE | {"kind"}),
    "dicom_tcp_connection_failures_total": ("counter", {"server", "reason"}),
    "dicom_tls_connections_total": ("counter", {"server", "outcome"}),
    "dicomsniffd_packets_total": ("counter", {"worker"}),
    "dicomsniffd_bytes_total": ("counter", {"worker"}),
    "dicomsniffd_capture_dropped_packets_total": ("counter", {"worker", "where"}),
    "dicomsniffd_flows_active": ("gauge", {"worker"}),
    "dicomsniffd_flow_evictions_total": ("counter", {"worker", "reason"}),
    "dicomsniffd_reassembly_buffered_bytes": ("gauge", {"worker"}),
    "dicomsniffd_label_overflow_total": ("counter", {"label"}),
    "dicomsniffd_build_info": ("gauge", {"version", "pcapy_ng", "libpcap", "python"}),
}


def self_stats(worker: str = "0", packets: int = 10) -> dict:
    return {
        "worker": worker,
        "packets": packets,
        "bytes": packets * 100,
        "dropped": {"kernel": 1, "interface": 0},
        "flows_active": 3,
        "evictions": {"capacity": 0, "idle": 2, "memcap": 0},
        "buffered_bytes": 512,
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
        ),
        flow,
    )
    store.handle(ProtocolError(102.0, "acceptor", "bad-pdu-type"), flow)
    store.handle(Resynchronised(102.1, "acceptor", 1000), flow)
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


def test_no_client_address_or_uid_in_any_label_value() -> None:
    store = MetricsStore(MetricsConfig())
    drive_everything(store, Flow())
    for family in families(store).values():
        for sample in family.samples:
            for value in sample.labels.values():
                assert "10.1.2.3" not in value
                assert not value.startswith("1.2.840")


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


def test_snapshot_is_picklable_and_merge_adds_workers() -> None:
    config = MetricsConfig()
    workers = []
    for index in range(2):
        store = MetricsStore(config)
        drive_everything(store, Flow())
        store.set_self_stats_source(lambda i=index: self_stats(str(i), packets=10 * (i + 1)))
        workers.append(store)
    parent = MetricsStore(config)
    for index, worker in enumerate(workers):
        snap = pickle.loads(pickle.dumps(worker.snapshot()))
        parent.merge_snapshot(str(index), snap)
    single = families(workers[0])
    merged = families(parent)
    ae = {"calling_ae": "MODALITY", "called_ae": "PACS"}
    requests = "dicom_association_requests_total"
    assert sample_value(merged[requests], "_total", **ae) == 2 * sample_value(
        single[requests], "_total", **ae
    )
    store_count = sample_value(merged["dicom_dimse_duration_seconds"], "_count", command="C-STORE")
    assert store_count == 2
    packets = merged["dicomsniffd_packets_total"]
    assert sample_value(packets, "_total", worker="0") == 10
    assert sample_value(packets, "_total", worker="1") == 20
    # A newer snapshot replaces the worker's previous one (snapshots are cumulative).
    parent.merge_snapshot("0", workers[0].snapshot())
    again = families(parent)
    assert sample_value(again[requests], "_total", **ae) == 2


def test_merge_rejects_different_buckets() -> None:
    worker = MetricsStore(MetricsConfig(latency_buckets=(1.0,)))
    parent = MetricsStore(MetricsConfig())
    with pytest.raises(ValueError, match="buckets"):
        parent.merge_snapshot("0", worker.snapshot())


def test_failing_self_stats_source_does_not_break_a_scrape() -> None:
    store = MetricsStore(MetricsConfig())

    def broken() -> dict:
        raise RuntimeError("boom")

    store.set_self_stats_source(broken)
    assert b"dicomsniffd_build_info" in store.exposition()


# -- render_text(): the direct text exposition must equal generate_latest -----------------

# Nine titles, paired first with last: with max_ae_titles=8 the middle one ("FOLDED")
# is the ninth distinct title and goes to "other".
HOSTILE_TITLES = (
    'QUOTE"AE',
    "BACK\\SLASH",
    "NEW\nLINE",
    "ÜMLAUT-CT",
    "FOLDED",
    "放射線科",
    'MIX\\"\n"\\',
    "TRAILING\\",
    "plain",
)


def _hostile_store(config: MetricsConfig, worker: str, scale: int) -> MetricsStore:
    """Every event kind under AE titles that need escaping, some folded into 'other'."""
    store = MetricsStore(config)
    for index, title in enumerate(HOSTILE_TITLES):
        called = HOSTILE_TITLES[-1 - index]
        flow = Flow(
            flow_id=index + 1,
            calling_ae=title,
            called_ae=called,
            calling_ae_label=store.ae_label(title, "calling_ae"),
            called_ae_label=store.ae_label(called, "called_ae"),
        )
        for _ in range(scale):
            drive_everything(store, flow)
        store.add_bytes("pdata", "acceptor", 1_000_000 * scale + index, flow)
        store.tcp_event("handshake-rtt", "acceptor", flow, 1e-7 * (index + 1))
        store.handle(transaction(duration_seconds=1e9, request_dataset_bytes=10**12), flow)
        store.connection_failure(f'10.0.0.{index}:104"\\', "unanswered")
    store.set_self_stats_source(lambda: self_stats(worker, packets=10**7 * scale))
    return store


def _assert_same_exposition(store: MetricsStore) -> None:
    expected = generate_latest(store.registry)
    body = store.render_text()
    assert list(text_string_to_metric_families(body.decode("utf-8"))) == list(
        text_string_to_metric_families(expected.decode("utf-8"))
    )
    assert body == expected
    assert store.exposition() == expected


def test_render_text_is_generate_latest_byte_for_byte_with_hostile_labels() -> None:
    config = MetricsConfig(
        max_ae_titles=8,
        max_servers=3,
        latency_buckets=(1e-06, 0.001, 0.5, 1.0, 1000000.0, 2.5e7),
    )
    store = _hostile_store(config, "0", 1)
    body = store.render_text()
    assert b'calling_ae="QUOTE\\"AE"' in body
    assert b'calling_ae="BACK\\\\SLASH"' in body
    assert b'calling_ae="NEW\\nLINE"' in body
    assert "ÜMLAUT-CT".encode() in body and "放射線科".encode() in body
    assert b'MIX\\\\\\"\\n\\"\\\\"' in body
    assert b"FOLDED" not in body
    assert b'calling_ae="other"' in body  # the cap folded some titles
    assert b'le="1e+06"' in body and b'le="+Inf"' in body
    _assert_same_exposition(store)
    # The prefix and value caches must follow the state: more events, new keys, new values.
    drive_everything(store, Flow(flow_id=99, calling_ae_label="LATE", called_ae_label="PACS"))
    store.add_bytes("missed", "requestor", 3, Flow(calling_ae_label='NEW"KEY'))
    _assert_same_exposition(store)


def test_render_text_of_merged_worker_snapshots_is_generate_latest() -> None:
    config = MetricsConfig(max_ae_titles=8)
    parent = MetricsStore(config)
    drive_everything(parent, Flow(calling_ae_label="PARENT"))
    for worker, scale in (("0", 1), ("1", 3), ("2", 2)):
        snap = pickle.loads(pickle.dumps(_hostile_store(config, worker, scale).snapshot()))
        parent.merge_snapshot(worker, snap)
        _assert_same_exposition(parent)
    # A newer snapshot replaces the older one; the renderer must not keep stale series.
    parent.merge_snapshot("1", _hostile_store(config, "1", 5).snapshot())
    _assert_same_exposition(parent)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(parent.render_text().decode())
        for s in family.samples
    }
    assert samples[("dicomsniffd_packets_total", (("worker", "1"),))] == 5e7


def test_render_text_handles_values_only_hand_made_snapshots_have() -> None:
    """-0.0 and 0 are one dict key but print differently; NaN, floats and big ints."""
    config = MetricsConfig()
    worker = MetricsStore(config)
    snap = worker.snapshot()
    ae = ("A", "B")
    snap["values"]["dicom_associations_active"] = {ae: -0.0, ("C", "D"): 0, ("E", "F"): -3}
    snap["values"]["dicom_pdata_bytes_total"] = {
        (*ae, "requestor"): 12345678.5,
        (*ae, "acceptor"): 10**20,
        ("C", "D", "acceptor"): float("nan"),
    }
    snap["hists"]["dicom_tcp_handshake_rtt_seconds"] = {
        ae: [0.0] * (len(config.latency_buckets) + 1) + [-0.0],
        ("C", "D"): [2] * (len(config.latency_buckets) + 1) + [0.25],
    }
    parent = MetricsStore(config)
    parent.merge_snapshot("0", snap)
    body = parent.render_text()
    assert body == generate_latest(parent.registry)
    assert b'dicom_associations_active{called_ae="B",calling_ae="A"} -0.0\n' in body
    assert b'dicom_associations_active{called_ae="D",calling_ae="C"} 0.0\n' in body


def test_daemon_metrics_view_serves_the_same_bytes_as_its_registry() -> None:
    from dicomsniffd.config import load_config
    from dicomsniffd.daemon import MetricsView, ReloadCounter

    config = load_config(None)
    reloads = ReloadCounter()
    reloads.failures = 2
    view = MetricsView(config, reloads)
    view.publish("0", _hostile_store(config.metrics, "0", 2).snapshot())
    view.publish("1", _hostile_store(config.metrics, "1", 1).snapshot())
    body = view.render()
    assert body == generate_latest(view.registry)
    assert body.endswith(b"dicomsniffd_config_reload_failures_total 2.0\n")


def test_histogram_text_places_le_among_labels_that_sort_after_it() -> None:
    """The catalogue's histogram labels all sort before "le"; the renderer must not rely on it."""
    from prometheus_client.core import HistogramMetricFamily

    from dicomsniffd.sinks.metrics.exposition import FamilyText

    labels = ("zone", "a_label", "mode")  # label names are valid ones, as in the catalogue
    bounds = (0.5, 1e6)
    rows = {("z\n1", 'a"', "m"): [1, 0, 2, 7.5], ("z2", "", "é"): [0, 3, 0, 1e-9]}
    renderer = FamilyText("h_seconds", "histogram", labels, "Help \\ with\nnewline.", bounds)
    out: list[bytes] = []
    renderer.histogram(out, rows)

    class One:
        def collect(self):
            family = HistogramMetricFamily("h_seconds", "Help \\ with\nnewline.", labels=labels)
            for key, row in sorted(rows.items()):
                cumulative = [sum(row[: i + 1]) for i in range(len(bounds) + 1)]
                les = ["0.5", "1e+06", "+Inf"]
                family.add_metric(list(key), list(zip(les, cumulative, strict=True)), row[-1])
            yield family

    assert b"".join(out) == generate_latest(One())

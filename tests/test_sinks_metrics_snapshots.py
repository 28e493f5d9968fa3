"""Snapshots: picklable worker state, merged by the parent."""

from __future__ import annotations

import pickle

import pytest
from metrics_events import drive_everything, families, sample_value, self_stats
from sink_fakes import Flow

from dicomsniffd.config import MetricsConfig
from dicomsniffd.sinks.metrics import MetricsStore


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

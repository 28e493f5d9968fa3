"""render_text(): the direct text exposition must equal generate_latest byte for byte."""

from __future__ import annotations

import pickle

from metrics_events import drive_everything, self_stats, transaction
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sink_fakes import Flow

from dicomsniffd.config import MetricsConfig
from dicomsniffd.sinks.metrics import CONFIG_RELOAD_FAILURES, MetricsStore, metric_family

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
    from dicomsniffd.daemon.http import MetricsView
    from dicomsniffd.daemon.reload import ReloadCounter

    config = load_config(None)
    reloads = ReloadCounter()
    reloads.failures = 2
    view = MetricsView(config, reloads)
    view.publish("0", _hostile_store(config.metrics, "0", 2).snapshot())
    view.publish("1", _hostile_store(config.metrics, "1", 1).snapshot())
    body = view.render()
    assert body == generate_latest(view.registry)
    assert body.endswith(b"dicomsniffd_config_reload_failures_total 2.0\n")
    family = CONFIG_RELOAD_FAILURES
    header = f"# HELP {family.name} {family.help}\n# TYPE {family.name} {family.kind}\n"
    assert body.endswith(header.encode() + b"dicomsniffd_config_reload_failures_total 2.0\n")


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


def test_render_text_then_the_daemon_families_is_generate_latest_of_both() -> None:
    """What the daemon serves: the store, then its own families built from the catalogue."""
    from prometheus_client import CollectorRegistry

    class Reloads:
        def collect(self):
            family = metric_family(CONFIG_RELOAD_FAILURES)
            family.add_metric((), 3)
            yield family

    store = _hostile_store(MetricsConfig(max_ae_titles=8), "0", 1)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(store)
    registry.register(Reloads())
    body = store.render_text(Reloads().collect())
    assert body == generate_latest(registry)
    assert body.endswith(b"dicomsniffd_config_reload_failures_total 3.0\n")

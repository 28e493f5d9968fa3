"""The table of reloadable settings and what is derived from it (no process, no capture).

The end-to-end SIGHUP behaviour (log line, refusal, counter) is in tests/test_daemon.py.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest

from dicomsniffd.capture import BpfError
from dicomsniffd.config import Config, config_from_mapping
from dicomsniffd.daemon.reload import (
    HOT_KEYS,
    RELOADABLE,
    Target,
    apply_to_capture,
    apply_to_metrics,
    changed_keys,
    merge_hot,
)

README = Path(__file__).resolve().parent.parent / "README.md"

NEW = config_from_mapping(
    {
        "capture": {"bpf": "tcp port 11112", "batch_size": 64, "buffer_size_mb": 8},
        "metrics": {"max_ae_titles": 3, "max_servers": 4, "max_sop_classes": 5},
        "logging": {"level": "debug", "format": "json"},
        "flows": {"capacity": 10},
    },
    "test.yaml",
)


def _leaf_paths(cls: type, prefix: str = "") -> set[str]:
    paths = set()
    for name, hint in typing.get_type_hints(cls).items():
        path = prefix + name
        paths |= _leaf_paths(hint, path + ".") if dataclasses.is_dataclass(hint) else {path}
    return paths


class _Source:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.filters: list[str] = []

    def set_filter(self, bpf: str) -> None:
        self.filters.append(bpf)
        if self.refuse:
            raise BpfError(f"invalid BPF filter {bpf!r}: refused")


def test_every_reloadable_key_is_a_config_key_and_in_the_readme() -> None:
    readme = README.read_text()
    assert {entry.key for entry in RELOADABLE} == HOT_KEYS
    assert len(RELOADABLE) == len(HOT_KEYS)
    assert _leaf_paths(Config) >= HOT_KEYS
    for entry in RELOADABLE:
        section = entry.key.split(".")[0]
        if entry.target is Target.METRICS:  # applied to a MetricsStore's MetricsConfig
            assert section == "metrics", entry.key
        assert f"`{entry.key}`" in readme or f"`{section}.*`" in readme, entry.key


def test_merge_hot_takes_the_hot_keys_and_keeps_the_cold_ones() -> None:
    running = Config()
    merged = merge_hot(running, NEW)
    assert set(changed_keys(running, merged)) == HOT_KEYS
    assert set(changed_keys(merged, NEW)) == {"capture.buffer_size_mb", "flows.capacity"}


def test_apply_to_metrics_swaps_only_the_label_caps() -> None:
    store = SimpleNamespace(config=dataclasses.replace(Config().metrics, listen="127.0.0.1:1"))
    apply_to_metrics(store, NEW)
    caps = {e.key.split(".")[1] for e in RELOADABLE if e.target is Target.METRICS}
    for name in caps:
        assert getattr(store.config, name) == getattr(NEW.metrics, name)
    assert store.config.listen == "127.0.0.1:1"
    assert store.config.latency_buckets == Config().metrics.latency_buckets


def test_apply_to_capture_installs_a_changed_filter_only() -> None:
    source = _Source()
    running = apply_to_capture("0", source, Config(), NEW)
    assert source.filters == ["tcp port 11112"]
    assert running.capture.bpf == "tcp port 11112" and running.capture.batch_size == 64
    assert running.capture.buffer_size_mb == Config().capture.buffer_size_mb
    apply_to_capture("0", source, running, NEW)
    assert source.filters == ["tcp port 11112"]  # unchanged: not installed again


def test_a_refused_filter_leaves_that_worker_on_its_old_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    running = apply_to_capture("1", _Source(refuse=True), Config(), NEW)
    assert running.capture.bpf == Config().capture.bpf
    assert running.capture.batch_size == 64  # the rest of the reload still applies
    assert "worker 1 kept its old BPF filter" in caplog.text

"""The catalogue's families as prometheus-client Metric objects (the Collector side).

``MetricsStore.collect()`` yields these for prometheus-client users (``generate_latest``,
registries); a scrape of the daemon goes through exposition.py instead, which writes the
same bytes without building them. Both walk catalogue.py, so neither can list a family
the other lacks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from dicomsniffd.sinks.metrics.build_info import build_info
from dicomsniffd.sinks.metrics.catalogue import (
    BUILD_INFO,
    SELF_STATS_FAMILIES,
    STORE_FAMILIES,
    Family,
    Key,
    SelfStats,
)


def metric_family(family: Family) -> CounterMetricFamily | GaugeMetricFamily:
    """An empty counter or gauge family with the catalogue's name, help and labels."""
    family_type = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
    return family_type(family.name, family.help, labels=family.labels)


def store_families(
    merged: dict[str, Any], bounds: Mapping[str, tuple[float, ...]]
) -> Iterator[Metric]:
    """Every store family of a merged snapshot (snapshots.merge), in catalogue order."""
    for family in STORE_FAMILIES:
        if family.kind == "histogram":
            yield histogram_family(family, bounds[family.name], merged["hists"][family.name])
        else:
            metric = metric_family(family)
            for key, value in sorted(merged["values"].get(family.name, {}).items()):
                metric.add_metric(key, value)
            yield metric


def histogram_family(
    family: Family, bounds: tuple[float, ...], rows: dict[Key, list[float]]
) -> HistogramMetricFamily:
    """Rows of [count per bucket..., count above the last bound, sum] as cumulative buckets."""
    metric = HistogramMetricFamily(family.name, family.help, labels=family.labels)
    for key, row in sorted(rows.items()):
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(bounds, row, strict=False):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))
        cumulative += row[len(bounds)]
        buckets.append(("+Inf", cumulative))
        metric.add_metric(list(key), buckets, row[-1])
    return metric


def self_stats_families(stats_list: list[SelfStats]) -> list[Metric]:
    """The per-worker families; a family labelled by a second name reads a dict of counts."""
    metrics = [metric_family(family) for family in SELF_STATS_FAMILIES]
    for stats in stats_list:
        worker = str(stats.get("worker", "0"))
        for family, metric in zip(SELF_STATS_FAMILIES, metrics, strict=True):
            if len(family.labels) == 1:
                metric.add_metric((worker,), stats.get(family.stat, 0))
            else:
                for sub, count in sorted(stats.get(family.stat, {}).items()):
                    metric.add_metric((worker, sub), count)
    return metrics


def build_info_family() -> GaugeMetricFamily:
    metric = metric_family(BUILD_INFO)
    metric.add_metric(build_info(), 1)
    return metric

"""Prometheus metrics: the DESIGN §4 catalogue, fed by events, published at scrape time.

- ``catalogue.py``: every family on /metrics (name, type, labels, help, buckets, source)
- ``labels.py``: the cardinality caps (AE titles, servers, SOP classes -> ``other``)
- ``store.py``: MetricsStore: the sink mapping events onto plain counters
- ``snapshots.py``: a store's state as plain data, and the parent's merge of its workers'
- ``collectors.py``: the families as prometheus-client Metric objects (``collect()``)
- ``exposition.py``: the same as text, byte for byte generate_latest's, without the objects
- ``build_info.py``: the versions dicomsniffd_build_info reports (libpcap's included)
"""

from typing import Any

from dicomsniffd.sinks.metrics.catalogue import CONFIG_RELOAD_FAILURES, FAMILIES, Family
from dicomsniffd.sinks.metrics.store import MetricsStore

__all__ = ["CONFIG_RELOAD_FAILURES", "FAMILIES", "Family", "MetricsStore", "metric_family"]


def __getattr__(name: str) -> Any:
    """``metric_family`` from collectors.py on first use: importing the package must not
    import prometheus-client (store.py says why)."""
    if name == "metric_family":
        from dicomsniffd.sinks.metrics.collectors import metric_family

        return metric_family
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

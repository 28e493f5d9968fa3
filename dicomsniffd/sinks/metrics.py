"""Prometheus metrics: the DESIGN §4 catalogue as a custom prometheus-client Collector.

The hot path only touches plain dicts: ``{metric name: {label tuple: number}}`` for
counters and gauges, ``{metric name: {label tuple: [bucket counts..., +Inf, sum]}}`` for
histograms. No prometheus-client child objects are ever created; MetricFamily objects
are built at scrape time from a copy of those dicts. Because the state is plain data,
``snapshot()`` is a copy and ``merge_snapshot()`` is an addition, which is how a parent
process serves the merged state of its worker processes (DESIGN §6: prometheus-client's
multiprocess mode cannot run custom collectors).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import math
import platform
import re
from bisect import bisect_left
from collections.abc import Callable, Iterator
from itertools import accumulate, chain
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from dicomsniffd import __version__
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
    ProtocolError,
    Resynchronised,
)
from dicomsniffd.sinks._names import (
    context_result,
    sop_class_keyword,
    status_hex,
    transfer_syntax_keyword,
)

log = logging.getLogger(__name__)

SelfStats = dict[str, Any]
Key = tuple[str, ...]

OTHER = "other"
_PC_MEMO_ENTRIES = 1024  # distinct negotiated context lists remembered per MetricsStore
UNKNOWN = "unknown"
ALL = "all"  # the value of an optional label that is switched off
SNAPSHOT_FORMAT = 1

_AE = ("calling_ae", "called_ae")
_CMD = ("*ae", "command")  # shorthand expanded below: "*ae" = the two AE labels

# The catalogue, in exposition order: (name, type, labels, bucket set, help).
# "*ae" stands for calling_ae, called_ae. The bucket set names a MetricsConfig field.
_CATALOGUE: tuple[tuple[str, str, tuple[str, ...], str, str], ...] = (
    ("dicom_association_requests_total", "counter", ("*ae",), "",
     "A-ASSOCIATE-RQ seen."),
    ("dicom_association_rejects_total", "counter", ("*ae", "result", "source", "reason"), "",
     "A-ASSOCIATE-RJ seen, by result, source and reason."),
    ("dicom_association_aborts_total", "counter", ("*ae", "source", "reason"), "",
     "A-ABORT seen, by source and reason."),
    ("dicom_association_ends_total", "counter", ("*ae", "how"), "",
     "Associations that ended, by how (released, aborted, reset, closed, timeout)."),
    ("dicom_associations_active", "gauge", ("*ae",), "",
     "Associations requested and not yet ended."),
    ("dicom_association_setup_seconds", "histogram", ("*ae",), "latency_buckets",
     "A-ASSOCIATE-RQ to AC/RJ."),
    ("dicom_association_duration_seconds", "histogram", ("*ae",), "duration_buckets",
     "A-ASSOCIATE-RQ to the end of the association."),
    ("dicom_presentation_contexts_total", "counter",
     ("*ae", "abstract_syntax", "transfer_syntax", "result"), "",
     "Presentation contexts answered by the acceptor, by abstract syntax and result."),
    ("dicom_dimse_requests_total", "counter", ("*ae", "command", "sop_class"), "",
     "DIMSE requests seen."),
    ("dicom_dimse_responses_total", "counter", ("*ae", "command", "status", "status_class"), "",
     "DIMSE responses seen (pending ones included), by status."),
    ("dicom_dimse_duration_seconds", "histogram", _CMD, "latency_buckets",
     "First packet of the request to the packet completing the final response."),
    ("dicom_dimse_request_transfer_seconds", "histogram", _CMD, "latency_buckets",
     "First to last packet of the request (network upload time of a C-STORE)."),
    ("dicom_dimse_response_latency_seconds", "histogram", _CMD, "latency_buckets",
     "Request complete to the first response (the SCP's service time)."),
    ("dicom_dimse_dataset_bytes", "histogram", _CMD, "size_buckets",
     "Size of the request data set (the response data set for N-GET)."),
    ("dicom_dimse_unanswered_total", "counter", _CMD, "",
     "Requests still open when the association ended or the transaction timed out."),
    ("dicom_suboperations_total", "counter", ("*ae", "command", "outcome"), "",
     "C-MOVE/C-GET sub-operations from the final response, by outcome."),
    ("dicom_pdata_bytes_total", "counter", ("*ae", "sender"), "",
     "P-DATA-TF bytes, by sender (requestor/acceptor)."),
    ("dicom_tcp_retransmitted_segments_total", "counter", ("*ae", "sender"), "",
     "TCP retransmissions on DICOM connections, by sender."),
    ("dicom_tcp_zero_window_total", "counter", ("*ae", "sender"), "",
     "TCP zero-window advertisements on DICOM connections, by sender."),
    ("dicom_tcp_resets_total", "counter", ("*ae", "sender"), "",
     "TCP resets on DICOM connections, by sender."),
    ("dicom_tcp_handshake_rtt_seconds", "histogram", ("*ae",), "latency_buckets",
     "SYN to SYN/ACK to ACK."),
    ("dicom_capture_missed_bytes_total", "counter", ("*ae", "sender"), "",
     "Bytes on DICOM connections the sniffer never saw."),
    ("dicom_protocol_errors_total", "counter", ("*ae", "kind"), "",
     "DICOM UL/DIMSE protocol errors and resynchronisations, by kind."),
    ("dicom_tcp_connection_failures_total", "counter", ("server", "reason"), "",
     "TCP connections to DICOM servers refused or unanswered."),
    ("dicom_tls_connections_total", "counter", ("server", "outcome"), "",
     "TLS connections on DICOM ports, by handshake outcome."),
    ("dicomsniffd_label_overflow_total", "counter", ("label",), "",
     "Label values folded into 'other' because a cardinality cap was reached."),
)  # fmt: skip


def _expand(labels: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for label in labels:
        out.extend(_AE if label == "*ae" else (label,))
    return tuple(out)


CATALOGUE: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    name: (kind, _expand(labels), buckets, help_text)
    for name, kind, labels, buckets, help_text in _CATALOGUE
}

# Labels with a cardinality cap: the overflow counter is always exported for them (at 0)
# so an alert on it has a series to look at.
_CAPPED_LABELS = ("calling_ae", "called_ae", "server", "sop_class")

# Sub-operation counts live in these fields of the final C-MOVE/C-GET response.
_SUBOP_FIELDS = (
    ("completed", "suboperations_completed"),
    ("failed", "suboperations_failed"),
    ("warning", "suboperations_warning"),
)

# N-GET carries its data set in the response; every other command in the request.
_RESPONSE_DATASET_COMMANDS = frozenset({"N-GET"})


def _clean_bounds(bounds: tuple[float, ...]) -> tuple[float, ...]:
    """Sorted, unique, finite upper bounds (+Inf is implicit and always added)."""
    return tuple(sorted({float(b) for b in bounds if math.isfinite(b)}))


class MetricsStore:
    """Every DESIGN §4 metric, fed by the pipeline, published by ``collect()``."""

    def __init__(self, config: MetricsConfig) -> None:
        self.config = config
        self._bounds: dict[str, tuple[float, ...]] = {}
        self._values: dict[str, dict[Key, float]] = {}
        self._hists: dict[str, dict[Key, list[float]]] = {}
        for name, (kind, _labels, buckets, _help) in CATALOGUE.items():
            if kind == "histogram":
                self._bounds[name] = _clean_bounds(getattr(config, buckets))
                self._hists[name] = {}
            else:
                self._values[name] = {}
        overflow = self._values["dicomsniffd_label_overflow_total"]
        for label in _CAPPED_LABELS:
            overflow[(label,)] = 0
        # Distinct values admitted per capped label family; bounded by the caps.
        self._ae_seen: set[str] = set()
        self._servers_seen: set[str] = set()
        self._sop_seen: set[str] = set()
        # flow_id -> AE label key under which the association was counted active, so the
        # gauge goes down under the same key even if the labels changed in between.
        self._active: dict[int, Key] = {}
        # id(presentation contexts tuple) -> (the tuple, its label values); see
        # _context_labels. Bounded; the tuple is kept so its id cannot be reused.
        self._pc_memo: dict[int, tuple[tuple, list[tuple[str, str, str]]]] = {}
        self._self_stats_source: Callable[[], SelfStats] | None = None
        self._workers: dict[str, dict[str, Any]] = {}
        self._build_info: tuple[str, str, str, str] | None = None
        self._renderers: dict[str, _FamilyText] | None = None  # render_text(), built lazily
        self._handlers: dict[type, Callable[[Any, Any], None]] = {
            AssociationRequested: self._on_requested,
            AssociationAccepted: self._on_accepted,
            AssociationRejected: self._on_rejected,
            Aborted: self._on_aborted,
            AssociationEnded: self._on_ended,
            DimseRequestSeen: self._on_request,
            DimseResponseSeen: self._on_response,
            DimseTransaction: self._on_transaction,
            ProtocolError: self._on_protocol_error,
            Resynchronised: self._on_resync,
        }
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # -- cardinality caps --------------------------------------------------------------------

    def _capped(self, value: str, seen: set[str], cap: int, label: str) -> str:
        if value in seen:
            return value
        if len(seen) < cap:
            seen.add(value)
            return value
        self._values["dicomsniffd_label_overflow_total"][(label,)] = (
            self._values["dicomsniffd_label_overflow_total"].get((label,), 0) + 1
        )
        return OTHER

    def ae_label(self, title: str, label: str = "ae_title") -> str:
        """The metric label value for an AE title: the title while fewer than
        ``max_ae_titles`` distinct titles (calling and called together) have been seen,
        then ``other``; each fold into ``other`` counts once under ``label``."""
        if not self.config.ae_title_labels:
            return ALL
        if not title or title == UNKNOWN:
            return UNKNOWN
        if title == OTHER:
            return OTHER
        return self._capped(title, self._ae_seen, self.config.max_ae_titles, label)

    def server_label(self, server: str) -> str:
        """The ``server`` label value ("ip:port") under the ``max_servers`` cap.

        Idempotent: an already capped value (``other``) passes through uncounted, so the
        pipeline may hand either the raw endpoint or its label to the sinks."""
        if not server or server in (OTHER, UNKNOWN):
            return server or UNKNOWN
        return self._capped(server, self._servers_seen, self.config.max_servers, "server")

    def sop_class_label(self, uid: str, label: str = "sop_class") -> str:
        """Keyword of a SOP class UID (``private``/``unknown`` outside the dictionary),
        capped at ``max_sop_classes``; never the UID itself."""
        if not self.config.sop_class_label:
            return ALL
        keyword = sop_class_keyword(uid)
        if keyword in (UNKNOWN, "private"):
            return keyword
        return self._capped(keyword, self._sop_seen, self.config.max_sop_classes, label)

    # -- hot-path primitives -----------------------------------------------------------------

    def _inc(self, name: str, key: Key, amount: float = 1) -> None:
        values = self._values[name]
        values[key] = values.get(key, 0) + amount

    def _observe(self, name: str, key: Key, value: float) -> None:
        rows = self._hists[name]
        bounds = self._bounds[name]
        row = rows.get(key)
        if row is None:
            row = rows[key] = [0] * (len(bounds) + 2)
        # bisect_left: a value equal to a bound belongs to that bucket ("le").
        row[bisect_left(bounds, value)] += 1
        row[-1] += value

    @staticmethod
    def _ae(flow: Any) -> Key:
        return (flow.calling_ae_label, flow.called_ae_label)

    # -- sink interface ----------------------------------------------------------------------

    def handle(self, event: Any, flow: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event, flow)

    def tcp_event(
        self, kind: str, sender: str, flow: Any, value: float = 0.0, ts: float | None = None
    ) -> None:
        if kind == "retransmission":
            self._inc("dicom_tcp_retransmitted_segments_total", (*self._ae(flow), sender))
        elif kind == "zero-window":
            self._inc("dicom_tcp_zero_window_total", (*self._ae(flow), sender))
        elif kind == "reset":
            self._inc("dicom_tcp_resets_total", (*self._ae(flow), sender))
        elif kind == "handshake-rtt":
            self._observe("dicom_tcp_handshake_rtt_seconds", self._ae(flow), value)
        # "duplicate" and "out-of-order" are capture facts, not DICOM health: not exported.

    def add_bytes(self, kind: str, sender: str, nbytes: int, flow: Any) -> None:
        if nbytes <= 0:
            return
        if kind == "pdata":
            self._inc("dicom_pdata_bytes_total", (*self._ae(flow), sender), nbytes)
        elif kind == "missed":
            self._inc("dicom_capture_missed_bytes_total", (*self._ae(flow), sender), nbytes)

    def connection_failure(self, server_label: str, reason: str, ts: float | None = None) -> None:
        server = self.server_label(server_label)
        self._inc("dicom_tcp_connection_failures_total", (server, reason))

    def tls_connection(self, server_label: str, outcome: str, ts: float | None = None) -> None:
        server = self.server_label(server_label)
        self._inc("dicom_tls_connections_total", (server, outcome))

    def set_self_stats_source(self, fn: Callable[[], SelfStats]) -> None:
        """``fn`` is called at every scrape/snapshot; it returns one SelfStats dict."""
        self._self_stats_source = fn

    # -- events ------------------------------------------------------------------------------

    def _on_requested(self, event: AssociationRequested, flow: Any) -> None:
        key = self._ae(flow)
        self._inc("dicom_association_requests_total", key)
        if flow.flow_id not in self._active:
            self._active[flow.flow_id] = key
            self._inc("dicom_associations_active", key)

    def _on_accepted(self, event: AssociationAccepted, flow: Any) -> None:
        ae = self._ae(flow)
        if event.setup_seconds is not None:
            self._observe("dicom_association_setup_seconds", ae, event.setup_seconds)
        values = self._values["dicom_presentation_contexts_total"]
        for labels in self._context_labels(event.presentation_contexts):
            key = (*ae, *labels)
            values[key] = values.get(key, 0) + 1

    def _context_labels(self, contexts: tuple) -> list[tuple[str, str, str]]:
        """(abstract syntax, transfer syntax, result) label values of each context.

        Memoised by the identity of the contexts tuple: the DICOM core hands the same
        (frozen) tuple to every association that negotiated byte-identical PDUs. Only a
        computation that folded nothing into ``other`` is kept, so a memo hit has no side
        effect to repeat (admitted label values stay admitted; a fold would be counted).
        """
        memo = self._pc_memo.get(id(contexts))
        if memo is not None and memo[0] is contexts:
            return memo[1]
        overflow = self._values["dicomsniffd_label_overflow_total"]
        folded_before = overflow.get(("abstract_syntax",), 0)
        labels = []
        for pc in contexts:
            labels.append(
                (
                    self.sop_class_label(pc.abstract_syntax, "abstract_syntax"),
                    transfer_syntax_keyword(pc.accepted_transfer_syntax) if pc.result == 0 else "",
                    context_result(pc.result),
                )
            )
        if overflow.get(("abstract_syntax",), 0) == folded_before:
            if len(self._pc_memo) >= _PC_MEMO_ENTRIES:
                self._pc_memo.clear()
            self._pc_memo[id(contexts)] = (contexts, labels)  # keeps `contexts` alive
        return labels

    def _on_rejected(self, event: AssociationRejected, flow: Any) -> None:
        ae = self._ae(flow)
        self._inc(
            "dicom_association_rejects_total", (*ae, event.result, event.source, event.reason)
        )
        if event.setup_seconds is not None:
            self._observe("dicom_association_setup_seconds", ae, event.setup_seconds)

    def _on_aborted(self, event: Aborted, flow: Any) -> None:
        self._inc("dicom_association_aborts_total", (*self._ae(flow), event.source, event.reason))

    def _on_ended(self, event: AssociationEnded, flow: Any) -> None:
        ae = self._ae(flow)
        self._inc("dicom_association_ends_total", (*ae, event.how))
        active_key = self._active.pop(flow.flow_id, None)
        if active_key is not None:
            self._inc("dicom_associations_active", active_key, -1)
        if event.duration_seconds is not None:
            self._observe("dicom_association_duration_seconds", ae, event.duration_seconds)

    def _on_request(self, event: DimseRequestSeen, flow: Any) -> None:
        sop = self.sop_class_label(event.sop_class_uid)
        self._inc("dicom_dimse_requests_total", (*self._ae(flow), event.command, sop))

    def _on_response(self, event: DimseResponseSeen, flow: Any) -> None:
        key = (*self._ae(flow), event.command, status_hex(event.status), event.status_class)
        self._inc("dicom_dimse_responses_total", key)

    def _on_transaction(self, event: DimseTransaction, flow: Any) -> None:
        key = (*self._ae(flow), event.command)
        if event.duration_seconds is not None:
            self._observe("dicom_dimse_duration_seconds", key, event.duration_seconds)
        if event.request_transfer_seconds is not None:
            self._observe(
                "dicom_dimse_request_transfer_seconds", key, event.request_transfer_seconds
            )
        if event.response_latency_seconds is not None:
            self._observe(
                "dicom_dimse_response_latency_seconds", key, event.response_latency_seconds
            )
        if event.command in _RESPONSE_DATASET_COMMANDS:
            dataset = event.response_dataset_bytes
        else:
            dataset = event.request_dataset_bytes
        # Commands without a data set (C-ECHO, N-DELETE...) would only pile up in the
        # first bucket and hide the sizes that matter.
        if dataset > 0:
            self._observe("dicom_dimse_dataset_bytes", key, dataset)
        if event.outcome.startswith("unanswered"):
            self._inc("dicom_dimse_unanswered_total", key)
        elif event.command in ("C-MOVE", "C-GET"):
            for outcome, field in _SUBOP_FIELDS:
                count = getattr(event, field)
                if count:
                    self._inc("dicom_suboperations_total", (*key, outcome), count)

    def _on_protocol_error(self, event: ProtocolError, flow: Any) -> None:
        self._inc("dicom_protocol_errors_total", (*self._ae(flow), event.kind))

    def _on_resync(self, event: Resynchronised, flow: Any) -> None:
        self._inc("dicom_protocol_errors_total", (*self._ae(flow), "resync"))

    # -- snapshots (DESIGN §6) ---------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain, picklable data (safe to send to a parent process).

        Copies are taken with ``list(dict.items())`` and list slicing, which run in C
        without releasing the GIL: the capture thread may keep counting meanwhile without
        breaking the iteration ("dictionary changed size").
        """
        values = {name: dict(list(rows.items())) for name, rows in self._values.items()}
        hists = {
            name: {key: row[:] for key, row in list(rows.items())}
            for name, rows in self._hists.items()
        }
        return {
            "format": SNAPSHOT_FORMAT,
            "bounds": dict(self._bounds),
            "values": values,
            "hists": hists,
            "self_stats": self._read_self_stats(),
        }

    def merge_snapshot(self, worker: str, snap: dict[str, Any]) -> None:
        """Remember the latest snapshot of ``worker``; collect() exports own state plus
        the latest snapshot of every worker. A newer snapshot replaces the older one
        (snapshots are cumulative). Raises ValueError when the histogram buckets differ
        (workers must run with the parent's metrics config)."""
        if snap.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"snapshot format {snap.get('format')!r} not supported")
        for name, bounds in snap["bounds"].items():
            if name in self._bounds and tuple(bounds) != self._bounds[name]:
                raise ValueError(f"worker {worker}: buckets of {name} differ from the parent's")
        self._workers[worker] = snap

    def _merged(self) -> dict[str, Any]:
        # Worker snapshots are never modified (a newer one replaces them whole), and
        # neither are the merged rows: a family that only one source has is taken over
        # by a C-level dict copy, sharing the worker's histogram rows.
        merged = self.snapshot()
        for snap in list(self._workers.values()):
            for name, rows in snap["values"].items():
                target = merged["values"].get(name)
                if not target:
                    merged["values"][name] = dict(rows)
                    continue
                for key, value in rows.items():
                    target[key] = target.get(key, 0) + value
            for name, rows in snap["hists"].items():
                target = merged["hists"].get(name)
                if not target:
                    merged["hists"][name] = dict(rows)
                    continue
                for key, row in rows.items():
                    mine = target.get(key)
                    target[key] = (
                        row[:] if mine is None else [a + b for a, b in zip(mine, row, strict=True)]
                    )
        return merged

    def _read_self_stats(self) -> list[SelfStats]:
        if self._self_stats_source is None:
            return []
        try:
            return [self._self_stats_source()]
        except Exception:  # a scrape must never fail because of a statistics source
            log.exception("self statistics source failed")
            return []

    # -- collection --------------------------------------------------------------------------

    def _all_self_stats(self, merged: dict[str, Any]) -> list[SelfStats]:
        self_stats = list(merged["self_stats"])
        for worker, snap in list(self._workers.items()):
            for stats in snap.get("self_stats", ()):
                self_stats.append({**stats, "worker": worker})
        return self_stats

    def collect(self) -> Iterator[Metric]:
        merged = self._merged()
        self_stats = self._all_self_stats(merged)
        for name, (kind, labels, _buckets, help_text) in CATALOGUE.items():
            if kind == "histogram":
                yield self._histogram_family(name, labels, help_text, merged["hists"][name])
            else:
                family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                family = family_type(name, help_text, labels=labels)
                for key, value in sorted(merged["values"].get(name, {}).items()):
                    family.add_metric(key, value)
                yield family
        yield from self._self_families(self_stats)
        yield self._build_info_family()

    def _histogram_family(
        self, name: str, labels: tuple[str, ...], help_text: str, rows: dict[Key, list[float]]
    ) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, help_text, labels=labels)
        bounds = self._bounds[name]
        for key, row in sorted(rows.items()):
            buckets: list[tuple[str, float]] = []
            cumulative = 0
            for bound, count in zip(bounds, row, strict=False):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            cumulative += row[len(bounds)]
            buckets.append(("+Inf", cumulative))
            family.add_metric(list(key), buckets, row[-1])
        return family

    @staticmethod
    def _self_families(stats_list: list[SelfStats]) -> Iterator[Metric]:
        packets = CounterMetricFamily(
            "dicomsniffd_packets_total", "Packets captured.", labels=("worker",)
        )
        nbytes = CounterMetricFamily(
            "dicomsniffd_bytes_total", "Bytes captured.", labels=("worker",)
        )
        dropped = CounterMetricFamily(
            "dicomsniffd_capture_dropped_packets_total",
            "Packets dropped before the sniffer saw them (kernel buffer, interface).",
            labels=("worker", "where"),
        )
        flows = GaugeMetricFamily(
            "dicomsniffd_flows_active", "TCP flows in the flow table.", labels=("worker",)
        )
        evictions = CounterMetricFamily(
            "dicomsniffd_flow_evictions_total",
            "Flows evicted from the flow table, by reason.",
            labels=("worker", "reason"),
        )
        buffered = GaugeMetricFamily(
            "dicomsniffd_reassembly_buffered_bytes",
            "Bytes held in out-of-order reassembly buffers.",
            labels=("worker",),
        )
        for stats in stats_list:
            worker = str(stats.get("worker", "0"))
            packets.add_metric((worker,), stats.get("packets", 0))
            nbytes.add_metric((worker,), stats.get("bytes", 0))
            for where, count in sorted(stats.get("dropped", {}).items()):
                dropped.add_metric((worker, where), count)
            flows.add_metric((worker,), stats.get("flows_active", 0))
            for reason, count in sorted(stats.get("evictions", {}).items()):
                evictions.add_metric((worker, reason), count)
            buffered.add_metric((worker,), stats.get("buffered_bytes", 0))
        yield from (packets, nbytes, dropped, flows, evictions, buffered)

    def _build_info_family(self) -> GaugeMetricFamily:
        if self._build_info is None:
            self._build_info = (
                __version__,
                _package_version("pcapy-ng"),
                _libpcap_version(),
                platform.python_version(),
            )
        family = GaugeMetricFamily(
            "dicomsniffd_build_info",
            "Versions of dicomsniffd and its capture stack.",
            labels=("version", "pcapy_ng", "libpcap", "python"),
        )
        family.add_metric(self._build_info, 1)
        return family

    # -- direct text exposition --------------------------------------------------------------

    def render_text(self) -> bytes:
        """The Prometheus text format 0.0.4 of ``collect()``, byte for byte what
        ``generate_latest`` makes of it, without building Metric objects.

        Each series' line up to its value (name, escaped and sorted labels) is cached per
        label key and each value's text per value, both as UTF-8 bytes, so a scrape is
        mostly dict lookups and C-level joins (docs/performance.md, "Scrape cost")."""
        merged = self._merged()
        out: list[bytes] = []
        renderers = self._renderers
        if renderers is None:
            renderers = self._renderers = {
                name: _FamilyText(name, kind, labels, help_text, self._bounds.get(name, ()))
                for name, (kind, labels, _buckets, help_text) in CATALOGUE.items()
            }
        for name, renderer in renderers.items():
            if renderer.kind == "histogram":
                renderer.histogram(out, merged["hists"][name])
            else:
                renderer.values(out, merged["values"].get(name, {}))
        # The few self-statistics and build-info samples go through prometheus-client's
        # own families, so their layout cannot drift from collect().
        for family in (*self._self_families(self._all_self_stats(merged)),
                       self._build_info_family()):  # fmt: skip
            _family_text(out, family)
        return b"".join(out)

    def exposition(self) -> bytes:
        """The Prometheus text format of the current (merged) state."""
        return self.render_text()


# -- text exposition helpers (the format of prometheus_client.exposition.generate_latest) --

_RENDER_CACHE_SLACK = 1024  # cached label keys beyond the live ones before a cache reset
_VALUE_CACHE_MAX = 65536


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels_text(labels: dict[str, str]) -> str:
    """``{a="x",b="y"}`` with names sorted, as generate_latest writes them; '' if none."""
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(labels.items())) + "}"


def _header(name: str, kind: str, help_text: str) -> bytes:
    doc = help_text.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n".encode()


class _CountText(dict):
    """Value -> b"text\\n" for values that are never -0.0 (cumulative bucket counts,
    which start from int 0). Bounded: cleared when full."""

    def __missing__(self, value: float) -> bytes:
        text = floatToGoString(value).encode() + b"\n"
        if len(self) >= _VALUE_CACHE_MAX:
            self.clear()
        self[value] = text
        return text


class _ValueText(dict):
    """Value -> b"text\\n" for any value. Zero is never stored: 0 and -0.0 are one dict
    key but print differently ("0.0" / "-0.0")."""

    def __missing__(self, value: float) -> bytes:
        text = floatToGoString(value).encode() + b"\n"
        if value != 0:
            if len(self) >= _VALUE_CACHE_MAX:
                self.clear()
            self[value] = text
        return text


_COUNTS = _CountText()
_VALUES = _ValueText()


class _FamilyText:
    """The text exposition of one catalogue family, with its per-key line prefixes."""

    __slots__ = ("kind", "header", "labels", "sample", "les", "with_sum", "prefixes")

    def __init__(
        self, name: str, kind: str, labels: tuple[str, ...], help_text: str,
        bounds: tuple[float, ...],
    ) -> None:  # fmt: skip
        self.kind = kind
        self.labels = labels
        if kind == "counter":
            # CounterMetricFamily drops a "_total" suffix; generate_latest adds it back.
            base = name[:-6] if name.endswith("_total") else name
            name = self.sample = base + "_total"
        else:
            self.sample = name
        self.header = _header(name, kind, help_text)
        self.les = (*(floatToGoString(b) for b in bounds), "+Inf")
        # HistogramMetricFamily leaves out _count and _sum when the first bucket is < 0.
        self.with_sum = float(self.les[0]) >= 0
        self.prefixes: dict[Key, Any] = {}

    def _prefix(self, key: Key) -> bytes:
        return f"{self.sample}{_labels_text(dict(zip(self.labels, key, strict=False)))} ".encode()

    def _hist_prefixes(self, key: Key) -> tuple[bytes, ...]:
        pairs = list(zip(self.labels, key, strict=False))  # as add_metric
        names = sorted(dict(pairs))
        if "le" in names:  # not in the catalogue; the general (slow) form
            out = [f"{self.sample}_bucket{_labels_text(dict([*pairs, ('le', le)]))} "
                   for le in self.les]  # fmt: skip
        else:
            # Escape and sort the labels once; "le" goes where sorting would put it.
            parts = [
                f'{name}="{_escape_value(value)}"' for name, value in sorted(dict(pairs).items())
            ]
            cut = bisect_left(names, "le")
            head = "".join(part + "," for part in parts[:cut])
            tail = "".join("," + part for part in parts[cut:])
            out = [f'{self.sample}_bucket{{{head}le="{le}"{tail}}} ' for le in self.les]
        if self.with_sum:
            plain = _labels_text(dict(pairs))
            out += (f"{self.sample}_count{plain} ", f"{self.sample}_sum{plain} ")
        return tuple(line.encode() for line in out)

    def _cache(self, n_live: int) -> dict[Key, Any]:
        prefixes = self.prefixes
        if len(prefixes) > n_live + _RENDER_CACHE_SLACK:
            prefixes.clear()  # label keys that no longer exist (merged workers changed)
        return prefixes

    def values(self, out: list[bytes], rows: dict[Key, float]) -> None:
        out.append(self.header)
        if not rows:
            return
        prefixes = self._cache(len(rows))
        keys = sorted(rows)
        heads = [prefixes.get(key) or prefixes.setdefault(key, self._prefix(key)) for key in keys]
        texts = map(_VALUES.__getitem__, map(rows.__getitem__, keys))
        out.extend(chain.from_iterable(zip(heads, texts, strict=True)))

    def histogram(self, out: list[bytes], rows: dict[Key, list[float]]) -> None:
        out.append(self.header)
        if not rows:
            return
        prefixes = self._cache(len(rows))
        counts = _COUNTS.__getitem__
        with_sum = self.with_sum
        extend = out.extend
        for key in sorted(rows):
            heads = prefixes.get(key)
            if heads is None:
                heads = prefixes[key] = self._hist_prefixes(key)
            row = rows[key]
            # As collect(): cumulative from int 0 over every bucket and +Inf; the last
            # one is the count. row[-1] is the sum.
            cumulative = list(accumulate(row[:-1], initial=0))
            del cumulative[0]
            # zip stops at the buckets: heads ends with the _count and _sum prefixes.
            extend(chain.from_iterable(zip(heads, map(counts, cumulative), strict=False)))
            if with_sum:
                extend((heads[-2], counts(cumulative[-1]), heads[-1], _VALUES[row[-1]]))


def _family_text(out: list[bytes], family: Metric) -> None:
    """generate_latest's text for one prometheus-client family (counter, gauge,
    histogram; no timestamps, no _created/_gsum samples)."""
    name = family.name + "_total" if family.type == "counter" else family.name
    out.append(_header(name, family.type, family.documentation))
    for sample in family.samples:
        line = f"{sample.name}{_labels_text(sample.labels)} {floatToGoString(sample.value)}\n"
        out.append(line.encode())


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN


def _libpcap_version() -> str:
    """Version of the libpcap pcapy-ng actually uses.

    pcapy-ng has no version call, and its wheels bundle their own libpcap (which is
    not the system one), so ask the library mapped into this process after importing
    pcapy: dlopen of an already loaded path returns that same library.
    """
    try:
        import pcapy  # noqa: F401  (loads the bundled libpcap into the process)

        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            paths = {line.split()[-1] for line in maps if "libpcap" in line and "/" in line}
        for path in sorted(paths):
            func = ctypes.CDLL(path).pcap_lib_version
            func.restype = ctypes.c_char_p
            match = re.search(rb"libpcap version ([0-9][\w.\-]*)", func() or b"")
            if match:
                return match.group(1).decode("ascii")
    except Exception:  # build info is cosmetic: never let it break a scrape
        log.debug("libpcap version not found", exc_info=True)
    return UNKNOWN

"""MetricsStore: the sink that turns events into the catalogue's plain counters.

The hot path only touches plain dicts: ``{family name: {label tuple: number}}`` for
counters and gauges, ``{family name: {label tuple: [bucket counts..., +Inf, sum]}}`` for
histograms. No prometheus-client child objects are ever created; Metric objects
(collectors.py) or text (exposition.py) are made at scrape time from a merged snapshot
(snapshots.py) of those dicts.
"""

from __future__ import annotations

import functools
import logging
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from dicomsniffd.config import MetricsConfig
from dicomsniffd.dicom.events import (
    ACCEPTOR,
    REQUESTOR,
    Aborted,
    AssociationAccepted,
    AssociationEnded,
    AssociationRejected,
    AssociationRequested,
    DimseRequestSeen,
    DimseResponseSeen,
    DimseTransaction,
    ProtocolError,
    ProtocolViolation,
    Resynchronised,
    Stalled,
    UserInformation,
)
from dicomsniffd.dicom.problems import RESYNC
from dicomsniffd.names import context_result, transfer_syntax_keyword
from dicomsniffd.sinks.dispatch import EventSink
from dicomsniffd.sinks.metrics import snapshots
from dicomsniffd.sinks.metrics.catalogue import STORE_FAMILIES, Key, SelfStats
from dicomsniffd.sinks.metrics.labels import LabelCaps

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from dicomsniffd.sinks.metrics.exposition import TextExposition

# prometheus-client (~30 ms to import, with the HTTP and e-mail modules it pulls in) is
# needed to publish, not to count: collectors.py and exposition.py, which import it, are
# imported by the methods that publish, so `analyze FILE` without --metrics starts without.

log = logging.getLogger(__name__)

_PC_MEMO_ENTRIES = 1024
_IMPLEMENTATION_INFO = (
    "dicom_implementation_info"  # distinct negotiated context lists remembered per MetricsStore
)

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


class MetricsStore(LabelCaps, EventSink):
    """Every DESIGN §4 metric, fed by the pipeline, published by ``collect()`` (a
    prometheus-client custom Collector) and ``render_text()``."""

    EVENTS: ClassVar[dict[type, str]] = {
        AssociationRequested: "_on_requested",
        AssociationAccepted: "_on_accepted",
        AssociationRejected: "_on_rejected",
        Aborted: "_on_aborted",
        AssociationEnded: "_on_ended",
        DimseRequestSeen: "_on_request",
        DimseResponseSeen: "_on_response",
        DimseTransaction: "_on_transaction",
        ProtocolError: "_on_protocol_error",
        Resynchronised: "_on_resync",
        Stalled: "_on_stall",
        ProtocolViolation: "_on_protocol_violation",
    }

    def __init__(self, config: MetricsConfig) -> None:
        super().__init__()
        self.config = config
        self._bounds: dict[str, tuple[float, ...]] = {}
        self._values: dict[str, dict[Key, float]] = {}
        self._hists: dict[str, dict[Key, list[float]]] = {}
        for family in STORE_FAMILIES:
            if family.kind == "histogram":
                self._bounds[family.name] = _clean_bounds(getattr(config, family.buckets))
                self._hists[family.name] = {}
            else:
                self._values[family.name] = {}
        # name -> (its rows, its bounds): one lookup per observation (_observe)
        self._hist_rows = {name: (self._hists[name], self._bounds[name]) for name in self._hists}
        # The per-DIMSE-message families, bound once: their handlers run 3-4 times per
        # association and count into these dicts directly, without an _inc/_observe call
        # and its family lookup each (the rows dicts are never replaced, only filled).
        self._requests = self._values["dicom_dimse_requests_total"]
        self._responses = self._values["dicom_dimse_responses_total"]
        # ... and the once-per-association ones (2-3 counts each per association)
        self._association_requests = self._values["dicom_association_requests_total"]
        self._associations_active = self._values["dicom_associations_active"]
        self._association_ends = self._values["dicom_association_ends_total"]
        self._contexts = self._values["dicom_presentation_contexts_total"]
        self._pdata_bytes = self._values["dicom_pdata_bytes_total"]
        # DimseTransaction's phases, in the order _on_transaction observed them one by one
        self._phases = tuple(
            (field, *self._hist_rows[name])
            for field, name in (
                ("duration_seconds", "dicom_dimse_duration_seconds"),
                ("request_transfer_seconds", "dicom_dimse_request_transfer_seconds"),
                ("response_latency_seconds", "dicom_dimse_response_latency_seconds"),
                ("response_transfer_seconds", "dicom_dimse_response_transfer_seconds"),
            )
        )
        self._init_caps()
        # flow_id -> AE label key under which the association was counted active, so the
        # gauge goes down under the same key even if the labels changed in between.
        self._active: dict[int, Key] = {}
        # id(presentation contexts tuple) -> (the tuple, its label values); see
        # _context_labels. Bounded; the tuple is kept so its id cannot be reused.
        self._pc_memo: dict[int, tuple[tuple, list[tuple[str, str, str]]]] = {}
        # (ae label, side) -> the dicom_implementation_info key it has now: one series per
        # AE and side (the latest software wins), so the family is bounded by the AE cap.
        self._implementations: dict[tuple[str, str], Key] = {}
        self._self_stats_source: Callable[[], SelfStats] | None = None
        self._workers: dict[str, snapshots.Snapshot] = {}
        self._text: TextExposition | None = None  # render_text(), built lazily

    # -- hot-path primitives -----------------------------------------------------------------

    def _inc(self, name: str, key: Key, amount: float = 1) -> None:
        values = self._values[name]
        values[key] = values.get(key, 0) + amount

    def _observe(self, name: str, key: Key, value: float) -> None:
        rows, bounds = self._hist_rows[name]
        row = rows.get(key)
        if row is None:
            row = rows[key] = [0] * (len(bounds) + 2)
        # bisect_left: a value equal to a bound belongs to that bucket ("le").
        row[bisect_left(bounds, value)] += 1
        row[-1] += value

    @staticmethod
    def _ae(flow: Any) -> Key:
        return (flow.calling_ae_label, flow.called_ae_label)

    # -- sink interface (handle() is EventSink's: EVENTS above) ------------------------------

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
            key = (flow.calling_ae_label, flow.called_ae_label)  # _ae, inlined
            self._observe("dicom_tcp_handshake_rtt_seconds", key, value)
        # "duplicate" and "out-of-order" are capture facts, not DICOM health: not exported.

    def add_bytes(self, kind: str, sender: str, nbytes: int, flow: Any) -> None:
        if nbytes <= 0:
            return
        if kind == "pdata":  # twice per association: _ae and _inc inlined
            key = (flow.calling_ae_label, flow.called_ae_label, sender)
            values = self._pdata_bytes
            values[key] = values.get(key, 0) + nbytes
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

    def _implementation(self, ae: str, side: str, info: UserInformation) -> None:
        key = (ae, side, info.implementation_class_uid, info.implementation_version_name)
        old = self._implementations.get((ae, side))
        if old == key:
            return
        values = self._values[_IMPLEMENTATION_INFO]
        if old is not None:
            values.pop(old, None)
        self._implementations[(ae, side)] = key
        values[key] = 1

    def _on_requested(self, event: AssociationRequested, flow: Any) -> None:
        self._implementation(flow.calling_ae_label, REQUESTOR, event.user_info)
        key = (flow.calling_ae_label, flow.called_ae_label)  # _ae and _inc, inlined
        values = self._association_requests
        values[key] = values.get(key, 0) + 1
        if flow.flow_id not in self._active:
            self._active[flow.flow_id] = key
            values = self._associations_active
            values[key] = values.get(key, 0) + 1

    def _on_accepted(self, event: AssociationAccepted, flow: Any) -> None:
        self._implementation(flow.called_ae_label, ACCEPTOR, event.user_info)
        ae = (flow.calling_ae_label, flow.called_ae_label)  # _ae, inlined
        if event.setup_seconds is not None:
            self._observe("dicom_association_setup_seconds", ae, event.setup_seconds)
        values = self._contexts
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
        ae = (flow.calling_ae_label, flow.called_ae_label)  # _ae and _inc, inlined
        key = (*ae, event.how)
        values = self._association_ends
        values[key] = values.get(key, 0) + 1
        active_key = self._active.pop(flow.flow_id, None)
        if active_key is not None:
            values = self._associations_active
            values[active_key] = values.get(active_key, 0) - 1
        if event.duration_seconds is not None:
            self._observe("dicom_association_duration_seconds", ae, event.duration_seconds)

    # The per-message handlers spell out _ae(flow): one call and one tuple less each.

    def _on_request(self, event: DimseRequestSeen, flow: Any) -> None:
        sop = self.sop_class_label(event.sop_class_uid)
        key = (flow.calling_ae_label, flow.called_ae_label, event.command, sop)
        values = self._requests  # _inc, inlined
        values[key] = values.get(key, 0) + 1

    def _on_response(self, event: DimseResponseSeen, flow: Any) -> None:
        # status_label's memo of settled values first: two calls less per response
        status = self._status_labels.get(event.status) or self.status_label(event.status)
        key = (
            flow.calling_ae_label,
            flow.called_ae_label,
            event.command,
            status,
            event.status_class,
        )
        values = self._responses  # _inc, inlined
        values[key] = values.get(key, 0) + 1

    def _on_transaction(self, event: DimseTransaction, flow: Any) -> None:
        key = (flow.calling_ae_label, flow.called_ae_label, event.command)
        for field, rows, bounds in self._phases:  # _observe of each phase, inlined
            value = getattr(event, field)
            if value is not None:
                row = rows.get(key)
                if row is None:
                    row = rows[key] = [0] * (len(bounds) + 2)
                row[bisect_left(bounds, value)] += 1
                row[-1] += value
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
        self._inc("dicom_protocol_errors_total", (*self._ae(flow), RESYNC))

    def _on_stall(self, event: Stalled, flow: Any) -> None:
        key = (*self._ae(flow), event.sender, event.cause)
        self._inc("dicom_tcp_stalls_total", key)
        self._inc("dicom_tcp_stall_seconds_total", key, event.seconds)

    def _on_protocol_violation(self, event: ProtocolViolation, flow: Any) -> None:
        key = (*self._ae(flow), event.kind, event.sender)
        self._inc("dicom_protocol_violations_total", key)

    # -- snapshots (snapshots.py, DESIGN §6) -------------------------------------------------

    def snapshot(self) -> snapshots.Snapshot:
        """The whole state as plain, picklable data (safe to send to a parent process)."""
        return snapshots.take(self._values, self._hists, self._bounds, self._read_self_stats())

    def merge_snapshot(self, worker: str, snap: snapshots.Snapshot) -> None:
        """Remember the latest snapshot of ``worker``; collect() exports own state plus
        the latest snapshot of every worker. A newer snapshot replaces the older one
        (snapshots are cumulative). Raises ValueError when the histogram buckets differ
        (workers must run with the parent's metrics config)."""
        snapshots.check(worker, snap, self._bounds)
        self._workers[worker] = snap

    def _merged(self) -> snapshots.Snapshot:
        merged = snapshots.merge(self.snapshot(), list(self._workers.values()))
        # An info gauge is 1, also when several workers saw the same AE run the same
        # software (the merge adds values). The merged rows are copies: safe to set.
        info = merged["values"].get(_IMPLEMENTATION_INFO)
        if info and self._workers:
            merged["values"][_IMPLEMENTATION_INFO] = dict.fromkeys(info, 1)
        return merged

    def _read_self_stats(self) -> list[SelfStats]:
        if self._self_stats_source is None:
            return []
        try:
            return [self._self_stats_source()]
        except Exception:  # a scrape must never fail because of a statistics source
            log.exception("self statistics source failed")
            return []

    # -- publication -------------------------------------------------------------------------

    @functools.cached_property
    def registry(self) -> CollectorRegistry:
        """A prometheus-client registry holding this store (``generate_latest(registry)``,
        ``start_http_server(registry=...)``), made on first use."""
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry

    def _extra_families(self, merged: snapshots.Snapshot) -> list[Metric]:
        """The families after the store's own: self statistics of every worker, build info."""
        from dicomsniffd.sinks.metrics.collectors import build_info_family, self_stats_families

        self_stats = snapshots.all_self_stats(merged, self._workers)
        return [*self_stats_families(self_stats), build_info_family()]

    def collect(self) -> Iterator[Metric]:
        from dicomsniffd.sinks.metrics.collectors import store_families

        merged = self._merged()
        extra = self._extra_families(merged)  # of the same moment as the merged state
        yield from store_families(merged, self._bounds)
        yield from extra

    def render_text(self, after: Iterable[Metric] = ()) -> bytes:
        """The Prometheus text format 0.0.4 of ``collect()`` and then of the families
        in ``after`` (the daemon's own, catalogue source "daemon"), byte for byte what
        ``generate_latest`` makes of them, without building the store's Metric objects
        (exposition.py)."""
        merged = self._merged()
        if self._text is None:
            from dicomsniffd.sinks.metrics.exposition import TextExposition

            self._text = TextExposition(self._bounds)
        return self._text.render(merged, [*self._extra_families(merged), *after])

    def exposition(self) -> bytes:
        """The Prometheus text format of the current (merged) state."""
        return self.render_text()

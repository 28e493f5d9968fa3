"""Per-transaction records for the HTML report: a bounded sample of the DIMSE transactions
plus an exact throughput time series, filled by the ``Summary`` sink while it collects
(the text summary and ``--json`` do not use them).
"""

from __future__ import annotations

from typing import Any

from dicomsniffd.dicom.events import DimseTransaction

TRACE_CAP = 20_000  # records kept in total
_NOTABLE_CAP = 5_000  # of which non-success ones (failures, warnings, unanswered, gaps)
_SERIES_BUCKETS = 512  # throughput time series: at most this many buckets
_SERIES_BASE_WIDTH = 0.125  # seconds; doubled whenever the span needs more buckets
_COMMENT_CAP = 256


class TransactionLog:
    """A bounded sample of DimseTransaction records plus an exact throughput time series.

    Non-success transactions (the ones a reader looks for) are kept first-come up to
    ``_NOTABLE_CAP``; successful ones are decimated evenly over the whole capture (when
    the buffer is full every other record is dropped and the sampling stride doubles), so
    charts of a million-transaction capture still span its whole time range. ``dropped``
    counts what was not kept. Records never hold dataset content or instance UIDs.
    """

    FIELDS = (
        "flow_id",
        "command",
        "sop_class_uid",
        "context_id",
        "message_id",
        "status",
        "status_class",
        "outcome",
        "request_ts",
        "request_complete_ts",
        "response_ts",
        "request_transfer_seconds",
        "response_latency_seconds",
        "duration_seconds",
        "request_dataset_bytes",
        "response_dataset_bytes",
        "complete",
        "error_comment",
        "response_transfer_seconds",
        "request_sender",
    )

    def __init__(self, cap: int = TRACE_CAP, notable_cap: int = _NOTABLE_CAP) -> None:
        self.total = 0
        self._notable_cap = min(notable_cap, cap)
        self._ok_cap = max(cap - self._notable_cap, 2)
        self._notable: list[tuple] = []
        self._ok: list[tuple] = []
        self._ok_seen = 0
        self._stride = 1
        self.notable_dropped = 0
        self._width = _SERIES_BASE_WIDTH
        self._buckets: dict[int, list[float]] = {}  # key -> [bytes, transactions, failures]
        self._low = self._high = 0  # the smallest and largest key in _buckets

    @property
    def dropped(self) -> int:
        return self.total - len(self._notable) - len(self._ok)

    def add(self, event: DimseTransaction, flow_id: int) -> None:
        self.total += 1
        self._add_to_series(event)
        notable = event.status_class != "success" or not event.complete
        if notable:
            if len(self._notable) < self._notable_cap:
                self._notable.append(self._record(event, flow_id))
            else:
                self.notable_dropped += 1
            return
        seq = self._ok_seen
        self._ok_seen += 1
        if seq % self._stride:
            return
        if len(self._ok) >= self._ok_cap:
            self._ok = self._ok[::2]
            self._stride *= 2
            if seq % self._stride:
                return
        self._ok.append(self._record(event, flow_id))

    @staticmethod
    def _record(e: DimseTransaction, flow_id: int) -> tuple:
        return (
            flow_id,
            e.command,
            e.sop_class_uid,
            e.context_id,
            e.message_id,
            e.status,
            e.status_class,
            e.outcome,
            e.request_ts,
            e.request_complete_ts,
            e.response_ts,
            e.request_transfer_seconds,
            e.response_latency_seconds,
            e.duration_seconds,
            e.request_dataset_bytes,
            e.response_dataset_bytes,
            e.complete,
            e.error_comment[:_COMMENT_CAP],
            e.response_transfer_seconds,
            e.request_sender,
        )

    def records(self) -> list[dict[str, Any]]:
        """The kept records as dicts (keys: ``FIELDS``), in request time order."""
        rows = sorted(self._notable + self._ok, key=lambda r: (r[8], r[0], r[4]))
        return [dict(zip(self.FIELDS, row, strict=True)) for row in rows]

    # throughput time series -------------------------------------------------------------

    def _bump(self, ts: float, nbytes: float, count: int, failures: int) -> None:
        key = int(ts // self._width)
        slot = self._buckets.get(key)
        if slot is None:
            # a new bucket: keep the span under _SERIES_BUCKETS (the bounds are kept, not
            # searched for: min/max over 512 keys per new bucket was most of this method)
            if not self._buckets:
                self._low = self._high = key
            while max(self._high, key) - min(self._low, key) >= _SERIES_BUCKETS:
                self._merge()
                key = int(ts // self._width)
            self._low, self._high = min(self._low, key), max(self._high, key)
            slot = self._buckets.get(key)
            if slot is None:
                slot = self._buckets[key] = [0.0, 0, 0]
        slot[0] += nbytes
        slot[1] += count
        slot[2] += failures

    def _merge(self) -> None:
        merged: dict[int, list[float]] = {}
        for key, (nbytes, count, failures) in self._buckets.items():
            slot = merged.setdefault(key // 2, [0.0, 0, 0])
            slot[0] += nbytes
            slot[1] += count
            slot[2] += failures
        self._buckets = merged
        self._width *= 2
        self._low //= 2
        self._high //= 2

    def _add_to_series(self, e: DimseTransaction) -> None:
        failed = 1 if e.status_class == "failure" else 0
        start = e.request_ts
        end = e.request_complete_ts
        nbytes = float(e.request_dataset_bytes)
        if nbytes and end is not None and end > start:
            # spread the upload over the buckets its transfer spans
            ts = start
            while ts < end:
                step_end = min(end, (ts // self._width + 1) * self._width)
                if step_end <= ts:  # float rounding at a bucket edge
                    step_end = end
                self._bump(ts, nbytes * (step_end - ts) / (end - start), 0, 0)
                ts = step_end
        elif nbytes:
            self._bump(start, nbytes, 0, 0)
        if e.response_dataset_bytes:
            self._bump(e.response_ts or start, float(e.response_dataset_bytes), 0, 0)
        self._bump(e.response_complete_ts or e.response_ts or start, 0.0, 1, failed)

    def series(self) -> dict[str, Any]:
        """Exact per-bucket totals over the whole capture: ``{"bucket_seconds": w,
        "points": [(bucket_start_ts, dataset_bytes, transactions, failures), ...]}``."""
        return {
            "bucket_seconds": self._width,
            "points": [
                (key * self._width, slot[0], int(slot[1]), int(slot[2]))
                for key, slot in sorted(self._buckets.items())
            ],
        }

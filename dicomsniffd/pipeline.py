"""The one pipeline shared by `analyze` and `run`: frames → segments → flows → streams → sinks.

This module is the wiring only: a Pipeline owns one flow table, the stream detector that
classifies its flows (streams/detect.py: DICOM, TLS) and the emitter that fans every
handler's calls out to the sinks (streams/emitter.py), and counts what it was fed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

from dicomsniffd.capture.records import BatchRecords
from dicomsniffd.config import Config
from dicomsniffd.flows import FlowTable
from dicomsniffd.sinks.dispatch import Sink
from dicomsniffd.streams.detect import StreamDetector
from dicomsniffd.streams.emitter import Emitter, Labels

_EXPIRE_EVERY_S = 1.0


def _record_ts(record: Sequence[int]) -> float:
    return record[0] + record[1] * 1e-6


def _sliced(records: Sequence[Any], start: int, stop: int) -> Sequence[Any]:
    """``records[start:stop]``, as packed records when they were (the compiled decoder
    reads those without building a tuple per record)."""
    packed = getattr(records, "packed", None)
    if packed is None:
        return records[start:stop]
    return BatchRecords(packed[4 * start : 4 * stop].tobytes())


class Pipeline:
    """Frames in, sink calls out. One instance per worker process."""

    def __init__(
        self,
        config: Config,
        sinks: Sequence[Sink],
        worker: str = "0",
        *,
        labels: Labels | None = None,
    ) -> None:
        """``labels``: the metric label caps (the MetricsStore among ``sinks``); None: no caps."""
        self.config = config
        self.sinks = list(sinks)
        self.worker = worker
        self.emitter = Emitter(self.sinks, labels)
        self.streams = StreamDetector(config.dicom, config.transactions, self.emitter)
        self.handlers = self.streams.handlers  # the live DICOM handlers (the same dict)
        self.flows = FlowTable(config.flows, self.streams.classify, self.streams.connection_failure)
        self._next_expiry = 0.0
        self.packets = 0
        self.bytes = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.dropped = {"kernel": 0, "interface": 0}

    # -- packets ---------------------------------------------------------------------------

    def process_batch(self, decoder: Any, packet_bytes: bytes, records: Iterable[Any]) -> None:
        """Run one batch of (sec, usec, offset, caplen) records through decode and flows.

        The decoder's batch interface reads the frames in place in ``packet_bytes`` and
        hands each segment straight to the flow table: one call per batch here instead of
        a frame copy and a decode call per packet (see docs/performance.md).

        Timeouts run right after the first packet at or after each expiry instant, whatever
        the batch size: a batch that reaches the next instant is split there. Otherwise a flow
        idle past its timeout is evicted or revived depending on whether its next packet
        shares a batch with the instant (a days-long gap in a capture file became a
        days-long association, or not, with ``capture.batch_size``). Busy captures cross
        an instant about once per second of capture time: a binary search then.
        """
        emit = self.flows.emit_for(decoder)  # the compiled Bypass, or FlowTable.segment
        if type(records) is not BatchRecords and not isinstance(records, Sequence):
            records = list(records)
        while records and _record_ts(records[-1]) >= self._next_expiry:
            # up to the first packet at or after the instant, that packet included (as
            # when it ended a batch), then the timeouts at its time
            k = bisect_left(records, self._next_expiry, key=_record_ts) + 1
            self._decode(decoder, packet_bytes, _sliced(records, 0, k), emit)
            self.expire(_record_ts(records[k - 1]))
            records = _sliced(records, k, len(records))
        if records:
            self._decode(decoder, packet_bytes, records, emit)

    def _decode(self, decoder: Any, packet_bytes: bytes, records: Sequence[Any], emit: Any) -> None:
        packets, nbytes, ts = decoder.decode_batch(packet_bytes, records, emit)
        if packets:
            if self.first_ts is None:
                self.first_ts = ts if packets == 1 else self._first_ts_of(records)
            self.last_ts = ts
            self.packets += packets
            self.bytes += nbytes

    @staticmethod
    def _first_ts_of(records: Iterable[Any]) -> float:
        for sec, usec, _offset, _caplen in records:
            return sec + usec * 1e-6
        return 0.0

    def expire(self, now: float) -> None:
        """Timeouts run on the capture clock, about once per second of capture time."""
        self._next_expiry = now + _EXPIRE_EVERY_S
        self.flows.expire(now)
        for handler in list(self.handlers.values()):
            handler.expire(now)

    def finish(self, ts: float | None = None) -> None:
        """End of capture (or shutdown): every open flow is closed as seen so far."""
        end = ts if ts is not None else (self.last_ts or 0.0)
        self.flows.close_all(end)

    def flush(self) -> None:
        """Publish counters kept on live flows (before a scrape)."""
        self.flows.sync()  # what the compiled bypass consumed since, into the handlers
        for handler in list(self.handlers.values()):
            handler.flush()

    # -- self metrics ----------------------------------------------------------------------

    def self_stats(self) -> dict[str, Any]:
        flows = self.flows
        return {
            "worker": self.worker,
            "packets": self.packets,
            "bytes": self.bytes,
            "dropped": dict(self.dropped),
            "flows_active": flows.flows_active,
            "evictions": dict(flows.evictions),
            "buffered_bytes": flows.buffered_bytes,
        }

"""Offline analysis: capture files through the same pipeline the daemon runs live."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dicomsniffd.capture import CaptureError, FileSource
from dicomsniffd.config import Config
from dicomsniffd.decode import COUNTER_NAMES, Decoder
from dicomsniffd.pipeline import Pipeline
from dicomsniffd.sinks.dispatch import Sink
from dicomsniffd.streams.emitter import Labels

# The cyclic collector during analyze: the pipeline makes and drops several hundred
# objects per short association (flows, events, records), so with Python's default
# (700, 10, 10) a collection runs every few packets and the full ones traverse every
# object imported at start-up. Measured on 10,000 short associations (in process, best of
# 3): default 333 µs per association, (20,000, 10, 10) without freezing 312, with the
# start-up objects frozen 292 (-12 %). The oldest generation still runs every 2 M
# allocations, so the flows' reference cycles are freed well within a batch of
# associations (bench_scale.py: peak RSS unchanged).
_GC_THRESHOLDS = (20_000, 10, 10)


@contextmanager
def _collector_for_analysis() -> Iterator[None]:
    """The collector tuned for the analysis (above), as it was afterwards."""
    before = gc.get_threshold()
    gc.freeze()  # what exists now (modules, config) lives to the end: never traverse it
    gc.set_threshold(*_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def analyze_files(
    paths: Sequence[str],
    config: Config,
    sinks: Sequence[Sink],
    *,
    labels: Labels | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Feed every file, in time order, through one pipeline; return the capture info.

    ``labels``: the metric label caps (the MetricsStore among ``sinks``), as for Pipeline.
    ``progress``: called after every batch (not every packet) with ``(bytes read so far
    over all files, packets so far)``; the bytes are estimated within a file (see
    FileSource.position) and exact at each file's end, so they reach the sum of the file
    sizes. The caller throttles what it shows (e.g. cli's progress bar).

    Files are read one after the other into the same flow table, so a capture split by
    `tcpdump -C` or `editcap -c` is analysed as one. They are read in the order of their
    first packet's timestamp, whatever order they were given in (a shell glob sorts
    ``cap.pcap10`` before ``cap.pcap2``); ``files`` is the order used and
    ``files_reordered`` says whether it differs from the order given. Files that overlap
    in time cannot be put in order this way: CaptureError saying to merge them first.

    A file that breaks part way (cut short, or a corrupt record header) keeps the packets
    before the break; ``broken_files`` says where each broke (see FileSource.broken) and
    ``truncated_files`` lists those cut short. Raises CaptureError (one-line message) for
    a file that cannot be opened or has an unsupported link type.
    """
    with _collector_for_analysis():
        return _analyze(paths, config, sinks, labels, progress)


def _analyze(
    paths: Sequence[str],
    config: Config,
    sinks: Sequence[Sink],
    labels: Labels | None,
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    ordered = _time_order(paths)
    pipeline = Pipeline(config, sinks, labels=labels)
    decode_totals = dict.fromkeys(COUNTER_NAMES, 0)
    truncated_files: list[str] = []
    broken_files: list[dict[str, Any]] = []
    batch_size = config.capture.batch_size
    done = 0  # bytes of the files read to their end, for ``progress``
    previous: tuple[str, float] | None = None  # the last file read, and its last packet's time
    for path, first_ts in ordered:
        if previous is not None and first_ts is not None and first_ts < previous[1]:
            raise CaptureError(_overlap_message(previous[0], path, ordered))
        source = FileSource(path)
        decoders = {source.linktype: _decoder(path, source.linktype)}
        packets_before = pipeline.packets
        size = _size(path) if progress is not None else 0
        # One decoder per link type: a pcapng may mix them (FileSource.link_batches).
        for linktype, packet_bytes, records in source.link_batches(batch_size):
            decoder = decoders.get(linktype) or decoders.setdefault(
                linktype, _decoder(path, linktype)
            )
            pipeline.process_batch(decoder, packet_bytes, records)
            if progress is not None:
                at = source.position()
                progress(done + (min(at, size) if size else at), pipeline.packets)
        if progress is not None:
            done += size or source.position()
            progress(done, pipeline.packets)
        if pipeline.packets > packets_before and pipeline.last_ts is not None:
            previous = (path, pipeline.last_ts)
        if getattr(source, "truncated_file", False):
            truncated_files.append(path)
        if getattr(source, "broken", None):
            broken_files.append(source.broken)
        for decoder in decoders.values():
            for name in COUNTER_NAMES:
                decode_totals[name] += getattr(decoder, name)
    pipeline.finish()
    flows = pipeline.flows
    files = [path for path, _ in ordered]
    return {
        "files": files,
        "files_reordered": files != list(paths),
        "truncated_files": truncated_files,
        "broken_files": broken_files,
        "packets": pipeline.packets,
        "bytes": pipeline.bytes,
        "first_ts": pipeline.first_ts,
        "last_ts": pipeline.last_ts,
        "truncated_packets": decode_totals["truncated"],
        "missed_bytes": _missed_bytes(sinks),
        "decode": decode_totals,
        "flows": {
            "evictions": dict(flows.evictions),
            "retransmissions": getattr(flows, "retransmissions", 0),
            "duplicates": getattr(flows, "duplicates", 0),
            "out_of_order": getattr(flows, "out_of_order", 0),
            # connections dropped because dicomsniffd's own code raised (logged once)
            "failed_connections": getattr(flows, "failed_flows", 0),
        },
        "_pipeline": pipeline,
    }


def _size(path: str) -> int:
    """A file's size in bytes; 0 when unknown (not a regular file, e.g. a FIFO)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _decoder(path: str, linktype: int) -> Decoder:
    try:
        return Decoder(linktype)
    except CaptureError as exc:  # unsupported link type: say which file
        raise CaptureError(f"{path}: {exc}") from None


def _first_ts(path: str) -> float | None:
    """The timestamp of a file's first packet (None if it has none): one small read."""
    with FileSource(path) as source:
        for _data, records in source.batches(1):
            for sec, usec, _offset, _caplen in records:
                return sec + usec * 1e-6
    return None


def _time_order(paths: Sequence[str]) -> list[tuple[str, float | None]]:
    """``(path, first packet's time)`` sorted by that time; files without packets last.

    The sort is stable: files starting at the same time keep the order they were given in.
    A single file is not read ahead (there is nothing to order), so it may be a FIFO.
    """
    if len(paths) == 1:
        return [(paths[0], None)]
    firsts = [(path, _first_ts(path)) for path in paths]
    return sorted(firsts, key=lambda item: (item[1] is None, item[1] or 0.0))


def _overlap_message(earlier: str, later: str, ordered: Sequence[tuple[str, Any]]) -> str:
    files = " ".join(path for path, _ in ordered)
    return (
        f"capture files overlap in time: {later} starts before {earlier} ends, so they "
        f"cannot be read one after the other; merge them by timestamp first, e.g. "
        f"mergecap -w merged.pcapng {files}, and analyse merged.pcapng"
    )


def _missed_bytes(sinks: Sequence[Sink]) -> int:
    for sink in sinks:
        total = getattr(sink, "missed_bytes_total", None)
        if total is not None:
            return int(total() if callable(total) else total)
    return 0

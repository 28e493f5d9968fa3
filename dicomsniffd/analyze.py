"""Offline analysis: capture files through the same pipeline the daemon runs live."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dicomsniffd.capture import CaptureError, FileSource
from dicomsniffd.config import Config
from dicomsniffd.decode import COUNTER_NAMES, Decoder
from dicomsniffd.pipeline import Pipeline
from dicomsniffd.sinks.dispatch import Sink
from dicomsniffd.streams.emitter import Labels


def analyze_files(
    paths: Sequence[str],
    config: Config,
    sinks: Sequence[Sink],
    *,
    labels: Labels | None = None,
) -> dict[str, Any]:
    """Feed every file, in the order given, through one pipeline; return the capture info.

    ``labels``: the metric label caps (the MetricsStore among ``sinks``), as for Pipeline.

    Files are read one after the other into the same flow table, so a capture split by
    `tcpdump -C` or `editcap -c` is analysed as one. Raises CaptureError (one-line message)
    for a file that cannot be read or has an unsupported link type.
    """
    pipeline = Pipeline(config, sinks, labels=labels)
    decode_totals = dict.fromkeys(COUNTER_NAMES, 0)
    truncated_files: list[str] = []
    batch_size = config.capture.batch_size
    for path in paths:
        source = FileSource(path)
        try:
            decoder = Decoder(source.linktype)
        except CaptureError as exc:  # unsupported link type: say which file
            raise CaptureError(f"{path}: {exc}") from None
        for packet_bytes, records in source.batches(batch_size):
            pipeline.process_batch(decoder, packet_bytes, records)
        if getattr(source, "truncated_file", False):
            truncated_files.append(path)
        for name in COUNTER_NAMES:
            decode_totals[name] += getattr(decoder, name)
    pipeline.finish()
    flows = pipeline.flows
    return {
        "files": list(paths),
        "truncated_files": truncated_files,
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
        },
        "_pipeline": pipeline,
    }


def _missed_bytes(sinks: Sequence[Sink]) -> int:
    for sink in sinks:
        total = getattr(sink, "missed_bytes_total", None)
        if total is not None:
            return int(total() if callable(total) else total)
    return 0

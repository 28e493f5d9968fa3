"""Real DICOM traffic for the TCP diagnosis tests (loss, stalls): DCMTK and pynetdicom
peers between network namespaces, and what dicomsniffd and tshark make of a capture."""

from __future__ import annotations

import io
import os
import subprocess

from peers import make_ct

from dicomsniffd.analyze import analyze_files
from dicomsniffd.config import load_config
from dicomsniffd.sinks.eventlog import EventLog
from dicomsniffd.sinks.metrics import MetricsStore
from dicomsniffd.sinks.summary import Summary


def series(workdir: str, n: int, size: int, number: int) -> list[str]:
    """``n`` synthetic CT images of ``size``² pixels (paths)."""
    return [p for p, _ in make_ct.make_series(os.path.join(workdir, f"s{number}"), n, size,
                                              series=number)]  # fmt: skip


def analyze(pcap: str) -> dict:
    """dicomsniffd's view of a capture: the summary, the metrics text and the event lines."""
    config = load_config(None)
    metrics = MetricsStore(config.metrics)
    summary = Summary()
    events = io.StringIO()
    info = analyze_files([pcap], config, [metrics, summary, EventLog(events)], labels=metrics)
    info.pop("_pipeline", None)
    return {
        "summary": summary.to_dict(info),
        "metrics": metrics.exposition().decode(),
        "events": events.getvalue(),
    }


def tshark_count(pcap: str, display_filter: str) -> int:
    """Frames tshark's TCP analysis flags with ``display_filter`` (data segments only)."""
    out = subprocess.run(
        ["tshark", "-r", pcap, "-n", "-Y", f"({display_filter}) and tcp.len > 0",
         "-T", "fields", "-e", "frame.number"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    return len(out.split())

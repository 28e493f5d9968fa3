"""Per-packet cost of the evidence flight recorder, CPU time on one core.

    python3 benchmarks/evidence_cost.py CAPTURE     (e.g. benchmarks/make_capture.py's)

The capture is read into memory once; then, three times each, interleaved (A B A B): the
pipeline alone ("off": what the daemon does with evidence.directory empty), the recorder's
``batch`` followed by the pipeline ("on"), and the recorder alone. The best run is printed.
"""

import os
import resource
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dicomsniffd.capture import FileSource
from dicomsniffd.config import Config, EvidenceConfig
from dicomsniffd.decode import Decoder
from dicomsniffd.evidence.recorder import FlightRecorder
from dicomsniffd.pipeline import Pipeline
from dicomsniffd.sinks.metrics import MetricsStore

PATH = sys.argv[1]
batches = []
with FileSource(PATH) as src:
    lt = src.linktype
    for data, rec in src.batches(512):
        batches.append((data, rec))
packets = sum(len(r) for _d, r in batches)


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(with_recorder: bool) -> float:
    cfg = Config()
    m = MetricsStore(cfg.metrics)
    sinks = [m]
    rec = None
    if with_recorder:
        rec = FlightRecorder(EvidenceConfig(directory=tempfile.mkdtemp()), lt)
        sinks.append(rec)
    p = Pipeline(cfg, sinks, labels=m)
    dec = Decoder(lt)
    t = cpu()
    for data, r in batches:
        if rec is not None:
            rec.batch(data, r)
        p.process_batch(dec, data, r)
    p.finish()
    return cpu() - t


def recorder_only() -> float:
    rec = FlightRecorder(EvidenceConfig(directory=tempfile.mkdtemp()), lt)
    t = cpu()
    for data, r in batches:
        rec.batch(data, r)
    return cpu() - t


res = {"off": [], "on": [], "recorder": []}
for _ in range(3):
    res["off"].append(run(False))
    res["on"].append(run(True))
    res["recorder"].append(recorder_only())
for k, v in res.items():
    best = min(v)
    print(
        f"{k:9} best {best:.3f} s CPU for {packets} packets = {best / packets * 1e6:.2f} us/packet  (runs {', '.join(f'{x:.3f}' for x in v)})"
    )

"""Per-layer cost in ns per packet (best of N, CPU time): read, decode, flows, everything.

    python3 benchmarks/layers.py CAPTURE

The decode and flows rows run on batches held in memory (read once up front), so they
exclude the file read; "analyze_files" is the whole pipeline with the real sinks.
"""

from __future__ import annotations

import os
import sys
import time

# this checkout's package, not whatever `pip install -e` points at
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dicomsniffd.analyze import analyze_files  # noqa: E402
from dicomsniffd.capture import FileSource, raw_read_loop  # noqa: E402
from dicomsniffd.config import load_config  # noqa: E402
from dicomsniffd.decode import Decoder  # noqa: E402
from dicomsniffd.flows import FlowTable  # noqa: E402
from dicomsniffd.sinks.metrics import MetricsStore  # noqa: E402
from dicomsniffd.sinks.summary import Summary  # noqa: E402


class _Nop:
    def data(self, d: int, data: bytes, ts: float) -> None:
        pass

    def gap(self, d: int, n: int, ts: float) -> None:
        pass

    def tcp_event(self, kind: str, d: int, ts: float, value: float = 0.0) -> None:
        pass

    def close(self, how: str, ts: float) -> None:
        pass


def main(path: str) -> int:
    cfg = load_config(None)
    with FileSource(path) as src:
        linktype = src.linktype
        batches = [(buf, list(rec)) for buf, rec in src.batches(512)]
    n = sum(len(r) for _, r in batches)

    def timed(name: str, fn, reps: int = 5) -> None:
        best = float("inf")
        for _ in range(reps):
            t0 = time.process_time()
            fn()
            best = min(best, time.process_time() - t0)
        print(f"{name:36s} {best * 1e9 / n:7.0f} ns/pkt")

    def walk() -> None:
        for _buf, rec in batches:
            for _rec in rec:
                pass

    def decode_only() -> None:
        d = Decoder(linktype)
        for buf, rec in batches:
            d.decode_batch(buf, rec, "".format)  # a C callable of any arity that keeps nothing

    def decode_flows() -> None:
        d = Decoder(linktype)
        ft = FlowTable(cfg.flows, lambda info, direction, data: _Nop(), lambda *a: None)
        for buf, rec in batches:
            d.decode_batch(buf, rec, ft.segment)

    timed("raw_read_loop (file)", lambda: raw_read_loop(path))
    timed("walk records (in memory)", walk)
    timed("decode_batch, C emit", decode_only)
    timed("decode_batch + flows (nop handler)", decode_flows)
    timed(
        "analyze_files (file)",
        lambda: _analyze(path, cfg),
        3,
    )
    return 0


def _analyze(path: str, cfg) -> object:
    metrics = MetricsStore(cfg.metrics)
    return analyze_files([path], cfg, [metrics, Summary()], labels=metrics)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

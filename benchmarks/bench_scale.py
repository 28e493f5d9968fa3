"""Analyze at scale: memory and speed over many batches of concurrent short associations.

    python3 benchmarks/bench_scale.py [--concurrency 10000] [--batches 10] [--runs 1]
    python3 benchmarks/bench_scale.py --batches 100            # 1 M associations
    python3 benchmarks/bench_scale.py --write /tmp/x.pcap       # only write the capture
    python3 benchmarks/bench_scale.py --tree /tmp/base          # another checkout's analyze

The capture is ``--batches`` copies of make_many_flows.py's capture (``--concurrency``
associations open at once: two C-STOREs, a C-ECHO or a C-FIND each, ~26 packets), each
copy with its own client addresses (10.<1 + batch>.x.y, IPv4 checksums mended) and
timestamps ``--pause-s`` after the previous copy ends. The pause (default 15 s) is longer
than flows.closed_timeout_s (10 s), so the closed flows of one batch have left the flow
table when the next starts, as on a real site (a million associations a day is ~12 a
second, so a few hundred flows linger); ``--pause-s 0`` measures the lingering flows too.

It is generated on the fly: one batch is built with pynetdicom (cached in
benchmarks/out/, gitignored), then each copy is patched with numpy and written into a
FIFO that ``dicomsniffd analyze FIFO --json`` reads, under ``/usr/bin/time -v``; nothing
large is written to disk. The counts in the JSON must be exactly the generator's
(associations, per-command requests and responses), else the run fails. Printed per run:
peak RSS, CPU seconds (user + sys) of the analyze process, associations per CPU second.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT_DIR = os.path.join(HERE, "out")
_PCAP_HEADER = bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")  # LE, EN10MB
_T0_US = 1_700_000_000 * 1_000_000


class Template:
    """One batch as pcap records (numpy bytes) and where each copy must be patched."""

    def __init__(self, concurrency: int, gap_us: int) -> None:
        sys.path.insert(0, HERE)
        import make_many_flows as mmf

        conns, expected = mmf.build(concurrency)
        frames: list[bytes] = []
        step = 0
        live = conns
        while live:  # make_many_flows.write's order: every association open at once
            frames.extend(c.steps[step] for c in live)
            step += 1
            live = [c for c in live if len(c.steps) > step]
        lengths = np.array([len(f) for f in frames], dtype=np.int64)
        self.records = self._with_ts_slots(frames)
        starts = np.concatenate(([0], np.cumsum(lengths + 16)[:-1]))
        self.ts_at = starts  # record header: ts_sec, ts_usec, incl_len, orig_len
        frame_at = starts + 16
        from_client = np.array([f[11] == 1 for f in frames])  # source MAC 02:..:01
        # the client address's second octet: the source (26) or destination (30) address
        self.octet_at = frame_at + np.where(from_client, 27, 31)
        self.checksum_at = frame_at + 24  # IPv4 header checksum
        self.offsets_us = np.arange(len(frames), dtype=np.int64) * gap_us
        self.span_us = int(self.offsets_us[-1]) + gap_us
        self.expected = expected
        self.packets = len(frames)

    @staticmethod
    def _with_ts_slots(frames: list[bytes]) -> np.ndarray:
        parts = []
        for f in frames:
            n = len(f).to_bytes(4, "little")
            parts.append(b"\0" * 8 + n + n + f)
        return np.frombuffer(b"".join(parts), dtype=np.uint8)

    def copy(self, batch: int, start_us: int) -> bytes:
        """Batch ``batch`` (0-based) starting at capture time ``start_us``."""
        out = self.records.copy()
        octet = 1 + batch
        old = out[self.octet_at].astype(np.int64)
        out[self.octet_at] = octet
        # RFC 1624: HC' = ~(~HC + ~m + m'), m the 16-bit word with the changed octet
        hc = (out[self.checksum_at].astype(np.int64) << 8) | out[self.checksum_at + 1]
        word_old = (10 << 8) | old
        word_new = (10 << 8) | octet
        x = (~hc & 0xFFFF) + (~word_old & 0xFFFF) + word_new
        x = (x & 0xFFFF) + (x >> 16)
        x = (x & 0xFFFF) + (x >> 16)
        hc = ~x & 0xFFFF
        out[self.checksum_at] = hc >> 8
        out[self.checksum_at + 1] = hc & 0xFF
        ts = start_us + self.offsets_us
        for value, at in ((ts // 1_000_000, self.ts_at), (ts % 1_000_000, self.ts_at + 4)):
            le = value.astype("<u4").view(np.uint8).reshape(-1, 4)
            for i in range(4):
                out[at + i] = le[:, i]
        return out.tobytes()


def template(concurrency: int, gap_us: int) -> Template:
    """The batch, built once per (concurrency, gap) and cached in benchmarks/out/."""
    import pickle

    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, f"scale_template_{concurrency}_{gap_us}.pickle")
    if os.path.exists(path):
        with open(path, "rb") as f:
            return pickle.load(f)
    t = Template(concurrency, gap_us)
    with open(path, "wb") as f:
        pickle.dump(t, f, protocol=pickle.HIGHEST_PROTOCOL)
    return t


def write_capture(out: Any, t: Template, batches: int, pause_s: float) -> None:
    out.write(_PCAP_HEADER)
    start = _T0_US
    for b in range(batches):
        out.write(t.copy(b, start))
        start += t.span_us + int(pause_s * 1_000_000)


def expected_counts(t: Template, batches: int) -> dict[str, int]:
    e = t.expected
    return {
        "associations": e["associations"] * batches,
        "C-STORE": e["C-STORE"] * batches,
        "C-ECHO": e["C-ECHO"] * batches,
        "C-FIND": e["C-FIND"] * batches,
        "C-FIND pending": e["C-FIND pending"] * batches,
        "packets": t.packets * batches,
    }


def measured_counts(data: dict[str, Any]) -> dict[str, int]:
    dimse = data["dimse"]
    return {
        "associations": data["association_totals"]["associations"]
        if "association_totals" in data
        else len(data["associations"]),
        "C-STORE": dimse["C-STORE"]["responses"].get("0x0000", 0),
        "C-ECHO": dimse["C-ECHO"]["responses"].get("0x0000", 0),
        "C-FIND": dimse["C-FIND"]["responses"].get("0x0000", 0),
        "C-FIND pending": dimse["C-FIND"]["responses"].get("0xFF00", 0),
        "packets": data["capture"]["packets"],
    }


def _time_v(stderr: str) -> dict[str, float]:
    def field(name: str) -> float:
        m = re.search(rf"{re.escape(name)}: ([0-9.]+)", stderr)
        return float(m.group(1)) if m else float("nan")

    return {
        "rss_mb": field("Maximum resident set size (kbytes)") / 1024,
        "cpu_s": field("User time (seconds)") + field("System time (seconds)"),
    }


def run(
    t: Template, batches: int, pause_s: float, tree: str, keep_json: str | None, capture: str
) -> dict:
    """One analyze run under /usr/bin/time -v: of ``capture`` (written by --write with the
    same options) if given, else of a FIFO fed while it runs."""
    with tempfile.TemporaryDirectory() as tmp:
        fifo = capture or os.path.join(tmp, "scale.pcap")
        if not capture:
            os.mkfifo(fifo)
        out_json = keep_json or os.path.join(tmp, "out.json")
        env = {**os.environ, "PYTHONPATH": tree}
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "dicomsniffd", "analyze", fifo]
        with open(out_json, "w") as out:
            proc = subprocess.Popen(
                [*cmd, "--json", "--quiet"], stdout=out, stderr=subprocess.PIPE, env=env,
                text=True, cwd=tmp,
            )  # fmt: skip
            errors: list[BaseException] = []

            def feed() -> None:
                if capture:
                    return
                try:
                    with open(fifo, "wb") as f:
                        write_capture(f, t, batches, pause_s)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            writer = threading.Thread(target=feed)
            writer.start()
            _, stderr = proc.communicate()
            writer.join()
        if proc.returncode != 0 or errors:
            raise SystemExit(f"analyze failed ({proc.returncode}, {errors}): {stderr[-2000:]}")
        with open(out_json) as f:
            data = json.load(f)
    stats = _time_v(stderr)
    want, got = expected_counts(t, batches), measured_counts(data)
    if want != got:
        raise SystemExit(f"counts differ: expected {want}, measured {got}")
    n = want["associations"]
    return {
        "associations": n,
        "packets": want["packets"],
        "rss_mb": round(stats["rss_mb"], 1),
        "cpu_s": round(stats["cpu_s"], 2),
        "assoc_per_cpu_s": round(n / stats["cpu_s"]),
        "listed": len(data["associations"]),
        "exact_counts": True,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=10_000)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--pause-s", type=float, default=15.0)
    ap.add_argument("--gap-us", type=int, default=5, help="capture time between packets")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--tree", default=ROOT, help="the checkout whose dicomsniffd runs")
    ap.add_argument("--write", metavar="PATH", help="write the capture there and stop")
    ap.add_argument("--json-out", help="keep the last run's analyze --json output there")
    ap.add_argument(
        "--capture", default="", help="analyse this file (from --write, same options), no FIFO"
    )
    a = ap.parse_args(argv)
    if not 1 <= a.batches <= 254 or not 1 <= a.concurrency <= 65_536:
        ap.error("--batches 1..254 and --concurrency 1..65536 (client addresses 10.B.x.y)")
    t = template(a.concurrency, a.gap_us)
    if a.write:
        with open(a.write, "wb") as f:
            write_capture(f, t, a.batches, a.pause_s)
        print(json.dumps({"path": a.write, **expected_counts(t, a.batches)}))
        return 0
    for i in range(a.runs):
        tree = os.path.abspath(a.tree)
        result = run(t, a.batches, a.pause_s, tree, a.json_out, a.capture)
        print(json.dumps({"run": i + 1, "tree": a.tree, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Offline throughput benchmark: our `analyze` pipeline vs the raw pcapy-ng loop vs tshark.

    python3 benchmarks/bench_analyze.py [--capture FILE] [--many FILE] [--runs 5] [--cpu 1]

Inputs (made when missing, into benchmarks/out/, gitignored):
  --capture  a real C-STORE capture (benchmarks/make_capture.py: DCMTK storescu -> storescp
             between two namespaces over a veth, MTU 1500, offloads off, tcpdump -s 0)
  --many     a generated capture of 10,000 concurrent associations
             (benchmarks/make_many_flows.py; its .expected.json holds the exact counts)

Every measurement runs ``--runs`` times (after one warm-up run), each in a fresh process
pinned to one CPU (``--cpu``; tshark too, through taskset), and the median is printed.
Times are CPU seconds (user + system) of the measured work, not wall time: the dev box
is shared, and CPU time is what "packets per second on one core" means when another
process may be scheduled on the same core (the wall times are in --json):
  raw     capture.raw_read_loop: pcapy-ng next_batch, walk every record, touch nothing
  ours    analyze.analyze_files with the real sinks (MetricsStore, Summary): read, decode,
          flows/reassembly, DICOM core, sinks; timed around analyze_files (interpreter
          start-up and rendering the summary excluded)
  tshark  two runs of tshark (CPU time of the whole tshark process), DICOM on PORT:
          phs     tshark -r FILE -d tcp.port==PORT,dicom -q -z io,phs
                  (the issue's command: a protocol-hierarchy tap, which does not ask the
                  dissectors for a protocol tree)
          status  tshark -r FILE -d tcp.port==PORT,dicom -Y dicom -T fields -e _ws.col.Info
                  (the filter needs the tree: every PDU reassembled and its command set
                  decoded; the Info column names each DIMSE message and its status, e.g.
                  "C-STORE-RSP ID=1 (Success)", i.e. the facts our pipeline extracts.
                  This is the like-for-like comparison, see docs/performance.md)
Then the ratios ours/raw and ours/tshark (both tshark modes), the counts our pipeline
found (so a wrong-but-fast run shows), the many-flows rate against the single-stream rate,
and the peak RSS (getrusage ru_maxrss) of the many-flows run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT_DIR = os.path.join(HERE, "out")
DEFAULT_CAPTURE = os.path.join(OUT_DIR, "cstore.pcap")
DEFAULT_MANY = os.path.join(OUT_DIR, "many_flows.pcap")
PORT = 11112

_COUNTED = re.compile(
    r"^(dicom_dimse_responses_total|dicom_dimse_requests_total|dicom_association_ends_total"
    r"|dicom_association_requests_total|dicom_protocol_errors_total|dicom_dimse_unanswered_total)"
    r"\{(.*)\} (\S+)$"
)


# -- children (one measurement per process) -----------------------------------------------


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def child_raw(path: str) -> dict:
    from dicomsniffd.capture import raw_read_loop

    w, t = time.perf_counter(), time.process_time()
    packets, nbytes = raw_read_loop(path)
    return {"seconds": time.process_time() - t, "wall": time.perf_counter() - w,
            "packets": packets, "bytes": nbytes}  # fmt: skip


def _counts(exposition: str) -> dict:
    """Sum the DICOM counters by the labels that matter for checking correctness."""
    out: dict[str, float] = {}
    for line in exposition.splitlines():
        m = _COUNTED.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        name = m.group(1).removeprefix("dicom_").removesuffix("_total")
        key = name
        for label in ("command", "status", "how", "kind"):
            if label in labels:
                key += f" {labels[label]}"
        out[key] = out.get(key, 0) + float(m.group(3))
    return {k: int(v) for k, v in sorted(out.items())}


def child_ours(path: str) -> dict:
    from dicomsniffd.analyze import analyze_files
    from dicomsniffd.config import load_config
    from dicomsniffd.sinks.metrics import MetricsStore
    from dicomsniffd.sinks.summary import Summary

    config = load_config(None)
    metrics = MetricsStore(config.metrics)
    summary = Summary()
    # --baseline may run an older package whose analyze_files found the caps by itself
    caps = {"labels": metrics} if "labels" in inspect.signature(analyze_files).parameters else {}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    w, t = time.perf_counter(), time.process_time()
    info = analyze_files([path], config, [metrics, summary], **caps)
    seconds = time.process_time() - t
    wall = time.perf_counter() - w
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from dicomsniffd import accel

    return {
        "fast_path": accel.describe(),
        "seconds": seconds,
        "wall": wall,
        "packets": info["packets"],
        "bytes": info["bytes"],
        "rss_before_kb": rss_before,
        "rss_peak_kb": rss_peak,
        "counts": _counts(metrics.exposition().decode()),
        "retransmissions": info["flows"]["retransmissions"],
        "decode": {k: v for k, v in info["decode"].items() if v and k != "packets"},
    }


# -- parent --------------------------------------------------------------------------------


def _run_child(mode: str, path: str, cpu: int | None, root: str = ROOT, pure: bool = False) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), "--child", mode, path]
    if cpu is not None:
        argv += ["--cpu", str(cpu)]
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("DICOMSNIFFD_PURE_PYTHON", None)
    if pure:  # the same code without the compiled hot path (dicomsniffd/accel.py)
        env["DICOMSNIFFD_PURE_PYTHON"] = "1"
    p = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        raise SystemExit(f"benchmark child {mode} failed:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


TSHARK_MODES = {
    # the command: protocol hierarchy statistics (no protocol tree requested)
    "phs": (["-q", "-z", "io,phs"], "dicom"),
    # like for like: a display filter (forces the full tree: PDV reassembly and command-set
    # decoding of every message) and the Info column, which carries each DIMSE message's
    # command and status ("C-STORE-RSP ID=1 (Success)")
    "status": (["-Y", "dicom", "-T", "fields", "-e", "_ws.col.Info"], "-RSP"),
}


def _tshark(path: str, port: int, cpu: int | None, mode: str = "phs") -> float:
    extra, must_see = TSHARK_MODES[mode]
    argv = ["tshark", "-n", "-r", path, "-d", f"tcp.port=={port},dicom", *extra]
    if cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu), *argv]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0 or must_see not in p.stdout:
        raise SystemExit(f"tshark ({mode}) failed or saw no DICOM:\n{p.stderr[-2000:]}")
    return seconds


def _median_runs(fn, runs: int) -> tuple[float, list[float], dict]:
    fn()  # warm-up, not counted: page cache, CPU frequency
    times, walls, last = [], [], {}
    for _ in range(runs):
        r = fn()
        if isinstance(r, dict):
            times.append(r["seconds"])
            walls.append(r["wall"])
            last = r
        else:
            times.append(r)
    last = dict(last, walls=walls)
    return statistics.median(times), times, last


def _ensure(path: str, maker: str, default: str) -> None:
    if os.path.exists(path):
        return
    if path != default:
        raise SystemExit(f"capture not found: {path}")
    print(f"# {path} missing: running benchmarks/{maker} ...", flush=True)
    subprocess.run([sys.executable, os.path.join(HERE, maker), "-o", path], check=True)


def _time_variant(
    path: str, cpu: int | None, runs: int, compiled: dict, root: str = ROOT, pure: bool = False
) -> tuple[float, str, str]:
    """Another tree (``root``, e.g. --baseline) or the pure-Python path (``pure``) on the same
    capture: (pkt/s, run times, whether its counts are those of ``compiled``)."""
    s, times, r = _median_runs(lambda: _run_child("ours", path, cpu, root, pure), runs)
    same = "same" if r["counts"] == compiled["counts"] else "DIFFER"
    return r["packets"] / s, _fmt_times(times), same


def _fmt_times(times: list[float]) -> str:
    return " ".join(f"{t:.3f}" for t in times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capture", default=DEFAULT_CAPTURE)
    ap.add_argument("--many", default=DEFAULT_MANY)
    ap.add_argument("--port", type=int, default=PORT)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tshark-runs", type=int, default=3)
    ap.add_argument(
        "--cpu", type=int, default=1, help="pin every measurement to this CPU (-1: no pinning)"
    )
    ap.add_argument("--no-many", action="store_true")
    ap.add_argument("--no-tshark", action="store_true")
    ap.add_argument(
        "--no-pure",
        action="store_true",
        help="do not also time the pure-Python path (DICOMSNIFFD_PURE_PYTHON=1)",
    )
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument(
        "--baseline",
        metavar="ROOT",
        help="also time `ours` with the dicomsniffd package found under ROOT "
        "(e.g. a copy of an older version), in the same run, after this one; with the "
        "pure-Python path too unless --no-pure",
    )
    ap.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    cpu = None if a.cpu < 0 else a.cpu

    if a.child:
        _pin(cpu)
        sys.path.insert(0, os.environ.get("PYTHONPATH", ROOT).split(os.pathsep)[0])
        mode, path = a.child
        result = child_raw(path) if mode == "raw" else child_ours(path)
        print(json.dumps(result))
        return 0

    _ensure(a.capture, "make_capture.py", DEFAULT_CAPTURE)
    if not a.no_many:
        _ensure(a.many, "make_many_flows.py", DEFAULT_MANY)

    print(f"# python {sys.version.split()[0]}, cpu pin {cpu}, runs {a.runs} (median), CPU seconds")
    res: dict = {"capture": a.capture}
    raw_s, raw_t, raw = _median_runs(lambda: _run_child("raw", a.capture, cpu), a.runs)
    packets = raw["packets"]
    print(f"capture      {a.capture}: {packets} packets, {raw['bytes'] / 1e6:.1f} MB")
    print(f"raw loop     {packets / raw_s:12,.0f} pkt/s   ({_fmt_times(raw_t)} s)")
    ours_s, ours_t, ours = _median_runs(lambda: _run_child("ours", a.capture, cpu), a.runs)
    assert ours["packets"] == packets, (ours["packets"], packets)
    ours_pps = packets / ours_s
    print(f"ours         {ours_pps:12,.0f} pkt/s   ({_fmt_times(ours_t)} s)  [{ours['fast_path']}]")
    if not a.no_pure:
        pure_pps, times, same = _time_variant(a.capture, cpu, a.runs, ours, pure=True)
        print(
            f"pure Python  {pure_pps:12,.0f} pkt/s   ({times} s)"
            f"  compiled/pure {ours_pps / pure_pps:.2f}x  [counts {same}]"
        )
        res["pure_pps"] = pure_pps
        res["pure_counts_same"] = same == "same"
    base_root = os.path.abspath(a.baseline) if a.baseline else None
    if base_root:
        base_pps, times, same = _time_variant(a.capture, cpu, a.runs, ours, base_root)
        print(f"baseline     {base_pps:12,.0f} pkt/s   ({times} s)  [{a.baseline}; counts {same}]")
        res["baseline_pps"] = base_pps
        if not a.no_pure:  # the before/after of the pure-Python path too
            bp_pps, times, same = _time_variant(a.capture, cpu, a.runs, ours, base_root, True)
            print(f"baseline pure{bp_pps:12,.0f} pkt/s   ({times} s)  [counts {same}]")
            res["baseline_pure_pps"] = bp_pps
    res.update(packets=packets, raw_pps=packets / raw_s, ours_pps=ours_pps,
               raw_times=raw_t, ours_times=ours_t, counts=ours["counts"],
               raw_walls=raw["walls"], ours_walls=ours["walls"])  # fmt: skip
    tshark_s: dict[str, float] = {}
    if not a.no_tshark:
        for mode in TSHARK_MODES:
            ts_s, ts_t, _ = _median_runs(
                lambda mode=mode: _tshark(a.capture, a.port, cpu, mode), a.tshark_runs
            )
            tshark_s[mode] = ts_s
            print(f"tshark {mode:6s}{packets / ts_s:12,.0f} pkt/s   ({_fmt_times(ts_t)} s)")
            suffix = "" if mode == "phs" else f"_{mode}"
            res.update({f"tshark{suffix}_pps": packets / ts_s, f"tshark{suffix}_times": ts_t})
    print(f"ours/raw     {ours_s and raw_s / ours_s:12.3f}")
    for mode, ts_s in tshark_s.items():
        print(f"ours/tshark  {ts_s / ours_s:12.2f}x  ({mode})")
    print(f"counts       {json.dumps(ours['counts'])}")
    print(f"             retransmissions {ours['retransmissions']}, decode {ours['decode']}")

    if not a.no_many:
        exp_path = a.many + ".expected.json"
        expected = None
        if os.path.exists(exp_path):
            with open(exp_path) as f:
                expected = json.load(f)
        many_s, many_t, many = _median_runs(lambda: _run_child("ours", a.many, cpu), a.runs)
        many_pps = many["packets"] / many_s
        peak = many["rss_peak_kb"] / 1024
        print(f"many flows   {a.many}: {many['packets']} packets")
        print(f"many flows   {many_pps:12,.0f} pkt/s   ({_fmt_times(many_t)} s)")
        print(f"many/single  {many_pps / ours_pps:12.3f}")
        if not a.no_pure:
            pure_many_pps, times, same = _time_variant(a.many, cpu, a.runs, many, pure=True)
            print(
                f"pure Python  {pure_many_pps:12,.0f} pkt/s   ({times} s)"
                f"  many/single {pure_many_pps / res['pure_pps']:.3f}  [counts {same}]"
            )
            res["pure_many_pps"] = pure_many_pps
        if base_root:
            bm_pps, times, same = _time_variant(a.many, cpu, a.runs, many, base_root)
            print(
                f"baseline     {bm_pps:12,.0f} pkt/s   ({times} s)"
                f"  many/single {bm_pps / res['baseline_pps']:.3f}  [counts {same}]"
            )
            res["baseline_many_pps"] = bm_pps
            if not a.no_pure:
                bmp_pps, times, same = _time_variant(a.many, cpu, a.runs, many, base_root, True)
                print(f"baseline pure{bmp_pps:12,.0f} pkt/s   ({times} s)  [counts {same}]")
                res["baseline_pure_many_pps"] = bmp_pps
        print(
            f"peak RSS     {peak:12.1f} MB  (before analyze: {many['rss_before_kb'] / 1024:.1f} MB)"
        )
        print(f"counts       {json.dumps(many['counts'])}")
        if expected:
            want = {
                "dimse_responses C-STORE 0x0000": expected["C-STORE"],
                "dimse_responses C-ECHO 0x0000": expected["C-ECHO"],
                "dimse_responses C-FIND 0x0000": expected["C-FIND"],
                "dimse_responses C-FIND 0xFF00": expected["C-FIND pending"],
                "association_ends released": expected["released"],
            }
            bad = {k: (many["counts"].get(k, 0), v) for k, v in want.items()
                   if many["counts"].get(k, 0) != v}  # fmt: skip
            extra = {k: v for k, v in many["counts"].items()
                     if k.startswith(("protocol_errors", "dimse_unanswered"))}  # fmt: skip
            ok = not bad and not extra
            print(
                f"exact counts {'OK' if ok else 'MISMATCH ' + json.dumps(bad) + ' ' + json.dumps(extra)}"
            )
            res["many_exact"] = ok
        res.update(many_pps=many_pps, many_times=many_t, many_ratio=many_pps / ours_pps,
                   many_rss_peak_mb=peak, many_counts=many["counts"])  # fmt: skip
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

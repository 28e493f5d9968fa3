"""Memory of the live daemon: RSS over a steady soak, and with 10,000 concurrent flows.

    python3 benchmarks/live_soak.py [--minutes 10] [--mbps 300] [--every 10]
        [--many-mbps 40] [--skip-soak] [--skip-many] [--json FILE]

Needs root, tcpreplay, DCMTK (to make the C-STORE capture if missing). The rig is
benchmarks/live_rig.py: tcpreplay in namespace "a" onto a veth, `dicomsniffd run` (one
worker, default config) on the other end in namespace "b".

1. **Soak**: benchmarks/out/cstore.pcap (real C-STORE traffic, made by make_capture.py if
   missing) replayed at a steady ``--mbps`` with ``--loop N --unique-ip`` for about
   ``--minutes``; the daemon's /proc/PID/status (VmRSS, RssAnon, RssFile) sampled every
   ``--every`` seconds. RssFile includes the packet ring (capture.buffer_size_mb, mapped
   into the process and counted as resident once the kernel has written to it); RssAnon is
   the Python heap. At the end: the kernel drop counter and the exact counts.
2. **Many flows**: benchmarks/out/many_flows.pcap (10,000 associations all open at once,
   made by make_many_flows.py if missing) replayed once at ``--many-mbps``, RSS sampled
   every second; the peak is what the issue's "under 200 MB with 10,000 concurrent flows"
   is about. The counts are checked against the generator's .expected.json.

Prints the curve and a JSON summary (``--json FILE`` writes it too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import live_rig  # noqa: E402

OUT = os.path.join(HERE, "out")
CSTORE = os.path.join(OUT, "cstore.pcap")
MANY = os.path.join(OUT, "many_flows.pcap")


def ensure_inputs(need_many: bool) -> None:
    if not os.path.exists(CSTORE):
        subprocess.run([sys.executable, os.path.join(HERE, "make_capture.py"), "-o", CSTORE],
                       check=True)  # fmt: skip
    if need_many and not os.path.exists(MANY):
        subprocess.run([sys.executable, os.path.join(HERE, "make_many_flows.py"), "-o", MANY],
                       check=True)  # fmt: skip


def one_pass_counts(pcap: str) -> live_rig.Counts:
    """What one pass of ``pcap`` holds, as `dicomsniffd analyze` counts it (cached)."""
    cache = pcap + ".counts.prom"
    if not os.path.exists(cache) or os.path.getmtime(cache) < os.path.getmtime(pcap):
        subprocess.run([sys.executable, "-m", "dicomsniffd", "analyze", pcap, "--metrics", cache],
                       check=True, stdout=subprocess.DEVNULL, cwd=live_rig.REPO)  # fmt: skip
    with open(cache) as f:
        return live_rig.Counts.of(f.read())


def mb(kb: int) -> float:
    return round(kb / 1024, 1)


def soak(minutes: float, mbps: float, every: float) -> dict:
    one = one_pass_counts(CSTORE)
    loops = live_rig.loops_for(CSTORE, mbps, minutes * 60)
    samples: list = []
    with live_rig.ReplayRig(workers=1) as rig:
        time.sleep(1)
        start = live_rig.proc_status(rig.pid)
        with live_rig.sampled(rig.pid, every, samples):
            r = rig.replay(CSTORE, mbps, loops)
            counts = rig.settle()
        end = live_rig.proc_status(rig.pid)
    print(f"\nsoak: {loops} loops of {CSTORE} at {mbps} Mbit/s: {r.packets} frames in "
          f"{r.seconds:.0f} s ({r.mbps:.0f} Mbit/s achieved)")  # fmt: skip
    print(f"{'t (s)':>7} {'VmRSS MB':>9} {'RssAnon MB':>11} {'RssFile MB':>11}")
    for t, st in samples:
        print(f"{t:7.0f} {mb(st['VmRSS']):9.1f} {mb(st['RssAnon']):11.1f} "
              f"{mb(st['RssFile']):11.1f}")  # fmt: skip
    exact = (
        counts.associations == loops * one.associations
        and counts.stores_ok == loops * one.stores_ok
        and counts.packets == loops * one.packets
    )
    # Growth: the second half of the run against the first half (after the warm-up).
    body = [st["VmRSS"] for t, st in samples if t >= 60] or [s["VmRSS"] for _, s in samples]
    half = len(body) // 2 or 1
    result = {
        "mbps": mbps, "loops": loops, "seconds": r.seconds, "achieved_mbps": r.mbps,
        "frames": r.packets, "kernel_drops": counts.kernel_drops, "exact": exact,
        "counts": counts.__dict__,
        "expected": {"associations": loops * one.associations,
                     "stores_ok": loops * one.stores_ok, "packets": loops * one.packets},
        "rss_start_mb": mb(start["VmRSS"]), "rss_end_mb": mb(end["VmRSS"]),
        "rss_peak_mb": mb(end["VmHWM"]),
        "rss_anon_start_mb": mb(start["RssAnon"]), "rss_anon_end_mb": mb(end["RssAnon"]),
        "rss_first_half_max_mb": mb(max(body[:half])),
        "rss_second_half_max_mb": mb(max(body[half:] or body)),
        "curve": [(t, mb(st["VmRSS"]), mb(st["RssAnon"])) for t, st in samples],
    }  # fmt: skip
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}))
    return result


def many_flows(mbps: float) -> dict:
    with open(MANY + ".expected.json") as f:
        want = json.load(f)
    samples: list = []
    with live_rig.ReplayRig(workers=1) as rig:
        time.sleep(1)
        start = live_rig.proc_status(rig.pid)
        with live_rig.sampled(rig.pid, 1.0, samples):
            r = rig.replay(MANY, mbps, 1)
            text = rig.scrape()
            active_after_replay = live_rig.metric(text, "dicomsniffd_flows_active")
            counts = rig.settle()
        end = live_rig.proc_status(rig.pid)
        text = rig.scrape()
    echo = live_rig.metric(text, "dicom_dimse_responses_total", command="C-ECHO") or 0
    find = live_rig.metric(text, "dicom_dimse_responses_total", command="C-FIND") or 0
    exact = (
        counts.associations == want["associations"]
        and counts.released == want["released"]
        and counts.stores == want["C-STORE"]
        and echo == want["C-ECHO"]
        and find == want["C-FIND"] + want["C-FIND pending"]
    )
    peak = max(st["VmRSS"] for _, st in samples)
    result = {
        "mbps": mbps, "achieved_mbps": r.mbps, "seconds": r.seconds, "frames": r.packets,
        "kernel_drops": counts.kernel_drops, "exact": exact, "counts": counts.__dict__,
        "c_echo": echo, "c_find_responses": find, "expected": want,
        "flows_active_after_replay": active_after_replay,
        "rss_start_mb": mb(start["VmRSS"]), "rss_peak_mb": mb(peak),
        "rss_hwm_mb": mb(end["VmHWM"]), "rss_end_mb": mb(end["VmRSS"]),
        "rss_anon_peak_mb": mb(max(st["RssAnon"] for _, st in samples)),
        "rss_file_peak_mb": mb(max(st["RssFile"] for _, st in samples)),
        "curve": [(t, mb(st["VmRSS"]), mb(st["RssAnon"])) for t, st in samples],
    }  # fmt: skip
    print(f"\nmany flows: {r.packets} frames at {r.mbps:.0f} Mbit/s in {r.seconds:.1f} s")
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--mbps", type=float, default=300.0)
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--many-mbps", type=float, default=40.0)
    ap.add_argument("--skip-soak", action="store_true")
    ap.add_argument("--skip-many", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    ensure_inputs(not a.skip_many)
    out: dict = {}
    if not a.skip_many:
        out["many_flows"] = many_flows(a.many_mbps)
    if not a.skip_soak:
        out["soak"] = soak(a.minutes, a.mbps, a.every)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

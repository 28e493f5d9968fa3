"""Midstream and packet-loss accuracy: a real multi-association capture, cut or thinned.

    python3 fuzz/accuracy.py [--step 1] [--seeds 5] [--out docs/robustness-curve.md]

(root: it captures real DCMTK storescu -> pynetdicom SCP traffic between two network
namespaces, tests/scenarios/ machinery). ``evaluate`` is shared with
tests/test_midstream_accuracy.py, which runs a coarser grid.

Truth comes from the SCP's own log (which status it answered for which instance) and,
per transaction, from the analysis of the complete capture (which test_real_traffic.py
checks against tshark). A degraded run may count fewer responses, never more, never a
status the SCP did not send, and every latency it reports must be exactly the one of the
same transaction in the complete capture.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

import dpkt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

import harness  # noqa: E402

from dicomsniffd.config import Config  # noqa: E402
from dicomsniffd.decode import Decoder  # noqa: E402
from dicomsniffd.dicom.events import DimseTransaction  # noqa: E402
from dicomsniffd.pipeline import Pipeline  # noqa: E402
from dicomsniffd.sinks.metrics import MetricsStore  # noqa: E402
from dicomsniffd.sinks.summary import Summary  # noqa: E402

STATUSES = {3: 0xA700, 5: 0xB000, 8: 0xC000}  # 1-based instance -> status (as scenario f)
ASSOCIATIONS = 3


def make_capture(workdir: str) -> tuple[str, Counter]:
    """storescu sends the same 10 CT images ASSOCIATIONS times (one association each) to a
    pynetdicom SCP answering 0xA700/0xB000/0xC000 for three of them. Returns the pcap and
    the true C-STORE response counts by status (from the SCP's log)."""
    import scenarios
    from netns import VethPair

    img = scenarios.Images(
        {"s10": scenarios.make_ct.make_series(os.path.join(workdir, "s10"), 10, 64, series=2)}
    )
    uids = img.uids("s10")
    cfg = {
        "ae_title": "PYSCP",
        "store_status": {uids[i - 1]: scenarios.hexstatus(s) for i, s in STATUSES.items()},
    }
    pcap = os.path.join(workdir, "multi.pcap")
    with VethPair() as net:
        scp = scenarios.start_pyscp(net, "b", workdir, cfg)
        with net.capture("a", pcap):
            for k in range(ASSOCIATIONS):
                net.run(
                    "a",
                    [
                        scenarios.dcmtk("storescu"),
                        "-nh",
                        "-R",
                        "-aet",
                        f"SCU{k}",
                        "-aec",
                        "PYSCP",
                        net.ip("b"),
                        str(scenarios.SCP_PORT),
                        *img.paths("s10"),
                    ],
                    check=False,
                )
        scenarios.stop(scp)
    log = scenarios.read_scp_log(workdir)
    truth = Counter(r["status"] for r in log if r["op"] == "C-STORE")
    return pcap, truth


def read_frames(pcap: str) -> tuple[list[bytes], list[float]]:
    frames, times = [], []
    with open(pcap, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            frames.append(bytes(buf))
            times.append(float(ts))
    return frames, times


@dataclasses.dataclass
class Outcome:
    responses: Counter  # status "0x...." -> count (C-STORE, exposition)
    transactions: dict  # (client, message_id) -> DimseTransaction (answered)
    unanswered: float
    missed_bytes: float
    incomplete: int
    capture_incomplete: bool


def analyse(frames: list[bytes], times: list[float], config: Config | None = None) -> Outcome:
    config = config or Config()
    metrics = MetricsStore(config.metrics)
    summary = Summary()
    rec = harness.CheckingSink()
    pipeline = Pipeline(config, [metrics, summary, rec], labels=metrics)
    decoder = Decoder(1)
    for i in range(0, len(frames), 512):
        buf, records = harness.frames_to_batch(frames[i : i + 512], times=times[i : i + 512])
        pipeline.process_batch(decoder, buf, records)
    pipeline.finish()
    metrics.set_self_stats_source(pipeline.self_stats)
    expo = metrics.exposition().decode()
    responses: Counter = Counter()
    for labels, v in harness.metric_samples(expo, "dicom_dimse_responses_total"):
        if labels["command"] == "C-STORE" and v:
            responses[labels["status"]] += int(v)
    txns = {}
    incomplete = 0
    for ev in rec.events:
        if isinstance(ev, DimseTransaction) and ev.command == "C-STORE":
            if not ev.complete:
                incomplete += 1
            if ev.outcome == "answered":
                txns[(ev.request_ts, ev.message_id)] = ev
    info = {
        "files": [],
        "packets": pipeline.packets,
        "bytes": pipeline.bytes,
        "missed_bytes": summary.missed_bytes_total(),
        "truncated_files": [],
        "first_ts": pipeline.first_ts,
        "last_ts": pipeline.last_ts,
    }
    codes = {f.get("code") for f in summary.findings(info)}
    return Outcome(
        responses,
        txns,
        harness.metric_sum(expo, "dicom_dimse_unanswered_total", command="C-STORE"),
        harness.metric_sum(expo, "dicom_capture_missed_bytes_total"),
        incomplete,
        "capture-incomplete" in codes,
    )


def retransmission_times(frames: list[bytes], times: list[float]) -> set[float]:
    """Capture times of data segments whose bytes were already sent (TCP retransmissions
    present in the capture itself)."""
    seen: set[tuple] = set()
    out = set()
    for buf, ts in zip(frames, times, strict=True):
        try:
            tcp = dpkt.ethernet.Ethernet(buf).data.data
        except (dpkt.UnpackError, AttributeError):
            continue
        if not isinstance(tcp, dpkt.tcp.TCP) or not tcp.data:
            continue
        key = (tcp.sport, tcp.seq, len(tcp.data))
        if key in seen:
            out.add(ts)
        seen.add(key)
    return out


def check(
    out: Outcome,
    truth: Counter,
    full: Outcome,
    degraded: bool,
    start_ts: float | None = None,
    retx: set[float] = frozenset(),
) -> list[str]:
    """Violations of the accuracy contract (empty list: fine).

    ``retx``: capture times of retransmitted segments. When the original of a segment was
    dropped, the sniffer can only time the transaction from the retransmission: that
    latency then has to lie within the true range of latencies instead of being exact.

    ``start_ts`` (midstream cut): every transaction of the complete capture whose request
    began at or after the first captured packet was fully visible and must be reported,
    answered, with the same status and latency.
    """
    bad = []
    if start_ts is not None:
        for key, ref in full.transactions.items():
            if ref.request_ts >= start_ts and key not in out.transactions:
                bad.append(f"transaction {key} fully captured but not reported")
    for status, n in out.responses.items():
        if status not in truth:
            bad.append(f"status {status} never sent by the SCP")
        elif n > truth[status]:
            bad.append(f"{status}: {n} counted > {truth[status]} sent")
    # every transaction reported with a latency has the complete capture's latency
    by_req = {(t.request_ts, t.message_id): t for t in full.transactions.values()}
    lats = [
        t.response_latency_seconds
        for t in full.transactions.values()
        if t.response_latency_seconds is not None
    ]
    lo, hi = min(lats, default=0.0), max(lats, default=0.0)
    for key, t in out.transactions.items():
        ref = by_req.get(key)
        if ref is None:  # its request start was not seen in full? cannot be
            bad.append(f"transaction {key} not in the complete capture")
            continue
        if t.status != ref.status:
            bad.append(f"transaction {key}: status {t.status:#06x} != {ref.status:#06x}")
        lat = t.response_latency_seconds
        via_retx = t.request_complete_ts in retx or t.response_ts in retx
        if lat is not None and via_retx:
            if not lo - 1e-6 <= lat <= hi + 1e-6:
                bad.append(f"transaction {key}: latency {lat} outside [{lo}, {hi}]")
        elif lat is not None and abs(lat - ref.response_latency_seconds) > 1e-6:
            bad.append(f"transaction {key}: latency {lat} != {ref.response_latency_seconds}")
        dur = t.duration_seconds
        if (
            dur is not None
            and t.complete
            and not via_retx
            and abs(dur - ref.duration_seconds) > 1e-6
        ):
            bad.append(f"transaction {key}: duration {dur} != {ref.duration_seconds}")
    counted = sum(out.responses.values())
    if (
        degraded
        and start_ts is None
        and counted < sum(truth.values())
        and not (out.missed_bytes or out.unanswered or out.incomplete or out.capture_incomplete)
    ):
        bad.append("responses missing but no missed bytes / unanswered / incomplete shown")
    return bad


def cut(frames, times, fraction: float):
    k = int(len(frames) * fraction)
    return frames[k:], times[k:]


def drop(frames, times, rate: float, seed: int):
    rng = random.Random(seed)
    keep = [i for i in range(len(frames)) if rng.random() >= rate]
    return [frames[i] for i in keep], [times[i] for i in keep]


def curve(
    frames, times, truth, step_pct: int = 1, seeds: int = 3, rates=(0.001, 0.01, 0.05)
) -> tuple[list[tuple], list[tuple], list[str]]:
    full = analyse(frames, times)
    retx = retransmission_times(frames, times)
    total = sum(truth.values())
    problems = check(full, truth, full, False)
    cuts = []
    for pct in range(0, 100, step_pct):
        cf, ct = cut(frames, times, pct / 100)
        out = analyse(cf, ct)
        problems += [f"cut {pct}%: {p}" for p in check(out, truth, full, pct > 0, ct[0])]
        cuts.append(
            (
                pct,
                sum(out.responses.values()),
                total,
                len(out.transactions),
                out.unanswered,
                out.missed_bytes,
                out.incomplete,
            )
        )
    drops = []
    for rate in rates:
        counted = []
        for seed in range(seeds):
            out = analyse(*drop(frames, times, rate, seed))
            problems += [
                f"drop {rate} seed {seed}: {p}" for p in check(out, truth, full, True, retx=retx)
            ]
            counted.append(
                (
                    sum(out.responses.values()),
                    len(out.transactions),
                    out.unanswered,
                    out.missed_bytes,
                    out.incomplete,
                )
            )
        drops.append((rate, total, counted))
    return cuts, drops, problems


def render(cuts, drops, npackets: int) -> str:
    lines = [
        f"Capture: {npackets} packets, {ASSOCIATIONS} associations x 10 C-STOREs "
        "(7 x 0x0000, 0xA700, 0xB000, 0xC000 each).",
        "",
        "| capture starts at | C-STORE responses counted / sent | answered with latency "
        "| unanswered | missed bytes | incomplete |",
        "|---|---|---|---|---|---|",
    ]
    for pct, counted, total, timed, unans, missed, inc in cuts:
        lines.append(
            f"| {pct}% | {counted} / {total} | {timed} | {int(unans)} | {int(missed)} | {inc} |"
        )
    lines += [
        "",
        "| packets dropped at random | seed | responses counted / sent | answered "
        "with latency | unanswered | missed bytes | incomplete |",
        "|---|---|---|---|---|---|---|",
    ]
    for rate, total, counted in drops:
        for seed, (c, timed, unans, missed, inc) in enumerate(counted):
            lines.append(
                f"| {rate * 100:g}% | {seed} | {c} / {total} | {timed} | {int(unans)} "
                f"| {int(missed)} | {inc} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--step", type=int, default=1, help="cut points every STEP percent")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default="")
    ap.add_argument(
        "--docs",
        default="",
        help="replace the table between the markers "
        "<!-- accuracy-curve --> ... <!-- /accuracy-curve --> in this file",
    )
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dsniff-acc-") as wd:
        pcap, truth = make_capture(wd)
        frames, times = read_frames(pcap)
    cuts, drops, problems = curve(frames, times, truth, args.step, args.seeds)
    text = render(cuts, drops, len(frames))
    if args.out:
        Path(args.out).write_text(text)
    if args.docs:
        doc = Path(args.docs).read_text()
        head, rest = doc.split("<!-- accuracy-curve -->", 1)
        _old, tail = rest.split("<!-- /accuracy-curve -->", 1)
        Path(args.docs).write_text(
            f"{head}<!-- accuracy-curve -->\n{text}<!-- /accuracy-curve -->{tail}"
        )
    print(text)
    for p in problems:
        print("VIOLATION:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

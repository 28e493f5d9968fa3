"""What a /metrics scrape costs with 200 AE titles, and that it does not stall capture.

    python3 benchmarks/scrape_cost.py [--titles 200] [--runs 21] [--no-live] [--json FILE]

1. **In process** (no root needed): a MetricsStore (default config) fed hand-made events
   for ``--titles`` distinct AE titles (the default ``metrics.max_ae_titles`` cap), as
   calling → called pairs, with every metric family populated: association requests,
   accepts (3 presentation contexts), rejects, aborts, ends (all ``how``s), DIMSE requests
   and responses for C-STORE/C-FIND/C-MOVE/C-ECHO with several statuses, transactions
   (all four histograms, unanswered ones, sub-operations), protocol errors, resyncs,
   TCP events (retransmissions, zero windows, resets, handshake RTT), bytes (pdata and
   missed), connection failures and TLS connections per server. Timed (median of
   ``--runs``, wall and CPU): ``snapshot()`` (what the capture loop pays per publish),
   ``exposition()`` of the store (= ``render_text()``, the direct text renderer), the
   daemon's scrape path (a second store merging the snapshot, rendered with
   ``render_text()`` as ``MetricsView.render`` does), and for reference the same two
   rendered the old way, with prometheus-client's ``generate_latest`` over ``collect()``
   (the bytes must be identical; the script exits 1 if they are not).
2. **Live** (root, tcpreplay): `dicomsniffd run` on a veth (benchmarks/live_rig.py) is fed a
   generated capture with ``--titles`` AE titles (benchmarks/make_many_flows.py's TCP and
   PDU builders, one calling AE per association, round-robin), then the median wall time of
   ``--runs`` real HTTP scrapes is taken. Then the stall check: real C-STORE traffic is
   replayed at ``--mbps`` while 4 threads scrape back to back; afterwards the kernel drop
   counter must be 0, the counts exact, /healthz must have answered 200 throughout, and
   the packet counter seen by the scrapes must have kept rising during the burst.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from prometheus_client.exposition import generate_latest  # noqa: E402
from prometheus_client.registry import CollectorRegistry  # noqa: E402

from dicomsniffd.config import load_config  # noqa: E402
from dicomsniffd.dicom import events as ev  # noqa: E402
from dicomsniffd.sinks.metrics import MetricsStore  # noqa: E402

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
ECHO = "1.2.840.10008.1.1"
EVRLE = "1.2.840.10008.1.2.1"
IVRLE = "1.2.840.10008.1.2"


def pairs(titles: int) -> list[tuple[str, str]]:
    """``titles`` distinct AE titles as (calling, called) pairs: one called AE per 10."""
    called = [f"PACS{i:02d}" for i in range(max(1, titles // 10))]
    calling = [f"MOD{i:03d}" for i in range(titles - len(called))]
    return [(c, called[i % len(called)]) for i, c in enumerate(calling)]


def populate(store: MetricsStore, titles: int) -> int:
    """Feed every event kind for every pair; returns the number of events."""
    n = 0
    ui = ev.UserInformation(max_pdu_length=16384, implementation_class_uid="1.2.3")
    pcs_rq = tuple(ev.PresentationContext(2 * i + 1, uid, (EVRLE, IVRLE))
                   for i, uid in enumerate((CT, MR, FIND, MOVE, ECHO)))  # fmt: skip
    pcs_ac = tuple(ev.PresentationContext(p.context_id, p.abstract_syntax, p.transfer_syntaxes,
                                          0 if i < 4 else 3, EVRLE if i < 4 else "")
                   for i, p in enumerate(pcs_rq))  # fmt: skip
    for flow_id, (calling, called) in enumerate(pairs(titles), 1):
        flow = SimpleNamespace(flow_id=flow_id, calling_ae_label=store.ae_label(calling),
                               called_ae_label=store.ae_label(called))  # fmt: skip
        server = f"10.2.{flow_id % 100}.1:104"
        t = 1_700_000_000.0 + flow_id
        items: list = [
            ev.AssociationRequested(t, calling, called, "1.2.840.10008.3.1.1.1", pcs_rq, ui),
            ev.AssociationAccepted(t, 0.002, calling, called, pcs_ac, ui),
            ev.AssociationRejected(t, 0.001, "permanent", "service-user",
                                   "called-ae-not-recognized", 1, 1, 7),
            ev.Aborted(t, "requestor", "service-user", "not-specified", 0, 0),
            ev.ProtocolError(t, "requestor", "bad-pdv-length"),
            ev.Resynchronised(t, "acceptor", 100),
        ]  # fmt: skip
        for command, sop, statuses in (
            ("C-STORE", CT, ((0x0000, "success"), (0xA700, "failure"), (0xB000, "warning"))),
            ("C-STORE", MR, ((0x0000, "success"),)),
            ("C-FIND", FIND, ((0xFF00, "pending"), (0x0000, "success"))),
            ("C-MOVE", MOVE, ((0xFF00, "pending"), (0x0000, "success"))),
            ("C-ECHO", ECHO, ((0x0000, "success"),)),
        ):
            items.append(ev.DimseRequestSeen(t, "requestor", command, sop, 1, 1))
            for status, klass in statuses:
                items.append(ev.DimseResponseSeen(t, "acceptor", command, status, klass, 1, 1))
                if klass != "pending":
                    items.append(ev.DimseTransaction(
                        command, sop, 1, 1, status, klass, "answered", t, t + 0.05, t + 0.06,
                        t + 0.07, 0.05, 0.01, 0.07, 500_000 if command == "C-STORE" else 0,
                        2000 if command == "C-FIND" else 0, 1, True,
                        suboperations_completed=3 if command == "C-MOVE" else None,
                        suboperations_failed=1 if command == "C-MOVE" else None))  # fmt: skip
            items.append(ev.DimseTransaction(
                command, sop, 1, 2, None, "unanswered", "unanswered-ended", t, t, None, None,
                None, None, None, 100, 0, 0, False))  # fmt: skip
        for how in ("released", "aborted", "reset", "closed", "timeout"):
            items.append(ev.AssociationEnded(t, how, 1.5))
        for item in items:
            store.handle(item, flow)
            n += 1
        for kind in ("retransmission", "zero-window", "reset"):
            for sender in ("requestor", "acceptor"):
                store.tcp_event(kind, sender, flow)
                n += 1
        store.tcp_event("handshake-rtt", "requestor", flow, 0.0004)
        for sender in ("requestor", "acceptor"):
            store.add_bytes("pdata", sender, 1_000_000, flow)
            store.add_bytes("missed", sender, 1460, flow)
        store.connection_failure(server, "refused")
        store.connection_failure(server, "timeout")
        store.tls_connection(server, "handshake")
        n += 8
    return n


def _timed(fn, runs: int) -> dict:
    walls, cpus = [], []
    out = None
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        cpus.append(time.process_time() - c)
        walls.append(time.perf_counter() - w)
    return {"wall_ms": round(1000 * statistics.median(walls), 2),
            "cpu_ms": round(1000 * statistics.median(cpus), 2),
            "max_wall_ms": round(1000 * max(walls), 2), "result": out}  # fmt: skip


def in_process(titles: int, runs: int) -> dict:
    import pickle

    config = load_config(None)
    store = MetricsStore(config.metrics)
    t0 = time.perf_counter()
    events = populate(store, titles)
    fill_s = time.perf_counter() - t0
    body = store.exposition()
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    snap = _timed(store.snapshot, runs)
    expo = _timed(store.exposition, runs)
    # The daemon's path: the capture loop's snapshot merged into the view's store.
    view = MetricsStore(config.metrics)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(view)
    snapshot = store.snapshot()
    view.merge_snapshot("0", snapshot)
    daemon_render = _timed(view.render_text, runs)
    store_generate_latest = _timed(lambda: generate_latest(store.registry), runs)
    daemon_generate_latest = _timed(lambda: generate_latest(registry), runs)
    identical = (store_generate_latest["result"] == expo["result"]
                 and daemon_generate_latest["result"] == daemon_render["result"])  # fmt: skip
    pickled = _timed(lambda: pickle.dumps(store.snapshot(), pickle.HIGHEST_PROTOCOL), runs)
    result = {
        "titles": titles, "pairs": len(pairs(titles)), "events": events,
        "fill_s": round(fill_s, 3), "series": series, "body_bytes": len(body),
        "snapshot": {k: v for k, v in snap.items() if k != "result"},
        "exposition": {k: v for k, v in expo.items() if k != "result"},
        "daemon_render": {k: v for k, v in daemon_render.items() if k != "result"},
        "generate_latest": {k: v for k, v in store_generate_latest.items() if k != "result"},
        "daemon_generate_latest": {k: v for k, v in daemon_generate_latest.items()
                                   if k != "result"},
        "identical_to_generate_latest": identical,
        "snapshot_pickle": {k: v for k, v in pickled.items() if k != "result"},
        "pickle_bytes": len(pickled["result"]),
        "label_overflow": sum(float(line.rsplit(b" ", 1)[1]) for line in body.splitlines()
                              if line.startswith(b"dicomsniffd_label_overflow_total")),
    }  # fmt: skip
    return result


# -- live --------------------------------------------------------------------------------


def make_titles_capture(path: str, titles: int, per_title: int) -> dict:
    """A capture with ``titles`` distinct calling AE titles (called: PACS), round-robin."""
    import make_many_flows as mm

    release_rq, release_rp = mm.pdu.A_RELEASE_RQ().encode(), mm.pdu.A_RELEASE_RP().encode()
    conns = []
    echo = mm.echo_exchange(1)
    n = titles * per_title
    for i in range(n):
        c = mm.Conn(i)
        rq, ac = mm._assoc(f"MOD{i % titles:03d}")
        c.handshake()
        c.send(True, rq)
        c.send(False, ac)
        if i % 2 == 0:
            req, rsp = mm.store_exchange(1, i)
            c.send(True, req)
            c.send(False, rsp)
        else:
            c.send(True, echo[0])
            c.send(False, echo[1])
        c.send(True, release_rq)
        c.send(False, release_rp)
        c.close()
        conns.append(c)
    packets = mm.write(path, conns, 20)
    return {"associations": n, "packets": packets}


def live(titles: int, runs: int, mbps: float, burst_s: float) -> dict:
    import live_rig

    work = live_rig.tempfile.mkdtemp(prefix="dsniff-scrape-")
    pcap = os.path.join(work, "titles.pcap")
    made = make_titles_capture(pcap, titles, 5)
    cstore = os.path.join(HERE, "out", "cstore.pcap")
    if not os.path.exists(cstore):
        import make_capture

        make_capture.make_capture(cstore, 24, 16, 512, 2)
    import live_soak

    one = live_soak.one_pass_counts(cstore)
    with live_rig.ReplayRig(workers=1) as rig:
        rig.replay(pcap, 50, 1)
        base = rig.settle()
        text = rig.scrape()
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))

        def scrape_n(k: int) -> list[float]:
            import urllib.request

            out = []
            for _ in range(k):
                t = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{live_rig.METRICS_PORT}/metrics",
                                            timeout=10) as r:  # fmt: skip
                    r.read()
                out.append(time.perf_counter() - t)
            return out

        idle = live_rig.in_netns(rig.ns_b, scrape_n, runs)
        # Burst of scrapes during real traffic.
        loops = live_rig.loops_for(cstore, mbps, burst_s)
        replay = rig.start_replay(cstore, mbps, loops)
        seen: list[tuple[float, float]] = []
        health: list[int] = []
        lat: list[float] = []
        stop = threading.Event()
        lock = threading.Lock()

        def hammer() -> None:
            import urllib.request

            while not stop.is_set():
                t = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{live_rig.METRICS_PORT}/metrics",
                                            timeout=10) as r:  # fmt: skip
                    body = r.read().decode()
                dt = time.perf_counter() - t
                with urllib.request.urlopen(f"http://127.0.0.1:{live_rig.METRICS_PORT}/healthz",
                                            timeout=10) as r:  # fmt: skip
                    code = r.status
                with lock:
                    lat.append(dt)
                    health.append(code)
                    seen.append((time.monotonic(), live_rig.metric(body, "dicomsniffd_packets_total")
                                 or 0.0))  # fmt: skip

        threads = [threading.Thread(target=live_rig.in_netns, args=(rig.ns_b, hammer))
                   for _ in range(4)]  # fmt: skip
        for th in threads:
            th.start()
        r = rig.replay_result(replay)
        stop.set()
        for th in threads:
            th.join()
        after = rig.settle()
    seen.sort()
    rising = sum(1 for a, b in zip(seen, seen[1:], strict=False) if b[1] > a[1])
    exact = (
        after.associations - base.associations == loops * one.associations
        and after.stores_ok - base.stores_ok == loops * one.stores_ok
        and after.packets - base.packets == loops * one.packets
    )
    return {
        "titles_capture": made, "series": series,
        "scrape_idle_ms_median": round(1000 * statistics.median(idle), 2),
        "scrape_idle_ms_max": round(1000 * max(idle), 2),
        "burst": {"mbps": mbps, "achieved_mbps": r.mbps, "seconds": r.seconds, "loops": loops,
                  "scrapes": len(lat),
                  "scrape_ms_median": round(1000 * statistics.median(lat), 2) if lat else None,
                  "scrape_ms_max": round(1000 * max(lat), 2) if lat else None,
                  "healthz_all_200": all(c == 200 for c in health),
                  "packet_counter_rises": rising, "kernel_drops": after.kernel_drops,
                  "exact": exact},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--titles", type=int, default=200)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--mbps", type=float, default=500.0)
    ap.add_argument("--burst-seconds", type=float, default=15.0)
    ap.add_argument("--no-live", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    out = {"in_process": in_process(a.titles, a.runs)}
    print(json.dumps(out["in_process"], indent=1))
    if not out["in_process"]["identical_to_generate_latest"]:
        print("render_text() differs from generate_latest()", file=sys.stderr)
        return 1
    if not a.no_live:
        out["live"] = live(a.titles, a.runs, a.mbps, a.burst_seconds)
        print(json.dumps(out["live"], indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

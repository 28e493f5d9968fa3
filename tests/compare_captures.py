"""Real captures for the compare tests: DCMTK storescu sends the same 20 CT images three
times to a pynetdicom SCP (tests/peers/scp.py) in another namespace, captured on the
SCU's side of a veth pair:

- ``failing``: the SCP answers 0xA700 (out of resources) to 4 of the 20 C-STOREs;
- ``healthy``: every C-STORE answered 0x0000;
- ``slow``:    healthy, but the SCP sleeps ``SLOW_MS`` before each answer.

The SCP's own log is checked against what it was told (the test knows the truth)."""

from __future__ import annotations

import os
from collections import Counter

import netns
from netns import VethPair
from peers import make_ct
from scenarios.plumbing import SCP_PORT, dcmtk, read_scp_log, start_pyscp, stop

N_IMAGES = 20  # the rule's minimum sample count: each phase is judged
FAILED = (3, 8, 13, 18)  # 1-based images answered 0xA700 in "failing"
SLOW_MS = 300


def capture_all(workdir: str) -> dict[str, str]:
    """name -> pcap path for failing, healthy and slow."""
    images = make_ct.make_series(os.path.join(workdir, "images"), N_IMAGES, 64, series=7)
    paths = [p for p, _ in images]
    uids = [u for _, u in images]
    configs = {
        "failing": {"store_status": {uids[i - 1]: "0xA700" for i in FAILED}},
        "healthy": {},
        "slow": {"store_delay_ms": SLOW_MS},
    }
    return {name: _one(workdir, name, cfg, paths) for name, cfg in configs.items()}


def _one(workdir: str, name: str, cfg: dict, paths: list[str]) -> str:
    wd = os.path.join(workdir, name)
    os.makedirs(wd, exist_ok=True)
    pcap = os.path.join(wd, f"{name}.pcap")
    with VethPair() as net:
        scp = start_pyscp(net, "b", wd, {"ae_title": "PYSCP", **cfg})
        with net.capture("a", pcap):
            # storescu exits non-zero when a store failed: the point of "failing"
            net.run(
                "a",
                [dcmtk("storescu"), "-nh", "-R", "-aet", "STORESCU", "-aec", "PYSCP"]
                + [net.ip("b"), str(SCP_PORT), *paths],
                check=False,
            )
        stop(scp)
    answered = Counter(r["status"] for r in read_scp_log(wd) if r["op"] == "C-STORE")
    failed = len(FAILED) if name == "failing" else 0
    want = Counter({"0x0000": N_IMAGES - failed, **({"0xA700": failed} if failed else {})})
    if answered != want:
        raise netns.NetnsError(f"{name}: SCP answered {answered}, wanted {want}")
    return pcap

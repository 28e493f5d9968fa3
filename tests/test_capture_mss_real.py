"""The super-packet limit follows the MSS of the SYNs (issue 12, "advice that fits").

A jumbo-frame network (MTU 9000) and a loopback capture (MTU 65536) carry segments far
beyond 1460 bytes without any offload merging them: DCMTK storescu -> storescp there
must not be told to turn offloads off. Each capture is checked to hold frames larger
than 1514 bytes, so the test would fail under a fixed 1460-byte limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dpkt
import pytest
from netns import VethPair
from peers import make_ct
from scenarios.plumbing import SCP_PORT, dcmtk, require_all_tools, start_storescp, stop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFLOADS = "capture-offloads"  # findings/capture.py CAPTURE_OFFLOADS


def _analyze(pcap: str) -> dict:
    p = subprocess.run(
        [sys.executable, "-m", "dicomsniffd", "analyze", "--json", "--quiet", pcap],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)


def _largest_frame(pcap: str) -> int:
    with open(pcap, "rb") as f:
        return max(len(frame) for _ts, frame in dpkt.pcap.Reader(f))


def _store(net: VethPair, side_scu: str, host: str, side_scp: str, images: list[str]) -> None:
    scp = start_storescp(net, side_scp, SCP_PORT, "STORESCP")
    try:
        argv = [dcmtk("storescu"), "-aet", "STORESCU", "-aec", "STORESCP", host, str(SCP_PORT)]
        p = net.run(side_scu, [*argv, *images], check=False)
        assert p.returncode == 0, p.stdout + p.stderr
    finally:
        stop(scp)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    require_all_tools()
    outdir = str(tmp_path_factory.mktemp("mss-images"))
    return [path for path, _uid in make_ct.make_series(outdir, 4, 256)]


def _assert_no_offload_advice(pcap: str, frame_limit: int) -> None:
    largest = _largest_frame(pcap)
    assert 1514 < largest <= frame_limit, largest  # segments a 1460 limit would call merged
    report = _analyze(pcap)
    assert [f for f in report["findings"] if f["code"] == OFFLOADS] == []
    assert report["capture"]["decode"]["super_packets"] == 0
    assert report["associations"], "the C-STOREs were decoded"


def test_jumbo_frames_are_not_super_packets(images, tmp_path):
    pcap = str(tmp_path / "jumbo.pcap")
    with VethPair(mtu=9000, ipv6=False) as net, net.capture("b", pcap):
        _store(net, "a", net.ip("b"), "b", images)
    _assert_no_offload_advice(pcap, 9014)


def test_loopback_segments_are_not_super_packets(images, tmp_path):
    pcap = str(tmp_path / "loopback.pcap")
    with VethPair(ipv6=False) as net, net.capture("a", pcap, iface="lo"):
        _store(net, "a", "127.0.0.1", "a", images)
    _assert_no_offload_advice(pcap, 65536 + 14)

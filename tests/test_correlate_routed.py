"""correlate on real traffic through a real router: NAT, MSS clamping, loss, an injected reset.

Three namespaces, modality a -- router r -- PACS b (tests/routed.py). DCMTK storescu sends
two associations of synthetic CT images to DCMTK storescp through the router, which in
turn masquerades (NAT: b sees the router's address and ports), clamps the MSS of every SYN
to 1200, drops 3 % of forwarded data segments at random (both directions) and refuses the
segment of the second association that carries a marker string with a TCP reset to the
sender (REJECT --reject-with tcp-reset). tcpdump captures both router interfaces: NEAR on
the modality's link, FAR on the PACS's.

Every expectation comes from the router's own iptables counters and from how the peers
were driven, never from the analyser: the segments correlate calls lost are exactly the
packets the DROP and REJECT rules matched; the resets it calls injected, those REJECT sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import scenarios
from peers import make_ct
from pydicom import dcmread
from routed import RoutedNet

pytestmark = pytest.mark.netns

MARKER = "DSNIFF-RST-MARK-Q7"  # in one data set of the second association only
CLAMP = 1200
DROP = 0.03


def _images(wd: Path) -> tuple[list[str], list[str]]:
    first = [p for p, _ in make_ct.make_series(str(wd / "s1"), 6, 128, series=41)]
    second = [p for p, _ in make_ct.make_series(str(wd / "s2"), 3, 128, series=42)]
    ds = dcmread(second[1])
    ds.SeriesDescription = MARKER
    ds.save_as(second[1])
    return first, second


def capture_routed(wd: Path) -> dict:
    """Run the traffic; return the two pcaps and the router's counters."""
    first, second = _images(wd)
    near, far = str(wd / "near.pcap"), str(wd / "far.pcap")
    with RoutedNet() as net:
        net.add_masquerade("b")
        net.add_mss_clamp(CLAMP)
        net.add_forward_drop(DROP, min_length=100)
        net.add_reset_injection(MARKER, source="a")
        scp = scenarios.start_storescp(net, "b", scenarios.SCP_PORT, "PACS")
        storescu = scenarios.dcmtk("storescu")
        with (
            net.capture("r", near, iface=net.router_iface("a"), bpf="tcp"),
            net.capture("r", far, iface=net.router_iface("b"), bpf="tcp"),
        ):
            base = [storescu, "-aet", "MODALITY", "-aec", "PACS", net.ip("b")]
            ok = net.run("a", [*base, str(scenarios.SCP_PORT), *first], check=False)
            cut = net.run("a", [*base, str(scenarios.SCP_PORT), *second], check=False)
        counters = {
            "dropped": net.forward_dropped(),
            "rejected": net.resets_injected(),
            "clamped": net.mss_clamped(),
            "masqueraded": net.masqueraded(),
            "router_a": net.router_ip("a"),
            "router_b": net.router_ip("b"),
            "a": net.ip("a"),
            "b": net.ip("b"),
        }
        scenarios.stop(scp)
    return {"near": near, "far": far, "ok": ok, "cut": cut, **counters}


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    wd = tmp_path_factory.mktemp("correlate")
    run = capture_routed(wd)
    assert run["ok"].returncode == 0, run["ok"].stdout + run["ok"].stderr
    assert run["cut"].returncode != 0  # the reset really cut the second association
    assert run["rejected"] == 1 and run["dropped"] > 0 and run["clamped"] >= 4
    proc = subprocess.run(
        [sys.executable, "-m", "dicomsniffd", "correlate", run["near"], run["far"], "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert proc.returncode == 0, proc.stderr
    return run, json.loads(proc.stdout)


if __name__ == "__main__":  # exploration: python tests/test_correlate_routed.py DIR
    out = capture_routed(Path(sys.argv[1]))
    print({k: v for k, v in out.items() if k not in ("ok", "cut")})
    print(out["cut"].stdout[-500:], out["cut"].stderr[-500:])

"""What every real-traffic scenario is built from: the ports and peer scripts, the DCMTK
tool lookup, ``Scenario`` and ``Images``, the SCP starters, tcpdump starters for the
captures ``VethPair.capture`` cannot make, and the expectation of a clean store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import netns
from netns import VethPair
from peers import make_ct

SCP_PORT = 11112
DEST_PORT = 11113
PY = sys.executable
PEERS = Path(__file__).resolve().parent.parent / "peers"
SCP_SCRIPT = str(PEERS / "scp.py")
RAWSCU_SCRIPT = str(PEERS / "rawscu.py")

STATUS_CLASS = {
    0x0000: "success",
    0xFF00: "pending",
    0xFF01: "pending",
    0xFE00: "cancel",
    0xB000: "warning",
    0xB007: "warning",
    0xB006: "warning",
}


def status_class(status: int) -> str:
    """DESIGN §4 status_class of a status (for the commands these scenarios use)."""
    return STATUS_CLASS.get(status, "failure")


def hexstatus(status: int) -> str:
    return f"0x{status:04X}"


# --------------------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------------------
_dcmtk_cache: dict[str, str] = {}


def dcmtk(name: str) -> str:
    """Path of a DCMTK tool. pynetdicom installs same-named console scripts (storescu,
    echoscu...) that can come first on PATH (pyenv shims): pick the binary that says
    it is DCMTK. Missing DCMTK is an error, not a skip."""
    if name in _dcmtk_cache:
        return _dcmtk_cache[name]
    seen = []
    for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/local/bin"]:
        cand = os.path.join(d, name)
        if cand in seen or not os.access(cand, os.X_OK):
            continue
        seen.append(cand)
        try:
            out = subprocess.run([cand, "--version"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "dcmtk" in (out.stdout + out.stderr).lower():
            _dcmtk_cache[name] = cand
            return cand
    raise netns.NetnsError(f"DCMTK {name} not found (candidates: {seen}); apt-get install dcmtk")


def require_all_tools() -> None:
    netns.require_tools(
        "ip",
        "ethtool",
        "tcpdump",
        "iptables",
        "ip6tables",
        "ss",
        "tshark",
        "editcap",
        "tcprewrite",
        "tcpreplay",
    )
    for t in ("storescu", "storescp", "echoscu", "findscu", "movescu"):
        dcmtk(t)
    if os.geteuid() != 0:
        raise netns.NetnsError("real-traffic tests need root (network namespaces, capture)")


# --------------------------------------------------------------------------------------
# scenario plumbing
# --------------------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    pcap: str
    expected: dict
    ports: list[int] = field(default_factory=lambda: [SCP_PORT])
    seconds: float = 0.0
    notes: dict = field(default_factory=dict)


@dataclass
class Images:
    """Synthetic series shared by the scenarios: name -> [(path, SOPInstanceUID)]."""

    series: dict[str, list[tuple[str, str]]]

    def paths(self, name: str) -> list[str]:
        return [p for p, _ in self.series[name]]

    def uids(self, name: str) -> list[str]:
        return [u for _, u in self.series[name]]


def make_images(outdir: str) -> Images:
    return Images(
        {
            "s50": make_ct.make_series(os.path.join(outdir, "s50"), 50, 64, series=1),
            "s10": make_ct.make_series(os.path.join(outdir, "s10"), 10, 64, series=2),
            "s30": make_ct.make_series(os.path.join(outdir, "s30"), 30, 128, series=3),
            "s5": make_ct.make_series(os.path.join(outdir, "s5"), 5, 64, series=4),
            "big": make_ct.make_series(os.path.join(outdir, "big"), 1, 256, series=5),
        }
    )


def _check(p: subprocess.CompletedProcess, what: str, ok=(0,)) -> subprocess.CompletedProcess:
    if p.returncode not in ok:
        raise netns.NetnsError(f"{what} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def start_storescp(net: VethPair, side: str, port: int, aet: str):
    p = net.popen(side, [dcmtk("storescp"), "-aet", aet, "--ignore", "-ta", "30", str(port)])
    net.wait_listening(side, port, proc=p)
    return p


def start_pyscp(net: VethPair, side: str, workdir: str, cfg: dict):
    cfg = {"port": SCP_PORT, **cfg}
    cfg.setdefault("log", os.path.join(workdir, "scp-log.jsonl"))
    path = os.path.join(workdir, "scp.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    p = net.popen(side, [PY, SCP_SCRIPT, "--config", path])
    net.wait_listening(side, int(cfg["port"]), proc=p)
    return p


def read_scp_log(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "scp-log.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def stop(proc) -> str:
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=5)
    return out or ""


def _store_expect(calling: str, called: str, n: int, **extra) -> dict:
    exp = {
        "association_requests": 1,
        "associations": [
            {"calling_ae": calling, "called_ae": called, "outcome": "accepted", "end": "released"}
        ],
        "ends": {"released": 1},
        "requests": {"C-STORE": n},
        "responses": {"C-STORE": {"0x0000": n}},
        "presentation_contexts_accepted": [{"abstract_syntax": "CTImageStorage"}],
        "findings_absent": [
            "aborts",
            "association-rejected",
            "no-accepted-context",
            "out-of-resources",
            "capture-incomplete",
        ],
        "max_frame_len": 1514,
        "ip_version": 4,
    }
    exp.update(extra)
    return exp


def _storescu(net: VethPair, called_ae: str, paths: list[str], **run_kw) -> None:
    """DCMTK storescu (calling AE STORESCU) in namespace a sends ``paths`` to the SCP in b."""
    argv = [dcmtk("storescu"), "-aet", "STORESCU", "-aec", called_ae, net.ip("b")]
    _check(net.run("a", [*argv, str(SCP_PORT), *paths], **run_kw), "storescu")


def _start_tcpdump(
    net: VethPair, side: str, path: str, *extra: str, iface: str | None = None, snaplen: int = 0
) -> netns.Capture:
    """tcpdump with extra options (``-y LINUX_SLL``...); stop with ``.stop()``."""
    return net.start_capture(side, path, iface=iface, options=extra, snaplen=snaplen)


def _stop_capture(cap: netns.Capture) -> None:
    cap.stop()
    if cap.dropped_by_kernel:
        raise netns.NetnsError(f"tcpdump dropped {cap.dropped_by_kernel} packets: {cap.path}")
    if not cap.captured:
        raise netns.NetnsError(f"tcpdump captured nothing: {cap.path}")


def run_timed(workdir: str, name: str, make: Callable[[str], Scenario]) -> Scenario:
    """Run one scenario in its own folder ``workdir/name``; its wall time goes in ``seconds``."""
    wd = os.path.join(workdir, name)
    os.makedirs(wd, exist_ok=True)
    t0 = time.monotonic()
    sc = make(wd)
    sc.seconds = time.monotonic() - t0
    return sc


def cleanup(workdir: str) -> None:
    shutil.rmtree(workdir, ignore_errors=True)

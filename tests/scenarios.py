"""Real-traffic scenarios: real DICOM peers over real TCP between two namespaces, captured.

Each scenario drives the peers (DCMTK, pynetdicom, a raw-socket SCU) inside a fresh
``netns.VethPair`` while tcpdump captures on a veth, and returns a ``Scenario``: the pcap
path and an ``expected`` dict whose numbers come from how the scenario drove the peers
(what the SCP was told to answer, how many files were sent), never from our analyser.

Conventions (the integrator needs these):
- the SCP side is namespace "b" (x.x.x.2 / fd00::2), the SCU side namespace "a" (.1 / ::1);
- every SCP listens on port 11112 (SCP_PORT); the C-MOVE destination storescp in
  namespace "a" on 11113 (DEST_PORT);
- AE titles are given explicitly to every peer (see each scenario's ``expected``);
- images are synthetic (peers/make_ct.py): CT Image Storage, Explicit VR LE, TEST^PATIENT.

``expected`` keys (all optional, a test only checks the keys a scenario sets):
  association_requests   int: A-ASSOCIATE-RQ on the wire
  associations           [{calling_ae, called_ae, outcome, end}] (outcome accepted/rejected;
                         end released/aborted/... as in dicom_association_ends_total{how})
  ends                   {how: n}
  requests               {command: n}                   dicom_dimse_requests_total
  responses              {command: {status: n}}         dicom_dimse_responses_total
  responses_any_of       {command: {status: [n, ...]}}   when the cut makes it ambiguous
  unanswered             {command: n}
  rejects                [{result, source, reason}]
  aborts                 [{source}]
  presentation_contexts  [{abstract_syntax, transfer_syntax, result}]
  suboperations          {command: {outcome: n}}
  response_latency_ms    {command: [low, high]}   bounds on every measured latency
  latency_agreement_ms   max |analyser p50 - tshark median|
  command_aes            {command: [calling, called]} when not the first association's
  status_classes         {status: status_class}
  presentation_contexts_accepted   [{abstract_syntax}]: accepted with a transfer syntax
  user_identity          {type, username, passcode} carried in the A-ASSOCIATE-RQ
  min_retransmissions    {sender: n}
  findings_present / findings_absent   [code, ...]
  secrets                strings that must never appear in any analyser output
  ip_version, vlan_id, max_frame_len
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import netns
from netns import VethPair
from peers import make_ct

SCP_PORT = 11112
DEST_PORT = 11113
PY = sys.executable
PEERS = Path(__file__).resolve().parent / "peers"
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


# --------------------------------------------------------------------------------------
# the scenarios
# --------------------------------------------------------------------------------------
def sc_a_store50(wd: str, img: Images) -> Scenario:
    """(a) DCMTK storescu sends 50 synthetic CT images to DCMTK storescp, all 0x0000."""
    pcap = os.path.join(wd, "a_store50.pcap")
    with VethPair() as net:
        scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
        with net.capture("a", pcap):
            _storescu(net, "ANY-SCP", img.paths("s50"))
        stop(scp)
    exp = _store_expect("STORESCU", "ANY-SCP", 50)
    return Scenario("a_store50", pcap, exp)


def sc_b_echo3(wd: str, img: Images) -> Scenario:
    """(b) DCMTK echoscu, three C-ECHOs in one association (--repeat 3) to storescp."""
    pcap = os.path.join(wd, "b_echo3.pcap")
    with VethPair() as net:
        scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
        with net.capture("a", pcap):
            _check(
                net.run(
                    "a",
                    [
                        dcmtk("echoscu"),
                        "-aet",
                        "ECHOSCU",
                        "-aec",
                        "ECHO-SCP",
                        "--repeat",
                        "3",
                        net.ip("b"),
                        str(SCP_PORT),
                    ],
                ),
                "echoscu",
            )
        stop(scp)
    exp = {
        "association_requests": 1,
        "associations": [
            {
                "calling_ae": "ECHOSCU",
                "called_ae": "ECHO-SCP",
                "outcome": "accepted",
                "end": "released",
            }
        ],
        "requests": {"C-ECHO": 3},
        "responses": {"C-ECHO": {"0x0000": 3}},
        "findings_absent": ["aborts", "association-rejected", "no-accepted-context"],
        "max_frame_len": 1514,
    }
    return Scenario("b_echo3", pcap, exp)


def sc_c_context_rejected(wd: str, img: Images) -> Scenario:
    """(c) Only JPEG 2000 lossless proposed for CT to storescp (uncompressed only): the
    A-ASSOCIATE-AC carries result 4 (transfer-syntaxes-not-supported); the SCU releases."""
    pcap = os.path.join(wd, "c_context_rejected.pcap")
    with VethPair() as net:
        scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
        with net.capture("a", pcap):
            p = _check(
                net.run(
                    "a",
                    [
                        PY,
                        RAWSCU_SCRIPT,
                        "propose",
                        net.ip("b"),
                        str(SCP_PORT),
                        "--calling",
                        "J2KSCU",
                        "--called",
                        "STORESCP",
                        "--ts",
                        "1.2.840.10008.1.2.4.90",
                    ],
                ),
                "rawscu propose",
            )
        stop(scp)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    if res.get("outcome") != "accepted" or res["contexts"]["1"][0] != 4:
        raise netns.NetnsError(f"storescp did not answer as expected: {res}")
    exp = {
        "association_requests": 1,
        "associations": [
            {
                "calling_ae": "J2KSCU",
                "called_ae": "STORESCP",
                "outcome": "accepted",
                "end": "released",
            }
        ],
        "presentation_contexts": [
            {
                "abstract_syntax": "CTImageStorage",
                "transfer_syntax": "",
                "result": "transfer-syntaxes-not-supported",
                "code": 4,
            }
        ],
        "requests": {},
        "findings_present": ["no-accepted-context"],
        "findings_absent": ["aborts", "association-rejected"],
    }
    return Scenario("c_context_rejected", pcap, exp, notes={"rawscu": res})


def sc_d_assoc_rejected(wd: str, img: Images) -> Scenario:
    """(d) storescu calls "WRONG-AE" on a pynetdicom SCP that requires its own AE title
    ("PYSCP"): A-ASSOCIATE-RJ permanent / service-user / called-AE-not-recognised (7)."""
    pcap = os.path.join(wd, "d_assoc_rejected.pcap")
    with VethPair() as net:
        scp = start_pyscp(net, "b", wd, {"ae_title": "PYSCP", "require_called_aet": True})
        with net.capture("a", pcap):
            p = net.run(
                "a",
                [
                    dcmtk("storescu"),
                    "-aet",
                    "STORESCU",
                    "-aec",
                    "WRONG-AE",
                    net.ip("b"),
                    str(SCP_PORT),
                    img.paths("s5")[0],
                ],
                check=False,
            )
        stop(scp)
    if p.returncode == 0 or "reject" not in (p.stdout + p.stderr).lower():
        raise netns.NetnsError(f"storescu was not rejected:\n{p.stdout}{p.stderr}")
    exp = {
        "association_requests": 1,
        "associations": [
            {"calling_ae": "STORESCU", "called_ae": "WRONG-AE", "outcome": "rejected"}
        ],
        "rejects": [
            {
                "result": "permanent",
                "source": "service-user",
                "reason": "called-ae-not-recognized",
                "codes": [1, 1, 7],
            }
        ],
        "requests": {},
        "findings_present": ["association-rejected"],
        "findings_absent": ["aborts"],
    }
    return Scenario("d_assoc_rejected", pcap, exp)


USER = "dsniff-test-user"
PASSCODE = "N0t-A-Real-Passc0de-42"


def sc_e_abort_mid_dataset(wd: str, img: Images) -> Scenario:
    """(e) Raw SCU (with User Identity username+passcode in the RQ) sends a C-STORE-RQ
    command and 2 of the ~17 dataset PDVs of a 256x256 CT, then A-ABORT (service-user)."""
    pcap = os.path.join(wd, "e_abort.pcap")
    with VethPair() as net:
        scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
        with net.capture("a", pcap):
            p = _check(
                net.run(
                    "a",
                    [
                        PY,
                        RAWSCU_SCRIPT,
                        "abort",
                        net.ip("b"),
                        str(SCP_PORT),
                        img.paths("big")[0],
                        "--calling",
                        "ABORTSCU",
                        "--called",
                        "STORESCP",
                        "--fragments",
                        "2",
                        "--fragment-size",
                        "8000",
                        "--user",
                        USER,
                        "--passcode",
                        PASSCODE,
                    ],
                ),
                "rawscu abort",
            )
        stop(scp)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["dataset_bytes_sent"] < res["dataset_bytes"]
    exp = {
        "association_requests": 1,
        "associations": [
            {
                "calling_ae": "ABORTSCU",
                "called_ae": "STORESCP",
                "outcome": "accepted",
                "end": "aborted",
            }
        ],
        "ends": {"aborted": 1},
        "aborts": [{"source": "service-user", "codes": [0, 0]}],
        "responses": {},
        "unanswered": {"C-STORE": 1},
        "user_identity": {"type": 2, "username": USER, "passcode": PASSCODE},
        "secrets": [USER, PASSCODE],
        "findings_present": ["aborts"],
        "findings_absent": ["association-rejected", "no-accepted-context"],
    }
    return Scenario("e_abort", pcap, exp, notes={"rawscu": res})


F_STATUSES = {3: 0xA700, 5: 0xB000, 8: 0xC000}  # 1-based instance number -> status


def sc_f_statuses(wd: str, img: Images) -> Scenario:
    """(f) storescu (--no-halt, -R: only the CT contexts the pynetdicom SCP supports, so
    no SOP class is refused) sends 10 images to a pynetdicom SCP told to answer
    0xA700 for instance 3, 0xB000 for 5 and 0xC000 for 8 (selected by SOPInstanceUID)."""
    pcap = os.path.join(wd, "f_statuses.pcap")
    uids = img.uids("s10")
    cfg = {
        "ae_title": "PYSCP",
        "store_status": {uids[i - 1]: hexstatus(s) for i, s in F_STATUSES.items()},
    }
    with VethPair() as net:
        scp = start_pyscp(net, "b", wd, cfg)
        with net.capture("a", pcap):
            # storescu exits non-zero when a store failed; that is the point here.
            net.run(
                "a",
                [
                    dcmtk("storescu"),
                    "-nh",
                    "-R",
                    "-aet",
                    "STORESCU",
                    "-aec",
                    "PYSCP",
                    net.ip("b"),
                    str(SCP_PORT),
                    *img.paths("s10"),
                ],
                check=False,
            )
        stop(scp)
    log = read_scp_log(wd)
    answered = Counter(r["status"] for r in log if r["op"] == "C-STORE")
    want = Counter({"0x0000": 10 - len(F_STATUSES)})
    want.update(hexstatus(s) for s in F_STATUSES.values())
    if answered != want:
        raise netns.NetnsError(f"SCP answered {answered}, wanted {want}")
    exp = _store_expect("STORESCU", "PYSCP", 10)
    exp["responses"] = {"C-STORE": dict(want)}
    exp["status_classes"] = {hexstatus(s): status_class(s) for s in [0, *F_STATUSES.values()]}
    exp["findings_present"] = ["out-of-resources"]
    exp["findings_absent"] = ["aborts", "association-rejected", "no-accepted-context"]
    return Scenario("f_statuses", pcap, exp)


G_DELAY_MS = 200


def sc_g_slow_scp(wd: str, img: Images) -> Scenario:
    """(g) pynetdicom SCP sleeping 200 ms before answering each of 10 C-STOREs (storescu -R:
    only the CT contexts are proposed)."""
    pcap = os.path.join(wd, "g_slow_scp.pcap")
    with VethPair() as net:
        scp = start_pyscp(net, "b", wd, {"ae_title": "SLOWSCP", "store_delay_ms": G_DELAY_MS})
        with net.capture("a", pcap):
            _check(
                net.run(
                    "a",
                    [
                        dcmtk("storescu"),
                        "-R",
                        "-aet",
                        "STORESCU",
                        "-aec",
                        "SLOWSCP",
                        net.ip("b"),
                        str(SCP_PORT),
                        *img.paths("s10"),
                    ],
                ),
                "storescu",
            )
        stop(scp)
    # Service time = the sleep + pynetdicom's own handling (a few ms on this host).
    exp = _store_expect(
        "STORESCU",
        "SLOWSCP",
        10,
        response_latency_ms={"C-STORE": [G_DELAY_MS, G_DELAY_MS + 15]},
        latency_agreement_ms=3.0,
    )
    return Scenario("g_slow_scp", pcap, exp)


H_PENDING = 20


def sc_h_find20(wd: str, img: Images) -> Scenario:
    """(h) DCMTK findscu (patient root) against a pynetdicom SCP that returns 20 pending
    matches then success."""
    pcap = os.path.join(wd, "h_find20.pcap")
    with VethPair() as net:
        scp = start_pyscp(net, "b", wd, {"ae_title": "QRSCP", "find_pending": H_PENDING})
        with net.capture("a", pcap):
            _check(
                net.run(
                    "a",
                    [
                        dcmtk("findscu"),
                        "-P",
                        "-aet",
                        "FINDSCU",
                        "-aec",
                        "QRSCP",
                        "-k",
                        "QueryRetrieveLevel=PATIENT",
                        "-k",
                        "PatientName=TEST*",
                        "-k",
                        "PatientID",
                        net.ip("b"),
                        str(SCP_PORT),
                    ],
                ),
                "findscu",
            )
        stop(scp)
    exp = {
        "association_requests": 1,
        "associations": [
            {
                "calling_ae": "FINDSCU",
                "called_ae": "QRSCP",
                "outcome": "accepted",
                "end": "released",
            }
        ],
        "requests": {"C-FIND": 1},
        "responses": {"C-FIND": {"0xFF00": H_PENDING, "0x0000": 1}},
        "findings_absent": ["aborts", "association-rejected", "no-accepted-context"],
    }
    return Scenario("h_find20", pcap, exp)


I_SUBOPS = 5


def sc_i_move5(wd: str, img: Images) -> Scenario:
    """(i) DCMTK movescu asks the pynetdicom SCP (QRSCP) to move 5 images to STORESCP
    (a DCMTK storescp in namespace a, port 11113): 5 C-STORE sub-operations on a second
    association QRSCP -> STORESCP, 5 pending C-MOVE responses and a final success."""
    pcap = os.path.join(wd, "i_move5.pcap")
    with VethPair() as net:
        dest = start_storescp(net, "a", DEST_PORT, "STORESCP")
        scp = start_pyscp(
            net,
            "b",
            wd,
            {
                "ae_title": "QRSCP",
                "move": {
                    "destinations": {"STORESCP": [net.ip("a"), DEST_PORT]},
                    "files": img.paths("s5")[:I_SUBOPS],
                },
            },
        )
        with net.capture("a", pcap):
            _check(
                net.run(
                    "a",
                    [
                        dcmtk("movescu"),
                        "-P",
                        "-aet",
                        "MOVESCU",
                        "-aec",
                        "QRSCP",
                        "-aem",
                        "STORESCP",
                        "-k",
                        "QueryRetrieveLevel=PATIENT",
                        "-k",
                        "PatientID=TEST0001",
                        net.ip("b"),
                        str(SCP_PORT),
                    ],
                ),
                "movescu",
            )
        stop(scp)
        stop(dest)
    exp = {
        "association_requests": 2,
        "associations": [
            {
                "calling_ae": "MOVESCU",
                "called_ae": "QRSCP",
                "outcome": "accepted",
                "end": "released",
            },
            {
                "calling_ae": "QRSCP",
                "called_ae": "STORESCP",
                "outcome": "accepted",
                "end": "released",
            },
        ],
        "requests": {"C-MOVE": 1, "C-STORE": I_SUBOPS},
        "responses": {"C-MOVE": {"0xFF00": I_SUBOPS, "0x0000": 1}, "C-STORE": {"0x0000": I_SUBOPS}},
        "suboperations": {"C-MOVE": {"completed": I_SUBOPS}},
        "command_aes": {"C-MOVE": ["MOVESCU", "QRSCP"], "C-STORE": ["QRSCP", "STORESCP"]},
        "findings_absent": ["aborts", "association-rejected", "no-accepted-context"],
    }
    return Scenario("i_move5", pcap, exp, ports=[SCP_PORT, DEST_PORT])


J_DROP = 0.02


def sc_j_loss(wd: str, img: Images) -> Scenario:
    """(j) 2% random drop (iptables statistic, data segments only) on packets entering
    the SCP namespace while storescu stores 30 images of 128x128: retransmissions, and
    every store still succeeds. Captured on the sender's veth (sees both copies)."""
    pcap = os.path.join(wd, "j_loss.pcap")
    with VethPair() as net:
        scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
        net.add_random_drop("b", J_DROP, min_length=100)
        with net.capture("a", pcap):
            _storescu(net, "ANY-SCP", img.paths("s30"), timeout=120)
        dropped = net.dropped_packets("b")
        stop(scp)
    if dropped < 1:
        raise netns.NetnsError("iptables dropped nothing: the loss scenario proves nothing")
    exp = _store_expect("STORESCU", "ANY-SCP", 30, min_retransmissions={"requestor": 1})
    exp["findings_present"] = ["retransmissions"]
    return Scenario("j_loss", pcap, exp, notes={"iptables_dropped": dropped})


def sc_k_ipv6(wd: str, img: Images) -> Scenario:
    """(k) IPv6: pynetdicom's storescu app -> pynetdicom SCP on [fd00::2]:11112 (DCMTK
    3.6.7 cannot do IPv6), 5 images; -cx: only the contexts the files need."""
    pcap = os.path.join(wd, "k_ipv6.pcap")
    with VethPair() as net:
        scp = start_pyscp(net, "b", wd, {"ae_title": "V6SCP", "bind": "::"})
        with net.capture("a", pcap):
            _check(
                net.run(
                    "a",
                    [
                        PY,
                        "-m",
                        "pynetdicom",
                        "storescu",
                        "-aet",
                        "STORESCU6",
                        "-aec",
                        "V6SCP",
                        "-xe",
                        "-cx",
                        net.ip6("b"),
                        str(SCP_PORT),
                        *img.paths("s5"),
                    ],
                ),
                "pynetdicom storescu",
            )
        stop(scp)
    stored = [r for r in read_scp_log(wd) if r["op"] == "C-STORE"]
    if len(stored) != 5:
        raise netns.NetnsError(f"IPv6 SCP saw {len(stored)} C-STOREs, wanted 5")
    exp = _store_expect("STORESCU6", "V6SCP", 5, ip_version=6)
    return Scenario("k_ipv6", pcap, exp)


L_VLAN = 100


def _storescu(net: VethPair, called_ae: str, paths: list[str], **run_kw) -> None:
    """DCMTK storescu (calling AE STORESCU) in namespace a sends ``paths`` to the SCP in b."""
    argv = [dcmtk("storescu"), "-aet", "STORESCU", "-aec", called_ae, net.ip("b")]
    _check(net.run("a", [*argv, str(SCP_PORT), *paths], **run_kw), "storescu")


def sc_l_vlan(wd: str, img: Images) -> Scenario:
    """(l) 802.1Q-tagged frames (VLAN 100), captured on the parent veth.

    Preferred: the peers talk over VLAN subinterfaces (veth.100) and tcpdump captures on
    the parent veth. Kernels built without CONFIG_VLAN_8021Q cannot create them; then the
    same store is captured untagged, tagged with tcprewrite, and replayed through the veth
    (tcpreplay, original timing) and re-captured on the far end, so the kernel's receive
    path (tag moved to skb metadata, rebuilt by libpcap) is still exercised.
    """
    pcap = os.path.join(wd, "l_vlan.pcap")
    method = "subinterface" if netns.vlan_supported() else "tcprewrite+tcpreplay"
    if method == "subinterface":
        with VethPair(vlan=L_VLAN) as net:
            scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
            with net.capture("a", pcap, iface=net.iface("a")):
                _storescu(net, "VLAN-SCP", img.paths("s5"))
            stop(scp)
    else:
        plain = os.path.join(wd, "l_untagged.pcap")
        tagged = os.path.join(wd, "l_tagged_replay.pcap")
        with VethPair() as net:
            scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
            with net.capture("a", plain):
                _storescu(net, "VLAN-SCP", img.paths("s5"))
            stop(scp)
        _check(
            subprocess.run(
                [
                    "tcprewrite",
                    "--enet-vlan=add",
                    f"--enet-vlan-tag={L_VLAN}",
                    "--enet-vlan-cfi=0",
                    "--enet-vlan-pri=0",
                    f"--infile={plain}",
                    f"--outfile={tagged}",
                ],
                capture_output=True,
                text=True,
            ),
            "tcprewrite",
        )
        with VethPair(ipv6=False) as net, net.capture("b", pcap, bpf="vlan"):
            _check(net.run("a", ["tcpreplay", "-q", "-i", net.iface("a"), tagged]), "tcpreplay")
    exp = _store_expect("STORESCU", "VLAN-SCP", 5, vlan_id=L_VLAN, max_frame_len=1518)
    return Scenario("l_vlan", pcap, exp, notes={"method": method})


M_SEEN_BEFORE_CUT = 20  # responses before the cut


def sc_m_midstream(wd: str, img: Images, base: Scenario) -> Scenario:
    """(m) Scenario (a)'s capture with its first K packets removed (editcap): it now
    starts inside the dataset of the 21st C-STORE-RQ, after the 20th response."""
    pcap = os.path.join(wd, "m_midstream.pcap")
    view = tshark_view(base.pcap, base.ports)
    rsp_frames = sorted(m["frame"] for m in view.commands if m["command"] == "C-STORE-RSP")
    f20 = rsp_frames[M_SEEN_BEFORE_CUT - 1]
    client_data = [
        fr["frame"]
        for fr in view.frames
        if fr["frame"] > f20 and fr["dport"] == SCP_PORT and fr["tcp_len"] > 0
    ]
    # The 21st request: command PDU first, then dataset segments; cut after the 3rd.
    k = client_data[3] - 1  # delete frames 1..k: the capture starts mid-dataset
    _check(
        subprocess.run(["editcap", base.pcap, pcap, f"1-{k}"], capture_output=True, text=True),
        "editcap",
    )
    n_after = 50 - M_SEEN_BEFORE_CUT
    exp = {
        # the A-RELEASE-RQ/RP exchange is after the cut: the association still ends released
        "associations": [{"calling_ae": "unknown", "called_ae": "unknown", "end": "released"}],
        "association_requests": 0,
        # Requests 22..50 and their responses are complete; the 21st request was cut, its
        # response is whole: whether it is counted is the analyser's choice.
        "responses_any_of": {"C-STORE": {"0x0000": [n_after - 1, n_after]}},
        "findings_present": ["capture-incomplete"],
        "findings_absent": ["association-rejected", "aborts"],
        "max_frame_len": 1514,
    }
    return Scenario("m_midstream", pcap, exp, notes={"deleted_frames": k})


SCENARIOS: dict[str, Callable[[str, Images], Scenario]] = {
    "a_store50": sc_a_store50,
    "b_echo3": sc_b_echo3,
    "c_context_rejected": sc_c_context_rejected,
    "d_assoc_rejected": sc_d_assoc_rejected,
    "e_abort": sc_e_abort_mid_dataset,
    "f_statuses": sc_f_statuses,
    "g_slow_scp": sc_g_slow_scp,
    "h_find20": sc_h_find20,
    "i_move5": sc_i_move5,
    "j_loss": sc_j_loss,
    "k_ipv6": sc_k_ipv6,
    "l_vlan": sc_l_vlan,
}
ALL_NAMES = [*SCENARIOS, "m_midstream"]


def generate_all(
    workdir: str, *, parallel: int = 4, only: list[str] | None = None
) -> dict[str, Scenario]:
    """Run every scenario (each in its own namespace pair, ``parallel`` at a time, the
    latency-sensitive (g) alone first) and derive (m) from (a). Raises on any failure."""
    require_all_tools()
    names = only or ALL_NAMES
    img = make_images(os.path.join(workdir, "images"))
    out: dict[str, Scenario] = {}

    def one(name: str) -> Scenario:
        wd = os.path.join(workdir, name)
        os.makedirs(wd, exist_ok=True)
        t0 = time.monotonic()
        sc = SCENARIOS[name](wd, img)
        sc.seconds = time.monotonic() - t0
        return sc

    todo = [n for n in names if n in SCENARIOS]
    if "m_midstream" in names and "a_store50" not in todo:
        todo.append("a_store50")
    first = [n for n in todo if n == "g_slow_scp"]  # timing: run it on a quiet machine
    rest = [n for n in todo if n not in first]
    for n in first:
        out[n] = one(n)
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as ex:
        for n, sc in zip(rest, ex.map(one, rest), strict=True):
            out[n] = sc
    if "m_midstream" in names:
        t0 = time.monotonic()
        wd = os.path.join(workdir, "m_midstream")
        os.makedirs(wd, exist_ok=True)
        out["m_midstream"] = sc_m_midstream(wd, img, out["a_store50"])
        out["m_midstream"].seconds = time.monotonic() - t0
    return out


# --------------------------------------------------------------------------------------
# tshark: an independent second opinion on the captures
# --------------------------------------------------------------------------------------
COMMAND_FIELDS = {
    0x0001: "C-STORE-RQ",
    0x8001: "C-STORE-RSP",
    0x0010: "C-GET-RQ",
    0x8010: "C-GET-RSP",
    0x0020: "C-FIND-RQ",
    0x8020: "C-FIND-RSP",
    0x0021: "C-MOVE-RQ",
    0x8021: "C-MOVE-RSP",
    0x0030: "C-ECHO-RQ",
    0x8030: "C-ECHO-RSP",
    0x0FFF: "C-CANCEL-RQ",
}


@dataclass
class TsharkView:
    frames: list[dict]  # every TCP frame: frame, ts, len, ip_version, sport, dport,
    # tcp_len, retrans, tshark_flagged (bool), vlan (int or None)
    commands: list[dict]  # every DIMSE command: frame, ts, sport, dport, command, msg_id,
    # responding_to, status, remaining/completed/failed/warning
    pdus: list[dict]  # association PDUs: frame, ts, type, and decoded fields
    max_frame_len: int = 0  # over every frame in the file (TCP or not)

    def responses(self, command: str) -> Counter:
        return Counter(
            hexstatus(c["status"]) for c in self.commands if c["command"] == f"{command}-RSP"
        )

    def requests(self, command: str) -> int:
        return sum(1 for c in self.commands if c["command"] == f"{command}-RQ")

    def retransmissions(self, sport: int | None = None, dport: int | None = None) -> int:
        return sum(
            1
            for f in self.frames
            if f["retrans"]
            and f["tcp_len"] > 0
            and (sport is None or f["sport"] == sport)
            and (dport is None or f["dport"] == dport)
        )


def _tshark(args: list[str], timeout: float = 120) -> str:
    p = subprocess.run(["tshark", *args], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"tshark {' '.join(args)} failed: {p.stderr}")
    return p.stdout


def _decode_as(ports: list[int]) -> list[str]:
    out = []
    for port in ports:
        out += ["-d", f"tcp.port=={port},dicom"]
    return out


def _elements(raw: bytes) -> dict[int, bytes]:
    """Implicit VR LE group-0000 elements of one command element's raw bytes."""
    out = {}
    pos = 0
    while pos + 8 <= len(raw):
        group, elem, length = (
            int.from_bytes(raw[pos : pos + 2], "little"),
            int.from_bytes(raw[pos + 2 : pos + 4], "little"),
            int.from_bytes(raw[pos + 4 : pos + 8], "little"),
        )
        out[(group << 16) | elem] = raw[pos + 8 : pos + 8 + length]
        pos += 8 + length
    return out


def _us(v: bytes | None) -> int | None:
    return int.from_bytes(v[:2], "little") if v and len(v) >= 2 else None


def tshark_view(pcap: str, ports: list[int]) -> TsharkView:
    """Decode ``pcap`` with tshark (DICOM forced on ``ports``) into plain records."""
    frames = []
    fields = [
        "frame.number",
        "frame.time_epoch",
        "frame.len",
        "ip.version",
        "ipv6.version",
        "tcp.srcport",
        "tcp.dstport",
        "tcp.len",
        "vlan.id",
        "tcp.stream",
        "tcp.seq",
    ]
    text = _tshark(
        [
            "-r",
            pcap,
            "-n",
            "-T",
            "fields",
            "-E",
            "separator=\t",
            "-E",
            "occurrence=f",
            *sum((["-e", f] for f in fields), []),
        ]
    )
    flagged = {
        int(x)
        for x in _tshark(
            [
                "-r",
                pcap,
                "-n",
                "-Y",
                "tcp.analysis.retransmission or tcp.analysis.fast_retransmission",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ]
        ).split()
    }
    # Retransmission = a data segment whose sequence range overlaps data already sent in
    # that direction (tshark's relative sequence numbers). tshark's own flags call some of
    # them "out-of-order" when they follow the original closely; with the capture on the
    # sender's veth nothing can be reordered, so overlap is the reliable definition.
    sent: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for line in text.splitlines():
        f = line.split("\t")
        f += [""] * (len(fields) - len(f))
        if not f[5]:
            continue  # not TCP (ARP, ICMPv6...)
        tcp_len = int(f[7] or 0)
        retrans = False
        if tcp_len:
            seen = sent.setdefault((int(f[9]), int(f[5])), [])
            a, b = int(f[10]), int(f[10]) + tcp_len
            retrans = any(x < b and a < y for x, y in seen)
            seen.append((a, b))
        frames.append(
            {
                "frame": int(f[0]),
                "ts": float(f[1]),
                "len": int(f[2]),
                "ip_version": 6 if f[4] else 4,
                "sport": int(f[5]),
                "dport": int(f[6]),
                "tcp_len": tcp_len,
                "retrans": retrans,
                "tshark_flagged": int(f[0]) in flagged,
                "vlan": int(f[8]) if f[8] else None,
            }
        )
    all_frames_len = [int(line.split("\t")[2]) for line in text.splitlines()]

    commands: list[dict] = []
    pdus: list[dict] = []
    pdml = _tshark(["-r", pcap, "-n", *_decode_as(ports), "-Y", "dicom", "-T", "pdml"])
    root = ET.fromstring(pdml)
    for packet in root.iter("packet"):
        info: dict = {}
        for proto in packet.findall("proto"):
            pname = proto.get("name")
            if pname == "geninfo":
                for fl in proto.iter("field"):
                    if fl.get("name") == "num":
                        info["frame"] = int(fl.get("show"))
                    elif fl.get("name") == "timestamp":
                        info["ts"] = float(fl.get("value"))
            elif pname == "tcp":
                for fl in proto.findall("field"):
                    if fl.get("name") == "tcp.srcport":
                        info["sport"] = int(fl.get("show"))
                    elif fl.get("name") == "tcp.dstport":
                        info["dport"] = int(fl.get("show"))
            elif pname == "dicom":
                _dicom_proto(proto, info, commands, pdus)
    return TsharkView(frames, commands, pdus, max(all_frames_len, default=0))


def _dicom_proto(proto: ET.Element, info: dict, commands: list, pdus: list) -> None:
    base = {k: info.get(k) for k in ("frame", "ts", "sport", "dport")}
    ptype = None
    for fl in proto.findall("field"):
        if fl.get("name") == "dicom.pdu.type":
            ptype = int(fl.get("show"), 16)
    if ptype in (1, 2, 3, 5, 6, 7):
        rec = {**base, "type": ptype}
        for fl in proto.iter("field"):
            n = fl.get("name")
            if n == "dicom.assoc.ae.calling":
                rec["calling_ae"] = fl.get("show").strip()
            elif n == "dicom.assoc.ae.called":
                rec["called_ae"] = fl.get("show").strip()
            elif n == "dicom.pctx.result":
                rec.setdefault("pctx_results", []).append(int(fl.get("show"), 0))
            elif n == "dicom.pctx.abss.syntax":
                rec.setdefault("abstract_syntaxes", []).append(fl.get("show"))
            elif n in (
                "dicom.assoc.reject.result",
                "dicom.assoc.reject.source",
                "dicom.assoc.reject.reason",
                "dicom.assoc.abort.source",
                "dicom.assoc.abort.reason",
                "dicom.userinfo.user_identify.type",
            ):
                rec[n.split(".", 2)[2]] = int(fl.get("show"), 0)
            elif n == "dicom.userinfo.user_identify.primary_field":
                rec["user_identity.primary"] = fl.get("show")
        pdus.append(rec)
        return
    if ptype != 4:
        return
    for pdv in proto.findall("field"):
        if not (pdv.get("show") or "").startswith("PDV"):
            continue
        flags = None
        raw = b""
        for fl in pdv.findall("field"):
            if fl.get("name") == "dicom.pdv.flags":
                flags = int(fl.get("show"), 16)
            elif fl.get("name") == "" and (fl.get("show") or "").startswith("(0000,"):
                raw += bytes.fromhex(fl.get("value") or "")
        if flags is None or not flags & 0x01 or not raw:
            continue
        el = _elements(raw)
        field_ = _us(el.get(0x00000100))
        commands.append(
            {
                **base,
                "command": COMMAND_FIELDS.get(field_, f"0x{field_:04X}" if field_ else "?"),
                "msg_id": _us(el.get(0x00000110)),
                "responding_to": _us(el.get(0x00000120)),
                "status": _us(el.get(0x00000900)),
                "remaining": _us(el.get(0x00001020)),
                "completed": _us(el.get(0x00001021)),
                "failed": _us(el.get(0x00001022)),
                "warning": _us(el.get(0x00001023)),
            }
        )


def tcp_response_latencies_ms(view: TsharkView, command: str, server_port: int) -> list[float]:
    """Service time as DESIGN §3 defines it, measured with tshark's frames only: for every
    response, its frame time minus the time of the last client->server data frame before
    it (the frame that completed the request; the SCU sends nothing while it waits)."""
    out = []
    data = [
        (f["frame"], f["ts"]) for f in view.frames if f["dport"] == server_port and f["tcp_len"] > 0
    ]
    for c in view.commands:
        if c["command"] != f"{command}-RSP" or c["sport"] != server_port:
            continue
        # first frame of the response: the response PDU is small, one frame here
        before = [ts for fr, ts in data if fr < c["frame"]]
        out.append((c["ts"] - before[-1]) * 1000.0)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def cleanup(workdir: str) -> None:
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":  # manual use: python3 tests/scenarios.py OUTDIR [names...]
    t0 = time.monotonic()
    res = generate_all(sys.argv[1], only=sys.argv[2:] or None)
    for n, sc in res.items():
        print(f"{n:22s} {sc.seconds:6.2f}s {sc.pcap} {sc.notes}")
    print(f"total {time.monotonic() - t0:.1f}s")


# ======================================================================================
# More scenarios (tests/test_real_traffic_more.py): TLS, any-port detection, connection
# failures, `-i any` (SLL/SLL2), pcapng, snaplen. Own registry and generator, so the
# session fixture of test_real_traffic.py is unaffected.
# ======================================================================================
ANYPORT = 5104
SNAPLEN = 200
TLS_STORES = 3


def _start_tcpdump(
    net: VethPair, side: str, path: str, *extra: str, iface: str | None = None, snaplen: int = 0
) -> netns.Capture:
    """tcpdump with extra options (``-y LINUX_SLL``...); stop with ``.stop()``."""
    argv = [
        "tcpdump",
        "-i",
        iface or net.iface(side),
        "-w",
        path,
        "-U",
        "-s",
        str(snaplen),
        "-n",
        "-B",
        "16384",
        "-Z",
        "root",
        "--immediate-mode",
        *extra,
    ]
    proc = net.popen(side, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cap = netns.Capture(proc, path)
    cap.start()
    return cap


def _stop_capture(cap: netns.Capture) -> None:
    cap.stop()
    if cap.dropped_by_kernel:
        raise netns.NetnsError(f"tcpdump dropped {cap.dropped_by_kernel} packets: {cap.path}")
    if not cap.captured:
        raise netns.NetnsError(f"tcpdump captured nothing: {cap.path}")


def make_tls_material(wd: str) -> dict[str, str]:
    """Two unrelated self-signed certificates (server, client), made with openssl req."""
    out = {}
    for who in ("server", "client"):
        key, crt = os.path.join(wd, f"{who}.key"), os.path.join(wd, f"{who}.pem")
        _check(
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    key,
                    "-out",
                    crt,
                    "-days",
                    "2",
                    "-subj",
                    f"/CN=dsniff-{who}",
                ],
                capture_output=True,
                text=True,
            ),
            "openssl req",
        )
        out[f"{who}_key"], out[f"{who}_crt"] = key, crt
    return out


def sc_n_tls(wd: str, files: list[str]) -> Scenario:
    """(n) TLS on port 11112, six connections in one capture:
    1. DCMTK storescu +tls -> storescp +tls (mutual certificates): 3 images stored;
    2. DCMTK storescu +tls that does not trust the server's certificate: client alert;
    3. openssl s_client -tls1_2 without a client certificate -> s_server -Verify 1:
       the server's (cleartext) alert;
    4. the same with -tls1_3: the server's alert is encrypted (a short record);
    5./6. s_client -tls1_2 / -tls1_3 with a trusted client certificate: one line each way.
    Expected: 3 established, 3 handshake-failed."""
    pcap = os.path.join(wd, "n_tls.pcap")
    m = make_tls_material(wd)
    notes: dict = {}
    with VethPair() as net:
        cap = _start_tcpdump(net, "a", pcap)
        try:
            scp = net.popen(
                "b",
                [
                    dcmtk("storescp"),
                    "-aet",
                    "TLSSCP",
                    "--ignore",
                    "-ta",
                    "30",
                    "+tls",
                    m["server_key"],
                    m["server_crt"],
                    "-pw",
                    "+cf",
                    m["client_crt"],
                    "-rc",
                    str(SCP_PORT),
                ],
            )
            net.wait_listening("b", SCP_PORT, proc=scp)
            ok = net.run(
                "a",
                [
                    dcmtk("storescu"),
                    "-aet",
                    "TLSSCU",
                    "-aec",
                    "TLSSCP",
                    "+tls",
                    m["client_key"],
                    m["client_crt"],
                    "-pw",
                    "+cf",
                    m["server_crt"],
                    net.ip("b"),
                    str(SCP_PORT),
                    *files,
                ],
                check=False,
            )
            if ok.returncode != 0:
                raise netns.NetnsError(f"storescu over TLS failed:\n{ok.stdout}{ok.stderr}")
            bad = net.run(
                "a",
                [
                    dcmtk("storescu"),
                    "-aet",
                    "TLSSCU",
                    "-aec",
                    "TLSSCP",
                    "+tls",
                    m["client_key"],
                    m["client_crt"],
                    "-pw",
                    net.ip("b"),
                    str(SCP_PORT),
                    files[0],
                ],
                check=False,
            )
            if bad.returncode == 0:
                raise netns.NetnsError("storescu trusted an unknown server certificate")
            notes["untrusted"] = (bad.stdout + bad.stderr)[-400:]
            stop(scp)
            # -rev: the server answers every line (reversed), so both sides send data
            srv = net.popen(
                "b",
                [
                    "openssl",
                    "s_server",
                    "-accept",
                    str(SCP_PORT),
                    "-cert",
                    m["server_crt"],
                    "-key",
                    m["server_key"],
                    "-Verify",
                    "1",
                    "-CAfile",
                    m["client_crt"],
                    "-naccept",
                    "4",
                    "-rev",
                ],
            )
            net.wait_listening("b", SCP_PORT, proc=srv)
            for version, with_cert in (
                ("-tls1_2", False),
                ("-tls1_3", False),
                ("-tls1_2", True),
                ("-tls1_3", True),
            ):
                client = [
                    "openssl",
                    "s_client",
                    "-connect",
                    f"{net.ip('b')}:{SCP_PORT}",
                    version,
                    "-CAfile",
                    m["server_crt"],
                ]
                if with_cert:
                    client += ["-cert", m["client_crt"], "-key", m["client_key"]]
                # stdin stays open a moment so the answer arrives before the client quits
                p = net.run(
                    "a",
                    ["sh", "-c", f"(echo dicom-over-tls; sleep 0.4) | {' '.join(client)}"],
                    check=False,
                )
                out = p.stdout + p.stderr
                notes[f"{version}{'+cert' if with_cert else ''}"] = out[-300:]
                if with_cert and "slt-revo-mocid" not in out:
                    raise netns.NetnsError(
                        f"s_client {version} with a certificate got no answer:\n{out[-2000:]}"
                    )
            stop(srv)
        finally:
            _stop_capture(cap)
    exp = {"tls": {"established": 3, "handshake-failed": 3}, "server_port": SCP_PORT}
    return Scenario("n_tls", pcap, exp, notes=notes)


def sc_o_anyport(wd: str, files: list[str]) -> Scenario:
    """(o) storescp on port 5104 (not a configured DICOM port), storescu sends 3 images."""
    pcap = os.path.join(wd, "o_anyport.pcap")
    with VethPair() as net:
        scp = start_storescp(net, "b", ANYPORT, "STORESCP")
        with net.capture("a", pcap):
            _check(
                net.run(
                    "a",
                    [
                        dcmtk("storescu"),
                        "-aet",
                        "ANYSCU",
                        "-aec",
                        "ANY-PORT-SCP",
                        net.ip("b"),
                        str(ANYPORT),
                        *files[:3],
                    ],
                ),
                "storescu",
            )
        stop(scp)
    exp = _store_expect("ANYSCU", "ANY-PORT-SCP", 3)
    return Scenario("o_anyport", pcap, exp, ports=[ANYPORT])


def sc_p_conn_failures(wd: str, files: list[str]) -> Scenario:
    """(p) storescu to 11112 with nothing listening (RST: refused); then SYNs to 11112
    dropped by iptables in the server namespace while echoscu -to 2 tries (unanswered);
    then a working C-ECHO to storescp on 11113 moves the capture clock on (> 1 s)."""
    pcap = os.path.join(wd, "p_failures.pcap")
    with VethPair(ipv6=False) as net, net.capture("a", pcap):
        p = net.run(
            "a",
            [
                dcmtk("storescu"),
                "-aet",
                "REFUSEDSCU",
                "-aec",
                "NOBODY",
                net.ip("b"),
                str(SCP_PORT),
                files[0],
            ],
            check=False,
        )
        if p.returncode == 0:
            raise netns.NetnsError("storescu to a closed port succeeded")
        net.run(
            "b",
            [
                "iptables",
                "-w",
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "--dport",
                str(SCP_PORT),
                "--syn",
                "-j",
                "DROP",
            ],
        )
        t0 = time.monotonic()
        p = net.run(
            "a",
            [
                dcmtk("echoscu"),
                "-to",
                "2",
                "-aet",
                "DROPSCU",
                "-aec",
                "NOBODY",
                net.ip("b"),
                str(SCP_PORT),
            ],
            check=False,
        )
        if p.returncode == 0:
            raise netns.NetnsError("echoscu through a SYN DROP succeeded")
        waited = time.monotonic() - t0
        dropped = net.dropped_packets("b")
        scp = start_storescp(net, "b", DEST_PORT, "LATESCP")
        _check(
            net.run(
                "a",
                [
                    dcmtk("echoscu"),
                    "-aet",
                    "LATESCU",
                    "-aec",
                    "LATESCP",
                    net.ip("b"),
                    str(DEST_PORT),
                ],
            ),
            "echoscu",
        )
        stop(scp)
    exp = {
        "failures": {
            (f"{_ip4(net)}:{SCP_PORT}", "refused"): 1,
            (f"{_ip4(net)}:{SCP_PORT}", "unanswered"): 1,
        },
        "syn_dropped": dropped,
    }
    return Scenario(
        "p_failures",
        pcap,
        exp,
        ports=[SCP_PORT, DEST_PORT],
        notes={"echoscu_waited_s": round(waited, 2), "iptables_dropped": dropped},
    )


def _ip4(net: VethPair) -> str:
    return net.ip("b")


def sc_q_any_iface(wd: str, files: list[str]) -> Scenario:
    """(q) storescu -> storescp (5 images) captured with tcpdump -i any inside the client
    namespace, twice at once: the default link type (SLL2) and -y LINUX_SLL (SLL)."""
    sll2 = os.path.join(wd, "q_any_sll2.pcap")
    sll = os.path.join(wd, "q_any_sll.pcap")
    with VethPair() as net:
        scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
        caps = [
            _start_tcpdump(net, "a", sll2, iface="any"),
            _start_tcpdump(net, "a", sll, "-y", "LINUX_SLL", iface="any"),
        ]
        try:
            _check(
                net.run(
                    "a",
                    [
                        dcmtk("storescu"),
                        "-aet",
                        "ANYIFSCU",
                        "-aec",
                        "ANYIF-SCP",
                        net.ip("b"),
                        str(SCP_PORT),
                        *files,
                    ],
                ),
                "storescu",
            )
        finally:
            for c in caps:
                _stop_capture(c)
        stop(scp)
    exp = _store_expect("ANYIFSCU", "ANYIF-SCP", len(files))
    return Scenario("q_any_iface", sll2, exp, notes={"sll": sll})


def sc_r_snaplen(wd: str, files: list[str]) -> Scenario:
    """(r) storescu -> storescp (5 images, 64x64 CT) captured with tcpdump -s 200."""
    pcap = os.path.join(wd, "r_snaplen.pcap")
    with VethPair() as net:
        scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
        cap = _start_tcpdump(net, "a", pcap, snaplen=SNAPLEN)
        try:
            _check(
                net.run(
                    "a",
                    [
                        dcmtk("storescu"),
                        "-aet",
                        "SNAPSCU",
                        "-aec",
                        "SNAP-SCP",
                        net.ip("b"),
                        str(SCP_PORT),
                        *files,
                    ],
                ),
                "storescu",
            )
        finally:
            _stop_capture(cap)
        stop(scp)
    exp = {
        "association_requests": 1,
        "calling_ae": "SNAPSCU",
        "called_ae": "SNAP-SCP",
        "stores": len(files),
        "statuses_sent": {"0x0000"},
    }
    return Scenario("r_snaplen", pcap, exp)


MORE_SCENARIOS: dict[str, Callable[[str, list[str]], Scenario]] = {
    "n_tls": sc_n_tls,
    "o_anyport": sc_o_anyport,
    "p_failures": sc_p_conn_failures,
    "q_any_iface": sc_q_any_iface,
    "r_snaplen": sc_r_snaplen,
}


def generate_more(workdir: str, *, parallel: int = 5) -> dict[str, Scenario]:
    """Run the MORE_SCENARIOS (each in its own namespace pair), in parallel."""
    require_all_tools()
    netns.require_tools("openssl")
    files = [p for p, _ in make_ct.make_series(os.path.join(workdir, "images"), 5, 64, series=21)]

    def one(name: str) -> Scenario:
        wd = os.path.join(workdir, name)
        os.makedirs(wd, exist_ok=True)
        t0 = time.monotonic()
        sc = MORE_SCENARIOS[name](wd, files)
        sc.seconds = time.monotonic() - t0
        return sc

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as ex:
        return dict(zip(MORE_SCENARIOS, ex.map(one, MORE_SCENARIOS), strict=True))

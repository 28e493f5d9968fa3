"""The core scenarios (a)-(i), one DICOM exchange each between real peers: C-STORE,
C-ECHO, a rejected presentation context, a rejected association, an A-ABORT mid-dataset,
failure/warning statuses, a slow SCP, C-FIND with pending matches, C-MOVE with
sub-operations."""

from __future__ import annotations

import json
import os
from collections import Counter

import netns
from netns import VethPair

from .plumbing import (
    DEST_PORT,
    PY,
    RAWSCU_SCRIPT,
    SCP_PORT,
    Images,
    Scenario,
    _check,
    _store_expect,
    _storescu,
    dcmtk,
    hexstatus,
    read_scp_log,
    start_pyscp,
    start_storescp,
    status_class,
    stop,
)


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

"""The product table against the real software (netns): each installable implementation
talks over real TCP between namespaces, and dicomsniffd must name it from what it sent.

  DCMTK echoscu     -> pynetdicom SCP (tests/peers/scp.py)   DCMTK requestor, pynetdicom acceptor
  GDCM gdcmscu      -> DCMTK storescp                        GDCM requestor, DCMTK acceptor
  pynetdicom C-ECHO -> Orthanc (its own JSON config)         pynetdicom requestor, Orthanc acceptor

The expected UIDs come from the software itself (pynetdicom's constants, the tools'
version output), never from dicomsniffd. Orthanc 1.10 is built on DCMTK's network stack
and sends DCMTK's UID and version name: the table names it "DCMTK", and says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess

import netns
import pynetdicom
import pytest
from netns import VethPair
from peers.orthanc import start_orthanc
from pipeline_captures import run
from scenarios.plumbing import PY, SCP_SCRIPT, dcmtk, start_storescp, stop

from dicomsniffd.config import Config

pytestmark = pytest.mark.netns

PY_PORT, DCMTK_PORT, ORTHANC_PORT = 11112, 11114, 11116
PORTS = (PY_PORT, DCMTK_PORT, ORTHANC_PORT)

_PYNETDICOM_ECHO = """
import sys
from pynetdicom import AE
from pynetdicom.sop_class import Verification
ae = AE(ae_title="PYECHO")
ae.add_requested_context(Verification)
assoc = ae.associate(sys.argv[1], int(sys.argv[2]), ae_title="ORTHANC")
assert assoc.is_established, "no association"
status = assoc.send_c_echo()
assoc.release()
sys.exit(0 if status and status.Status == 0 else 1)
"""


def _gdcm_version() -> str:
    out = subprocess.run(["gdcmscu", "--version"], capture_output=True, text=True).stdout
    match = re.search(r"gdcm (\d+\.\d+\.\d+)", out)
    assert match, out
    return match.group(1)


def _tshark_view(pcap: str) -> set[tuple]:
    """(AE, side, UID, version name, max PDU length) of every A-ASSOCIATE-RQ/AC, by tshark."""
    decode = [a for port in PORTS for a in ("-d", f"tcp.port=={port},dicom")]
    fields = ["dicom.pdu.type", "dicom.assoc.ae.calling", "dicom.assoc.ae.called",
              "dicom.userinfo.uid", "dicom.userinfo.version", "dicom.max_pdu_len"]  # fmt: skip
    out = subprocess.run(
        ["tshark", "-r", pcap, "-n", *decode, "-Y", "dicom.pdu.type == 1 || dicom.pdu.type == 2",
         "-T", "fields", *[a for f in fields for a in ("-e", f)]],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    seen = set()
    for line in out.splitlines():
        pdu, calling, called, uid, version, length = line.split("\t")
        side, ae = ("requestor", calling) if int(pdu, 0) == 1 else ("acceptor", called)
        seen.add((ae.strip(), side, uid, version, int(length)))
    return seen


def test_every_installable_implementation_is_named(tmp_path) -> None:
    netns.require_tools("gdcmscu", "Orthanc")
    wd = str(tmp_path)
    pcap = os.path.join(wd, "implementations.pcap")
    with VethPair() as net:
        pyscp_cfg = json.dumps({"ae_title": "PYSCP", "port": PY_PORT})
        pyscp = net.popen("b", [PY, SCP_SCRIPT, "--config", pyscp_cfg])
        net.wait_listening("b", PY_PORT, proc=pyscp)
        storescp = start_storescp(net, "b", DCMTK_PORT, "STORESCP")
        orthanc = start_orthanc(net, "b", wd, ORTHANC_PORT)
        b = net.ip("b")
        with net.capture("a", pcap):
            net.run("a", [dcmtk("echoscu"), "-aet", "DCMTKECHO", "-aec", "PYSCP", b, str(PY_PORT)])
            # gdcmscu 3.0.21 (Debian 12) aborts with "ProtocolStream as nullptr is invalid"
            # while tearing down after the echo: its exit status says nothing, so the
            # echo's success is read from the capture below.
            net.run(
                "a",
                ["gdcmscu", "--echo", "--call", "STORESCP", "--aetitle", "GDCMECHO",
                 b, str(DCMTK_PORT)],
                check=False,
            )  # fmt: skip
            net.run("a", [PY, "-c", _PYNETDICOM_ECHO, b, str(ORTHANC_PORT)])
        for proc in (pyscp, storescp, orthanc):
            stop(proc)
    config = Config()
    config = dataclasses.replace(config, dicom=dataclasses.replace(config.dicom, ports=PORTS))
    result = run(pcap, config)
    rows = {(r["ae"], r["side"]): r for r in result.summary["implementations"]}

    dcmtk_requestor = rows[("DCMTKECHO", "requestor")]
    assert dcmtk_requestor["product"] == "DCMTK"
    assert dcmtk_requestor["implementation_version_name"].startswith("OFFIS_DCMTK_")
    for ae in ("STORESCP", "ORTHANC"):
        assert rows[(ae, "acceptor")]["product"] == "DCMTK", ae
    for key in (("PYSCP", "acceptor"), ("PYECHO", "requestor")):
        assert rows[key]["product"] == "pynetdicom", key
        assert rows[key]["implementation_class_uid"] == pynetdicom.PYNETDICOM_IMPLEMENTATION_UID
        assert rows[key]["implementation_version_name"] == (
            pynetdicom.PYNETDICOM_IMPLEMENTATION_VERSION
        )
    echoes = {a["calling_ae"]: a["dimse"] for a in result.summary["associations"]}
    assert echoes == {ae: {"C-ECHO": {"0x0000": 1}} for ae in ("DCMTKECHO", "GDCMECHO", "PYECHO")}
    gdcm = rows[("GDCMECHO", "requestor")]
    assert gdcm["product"] == "GDCM"
    assert gdcm["implementation_version_name"] == f"GDCM {_gdcm_version()}"
    assert all(r["max_pdu_lengths"] and None not in r["max_pdu_lengths"] for r in rows.values())

    # tshark as second opinion: the same (AE, side, UID, version, Maximum Length) in the RQs/ACs
    assert _tshark_view(pcap) == {
        (ae, side, r["implementation_class_uid"], r["implementation_version_name"], length)
        for (ae, side), r in rows.items()
        for length in r["max_pdu_lengths"]
    }

    # the same facts in the metric (one series per AE and side) and the event log
    info = {
        (s.labels["ae"], s.labels["side"]): s.labels["implementation_class_uid"]
        for s in result.series("dicom_implementation_info")
    }
    assert info == {key: row["implementation_class_uid"] for key, row in rows.items()}
    lines = [e for e in result.events if e["type"] == "association"]
    assert len(lines) == 3
    assert {e["requestor_implementation"]["product"] for e in lines} == {
        "DCMTK",
        "GDCM",
        "pynetdicom",
    }
    assert {e["acceptor_implementation"]["product"] for e in lines} == {"DCMTK", "pynetdicom"}

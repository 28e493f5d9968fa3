"""Roles follow the message (DESIGN §3), on real peers: a C-GET's sub-operation C-STOREs run
from the acceptor to the requestor on the requestor's own association.

DCMTK getscu asks the pynetdicom SCP (tests/peers/scp.py, "get") for a patient; the SCP
sends the series back as C-STORE sub-operations. Captured between two namespaces, then
``dicomsniffd analyze --json``: those C-STOREs are downloads ("C-STORE (get)"), apart from
uploads, and the association's responses are not summed across directions. Expected
numbers come from how the peers were driven; tshark confirms the directions independently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from netns import VethPair
from scenarios import SCP_PORT, dcmtk, make_images, start_pyscp, stop

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parent.parent
SUBOPS = 5


@pytest.fixture(scope="module")
def get_capture(tmp_path_factory) -> str:
    wd = str(tmp_path_factory.mktemp("roles"))
    img = make_images(os.path.join(wd, "images"))
    pcap = os.path.join(wd, "get5.pcap")
    out = os.path.join(wd, "received")
    os.makedirs(out)
    with VethPair() as net:
        scp = start_pyscp(net, "b", wd, {"ae_title": "QRSCP", "get": {"files": img.paths("s5")}})
        with net.capture("a", pcap):
            p = net.run(
                "a",
                [
                    dcmtk("getscu"),
                    "-P",
                    "-aet", "GETSCU",
                    "-aec", "QRSCP",
                    "-k", "QueryRetrieveLevel=PATIENT",
                    "-k", "PatientID=TEST0001",
                    "-od", out,
                    net.ip("b"),
                    str(SCP_PORT),
                ],
            )  # fmt: skip
        stop(scp)
    assert p.returncode == 0, f"getscu failed: {p.stdout}\n{p.stderr}"
    assert len(os.listdir(out)) == SUBOPS, "getscu stored every sub-operation's object"
    return pcap


def _analyze(pcap: str) -> dict:
    p = subprocess.run(
        [sys.executable, "-m", "dicomsniffd", "analyze", pcap, "--json"],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=True,
    )  # fmt: skip
    return json.loads(p.stdout)


def _tshark_store_requests_from_scp(pcap: str) -> int:
    """C-STORE-RQ command sets sent from the SCP port, by tshark's DICOM dissector."""
    p = subprocess.run(
        ["tshark", "-r", pcap, "-n", "-d", f"tcp.port=={SCP_PORT},dicom",
         "-Y", f"tcp.srcport == {SCP_PORT} and dicom", "-T", "fields", "-e", "_ws.col.Info"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return p.stdout.count("C-STORE-RQ")


def test_c_get_suboperations_are_downloads(get_capture):
    assert _tshark_store_requests_from_scp(get_capture) == SUBOPS  # SCP -> SCU, as driven
    s = _analyze(get_capture)
    dimse = s["dimse"]
    assert "C-STORE" not in dimse, "no upload happened: nothing may be counted as one"
    got = dimse["C-STORE (get)"]
    assert got["requests"] == SUBOPS
    assert got["responses"] == {"0x0000": SUBOPS}  # the SCU's answers
    assert got["request_transfer_ms"]["count"] == SUBOPS  # the downloads, timed
    assert dimse["C-GET"]["responses"] == {"0xFF00": SUBOPS, "0x0000": 1}
    (assoc,) = s["associations"]
    assert (assoc["calling_ae"], assoc["called_ae"]) == ("GETSCU", "QRSCP")
    # per association: the SCP's responses (C-GET) apart from the SCU's (C-STORE (get))
    assert assoc["dimse"]["C-GET"] == {"0xFF00": SUBOPS, "0x0000": 1}
    assert assoc["dimse"]["C-STORE (get)"] == {"0x0000": SUBOPS}
    # no finding blames the SCP for time the SCU spent storing
    assert "slow-scp" not in {f["code"] for f in s["findings"]}


def test_c_get_text_summary_labels_the_download(get_capture):
    p = subprocess.run(
        [sys.executable, "-m", "dicomsniffd", "analyze", get_capture],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=True,
    )  # fmt: skip
    lines = p.stdout.splitlines()
    row = next(line for line in lines if "GETSCU → QRSCP" in line and "accepted" in line)
    assert row.split()[-4:-2] == ["released", f"{SUBOPS + 1}+{SUBOPS}"], row
    assert any(line.startswith("resp = responses from the SCP") for line in lines)
    phases = [line.split()[2] for line in lines if line.startswith("C-STORE (get) ")]
    assert "download" in phases and "SCU" in phases, phases  # "SCU time"

"""Command set and data set in one P-DATA-TF (issue 13's interoperability hint).

Legal (PS3.8 E.1), and no real peer here does it: DCMTK's storescu writes a small
C-STORE's command PDU and data set PDU in one TCP segment, but as two P-DATA-TFs (tshark:
PDU types "0x04,0x04", flags "0x03,0x02" in one frame), and pynetdicom and gdcmscu send
them apart. So the peer is tests/peers/rulebreaker.py's ``command-with-dataset`` mode (one
PDU for both). The hint is only worth a line next to trouble: against an SCP that fails
the store it is given, naming the SCU and its software; against a healthy SCP it is not,
and DCMTK's two PDUs in one segment never count."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest
from compare_captures import FAILED, N_IMAGES, _one
from netns import VethPair
from peers import make_ct
from peers.rawscu import IMPL_VERSION
from scenarios.plumbing import SCP_PORT, start_pyscp, stop

from dicomsniffd.dicom.pdu import PduFramer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIND = "command-with-dataset-in-one-pdu"
KIND_MODE = "command-with-dataset"  # the rulebreaker peer's mode


def _pdv(ctx: int, mch: int, data: bytes) -> bytes:
    return struct.pack(">IBB", len(data) + 2, ctx, mch) + data


def _pdata(*pdvs: bytes) -> bytes:
    body = b"".join(pdvs)
    return struct.pack(">BBI", 0x04, 0, len(body)) + body


COMMAND = b"\x00" * 20  # the framer only buffers it: its content does not matter here
DATASET = b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100"


def test_the_framer_counts_a_data_set_that_starts_in_its_commands_pdu():
    framer = PduFramer()
    framer.feed(_pdata(_pdv(1, 0x03, COMMAND), _pdv(1, 0x02, DATASET)), 0.0)
    assert framer.command_with_dataset == 1
    # the same message in two P-DATA-TFs: not counted
    framer.feed(_pdata(_pdv(1, 0x03, COMMAND)) + _pdata(_pdv(1, 0x02, DATASET)), 1.0)
    assert framer.command_with_dataset == 1
    # a command without a data set, then a data set fragment in the next PDU of the
    # same message: counted once per data set, at its first fragment only
    framer.feed(
        _pdata(_pdv(1, 0x03, COMMAND), _pdv(1, 0x00, DATASET)) + _pdata(_pdv(1, 0x02, DATASET)),
        2.0,
    )
    assert framer.command_with_dataset == 2


def _findings(pcap: str) -> list[dict]:
    p = subprocess.run(
        [sys.executable, "-m", "dicomsniffd", "analyze", "--json", "--quiet", pcap],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert p.returncode in (0, 1), p.stderr
    return [f for f in json.loads(p.stdout)["findings"] if f["code"] == KIND]


def _rulebreaker(net: VethPair, pcap: str, workdir: str, scp_cfg: dict) -> None:
    scp = start_pyscp(net, "b", workdir, {"ae_title": "PYSCP", **scp_cfg})
    peer = os.path.join(REPO, "tests", "peers", "rulebreaker.py")
    with net.capture("a", pcap):
        out = net.run("a", [sys.executable, peer, net.ip("b"), str(SCP_PORT), KIND_MODE])
    stop(scp)
    sent = json.loads(out.stdout)
    assert sent["received"][0] == "0x02", sent  # accepted, then the one C-STORE answered


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("cwd"))
    out = {}
    for name, cfg in (("failing", {"store_status": {"1": "0xA700"}}), ("healthy", {})):
        sub = os.path.join(wd, f"one-pdu-{name}")
        os.makedirs(sub)
        out[f"one-pdu-{name}"] = os.path.join(sub, "one.pcap")
        with VethPair() as net:
            _rulebreaker(net, out[f"one-pdu-{name}"], sub, cfg)
    # 8 x 8 pixels: small enough for storescu to write command and data set in one segment
    images = make_ct.make_series(os.path.join(wd, "images"), N_IMAGES, 8, series=3)
    paths = [p for p, _ in images]
    uids = [u for _, u in images]
    failing = {"store_status": {uids[i - 1]: "0xA700" for i in FAILED}}
    out["dcmtk-failing"] = _one(wd, "failing", failing, paths)
    return out


@pytest.mark.netns
def test_one_pdu_against_a_failing_scp_gets_the_hint_naming_the_scu(captures):
    found = _findings(captures["one-pdu-failing"])
    assert len(found) == 1, found
    evidence = " ".join(found[0]["evidence"])
    assert "RULESCU → STORESCP" in evidence  # the called AE title the peer sent
    assert "SCU (requestor)" in evidence and IMPL_VERSION in evidence
    assert "sent 1 message with command and data set in one P-DATA-TF" in evidence
    assert found[0]["severity"] == "info"


@pytest.mark.netns
def test_the_same_exchange_with_a_healthy_scp_gets_no_hint(captures):
    assert _findings(captures["one-pdu-healthy"]) == []


@pytest.mark.netns
def test_dcmtk_two_pdus_in_one_segment_are_not_one_pdu(captures):
    # storescu's command PDU and data set PDU share TCP segments, and 4 of its 20 stores
    # fail: still no hint, because they are two P-DATA-TFs
    assert _findings(captures["dcmtk-failing"]) == []

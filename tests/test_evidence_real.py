"""analyze --evidence on real traffic: DCMTK storescu sends images whose data sets carry a
known patient name and ID (and a user identity) to DCMTK storescp and to a pynetdicom SCP
that answers 0xA700 to one; the scrubbed pcaps must contain none of it, and tshark's DICOM
dissection of each must give the same associations, contexts, commands and statuses as
the original's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import netns
import pytest
from netns import VethPair
from peers import make_ct
from scenarios.plumbing import SCP_PORT, dcmtk, start_pyscp, start_storescp, stop

pytestmark = pytest.mark.netns

NAME, PATIENT_ID = "EVIDENCE^CANARY", "CANARY12345"
USER, PASSWORD = "CANARYUSER", "CANARYPASSWORD"
SECRETS = [s.encode() for s in (NAME, PATIENT_ID, USER, PASSWORD)]
FAILED_INDEX = 3


def _canary_images(outdir: str, count: int) -> list[tuple[str, str]]:
    """make_ct's synthetic CT (128x128: several P-DATA fragments each) with the canary."""
    os.makedirs(outdir, exist_ok=True)
    out = []
    for i in range(1, count + 1):
        ds = make_ct.make_dataset(7, i, 128)
        ds.PatientName, ds.PatientID = NAME, PATIENT_ID
        ds.OtherPatientIDs = PATIENT_ID
        path = os.path.join(outdir, f"canary{i}.dcm")
        ds.save_as(path, enforce_file_format=True)
        out.append((path, str(ds.SOPInstanceUID)))
    return out


def _storescu(net: VethPair, called: str, paths: list[str], *extra: str) -> None:
    argv = [dcmtk("storescu"), "-nh", "-aet", "MODALITY", "-aec", called, *extra]
    net.run("a", [*argv, net.ip("b"), str(SCP_PORT), *paths], check=False)


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> str:
    netns.require_tools("tshark", "tcpdump")
    wd = str(tmp_path_factory.mktemp("evidence"))
    images = _canary_images(os.path.join(wd, "img"), 5)
    pcap = os.path.join(wd, "canary.pcap")
    with VethPair() as net, net.capture("a", pcap):
        scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
        _storescu(net, "STORESCP", [p for p, _ in images], "--user", USER, "--password", PASSWORD)
        stop(scp)
        failing = {images[FAILED_INDEX - 1][1]: "0xA700"}
        scp = start_pyscp(net, "b", wd, {"ae_title": "PYSCP", "store_status": failing})
        _storescu(net, "PYSCP", [p for p, _ in images], "-R")
        stop(scp)
    return pcap


def _analyze(pcap: str, directory: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    argv = [sys.executable, "-m", "dicomsniffd", "analyze", "--quiet", pcap]
    return subprocess.run(
        [*argv, "--evidence", directory, *extra], capture_output=True, text=True, env=env
    )


@pytest.fixture(scope="module")
def scrubbed_all(capture, tmp_path_factory) -> list[str]:
    """analyze --evidence-all of the capture: one scrubbed pcap per association."""
    directory = str(tmp_path_factory.mktemp("evidence-all"))
    p = _analyze(capture, directory, "--evidence-all")
    assert p.returncode == 0, p.stderr
    files = _pcaps(directory)
    assert len(files) == 2
    return files


def _pcaps(directory: str) -> list[str]:
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".pcap"))


_FIELDS = (
    "tcp.srcport", "dicom.pdu.type", "dicom.assoc.ae.called", "dicom.assoc.ae.calling",
    "dicom.assoc.item.type", "dicom.pctx.id", "dicom.pctx.result", "dicom.pctx.abss.syntax",
    "dicom.pctx.xfer.syntax", "dicom.max_pdu_len", "dicom.userinfo.uid",
    "dicom.userinfo.version", "dicom.userinfo.user_identify.primary_field_length",
    "dicom.assoc.reject.result", "dicom.assoc.abort.source", "dicom.pdv.len", "dicom.pdv.ctx",
    "dicom.pdv.flags",
)  # fmt: skip


def _tshark(path: str, port: int, display_filter: str = "dicom") -> list[str]:
    argv = ["tshark", "-r", path, "-d", f"tcp.port=={port},dicom", "-Y", display_filter]
    argv += ["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]
    for name in _FIELDS:
        argv += ["-e", name]
    p = subprocess.run(argv, capture_output=True, text=True, check=True)
    return [line for line in p.stdout.splitlines() if line.strip()]


def _commands(path: str, port: int, display_filter: str = "dicom") -> list[str]:
    """Every element tshark shows in a command PDV (its flags say "Command"), in order,
    with its value. (A scrubbed data set is zeros, which tshark shows as empty elements:
    data-set PDVs are not compared, only their headers, in ``_tshark``.)"""
    argv = ["tshark", "-r", path, "-d", f"tcp.port=={port},dicom", "-Y", display_filter, "-V"]
    p = subprocess.run(argv, capture_output=True, text=True, check=True)
    out, in_command = [], False
    for line in (raw.strip() for raw in p.stdout.splitlines()):
        if line.startswith("PDV,"):
            in_command = False
        elif line.startswith("Flags: 0x") and "(Command" in line:
            in_command = True
        elif in_command and line.startswith("(0000,"):
            out.append(line)
    return out


def test_original_carries_the_canary(capture):
    data = Path(capture).read_bytes()
    assert all(secret in data for secret in SECRETS)


def test_problem_association_written_and_scrubbed(capture, tmp_path):
    p = _analyze(capture, str(tmp_path / "ev"))
    assert p.returncode == 0, p.stderr
    assert "scrubbed pcap(s) written" in p.stderr
    files = _pcaps(str(tmp_path / "ev"))
    assert any("MODALITY-to-PYSCP" in f for f in files), files
    readme = (tmp_path / "ev" / "README.txt").read_text()
    assert all(os.path.basename(f) in readme for f in files)


def test_no_canary_byte_survives(scrubbed_all):
    for path in scrubbed_all:
        data = Path(path).read_bytes()
        for secret in [*SECRETS, b"CANARY", "CANARY".encode("utf-16-le")]:
            assert secret not in data, (path, secret)


def test_tshark_sees_the_same_associations_contexts_commands_and_statuses(capture, scrubbed_all):
    files = scrubbed_all
    for path in files:
        ports = subprocess.run(
            ["tshark", "-r", path, "-T", "fields", "-e", "tcp.srcport", "-c", "1"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        client_port = int(ports[0])
        only = f"dicom && tcp.port == {client_port}"
        original = _tshark(capture, SCP_PORT, only)
        scrubbed = _tshark(path, SCP_PORT)
        assert original and scrubbed == original
        commands = _commands(capture, SCP_PORT, only)
        assert any("Status" in line for line in commands)
        assert _commands(path, SCP_PORT) == commands
    failing = [f for f in files if "PYSCP" in f][0]
    assert any("0xa700" in line.lower() for line in _commands(failing, SCP_PORT))


def test_user_identity_lengths_kept_values_gone(scrubbed_all):
    path = [f for f in scrubbed_all if "STORESCP" in f][0]
    argv = ["tshark", "-r", path, "-d", f"tcp.port=={SCP_PORT},dicom", "-T", "fields"]
    argv += ["-e", "dicom.userinfo.user_identify.primary_field_length"]
    argv += ["-e", "dicom.userinfo.user_identify.secondary_field_length"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(len(USER)), str(len(PASSWORD))]


def test_the_summary_and_the_report_list_the_evidence_written(capture, tmp_path):
    """The text summary, the HTML report and --json name each scrubbed pcap (the failing
    association only, by default) and where its README is."""
    directory = str(tmp_path / "ev")
    report = str(tmp_path / "report.html")
    p = _analyze(capture, directory, "--report", report)
    assert p.returncode == 0, p.stderr
    [pcap] = _pcaps(directory)
    name = os.path.basename(pcap)
    assert "Evidence for the vendor (PHI-scrubbed)" in p.stdout
    assert f"{name}: flow " in p.stdout and "MODALITY → PYSCP" in p.stdout
    html = Path(report).read_text(encoding="utf-8")
    assert "id='evidence'" in html and name in html
    j = _analyze(capture, str(tmp_path / "ev2"), "--json")
    assert j.returncode == 0, j.stderr
    listed = json.loads(j.stdout)["capture"]["evidence"]
    assert [f["file"] for f in listed["files"]] == [name]
    assert listed["readme"] == "README.txt"

"""Interoperability findings (findings/interop.py) from real traffic between namespaces.

One capture, real peers only (DCMTK storescu/echoscu/findscu/movescu, DCMTK storescp,
Orthanc run with its own JSON config):
  EACHSCU  storescu run once per file, 6 files        -> 6 associations of one C-STORE
  ALLSCU   storescu run once for the same 6 files     -> 1 association of 6 C-STOREs
  QRSCU    echoscu + findscu to storescp (no C-FIND: its contexts are refused), and
           echoscu + movescu to Orthanc with a move destination Orthanc does not know
           (Orthanc 1.10 aborts the association)
"""

from __future__ import annotations

import dataclasses
import os
import subprocess

import pytest
from netns import VethPair
from peers import make_ct
from peers.orthanc import start_orthanc
from pipeline_captures import run
from scenarios.plumbing import dcmtk, start_storescp, stop

from dicomsniffd.config import Config

pytestmark = pytest.mark.netns

STORE_PORT, ORTHANC_PORT = 11112, 11116
FILES = 6


def _config(*ports: int) -> Config:
    config = Config()
    return dataclasses.replace(config, dicom=dataclasses.replace(config.dicom, ports=ports))


def _finding(summary: dict, code: str) -> dict:
    found = [f for f in summary["findings"] if f["code"] == code]
    assert len(found) == 1, [f["code"] for f in summary["findings"]]
    return found[0]


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> dict:
    wd = str(tmp_path_factory.mktemp("interop"))
    files = [p for p, _uid in make_ct.make_series(os.path.join(wd, "ct"), FILES, 64, series=7)]
    pcap = os.path.join(wd, "services.pcap")
    with VethPair() as net:
        scp = start_storescp(net, "b", STORE_PORT, "STORESCP")
        orthanc = start_orthanc(net, "b", wd, ORTHANC_PORT)
        b = net.ip("b")
        with net.capture("a", pcap):
            for path in files:
                net.run("a", [dcmtk("storescu"), "-aet", "EACHSCU", "-aec", "STORESCP",
                              b, str(STORE_PORT), path])  # fmt: skip
            net.run("a", [dcmtk("storescu"), "-aet", "ALLSCU", "-aec", "STORESCP",
                          b, str(STORE_PORT), *files])  # fmt: skip
            for called, port in (("STORESCP", STORE_PORT), ("ORTHANC", ORTHANC_PORT)):
                net.run("a", [dcmtk("echoscu"), "-aet", "QRSCU", "-aec", called, b, str(port)])
            find = net.run(
                "a",
                [dcmtk("findscu"), "-aet", "QRSCU", "-aec", "STORESCP", "-S",
                 "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
                 b, str(STORE_PORT)],
                check=False,
            )  # fmt: skip
            move = net.run(
                "a",
                [dcmtk("movescu"), "-aet", "QRSCU", "-aec", "ORTHANC", "-aem", "NOWHERE", "-S",
                 "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.3",
                 b, str(ORTHANC_PORT)],
                check=False,
            )  # fmt: skip
        stop(scp)
        stop(orthanc)
    # what the tools themselves said happened
    assert "No Acceptable Presentation Contexts" in find.stdout + find.stderr
    assert "Peer aborted Association" in move.stdout + move.stderr
    return run(pcap, _config(STORE_PORT, ORTHANC_PORT)).summary


def test_one_association_per_object(services: dict) -> None:
    finding = _finding(services, "one-association-per-object")
    (line,) = finding["evidence"]  # ALLSCU sent all files on one association: not listed
    assert line.startswith(f"EACHSCU → STORESCP: {FILES} of {FILES} associations (100 %)")
    assert "outside its C-STORE" in line and "A-ASSOCIATE-RQ → AC" in line
    stores = {a["calling_ae"]: 0 for a in services["associations"]}
    for a in services["associations"]:
        stores[a["calling_ae"]] += sum(a["dimse"].get("C-STORE", {}).values())
    assert stores["EACHSCU"] == stores["ALLSCU"] == FILES


def test_echo_works_but_find_and_move_fail(services: dict) -> None:
    finding = _finding(services, "partial-service")
    lines = {line.split(":")[0]: line for line in finding["evidence"]}
    assert set(lines) == {"QRSCU → ORTHANC", "QRSCU → STORESCP"}
    to_orthanc, to_storescp = lines["QRSCU → ORTHANC"], lines["QRSCU → STORESCP"]
    assert (
        "works: C-ECHO (1)" in to_orthanc
        and "C-MOVE: no response, the association ended" in to_orthanc
    )
    assert "works: C-ECHO (1)" in to_storescp
    assert "C-FIND: Study Root Query/Retrieve" in to_storescp and "refused" in to_storescp


@pytest.fixture(scope="module")
def compressed(tmp_path_factory) -> tuple[dict, str]:
    """storescu -R -xs sends a JPEG Lossless file to storescp (uncompressed only): it
    proposes JPEG Lossless on one context and the uncompressed syntaxes on another,
    storescp refuses the first and accepts Explicit VR LE, storescu cannot convert the
    file ("unable to convert dataset") and aborts without a request."""
    wd = str(tmp_path_factory.mktemp("interop-ts"))
    ((path, _uid),) = make_ct.make_series(os.path.join(wd, "ct"), 1, 64, series=8)
    jpeg = os.path.join(wd, "jpeg.dcm")
    subprocess.run([dcmtk("dcmcjpeg"), path, jpeg], check=True, capture_output=True)
    pcap = os.path.join(wd, "compressed.pcap")
    with VethPair() as net:
        scp = start_storescp(net, "b", STORE_PORT, "STORESCP")
        with net.capture("a", pcap):
            sent = net.run(
                "a",
                [dcmtk("storescu"), "-R", "-xs", "-aet", "JPEGSCU", "-aec", "STORESCP",
                 net.ip("b"), str(STORE_PORT), jpeg],
                check=False,
            )  # fmt: skip
        stop(scp)
    return run(pcap, _config(STORE_PORT)).summary, sent.stdout + sent.stderr


def test_no_context_for_the_files_transfer_syntax(compressed: tuple[dict, str]) -> None:
    summary, said = compressed
    assert "unable to convert dataset" in said  # storescu's own words for what happened
    codes = {f["code"]: f for f in summary["findings"]}
    assert "aborts" not in codes  # the generic abort advice gives way to the cause
    finding = codes["no-context-for-transfer-syntax"]
    (line,) = finding["evidence"]
    assert line.startswith("flow 1 JPEGSCU → STORESCP: CT Image Storage as JPEG Lossless")
    assert "refused, accepted only as Explicit VR Little Endian" in line
    assert "then no request, A-ABORT from the SCU" in line
    (assoc,) = summary["associations"]
    assert assoc["dimse"] == {} and assoc["pdata_bytes"] == {"requestor": 0, "acceptor": 0}

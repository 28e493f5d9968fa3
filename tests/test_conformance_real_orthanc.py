"""DESIGN §4b, no false positives: Orthanc (run by hand with a JSON config) as the SCP,
GDCM's gdcmscu and DCMTK storescu as SCUs, captured between network namespaces. Real
implementations that conform must give zero violations and zero protocol errors; the
exchanges themselves are counted as driven (tshark as the second opinion).

gdcmscu (libgdcm-tools 3.0) aborts in its own destructor after the exchange (exit -6,
"ProtocolStream as nullptr is invalid"): its exit code is not used, the wire is.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from netns import VethPair
from peers import make_ct
from scenarios.plumbing import dcmtk
from test_conformance_real import analyze, total, violations

pytestmark = pytest.mark.netns

PORT = 11112
IMAGES = 3


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> str:
    wd = tmp_path_factory.mktemp("orthanc")
    ct = [path for path, _ in make_ct.make_series(str(wd / "ct"), IMAGES, 64)]
    config = wd / "orthanc.json"
    config.write_text(
        json.dumps(
            {
                "Name": "dsniff",
                "StorageDirectory": str(wd / "db"),
                "IndexDirectory": str(wd / "db"),
                "DicomAet": "ORTHANC",
                "DicomPort": PORT,
                "HttpServerEnabled": False,
                "DicomCheckCalledAet": False,
                "DicomAlwaysAllowEcho": True,
                "DicomAlwaysAllowStore": True,
            }
        )
    )
    pcap = str(wd / "orthanc.pcap")
    with VethPair() as net:
        orthanc = net.popen("b", ["Orthanc", str(config)])
        net.wait_listening("b", PORT, proc=orthanc, timeout=30)
        b = net.ip("b")
        with net.capture("a", pcap):
            net.run("a", ["gdcmscu", "--echo", "--call", "ORTHANC", b, str(PORT)], check=False)
            net.run("a", ["gdcmscu", "--store", "--call", "ORTHANC", b, str(PORT), *ct],
                    check=False)  # fmt: skip
            net.run("a", [dcmtk("storescu"), "-aet", "STORESCU", "-aec", "ORTHANC", b,
                          str(PORT), *ct])  # fmt: skip
        orthanc.kill()
    return pcap


def test_orthanc_gdcm_and_dcmtk_break_no_rule(capture):
    samples, summary, records = analyze(capture)
    assert violations(samples) == {}
    assert total(samples, "dicom_protocol_errors_total") == 0
    assert not [r for r in records if r["type"] == "protocol_violation"]
    assert summary["dimse"]["C-STORE"]["responses"] == {"0x0000": 2 * IMAGES}
    assert summary["dimse"]["C-ECHO"]["responses"] == {"0x0000": 1}
    assert {(a["calling_ae"], a["called_ae"]) for a in summary["associations"]} == {
        ("GDCMSCU", "ORTHANC"),
        ("STORESCU", "ORTHANC"),
    }


def test_tshark_sees_the_same_exchanges_without_dicom_expert_errors(capture):
    p = subprocess.run(
        ["tshark", "-r", capture, "-n", "-d", f"tcp.port=={PORT},dicom", "-Y", "dicom",
         "-T", "fields", "-e", "_ws.col.Info"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    info = p.stdout
    assert info.count("C-STORE-RSP") == 2 * IMAGES and info.count("C-ECHO-RSP") == 1, info
    expert = subprocess.run(
        ["tshark", "-r", capture, "-n", "-d", f"tcp.port=={PORT},dicom", "-q", "-z", "expert"],
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert not [line for line in expert.splitlines() if "Malformed" in line and "DICOM" in line]

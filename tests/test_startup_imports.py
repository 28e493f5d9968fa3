"""`dicomsniffd analyze FILE` starts without the heavy libraries it does not need.

Start-up counts in the benchmark of issue 12 (whole processes against the raw read loop)
and in every short run (issue 15): pydicom's package (config, pixel handlers, numpy) was
~270 ms of imports, dpkt ~45 ms, tqdm ~35 ms, PyYAML ~15 ms; prometheus-client ~30 ms, which
is needed only to write --metrics. The command runs for real in a subprocess under a
wrapper that lists, at exit, which of them were imported; and the names that used to
come from pydicom must still be in the output.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import scenarios
from pipeline_captures import REPO, Capture, store_session
from prometheus_client.parser import text_string_to_metric_families

HEAVY = ("pydicom", "dpkt", "tqdm", "numpy", "yaml", "prometheus_client")
# Our own modules of other commands and options (--report, --events, run, compare...).
UNUSED = (
    "dicomsniffd.sinks.report.html",
    "dicomsniffd.sinks.eventlog",
    "dicomsniffd.daemon",
    "dicomsniffd.compare",
    "dicomsniffd.correlate",
    "dicomsniffd.evidence",
)

# Runs `python -m dicomsniffd ARGS...` as the console does; at exit (after main's
# sys.exit) writes the heavy packages and unused modules found in sys.modules as the last
# line of stderr.
_WRAPPER = f"""
import atexit, json, runpy, sys
def _report():
    found = {{m.split(".")[0] for m in sys.modules if m.split(".")[0] in {HEAVY!r}}}
    found |= {{m for m in sys.modules if m.startswith({UNUSED!r})}}
    sys.stderr.write("\\nLOADED " + json.dumps(sorted(found)) + "\\n")
atexit.register(_report)
sys.argv = ["dicomsniffd", *sys.argv[1:]]
runpy.run_module("dicomsniffd", run_name="__main__", alter_sys=True)
"""


def _analyze(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """The command's result, and the heavy packages and unused modules it imported."""
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, "analyze", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    last = proc.stderr.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("LOADED "), proc.stderr
    return proc, set(json.loads(last[len("LOADED ") :]))


def test_wrapper_sees_what_is_imported(tmp_path) -> None:
    """The check can fail: with a config file and --events, PyYAML and the event log are
    reported as imported."""
    cap = Capture()
    store_session(cap, 2, 3_000)
    pcap = cap.write(tmp_path / "two.pcap")
    config = tmp_path / "c.yaml"
    config.write_text("flows:\n  idle_timeout_s: 300\n")
    events = tmp_path / "events.jsonl"
    proc, heavy = _analyze(str(pcap), "--config", str(config), "--events", str(events))
    assert proc.returncode == 0, proc.stderr
    assert heavy == {"yaml", "dicomsniffd.sinks.eventlog"}


def test_analyze_of_a_generated_capture_imports_none_of_them(tmp_path) -> None:
    cap = Capture()
    store_session(cap, 3, 5_000)
    pcap = cap.write(tmp_path / "three.pcap")
    proc, heavy = _analyze(str(pcap))
    assert proc.returncode == 0, proc.stderr
    assert heavy == set()
    assert "C-STORE" in proc.stdout
    proc, heavy = _analyze(str(pcap), "--metrics", "/dev/null")
    assert proc.returncode == 0, proc.stderr
    assert heavy == {"prometheus_client"}  # to write the exposition, and only then


@pytest.fixture(scope="module")
def dcmtk_store(tmp_path_factory) -> str:
    """A real capture: DCMTK storescu sends 50 CT images to DCMTK storescp (scenario a)."""
    workdir = str(tmp_path_factory.mktemp("startup-imports"))
    return scenarios.generate_all(workdir, only=["a_store50"])["a_store50"].pcap


# PS3.6 Table A-1's names of the uncompressed transfer syntaxes DCMTK's storescu proposes.
UNCOMPRESSED = {
    "Implicit VR Little Endian": "ImplicitVRLittleEndian",
    "Explicit VR Little Endian": "ExplicitVRLittleEndian",
    "Explicit VR Big Endian": "ExplicitVRBigEndian",
}
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.netns
def test_real_capture_without_heavy_imports_keeps_uid_names(dcmtk_store, tmp_path) -> None:
    """DCMTK's storescu proposes CT Image Storage (and many more) with uncompressed transfer
    syntaxes: the JSON summary's names and the metric labels still come out of the UID
    dictionary, with pydicom not imported."""
    metrics = tmp_path / "m.prom"
    proc, heavy = _analyze(dcmtk_store, "--json", "--metrics", str(metrics))
    assert proc.returncode == 0, proc.stderr
    assert heavy == {"prometheus_client"}
    contexts = [
        pc
        for association in json.loads(proc.stdout)["associations"]
        for pc in association["presentation_contexts"]
    ]
    ct = [pc for pc in contexts if pc["abstract_syntax"] == CT_IMAGE_STORAGE]
    assert ct and {pc["abstract_syntax_name"] for pc in ct} == {"CT Image Storage"}
    accepted = {pc["accepted_transfer_syntax_name"] for pc in ct if pc["result"] == "acceptance"}
    proposed = {name for pc in ct for name in pc["transfer_syntaxes_proposed"]}
    assert accepted and accepted <= proposed <= set(UNCOMPRESSED)
    samples = [
        s for family in text_string_to_metric_families(metrics.read_text()) for s in family.samples
    ]
    stores = [s for s in samples if s.name == "dicom_dimse_requests_total"]
    assert {s.labels["sop_class"] for s in stores} == {"CTImageStorage"}
    labels = {
        s.labels["transfer_syntax"]
        for s in samples
        if s.name == "dicom_presentation_contexts_total"
        and s.labels["abstract_syntax"] == "CTImageStorage"
    }
    assert labels == {UNCOMPRESSED[name] for name in accepted}

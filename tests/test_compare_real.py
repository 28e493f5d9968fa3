"""dicomsniffd compare on real traffic (issue 14's "Done when"): DCMTK storescu and a
pynetdicom SCP between network namespaces (tests/compare_captures.py), once with 0xA700
for 4 of 20 C-STOREs, once healthy, once with the SCP 300 ms slower. tshark decodes the
failing capture as a second opinion on the statuses compare reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from compare_captures import FAILED, N_IMAGES, SLOW_MS, capture_all
from scenarios import tshark_view
from scenarios.plumbing import SCP_PORT

pytestmark = pytest.mark.netns

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> dict[str, str]:
    return capture_all(str(tmp_path_factory.mktemp("compare")))


def _run(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run(
        [sys.executable, "-m", "dicomsniffd", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _compare(*argv: str) -> tuple[int, dict]:
    done = _run("compare", *argv, "--json")
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def _pair(doc: dict) -> dict:
    (pair,) = doc["pairs"]
    assert (pair["calling_ae"], pair["called_ae"]) == ("STORESCU", "PYSCP")
    return pair


def test_failing_scp_then_healthy_is_fixed(captures) -> None:
    code, doc = _compare(captures["failing"], captures["healthy"])
    pair = _pair(doc)
    assert (code, doc["verdict"], pair["verdict"]) == (0, "fixed", "fixed")
    (store,) = pair["commands"]
    failed = len(FAILED)
    assert store["before"]["statuses"] == {"0x0000": N_IMAGES - failed, "0xA700": failed}
    assert store["after"]["statuses"] == {"0x0000": N_IMAGES}
    assert (store["before"]["failures"], store["after"]["failures"]) == (failed, 0)
    # tshark's reading of the failing capture: the same final statuses
    view = tshark_view(captures["failing"], [SCP_PORT])
    assert dict(view.responses("C-STORE")) == store["before"]["statuses"]
    assert "out-of-resources" in [f["code"] for f in doc["findings"]["gone"]]
    assert "out-of-resources" in [f["code"] for f in pair["findings"]["gone"]]


def test_an_scp_300_ms_slower_is_regressed(captures) -> None:
    code, doc = _compare(captures["healthy"], captures["slow"])
    pair = _pair(doc)
    assert (code, doc["verdict"], pair["verdict"]) == (1, "regressed", "regressed")
    latency = pair["commands"][0]["phases"]["response_latency_ms"]
    assert latency["judged"] == "regressed"
    assert latency["before"]["count"] == latency["after"]["count"] == N_IMAGES
    # the SCP sleeps SLOW_MS before every answer: every sample is at least that
    assert latency["after"]["p50"] >= SLOW_MS > latency["before"]["p95"]
    assert any("SCP service time p95" in reason for reason in pair["reasons"])


def test_the_slow_scp_made_fast_again_is_improved(captures) -> None:
    code, doc = _compare(captures["slow"], captures["healthy"])
    assert (code, doc["verdict"]) == (0, "improved")


def test_a_capture_compared_with_itself_is_unchanged(captures, tmp_path) -> None:
    code, doc = _compare(captures["healthy"], captures["healthy"])
    assert (code, doc["verdict"], _pair(doc)["reasons"]) == (0, "unchanged", [])
    # the same through a saved analyze --json on one side and a directory on the other
    saved = tmp_path / "healthy.json"
    analysed = _run("analyze", captures["healthy"], "--json")
    assert analysed.returncode == 0, analysed.stderr
    saved.write_text(analysed.stdout)
    code, doc = _compare(str(saved), os.path.dirname(captures["healthy"]))
    assert (code, doc["verdict"], doc["before"]["source"]) == (0, "unchanged", "analyze-json")
    assert doc["after"]["files"] == [captures["healthy"]]


def test_the_failing_capture_compared_with_itself_is_still_failing(captures) -> None:
    code, doc = _compare(captures["failing"], captures["failing"])
    assert (code, doc["verdict"]) == (1, "still-failing")
    assert "out-of-resources" in [f["code"] for f in doc["findings"]["still"]]


def test_several_captures_on_one_side_are_read_as_one(captures) -> None:
    code, doc = _compare(
        "--before", captures["failing"], captures["healthy"], "--after", captures["healthy"]
    )
    store = _pair(doc)["commands"][0]
    assert store["before"]["requests"] == 2 * N_IMAGES
    assert doc["before"]["associations"] == 2
    assert (code, doc["verdict"]) == (0, "fixed")


def test_text_and_report(captures, tmp_path) -> None:
    report = tmp_path / "compare.html"
    done = _run("compare", captures["healthy"], captures["slow"], "--report", str(report))
    assert done.returncode == 1 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "Verdict: regressed"
    assert "STORESCU → PYSCP: regressed" in lines
    assert any(
        line.split()[:3] == ["SCP", "service", "time"] and line.endswith("regressed")
        for line in lines
    )
    html = report.read_text(encoding="utf-8")
    assert "<span class='v v-regressed'>regressed</span>" in html
    assert "SCP service time" in html


def test_a_capture_cut_short_is_compared_with_a_caveat_and_exit_2(captures, tmp_path) -> None:
    with open(captures["healthy"], "rb") as f:
        whole = f.read()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[: len(whole) // 2 + 7])  # in the middle of a packet
    done = _run("compare", captures["healthy"], str(cut), "--json")
    doc = json.loads(done.stdout)
    assert done.returncode == 2
    assert done.stderr.startswith("dicomsniffd: error: capture file broken: after: ")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert any("cut short" in c for c in doc["caveats"])
    assert any("capture-incomplete" in c for c in doc["caveats"])
    store = _pair(doc)["commands"][0]
    assert 0 < store["after"]["requests"] < N_IMAGES

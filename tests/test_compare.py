"""dicomsniffd compare without the network: the verdict rule at its edges, the per-command
rows of analyze --json it reads, and bad input (one line, exit 2, nothing written).

The sides here are saved analyze --json documents made by feeding known transactions
(tests/summary_fakes.py) through the Summary; the expected numbers are written by hand."""

from __future__ import annotations

import json
import os

import pytest
from sink_fakes import Flow
from summary_fakes import capture_info, feed_store, good_association, requested, store

from dicomsniffd import cli
from dicomsniffd.compare import rule
from dicomsniffd.dicom.events import AssociationEnded, AssociationRejected, DimseResponseSeen
from dicomsniffd.sinks.summary import Summary

# -- the rule --------------------------------------------------------------------------------


def _timing(p95: float | None, count: int = 20) -> dict:
    return {"count": count, "p50": p95, "p95": p95}


@pytest.mark.parametrize(
    ("before", "after", "judged"),
    [
        (100.0, 120.5, rule.UP),  # +20.5 %, +20.5 ms
        (100.0, 119.9, rule.SAME),  # +19.9 %: under the ratio
        (5.0, 14.9, rule.SAME),  # +198 % but +9.9 ms: under the floor
        (5.0, 15.1, rule.UP),
        (120.5, 100.0, rule.DOWN),
        (15.1, 5.0, rule.DOWN),
        (6.4, 306.8, rule.UP),
    ],
)
def test_the_p95_rule_needs_both_the_ratio_and_the_floor(before, after, judged) -> None:
    assert rule.judge_p95(_timing(before), _timing(after)) == judged


def test_the_p95_rule_needs_20_samples_on_each_side() -> None:
    assert rule.judge_p95(_timing(5.0, 19), _timing(500.0)) == rule.TOO_FEW
    assert rule.judge_p95(_timing(5.0), _timing(500.0, 19)) == rule.TOO_FEW
    assert rule.judge_p95(_timing(None, 0), _timing(500.0)) == rule.TOO_FEW


@pytest.mark.parametrize(
    ("before", "after", "judged"),
    [
        (0, 10, rule.SAME),
        (0, 11, rule.UP),
        (10, 20, rule.SAME),
        (10, 21, rule.UP),
        (30, 3, rule.DOWN),
    ],
)
def test_a_tcp_count_regresses_when_doubled_and_up_by_more_than_10(before, after, judged) -> None:
    assert rule.judge_count(before, after) == judged


@pytest.mark.parametrize(
    ("failing_before", "failing_after", "judged", "verdict"),
    [
        (True, False, [], rule.FIXED),
        (True, False, [rule.UP], rule.FIXED),  # the failures decide when a side fails
        (True, True, [], rule.STILL_FAILING),
        (False, True, [rule.DOWN], rule.REGRESSED),
        (False, False, [rule.UP, rule.DOWN], rule.REGRESSED),
        (False, False, [rule.DOWN, rule.SAME], rule.IMPROVED),
        (False, False, [rule.SAME, rule.TOO_FEW], rule.UNCHANGED),
    ],
)
def test_verdicts(failing_before, failing_after, judged, verdict) -> None:
    assert rule.verdict(failing_before, failing_after, judged) == verdict


def test_the_worst_verdict_wins_and_none_comparable_is_not_comparable() -> None:
    assert rule.worst([rule.UNCHANGED, rule.FIXED, rule.STILL_FAILING]) == rule.STILL_FAILING
    assert rule.worst([rule.FIXED, rule.REGRESSED]) == rule.REGRESSED
    assert rule.worst([rule.NOT_COMPARABLE, rule.UNCHANGED]) == rule.UNCHANGED
    assert rule.worst([rule.NOT_COMPARABLE]) == rule.NOT_COMPARABLE
    assert rule.worst([]) == rule.NOT_COMPARABLE


def test_failure_statuses_are_ps37_failures_and_unanswered_requests() -> None:
    statuses = {"0x0000": 5, "0xB000": 1, "0xA700": 2, "0xC000": 1, "0xFE00": 1}
    assert rule.failures_of(statuses, unanswered=3) == 2 + 1 + 3


# -- the per-command rows of analyze --json --------------------------------------------------


def _summary(stores: list[tuple[int, float]], calling: str = "MODALITY", flow_id: int = 1):
    """One association of C-STOREs given as (status, SCP service time in s)."""
    summary = Summary()
    flow = Flow(flow_id=flow_id, calling_ae=calling)
    good_association(summary, flow, n=0)
    for status, latency in stores:
        feed_store(summary, flow, status=status, transfer=0.1, latency=latency)
    return summary


def test_each_pair_row_carries_its_commands_statuses_and_phases() -> None:
    stores = [(0, 0.010 * (i + 1)) for i in range(18)] + [(0xA700, 0.5), (0xA700, 0.5)]
    data = _summary(stores).to_dict(capture_info())
    assert data["schema"] == "dicomsniffd-analyze/2"
    (pair,) = data["pairs"]
    row = pair["commands"]["C-STORE"]
    assert (row["requests"], row["statuses"], row["unanswered"]) == (
        20,
        {"0x0000": 18, "0xA700": 2},
        0,
    )
    assert row["response_latency_ms"]["count"] == 20
    # 18 samples 10..180 ms and two of 500 ms: the median between 100 and 110
    assert row["response_latency_ms"]["p50"] == pytest.approx(105.0)
    assert row["response_latency_ms"]["p95"] == pytest.approx(500.0)
    assert row["request_transfer_ms"]["p95"] == pytest.approx(100.0)
    assert row["bytes"] == 20 * 1_000_000
    assert row["throughput_mbps"] == pytest.approx(80.0)  # 1 MB in 0.1 s
    assert (pair["rejected"], pair["aborted"], pair["resets"]) == (0, 0, 0)


def test_a_pairs_statuses_are_the_final_ones(flow) -> None:
    summary = Summary()
    good_association(summary, flow, n=0)
    for _ in range(2):  # two pending matches, then the final 0x0000
        summary.handle(
            DimseResponseSeen(101.1, "acceptor", "C-FIND", 0xFF00, "pending", 1, 1), flow
        )
    summary.handle(store(command="C-FIND", pending_responses=2, request_dataset_bytes=80), flow)
    data = summary.to_dict(capture_info())
    assert data["dimse"]["C-FIND"]["responses"] == {"0xFF00": 2}  # every response seen
    row = data["pairs"][0]["commands"]["C-FIND"]
    assert (row["requests"], row["statuses"]) == (1, {"0x0000": 1})


# -- the command line over saved JSON --------------------------------------------------------


def _save(tmp_path, name: str, summary: Summary) -> str:
    path = os.path.join(tmp_path, name)
    with open(path, "w") as f:
        json.dump(summary.to_dict(capture_info()), f, default=str)
    return path


def _compare(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


FAST = [(0, 0.005)] * 20
SLOW = [(0, 0.305)] * 20
FAILING = [(0, 0.005)] * 16 + [(0xA700, 0.005)] * 4


@pytest.mark.parametrize(
    ("before", "after", "verdict", "code"),
    [
        (FAILING, FAST, "fixed", 0),
        (FAST, SLOW, "regressed", 1),
        (SLOW, FAST, "improved", 0),
        (FAST, FAST, "unchanged", 0),
        (FAILING, FAILING, "still-failing", 1),
        (FAST, FAILING, "regressed", 1),
    ],
)
def test_verdict_and_exit_code(tmp_path, capsys, before, after, verdict, code) -> None:
    b = _save(tmp_path, "b.json", _summary(before))
    a = _save(tmp_path, "a.json", _summary(after))
    got, out, err = _compare(capsys, b, a, "--json")
    doc = json.loads(out)
    assert (got, doc["verdict"], err) == (code, verdict, "")
    (pair,) = doc["pairs"]
    assert (pair["calling_ae"], pair["called_ae"], pair["verdict"]) == ("MODALITY", "PACS", verdict)
    assert doc["rule"]["min_samples"] == 20
    got, text, _ = _compare(capsys, b, a)
    assert text.startswith(f"Verdict: {verdict}\n")
    assert "Rule: a phase regresses when its p95 rises by more than 20%" in text


def test_the_regression_names_the_phase_and_its_numbers(tmp_path, capsys) -> None:
    b = _save(tmp_path, "b.json", _summary(FAST))
    a = _save(tmp_path, "a.json", _summary(SLOW))
    _, out, _ = _compare(capsys, b, a, "--json")
    (command,) = json.loads(out)["pairs"][0]["commands"]
    latency = command["phases"]["response_latency_ms"]
    assert latency["before"] == {"count": 20, "p50": 5.0, "p95": 5.0}
    assert latency["after"] == {"count": 20, "p50": 305.0, "p95": 305.0}
    assert (latency["p95_change_ms"], latency["judged"]) == (300.0, "regressed")
    assert command["phases"]["request_transfer_ms"]["judged"] == "within the rule"
    assert "C-STORE: SCP service time p95 5.0 → 305.0 ms" in " ".join(
        json.loads(out)["pairs"][0]["reasons"]
    )


def test_findings_gone_still_and_new(tmp_path, capsys) -> None:
    b = _save(tmp_path, "b.json", _summary(FAILING))
    a = _save(tmp_path, "a.json", _summary(FAST))
    _, out, _ = _compare(capsys, b, a, "--json")
    findings = json.loads(out)["findings"]
    assert "out-of-resources" in [f["code"] for f in findings["gone"]]
    assert "out-of-resources" not in [f["code"] for f in findings["still"] + findings["new"]]


def test_a_pair_on_one_side_only_is_not_comparable(tmp_path, capsys) -> None:
    b = _save(tmp_path, "b.json", _summary(FAST, calling="CT1"))
    a = _save(tmp_path, "a.json", _summary(FAST, calling="CT2"))
    code, out, err = _compare(capsys, b, a, "--json")
    doc = json.loads(out)  # the comparison is still printed
    assert doc["verdict"] == "not-comparable"
    assert {p["verdict"] for p in doc["pairs"]} == {"not-comparable"}
    assert code == 2
    assert err == (
        "dicomsniffd: error: not comparable: no AE pair on both sides "
        "(before: CT1 → PACS; after: CT2 → PACS)\n"
    )


def test_a_pair_on_one_side_only_leaves_the_verdict_to_the_others(tmp_path, capsys) -> None:
    before = _summary(FAST, calling="CT1")
    flow = Flow(flow_id=2, calling_ae="CT2")
    good_association(before, flow, n=0)
    for _ in range(20):
        feed_store(before, flow, status=0xA700)
    b = _save(tmp_path, "b.json", before)
    a = _save(tmp_path, "a.json", _summary(SLOW, calling="CT1"))
    code, out, err = _compare(capsys, b, a, "--json")
    doc = json.loads(out)
    verdicts = {p["calling_ae"]: (p["verdict"], p["reasons"]) for p in doc["pairs"]}
    assert verdicts["CT2"] == ("not-comparable", ["AE pair seen only before"])
    assert verdicts["CT1"][0] == "regressed"
    assert (code, doc["verdict"], err) == (1, "regressed", "")


def test_a_rejected_association_then_stores_is_fixed(tmp_path, capsys) -> None:
    rejected = Summary()
    flow = Flow(flow_id=1)
    rejected.handle(requested(), flow)
    rejected.handle(
        AssociationRejected(
            100.01, 0.01, "permanent", "service-user", "called-ae-not-recognized", 1, 1, 7
        ),
        flow,
    )
    rejected.handle(AssociationEnded(100.02, "rejected", 0.02), flow)
    b = _save(tmp_path, "b.json", rejected)
    a = _save(tmp_path, "a.json", _summary(FAST))
    code, out, _ = _compare(capsys, b, a, "--json")
    pair = json.loads(out)["pairs"][0]
    assert (code, pair["verdict"], pair["before"]["rejected"]) == (0, "fixed", 1)


def test_a_failed_command_not_run_again_is_not_fixed(tmp_path, capsys) -> None:
    echo_only = Summary()
    flow = Flow(flow_id=1)
    good_association(echo_only, flow, n=0)
    echo_only.handle(store(command="C-ECHO", request_dataset_bytes=0), flow)
    b = _save(tmp_path, "b.json", _summary(FAILING))
    a = _save(tmp_path, "a.json", echo_only)
    code, out, _ = _compare(capsys, b, a, "--json")
    pair = json.loads(out)["pairs"][0]
    commands = {c["command"]: c["verdict"] for c in pair["commands"]}
    assert commands == {"C-ECHO": "not-comparable", "C-STORE": "not-comparable"}
    assert (code, pair["verdict"]) == (2, "not-comparable")


def test_the_html_report(tmp_path, capsys) -> None:
    b = _save(tmp_path, "b.json", _summary(FAILING, calling="<CT&1>"))
    a = _save(tmp_path, "a.json", _summary(FAST, calling="<CT&1>"))
    report = os.path.join(tmp_path, "r.html")
    code, out, _ = _compare(capsys, b, a, "--report", report)
    with open(report, encoding="utf-8") as f:
        html = f.read()
    assert code == 0 and out.startswith("Verdict: fixed")
    assert "<h2>&lt;CT&amp;1&gt; → PACS: <span class='v v-fixed'>fixed</span></h2>" in html
    assert "<CT&1>" not in html
    assert "0x0000×16 0xA700×4" in html


# -- bad input -------------------------------------------------------------------------------


def _one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2
    assert out == ""
    assert err.startswith("dicomsniffd: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err


def _write(tmp_path, name: str, data: bytes) -> str:
    path = os.path.join(tmp_path, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_bad_inputs_are_one_line_and_exit_2(tmp_path, capsys) -> None:
    good = _save(tmp_path, "good.json", _summary(FAST))
    old = _summary(FAST).to_dict(capture_info())
    del old["schema"]
    cases = {
        "missing": (os.path.join(tmp_path, "nope.pcap"), "cannot read"),
        "empty": (_write(tmp_path, "empty.pcap", b""), "empty file"),
        "not json": (_write(tmp_path, "x.json", b"{not json"), "not valid JSON"),
        "other json": (_write(tmp_path, "o.json", b'{"a": 1}'), "not a dicomsniffd analyze"),
        "a json list": (_write(tmp_path, "l.json", b" [1, 2]"), "not a dicomsniffd analyze"),
        "old json": (_write(tmp_path, "old.json", json.dumps(old).encode()), "older dicomsniffd"),
        "not a capture": (_write(tmp_path, "t.pcap", b"hello, not a capture"), "t.pcap"),
        "empty dir": (str(tmp_path / "nothing"), "holds no capture file"),
    }
    _one_line_error(*_compare(capsys, "-c", str(tmp_path / "no.yaml"), good, good), "no.yaml")
    os.mkdir(tmp_path / "nothing")
    for path, needle in cases.values():
        code, out, err = _compare(capsys, path, good)
        _one_line_error(code, out, err, needle)
        code, out, err = _compare(capsys, good, path)
        _one_line_error(code, out, err, needle)


def test_a_json_of_the_wrong_shape_names_where(tmp_path, capsys) -> None:
    good = _save(tmp_path, "good.json", _summary(FAST))
    with open(good) as f:
        data = json.load(f)
    data["pairs"][0]["commands"]["C-STORE"]["requests"] = "twenty"
    bad = _write(tmp_path, "bad.json", json.dumps(data).encode())
    _one_line_error(*_compare(capsys, good, bad), "bad.json", "pairs[0].commands.C-STORE.requests")
    data["pairs"] = []
    empty = _write(tmp_path, "none.json", json.dumps(data).encode())
    _one_line_error(*_compare(capsys, good, empty), "no DICOM association found")


def test_a_capture_without_dicom_is_an_empty_side(tmp_path, capsys) -> None:
    good = _save(tmp_path, "good.json", _summary(FAST))
    # a valid pcap (little-endian, Ethernet) holding no packet
    header = bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")
    empty = _write(tmp_path, "nothing.pcap", header)
    _one_line_error(*_compare(capsys, empty, good), "before (", "no DICOM association found")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["a.pcap"], "compare needs two sides"),
        (["a.pcap", "b.pcap", "c.pcap"], "compare needs two sides"),
        (["--before", "a.pcap"], "--after is missing"),
        (["x.pcap", "--before", "a.pcap", "--after", "b.pcap"], "not both"),
    ],
)
def test_the_sides_must_be_two(capsys, argv, needle) -> None:
    _one_line_error(*_compare(capsys, *argv), needle)


def test_a_saved_json_stands_alone_on_its_side(tmp_path, capsys) -> None:
    good = _save(tmp_path, "good.json", _summary(FAST))
    argv = ["--before", good, good, "--after", good]
    _one_line_error(*_compare(capsys, *argv), "stands alone on its side")


def test_nothing_is_written_on_bad_input(tmp_path, capsys) -> None:
    good = _save(tmp_path, "good.json", _summary(FAST))
    report = _write(tmp_path, "keep.html", b"earlier report")
    missing = os.path.join(tmp_path, "nope.pcap")
    _one_line_error(*_compare(capsys, good, missing, "--report", report), "cannot read")
    with open(report, "rb") as f:
        assert f.read() == b"earlier report"
    _one_line_error(*_compare(capsys, good, good, "--report", str(tmp_path)), "is a directory")
    _one_line_error(*_compare(capsys, good, good, "--report", "-", "--json"), "standard output")

"""The summary keeps a bounded set of association records (every problem up to a cap, a
uniform sample of the rest) with exact totals: counts, findings and "showing N of M"."""

from __future__ import annotations

from sink_fakes import Flow
from summary_fakes import capture_info, good_association, requested

from dicomsniffd.dicom.events import Aborted, AssociationEnded
from dicomsniffd.findings.facts import Association, AssociationTotals
from dicomsniffd.sinks.summary import Summary
from dicomsniffd.sinks.summary.kept import KeptAssociations
from dicomsniffd.sinks.summary.text import cited_flows, render_text


def _aborted(summary: Summary, flow: Flow) -> None:
    summary.handle(requested(), flow)
    summary.handle(Aborted(100.5, "acceptor", "service-provider", "unexpected-pdu", 2, 2), flow)
    summary.handle(AssociationEnded(100.5, "aborted", 0.5), flow)


def _capture(n: int, aborted: set[int], problem_cap: int = 4, sample_cap: int = 10) -> Summary:
    summary = Summary(KeptAssociations(problem_cap=problem_cap, sample_cap=sample_cap))
    for flow_id in range(1, n + 1):
        flow = Flow(flow_id=flow_id, client=f"10.1.{flow_id >> 8}.{flow_id & 255}:50000")
        if flow_id in aborted:
            _aborted(summary, flow)
        else:
            good_association(summary, flow, n=1)
    return summary


ABORTED = {7, 100, 250, 400, 555, 800}


def test_records_are_bounded_and_the_totals_exact() -> None:
    summary = _capture(1_000, ABORTED)
    data = summary.to_dict(capture_info())
    totals = data["association_totals"]
    assert totals["associations"] == 1_000
    assert totals["with_problems"] == len(ABORTED)
    assert totals["aborted"] == len(ABORTED) and totals["cut_short"] == len(ABORTED)
    assert totals["outcomes"] == {"accepted": 994, "aborted-before-accept": 6}
    assert totals["listed"] == len(data["associations"]) == 4 + 10 and totals["sampled"]
    # the rollup and the per-command statistics count every association, not the sample
    (pair,) = data["pairs"]
    assert (pair["associations"], pair["objects"]) == (1_000, 994)
    assert data["dimse"]["C-STORE"]["requests"] == 994
    assert data["dimse"]["C-STORE"]["response_latency_ms"]["count"] == 994
    listed = [a["flow_id"] for a in data["associations"]]
    assert listed == sorted(listed)  # time order (same start: flow order)
    assert len(set(listed) & ABORTED) == 4  # the problem cap


def test_findings_count_all_associations_and_cite_kept_ones() -> None:
    summary = _capture(1_000, ABORTED)
    data = summary.to_dict(capture_info())
    (aborts,) = [f for f in data["findings"] if f["code"] == "aborts"]
    assert aborts["detail"].startswith("6 associations ended with A-ABORT")
    assert aborts["evidence"][-1] == "… and 2 more"  # 4 kept of 6, counted exactly
    cited = cited_flows(data["findings"])
    kept = {a["flow_id"] for a in data["associations"]}
    assert cited and cited <= kept
    text = summary.render_text(capture_info())
    for flow_id in cited:  # every flow a finding cites is printed
        assert any(line.startswith(f"{flow_id:>4} ") for line in text.splitlines())
    assert "Associations (1000)" in text
    assert "With problems (4 of 6), worst first" in text
    assert "Other associations (10 of 994), in time order" in text
    assert "… 986 more associations (--json lists 14 of them" in text


def test_a_uniform_sample_of_the_clean_associations() -> None:
    # every tenth block of the capture should be about equally represented
    summary = _capture(20_000, set(), problem_cap=0, sample_cap=2_000)
    listed = [a["flow_id"] for a in summary.to_dict(capture_info())["associations"]]
    assert len(listed) == 2_000
    per_tenth = [sum(1 for f in listed if (f - 1) // 2_000 == k) for k in range(10)]
    assert all(140 <= n <= 260 for n in per_tenth), per_tenth  # 200 expected, 5 sigma ~ 67


def test_the_same_capture_gives_the_same_sample() -> None:
    first = _capture(3_000, ABORTED).to_dict(capture_info())["associations"]
    again = _capture(3_000, ABORTED).to_dict(capture_info())["associations"]
    assert [a["flow_id"] for a in first] == [a["flow_id"] for a in again]


def test_the_worst_problems_are_kept_when_there_are_too_many() -> None:
    summary = Summary(KeptAssociations(problem_cap=3, sample_cap=0))
    for flow_id in range(1, 11):
        flow = Flow(flow_id=flow_id)
        if flow_id in (4, 9):
            _aborted(summary, flow)  # weighs more than one failed store
        else:
            good_association(summary, flow, n=1, status=0xA700)
    data = summary.to_dict(capture_info())
    kept = [a["flow_id"] for a in data["associations"]]
    assert kept == [1, 4, 9]  # both aborts, then the earliest of the equal ones
    assert data["association_totals"]["with_problems"] == 10


def test_the_report_counts_all_associations_and_lists_the_kept_ones(tmp_path) -> None:
    from dicomsniffd.sinks.report import write_report

    summary = _capture(1_000, ABORTED)
    path = tmp_path / "report.html"
    write_report(str(path), summary, capture_info())
    html = path.read_text()
    assert "<h2>Associations (1000)</h2>" in html
    assert "Showing 14 of 1000 associations" in html
    assert "lists 14: the worst problems and a uniform sample of the rest" in html
    assert "1000 associations" in html  # the header and the overview card count all
    for flow_id in ABORTED & {
        a["flow_id"] for a in summary.to_dict(capture_info())["associations"]
    }:
        assert f"id='assoc-{flow_id}'" in html


def test_sketched_timings_state_their_error_in_json_and_text() -> None:
    summary = Summary()
    flow = Flow(flow_id=1)
    good_association(summary, flow, n=25_000, transfer=0.1, latency=0.05)
    data = summary.to_dict(capture_info())
    latency = data["dimse"]["C-STORE"]["response_latency_ms"]
    assert latency["count"] == 25_000 and latency["relative_error"] == 0.01
    assert abs(latency["p95"] - 50.0) <= 0.5
    assert data["pairs"][0]["response_latency_ms"]["relative_error"] == 0.01
    text = summary.render_text(capture_info())
    assert text.count("come from a streaming sketch: each within 1% of the exact value") == 2


def test_an_event_after_the_end_still_finds_its_association() -> None:
    # a flow's close dispatches the one-sided ProtocolError after AssociationEnded
    from dicomsniffd.dicom.events import ProtocolError

    summary = _capture(3, set())
    summary.handle(ProtocolError(103.0, "", "one-direction-only", "no answer seen"), Flow(2))
    data = summary.to_dict(capture_info())
    assert data["association_totals"]["associations"] == 3  # no record made anew
    assert data["protocol_errors_by_flow"] == {"2": 1}
    assert data["association_totals"]["with_problems"] == 1


def test_connections_that_never_speak_dicom_do_not_pile_up(monkeypatch) -> None:
    # A probe or a TLS client on a DICOM port that only resets gets a record from its TCP
    # event, and never an AssociationEnded: past QUIET_RECORDS newer ones it is dropped
    # and counted. A real association whose first fact was a retransmission (of its RQ)
    # keeps that fact, however many probes follow it.
    from dicomsniffd.sinks.summary import sink

    monkeypatch.setattr(sink, "QUIET_RECORDS", 50)
    summary = Summary(KeptAssociations(problem_cap=4, sample_cap=10))
    real = Flow(flow_id=1, client="10.1.0.1:50000")
    summary.tcp_event("retransmission", "requestor", real)
    summary.handle(requested(), real)
    for flow_id in range(2, 1_002):
        probe = Flow(flow_id=flow_id, client=f"10.2.{flow_id >> 8}.{flow_id & 255}:40000")
        summary.tcp_event("reset", "requestor", probe)
        assert len(summary._assocs) <= 50 + 2
    good_association(summary, real)  # its accept, store and release
    data = summary.to_dict(capture_info())
    assert data["connections_without_dicom_dropped"] == 1_000 - 50
    assert data["association_totals"]["associations"] == 1
    (assoc,) = data["associations"]
    assert assoc["retransmissions"] == 1
    assert data["tcp"]["resets"]["requestor"] == 1_000  # the totals count every one


def test_ae_title_pairs_beyond_the_cap_are_counted_together(monkeypatch) -> None:
    # Titles come off the network, and each pair costs rollups: past MAX_AE_PAIRS the
    # associations of new pairs are counted under one "(other)" pair, the totals exact.
    from dicomsniffd.sinks.summary import sink

    monkeypatch.setattr(sink, "MAX_AE_PAIRS", 5)
    summary = Summary(KeptAssociations(problem_cap=4, sample_cap=100))
    for flow_id in range(1, 31):
        flow = Flow(flow_id=flow_id, calling_ae=f"MOD{flow_id}", calling_ae_label="x")
        good_association(summary, flow)
    data = summary.to_dict(capture_info())
    pairs = {(p["calling_ae"], p["called_ae"]): p["associations"] for p in data["pairs"]}
    assert pairs == {**{(f"MOD{i}", "PACS"): 1 for i in range(1, 6)}, ("(other)", "(other)"): 25}
    assert data["ae_pairs_folded"] == 25
    assert data["association_totals"]["associations"] == 30
    assert data["dimse"]["C-STORE"]["requests"] == 30
    listed = {a["flow_id"]: a["calling_ae"] for a in data["associations"]}
    assert listed[3] == "MOD3" and listed[30] == "(other)"


def test_protocol_violation_rows_are_bounded(monkeypatch) -> None:
    from dicomsniffd.dicom.events import ProtocolViolation
    from dicomsniffd.sinks.summary import sink

    monkeypatch.setattr(sink, "MAX_VIOLATION_ROWS", 3)
    summary = Summary()
    flow = Flow(flow_id=1)
    summary.handle(requested(), flow)
    for i in range(10):  # a new implementation UID each time: a new row each time
        event = ProtocolViolation(101.0, "requestor", "odd-pdv-length", "", f"1.2.{i}", "V")
        summary.handle(event, flow)
        summary.handle(event, flow)  # a known row still counts
    data = summary.to_dict(capture_info())
    assert [v["count"] for v in data["protocol_violations"]] == [2, 2, 2]
    assert data["protocol_violations_dropped"] == 14


def test_tls_rows_keyed_by_raw_server_addresses_are_bounded(monkeypatch) -> None:
    from dicomsniffd.sinks.summary import sink

    monkeypatch.setattr(sink, "MAX_VIOLATION_ROWS", 4)
    summary = Summary()
    for i in range(10):  # spoofed servers: a new row each
        flow = Flow(flow_id=i + 1, server=f"10.9.0.{i}:2762")
        summary.tls_handshake(flow, "handshake-failed", {"how": "reset", "refused_by": "server"})
    data = summary.to_dict(capture_info())
    assert data["tls_handshakes_dropped"] == 6
    assert sum(row["count"] for row in data["tls"]) == 10  # the capped-label table: all


def test_the_text_ranks_by_the_scores_kept_with_the_records() -> None:
    # Summary.render_text hands the text the problem_score each record got when it was
    # counted; ranking the to_dict rows afresh gives the same text, problems included
    summary = _capture(300, {3, 30, 200, 299}, problem_cap=3, sample_cap=60)
    info = capture_info()
    text = summary.render_text(info)
    assert "With problems (3 of 4), worst first" in text
    assert text == render_text(summary.to_dict(info))


def test_the_kept_records_are_handed_out_as_copies() -> None:
    summary = _capture(50, {5}, problem_cap=2, sample_cap=5)
    summary.to_dict(capture_info())  # every record decided on
    first = summary.kept.records()
    first.clear()  # a caller's list: the kept records stay
    again = summary.kept.records()
    assert len(again) == 6 and [a.flow_id for a in again] == sorted(a.flow_id for a in again)


def test_without_the_transaction_log_the_summary_is_the_same() -> None:
    # analyze without --report needs no per-transaction records: the summary is unchanged
    with_log, without = Summary(), Summary(transaction_log=False)
    for summary in (with_log, without):
        for flow_id in range(1, 40):
            flow = Flow(flow_id=flow_id, client=f"10.1.0.{flow_id}:50000")
            if flow_id % 9:
                good_association(summary, flow, n=2)
            else:
                _aborted(summary, flow)
    assert without.transactions is None and with_log.transactions.total == 35 * 2
    info = capture_info()
    assert without.to_dict(info) == with_log.to_dict(info)
    assert without.render_text(info) == with_log.render_text(info)


def _counted(**facts) -> AssociationTotals:
    """The totals of one accepted association with ``facts`` set on its record."""
    a = Association(Flow())
    a.dicom_seen = a.requested = a.accepted = True
    for name, value in facts.items():
        setattr(a, name, value)
    kept = KeptAssociations()
    kept.add(a)
    return kept.totals


def test_every_health_count_belongs_to_an_association_with_a_problem() -> None:
    # AssociationTotals.add stops early for an association whose problem_score is 0:
    # each fact it counts must score, or that count would be lost
    abort = {"source": "service-user", "reason": "not-specified", "sender": "requestor"}
    reject = {"result": "permanent", "source": "service-user", "reason": "no-reason"}
    cases = {
        "aborted": _counted(abort=abort),
        "reset": _counted(end="reset"),
        "reset by a TCP event": _counted(resets={"requestor": 0, "acceptor": 1}),
        "with_gaps": _counted(missed=10),
        "retransmissions": _counted(retransmissions={"requestor": 2, "acceptor": 0}),
        "zero_windows": _counted(zero_windows={"requestor": 0, "acceptor": 3}),
        "an RJ after an AC": _counted(reject=reject),
    }
    for what, totals in cases.items():
        (health,) = totals.health.values()
        counted = totals.aborted + totals.reset + totals.with_gaps + sum(health.values())
        assert counted and (totals.problems or totals.rejects), what
    assert cases["an RJ after an AC"].rejects  # counted although it scores nothing here
    assert cases["an RJ after an AC"].problems == 0  # ... and is no problem association
    clean = _counted()
    assert (clean.associations, clean.problems, clean.by_pair) == (1, 0, {("MODALITY", "PACS"): 1})
    assert clean.health == {("MODALITY", "PACS"): dict.fromkeys(AssociationTotals.HEALTH, 0)}

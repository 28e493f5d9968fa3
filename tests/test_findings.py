"""Findings: one crafted scenario per finding code, their ranking, and the registry."""

from __future__ import annotations

from sink_fakes import Flow
from summary_fakes import (
    CT,
    EXPLICIT_LE,
    J2K,
    MR,
    accepted,
    capture_info,
    codes,
    feed_store,
    good_association,
    requested,
    store,
)

from dicomsniffd.dicom.events import (
    Aborted,
    AssociationEnded,
    AssociationRejected,
    DimseRequestSeen,
    DimseResponseSeen,
    PresentationContext,
    ProtocolError,
)
from dicomsniffd.findings import (
    KINDS,
    RULES,
    SEVERITIES,
    FindingKind,
    Rule,
    associations,
    capture,
    conformance,
    connections,
    dimse,
    interop,
    protocol,
    stalls,
    tcp,
    timing,
)
from dicomsniffd.sinks.summary import Summary


def test_association_rejected() -> None:
    summary = Summary()
    flow = Flow(called_ae="PACSX")
    summary.handle(requested(), flow)
    summary.handle(
        AssociationRejected(
            100.01, 0.01, "permanent", "service-user", "called-ae-not-recognized", 1, 1, 7
        ),
        flow,
    )
    summary.handle(AssociationEnded(100.02, "closed", 0.02), flow)
    finding = codes(summary)["association-rejected"]
    assert finding["severity"] == "critical"
    assert "MODALITY → PACSX" in finding["evidence"][0]
    assert "AE title configured on the SCP" in finding["advice"]
    assert summary.to_dict(capture_info())["associations"][0]["outcome"] == "rejected"


def test_no_accepted_context_names_sop_class_and_transfer_syntaxes() -> None:
    summary = Summary()
    flow = Flow()
    proposed = (PresentationContext(1, MR, (J2K, EXPLICIT_LE)),)
    summary.handle(requested(proposed), flow)
    summary.handle(accepted((PresentationContext(1, MR, (J2K, EXPLICIT_LE), 4, ""),)), flow)
    finding = codes(summary)["no-accepted-context"]
    assert finding["severity"] == "critical"
    line = finding["evidence"][0]
    assert "MR Image Storage" in line and "transfer-syntaxes-not-supported" in line
    assert "JPEG 2000" in line and "Explicit VR Little Endian" in line


def test_refused_sop_class_alongside_accepted_ones_is_a_warning() -> None:
    summary = Summary()
    flow = Flow()
    summary.handle(
        accepted(
            (
                PresentationContext(1, CT, (EXPLICIT_LE,), 0, EXPLICIT_LE),
                PresentationContext(3, MR, (EXPLICIT_LE,), 3, ""),
                # same SOP class proposed twice, one accepted: not a finding
                PresentationContext(5, CT, (J2K,), 4, ""),
            )
        ),
        flow,
    )
    finding = codes(summary)["no-accepted-context"]
    assert finding["severity"] == "warning"
    assert len(finding["evidence"]) == 1 and "MR Image Storage" in finding["evidence"][0]


def test_out_of_resources_and_other_failures_are_separate() -> None:
    summary = Summary()
    flow = Flow()
    summary.handle(requested(), flow)
    summary.handle(accepted(), flow)
    feed_store(summary, flow, status=0xA700, error_comment="archive full")
    feed_store(summary, flow, status=0xA700)
    feed_store(summary, flow, status=0x0122)
    found = codes(summary)
    oor = found["out-of-resources"]
    assert oor["severity"] == "critical"
    assert "0xA700" in oor["evidence"][0] and "2 times" in oor["evidence"][0]
    assert "archive full" in oor["evidence"][0]
    assert "disk" in oor["advice"]
    failures = found["dimse-failures"]
    assert "0x0122" in failures["detail"] and "SOP class not supported" in failures["detail"]
    assert "0xA700" not in failures["detail"]


def test_aborts_and_unanswered() -> None:
    summary = Summary()
    flow = Flow()
    summary.handle(requested(), flow)
    summary.handle(accepted(), flow)
    summary.handle(DimseRequestSeen(101.0, "requestor", "C-STORE", CT, 1, 1), flow)
    summary.handle(Aborted(130.0, "requestor", "service-user", "not-specified", 0, 0), flow)
    summary.handle(
        store(
            None,
            status_class="unanswered",
            outcome="unanswered-ended",
            response_ts=None,
            response_complete_ts=None,
            response_latency_seconds=None,
            duration_seconds=None,
        ),
        flow,
    )
    summary.handle(AssociationEnded(130.0, "aborted", 30.0), flow)
    found = codes(summary)
    abort = found["aborts"]
    assert "SCU (requestor)" in abort["evidence"][0]
    assert "1 request unanswered" in abort["evidence"][0]
    unanswered = found["unanswered"]
    assert "C-STORE MODALITY → PACS" in unanswered["evidence"][0]
    assert summary.to_dict(capture_info())["dimse"]["C-STORE"]["unanswered"] == 1


def test_resets() -> None:
    summary = Summary()
    flow = Flow()
    summary.handle(requested(), flow)
    summary.handle(accepted(), flow)
    summary.tcp_event("reset", "acceptor", flow)
    summary.handle(AssociationEnded(105.0, "reset", 5.0), flow)
    finding = codes(summary)["resets"]
    assert "reset by acceptor" in finding["evidence"][0]
    assert summary.to_dict(capture_info())["tcp"]["resets"] == {"requestor": 0, "acceptor": 1}


def test_retransmission_ratio_sets_severity() -> None:
    summary = Summary()
    flow = Flow()
    good_association(summary, flow)
    for _ in range(600):
        summary.tcp_event("retransmission", "requestor", flow)
    assert codes(summary, packets=10_000)["retransmissions"]["severity"] == "critical"
    assert codes(summary, packets=30_000)["retransmissions"]["severity"] == "warning"
    assert codes(summary, packets=300_000)["retransmissions"]["severity"] == "info"
    assert "retransmissions" not in codes(summary, packets=10_000_000)


def test_slow_scp() -> None:
    summary = Summary()
    good_association(summary, Flow(), n=20, transfer=0.05, latency=2.0)
    finding = codes(summary)["slow-scp"]
    assert finding["severity"] == "warning"
    assert "C-STORE" in finding["title"]
    assert "slow-network" not in codes(summary)


def test_slow_network_with_zero_window_from_scp() -> None:
    summary = Summary()
    flow = Flow()
    good_association(summary, flow, n=20, transfer=3.0, latency=0.01)
    summary.tcp_event("zero-window", "acceptor", flow)
    summary.tcp_event("retransmission", "requestor", flow)
    found = codes(summary, packets=10_000_000)
    assert found["slow-network"]["severity"] == "warning"
    assert any("Mbit/s" in line for line in found["slow-network"]["evidence"])
    zero = found["zero-window"]
    assert "acceptor (SCP) 1" in zero["evidence"][0]
    assert "slow-scp" not in found


def test_capture_incomplete() -> None:
    summary = Summary()
    flow = Flow()
    good_association(summary, flow)
    summary.add_bytes("missed", "requestor", 2920, flow)
    summary.handle(store(complete=False), flow)
    found = codes(summary, truncated_packets=4, decode={"super_packets": 2})
    finding = found["capture-incomplete"]
    text = " ".join(finding["evidence"])
    assert "2920 bytes" in text and "4 packets" in text and "1 DIMSE" in text
    assert "offload" not in text  # merged frames lose nothing: a separate, milder finding
    assert found["capture-offloads"]["severity"] == "info"
    assert "2 packets" in " ".join(found["capture-offloads"]["evidence"])
    assert summary.missed_bytes_total() == 2920


def test_connection_failures() -> None:
    summary = Summary()
    for _ in range(3):
        summary.connection_failure("10.9.9.9:11112", "refused")
    summary.connection_failure("10.9.9.8:104", "unanswered")
    found = codes(summary)
    assert found["connection-refused"]["severity"] == "critical"
    assert found["connection-refused"]["evidence"] == ["10.9.9.9:11112: 3 attempts"]
    assert found["connection-unanswered"]["severity"] == "warning"
    failures = summary.to_dict(capture_info())["tcp"]["connection_failures"]
    assert {"server": "10.9.9.9:11112", "reason": "refused", "count": 3} in failures


def test_protocol_errors_and_no_dicom() -> None:
    assert "no-dicom" in codes(Summary())
    summary = Summary()
    summary.handle(ProtocolError(1.0, "acceptor", "bad-pdu-type"), Flow())
    found = codes(summary)
    assert found["protocol-errors"]["severity"] == "info"
    assert "no-dicom" not in found


def test_findings_are_ranked_by_severity() -> None:
    summary = Summary()
    flow = Flow()
    good_association(summary, flow, n=5, transfer=3.0, latency=0.01)  # slow-network, info
    summary.connection_failure("10.9.9.9:11112", "refused")  # critical
    summary.tcp_event("zero-window", "acceptor", flow)  # warning
    severities = [f["severity"] for f in summary.to_dict(capture_info())["findings"]]
    assert severities == sorted(severities, key=["critical", "warning", "info"].index)
    assert severities[0] == "critical"


# -- the registry -----------------------------------------------------------------------------


def _declared() -> tuple[list[Rule], list[FindingKind]]:
    """Every Rule and FindingKind the question modules define."""
    rules, kinds = [], []
    for module in (
        associations,
        capture,
        conformance,
        connections,
        dimse,
        interop,
        protocol,
        stalls,
        tcp,
        timing,
    ):
        for value in vars(module).values():
            if isinstance(value, Rule):
                rules.append(value)
            elif isinstance(value, FindingKind):
                kinds.append(value)
    return rules, kinds


def test_every_rule_is_evaluated_once_and_every_code_registered_once() -> None:
    rules, kinds = _declared()
    assert sorted(r.name for r in RULES) == sorted(r.name for r in rules)
    assert len({r.name for r in RULES}) == len(RULES)
    codes_in_rules = [kind.code for r in RULES for kind in r.kinds]
    assert len(codes_in_rules) == len(set(codes_in_rules)) == len(KINDS)
    assert sorted(codes_in_rules) == sorted(kind.code for kind in kinds)
    for kind in KINDS.values():
        assert kind.severity in SEVERITIES and kind.title and kind.advice


def test_emitted_findings_use_their_registered_code() -> None:
    summary = Summary()
    flow = Flow()
    good_association(summary, flow, n=5, transfer=3.0, latency=0.01)
    feed_store(summary, flow, status=0xA700)
    feed_store(summary, flow, status=0x0122)
    summary.connection_failure("10.9.9.9:11112", "refused")
    summary.tcp_event("zero-window", "acceptor", flow)
    summary.tls_connection("10.9.9.9:2762", "handshake-failed")
    found = summary.to_dict(capture_info(missed_bytes=10))["findings"]
    assert len(found) >= 6
    for finding in found:
        kind = KINDS[finding["code"]]
        assert finding["severity"] in SEVERITIES
        # titles add what was seen to the registered one; only a partial refusal of
        # presentation contexts has a title of its own
        assert finding["title"].startswith(kind.title) or kind.code == "no-accepted-context"
        assert finding["advice"]


def test_evidence_is_capped() -> None:
    kind = FindingKind("x", "info", "X", "advice")
    finding, weight = kind.found("detail", [str(i) for i in range(20)], 3)
    assert weight == 3
    assert finding["evidence"][-1] == "… and 12 more"
    assert len(finding["evidence"]) == 9


def test_each_reject_reason_gets_its_own_advice_named() -> None:
    summary = Summary()
    for i, (reason, code) in enumerate(
        (("called-ae-not-recognized", 7), ("local-limit-exceeded", 2))
    ):
        flow = Flow(flow_id=10 + i, called_ae="PACSX")
        summary.handle(requested(), flow)
        result = "permanent" if code == 7 else "transient"
        source = "service-user" if code == 7 else "service-provider-presentation"
        summary.handle(AssociationRejected(100.01, 0.01, result, source, reason, 1, 1, code), flow)
    advice = codes(summary)["association-rejected"]["advice"]
    called = advice.index("called-ae-not-recognized: The SCP does not know the called AE")
    limit = advice.index("local-limit-exceeded: The SCP reached its limit")
    assert called < limit


def _failed(summary: Summary, command: str, status: int) -> None:
    flow = Flow(flow_id=hash((command, status)) % 1000)
    summary.handle(requested(), flow)
    summary.handle(accepted(), flow)
    summary.handle(DimseResponseSeen(101.0, "acceptor", command, status, "failure", 1, 1), flow)


def test_c_echo_failure_gets_c_echo_advice() -> None:
    summary = Summary()
    _failed(summary, "C-ECHO", 0x0122)
    advice = codes(summary)["dimse-failures"]["advice"]
    assert "Verification" in advice
    assert "supported object type" not in advice


def test_failures_of_two_commands_each_get_their_advice_labelled() -> None:
    summary = Summary()
    _failed(summary, "C-ECHO", 0x0122)
    _failed(summary, "C-STORE", 0x0122)
    advice = codes(summary)["dimse-failures"]["advice"]
    assert "C-ECHO 0x0122: C-ECHO only asks" in advice
    assert "C-STORE 0x0122: The SCP does not support this SOP class" in advice

"""Summary: schema of to_dict, one crafted scenario per finding code, text rendering."""

from __future__ import annotations

import json

import pytest
from sink_fakes import Flow

from dicomsniffd.dicom.events import (
    Aborted,
    AssociationAccepted,
    AssociationEnded,
    AssociationRejected,
    AssociationRequested,
    DimseRequestSeen,
    DimseResponseSeen,
    DimseTransaction,
    PresentationContext,
    ProtocolError,
    UserInformation,
)
from dicomsniffd.sinks.summary import Summary, percentiles

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
J2K = "1.2.840.10008.1.2.4.90"


def capture_info(**kw) -> dict:
    info = {
        "files": ["a.pcap"],
        "packets": 10_000,
        "bytes": 12_000_000,
        "first_ts": 100.0,
        "last_ts": 200.0,
        "truncated_packets": 0,
        "missed_bytes": 0,
        "decode": {"packets": 10_000},
    }
    info.update(kw)
    return info


def requested(contexts=None) -> AssociationRequested:
    return AssociationRequested(
        ts=100.0,
        calling_ae="MODALITY",
        called_ae="PACS",
        application_context="1.2.840.10008.3.1.1.1",
        presentation_contexts=contexts or (PresentationContext(1, CT, (EXPLICIT_LE,)),),
        user_info=UserInformation(
            implementation_class_uid="1.2.3.4", implementation_version_name="MOD_1"
        ),
    )


def accepted(contexts=None) -> AssociationAccepted:
    return AssociationAccepted(
        ts=100.01,
        setup_seconds=0.01,
        calling_ae="MODALITY",
        called_ae="PACS",
        presentation_contexts=contexts
        or (PresentationContext(1, CT, (EXPLICIT_LE,), 0, EXPLICIT_LE),),
        user_info=UserInformation(implementation_version_name="PACS_1"),
    )


def store(status: int = 0, transfer: float = 0.1, latency: float = 0.05, **kw) -> DimseTransaction:
    klass = {0: "success", 0xFF00: "pending"}.get(status, "failure")
    fields = {
        "command": "C-STORE",
        "sop_class_uid": CT,
        "context_id": 1,
        "message_id": 1,
        "status": status,
        "status_class": klass,
        "outcome": "answered",
        "request_ts": 101.0,
        "request_complete_ts": 101.0 + transfer,
        "response_ts": 101.0 + transfer + latency,
        "response_complete_ts": 101.0 + transfer + latency,
        "request_transfer_seconds": transfer,
        "response_latency_seconds": latency,
        "duration_seconds": transfer + latency,
        "request_dataset_bytes": 1_000_000,
        "response_dataset_bytes": 0,
        "pending_responses": 0,
        "complete": True,
    }
    fields.update(kw)
    return DimseTransaction(**fields)


def feed_store(summary: Summary, flow: Flow, status: int = 0, **kw) -> None:
    summary.handle(DimseRequestSeen(101.0, "requestor", "C-STORE", CT, 1, 1), flow)
    summary.handle(
        DimseResponseSeen(
            101.2, "acceptor", "C-STORE", status, "success" if status == 0 else "failure", 1, 1
        ),
        flow,
    )
    summary.handle(store(status, **kw), flow)


def good_association(summary: Summary, flow: Flow, n: int = 1, **kw) -> None:
    summary.tcp_event("handshake-rtt", "requestor", flow, 0.0004)
    summary.handle(requested(), flow)
    summary.handle(accepted(), flow)
    for _ in range(n):
        feed_store(summary, flow, **kw)
    summary.add_bytes("pdata", "requestor", 1_000_000 * n, flow)
    summary.add_bytes("pdata", "acceptor", 200 * n, flow)
    summary.handle(AssociationEnded(103.0, "released", 3.0), flow)


def codes(summary: Summary, **info) -> dict[str, dict]:
    return {f["code"]: f for f in summary.to_dict(capture_info(**info))["findings"]}


def test_to_dict_schema_for_a_clean_capture() -> None:
    summary = Summary()
    good_association(summary, Flow(), n=3)
    data = summary.to_dict(capture_info())
    json.dumps(data)  # JSON-serialisable as is
    assert set(data) >= {"capture", "associations", "dimse", "tcp", "protocol_errors", "findings"}
    (assoc,) = data["associations"]
    assert assoc == {
        "flow_id": 1,
        "client": "10.1.2.3:50000",
        "server": "10.9.9.9:104",
        "calling_ae": "MODALITY",
        "called_ae": "PACS",
        "start_ts": 100.0,
        "end_ts": 103.0,
        "outcome": "accepted",
        "end": "released",
        "reject": None,
        "abort": None,
        "presentation_contexts": [
            {
                "context_id": 1,
                "abstract_syntax": CT,
                "abstract_syntax_name": "CT Image Storage",
                "transfer_syntaxes_proposed": ["Explicit VR Little Endian"],
                "result": "acceptance",
                "accepted_transfer_syntax_name": "Explicit VR Little Endian",
            }
        ],
        "implementation_class_uid": "1.2.3.4",
        "implementation_version_name": "MOD_1",
        "dimse": {"C-STORE": {"0x0000": 3}},
        "unanswered": 0,
        "pdata_bytes": {"requestor": 3_000_000, "acceptor": 600},
        "missed_bytes": 0,
        "retransmissions": 0,
        "zero_windows": 0,
        "resets": 0,
    }
    cstore = data["dimse"]["C-STORE"]
    assert cstore["requests"] == 3 and cstore["responses"] == {"0x0000": 3}
    assert cstore["request_transfer_ms"]["count"] == 3
    assert cstore["request_transfer_ms"]["p50"] == pytest.approx(100.0)
    assert cstore["dataset_bytes"] == 3_000_000
    assert cstore["throughput_mbps"] == pytest.approx(80.0)  # 8 Mbit in 0.1 s
    assert data["tcp"]["handshake_rtt_ms"]["count"] == 1
    assert data["findings"] == []
    assert "No problems found." in summary.render_text(capture_info())


def test_percentiles() -> None:
    p = percentiles(float(v) for v in range(1, 101))
    assert p == {"count": 100, "p50": 50.5, "p95": 95.05, "p99": 99.01, "max": 100.0}
    assert percentiles([])["p50"] is None


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


def test_aborted_before_accept_outcome() -> None:
    summary = Summary()
    flow = Flow()
    summary.handle(requested(), flow)
    summary.handle(Aborted(100.5, "acceptor", "service-provider", "unexpected-pdu", 2, 2), flow)
    summary.handle(AssociationEnded(100.5, "aborted", 0.5), flow)
    (assoc,) = summary.to_dict(capture_info())["associations"]
    assert assoc["outcome"] == "aborted-before-accept"
    assert assoc["abort"]["source"] == "service-provider"


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


def test_render_text_fits_100_columns_and_has_every_section() -> None:
    summary = Summary()
    for flow_id in range(1, 4):
        flow = Flow(flow_id=flow_id, calling_ae="VERY_LONG_AE_T16", called_ae="ANOTHER_LONG_AE1")
        good_association(summary, flow, n=4, transfer=0.2, latency=1.5)
    flow = Flow(flow_id=9)
    summary.handle(requested(), flow)
    summary.handle(accepted(), flow)
    feed_store(summary, flow, status=0xA700)
    summary.connection_failure("[fd00:1234:5678::abcd]:11112", "refused")
    text = summary.render_text(capture_info(missed_bytes=10))
    for line in text.splitlines():
        assert len(line) <= 100, line
    for heading in ("Findings", "Associations (4)", "DIMSE", "Timing (ms)", "TCP health"):
        assert heading in text
    assert text.index("[CRITICAL]") < text.index("Associations (4)")
    assert "0xA700" in text and "service" in text and "transfer" in text

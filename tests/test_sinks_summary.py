"""Summary: schema of to_dict, association outcomes, percentiles, text rendering."""

from __future__ import annotations

import json

import pytest
from sink_fakes import Flow
from summary_fakes import (
    CT,
    accepted,
    capture_info,
    feed_store,
    good_association,
    requested,
)

from dicomsniffd.dicom.events import (
    Aborted,
    AssociationEnded,
)
from dicomsniffd.sinks.summary import Summary, percentiles


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
        "in_flight": 0,
        "pdata_bytes": {"requestor": 3_000_000, "acceptor": 600},
        "missed_bytes": 0,
        "retransmissions": 0,
        "zero_windows": 0,
        "resets": 0,
        "requestor_implementation": {
            "class_uid": "1.2.3.4",
            "version_name": "MOD_1",
            "max_pdu_length": None,
            "product": "",
        },
        "acceptor_implementation": {
            "class_uid": "",
            "version_name": "PACS_1",
            "max_pdu_length": None,
            "product": "",
        },
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


def test_aborted_before_accept_outcome() -> None:
    summary = Summary()
    flow = Flow()
    summary.handle(requested(), flow)
    summary.handle(Aborted(100.5, "acceptor", "service-provider", "unexpected-pdu", 2, 2), flow)
    summary.handle(AssociationEnded(100.5, "aborted", 0.5), flow)
    (assoc,) = summary.to_dict(capture_info())["associations"]
    assert assoc["outcome"] == "aborted-before-accept"
    assert assoc["abort"]["source"] == "service-provider"


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

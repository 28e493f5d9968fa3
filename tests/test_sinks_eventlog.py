"""EventLog: JSON lines per event type, aggregation of TCP anomalies, rotation, privacy."""

from __future__ import annotations

import io
import json
from pathlib import Path

from sink_fakes import Flow

from dicomsniffd.dicom.events import (
    Aborted,
    AssociationAccepted,
    AssociationEnded,
    AssociationRejected,
    AssociationRequested,
    DimseTransaction,
    PresentationContext,
    ProtocolError,
    Resynchronised,
    UserInformation,
)
from dicomsniffd.sinks.eventlog import EventLog

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
INSTANCE = "1.2.826.0.1.3680043.2.1125.1.123456789"


USER_INFO = UserInformation(
    max_pdu_length=16384,
    implementation_class_uid="1.2.276.0.7230010.3.0.3.6.7",
    implementation_version_name="OFFIS_DCMTK_367",
    user_identity_type=2,
    user_identity_positive_response_requested=True,
)


def request() -> AssociationRequested:
    return AssociationRequested(
        ts=100.0,
        calling_ae="MODALITY",
        called_ae="PACS",
        application_context="1.2.840.10008.3.1.1.1",
        presentation_contexts=(PresentationContext(1, CT, (EXPLICIT_LE,)),),
        user_info=USER_INFO,
    )


def store_transaction(**kw) -> DimseTransaction:
    fields = {
        "command": "C-STORE",
        "sop_class_uid": CT,
        "context_id": 1,
        "message_id": 7,
        "status": 0xA700,
        "status_class": "failure",
        "outcome": "answered",
        "request_ts": 101.0,
        "request_complete_ts": 101.5,
        "response_ts": 101.75,
        "response_complete_ts": 101.75,
        "request_transfer_seconds": 0.5,
        "response_latency_seconds": 0.25,
        "duration_seconds": 0.75,
        "request_dataset_bytes": 524_288,
        "response_dataset_bytes": 0,
        "pending_responses": 0,
        "complete": True,
        "affected_sop_instance_uid": INSTANCE,
        "error_comment": "disk full",
    }
    fields.update(kw)
    return DimseTransaction(**fields)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def run_association(log: EventLog, flow: Flow) -> None:
    log.handle(request(), flow)
    log.handle(
        AssociationAccepted(
            100.02,
            0.02,
            "MODALITY",
            "PACS",
            (PresentationContext(1, CT, (EXPLICIT_LE,), 0, EXPLICIT_LE),),
            UserInformation(implementation_version_name="PACS_1"),
        ),
        flow,
    )
    for _ in range(5):
        log.tcp_event("retransmission", "requestor", flow)
    log.tcp_event("zero-window", "acceptor", flow)
    log.handle(store_transaction(), flow)
    log.tcp_event("reset", "acceptor", flow, ts=102.0)
    log.handle(Aborted(102.0, "acceptor", "service-provider", "unexpected-pdu", 2, 2), flow)
    log.handle(ProtocolError(101.9, "acceptor", "bad-pdv-length", "length 9 > 4"), flow)
    log.handle(Resynchronised(101.95, "acceptor", 4096), flow)
    log.handle(AssociationEnded(102.0, "aborted", 2.0), flow)


def test_lines_for_a_whole_association() -> None:
    stream = io.StringIO()
    log = EventLog(stream)
    run_association(log, Flow())
    log.connection_failure("10.9.9.9:11112", "refused", ts=50.0)
    records = lines(stream)
    types = [r["type"] for r in records]
    assert types == [
        "association",
        "dimse",
        "tcp",
        "abort",
        "protocol_error",
        "protocol_error",
        "tcp",
        "tcp",
        "association_end",
        "connection_failure",
    ]
    assoc = records[0]
    assert assoc["outcome"] == "accepted"
    assert assoc["client"] == "10.1.2.3:50000" and assoc["calling_ae"] == "MODALITY"
    assert assoc["presentation_contexts"][0]["abstract_syntax_name"] == "CT Image Storage"
    assert assoc["presentation_contexts"][0]["result"] == "acceptance"
    assert assoc["requestor_implementation"]["version_name"] == "OFFIS_DCMTK_367"
    assert assoc["acceptor_implementation"]["version_name"] == "PACS_1"
    dimse = records[1]
    assert dimse["status"] == "0xA700"
    assert dimse["sop_class"] == "CT Image Storage"
    assert (dimse["request_transfer_ms"], dimse["response_latency_ms"], dimse["duration_ms"]) == (
        500.0,
        250.0,
        750.0,
    )
    assert dimse["error_comment"] == "disk full"
    assert "affected_sop_instance_uid" not in dimse
    assert records[2] == {**records[2], "kind": "reset", "sender": "acceptor", "ts": 102.0}
    aggregated = {r["kind"]: r["count"] for r in records[6:8]}
    assert aggregated == {
        "retransmission": {"requestor": 5, "acceptor": 0},
        "zero-window": {"requestor": 0, "acceptor": 1},
    }
    assert records[5]["kind"] == "resync" and records[5]["skipped_bytes"] == 4096
    assert records[8]["how"] == "aborted" and records[8]["duration_s"] == 2.0


def test_rejected_association_uses_the_request() -> None:
    stream = io.StringIO()
    log = EventLog(stream)
    flow = Flow(called_ae="WRONG")
    log.handle(request(), flow)
    log.handle(
        AssociationRejected(
            100.01, 0.01, "permanent", "service-user", "called-ae-not-recognized", 1, 1, 7
        ),
        flow,
    )
    (record,) = lines(stream)
    assert record["outcome"] == "rejected"
    assert record["reject"]["reason"] == "called-ae-not-recognized"
    assert record["presentation_contexts"][0]["abstract_syntax"] == CT
    assert record["requestor_implementation"]["class_uid"] == "1.2.276.0.7230010.3.0.3.6.7"


def test_instance_uids_only_when_asked() -> None:
    stream = io.StringIO()
    EventLog(stream, keep_instance_uids=True).handle(store_transaction(), Flow())
    assert lines(stream)[0]["affected_sop_instance_uid"] == INSTANCE


def test_no_user_identity_ever() -> None:
    stream = io.StringIO()
    log = EventLog(stream)
    run_association(log, Flow())
    text = stream.getvalue()
    assert "identity" not in text
    assert INSTANCE not in text


def test_rotation_bounds_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=2000, backups=2)
    for index in range(200):
        log.connection_failure(f"10.0.0.{index % 250}:104", "refused", ts=float(index))
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    for name in files:
        size = (tmp_path / name).stat().st_size
        assert 0 < size <= 2000
        for line in (tmp_path / name).read_text().splitlines():
            json.loads(line)  # every line whole, none split across files
    # the newest lines are in the live file, the oldest dropped
    last = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[-1])
    assert last["ts"] == 199.0
    assert log.lines_written == 200


def test_rotation_without_backups_restarts_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=500, backups=0)
    for index in range(50):
        log.connection_failure("10.0.0.1:104", "unanswered", ts=float(index))
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]
    assert path.stat().st_size <= 500


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    for _ in range(2):
        log = EventLog(path)
        log.tls_connection("10.0.0.1:2762", "established")
        log.close()
    assert len(path.read_text().splitlines()) == 2


def test_write_errors_are_counted_not_raised() -> None:
    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    log = EventLog(Full())
    log.connection_failure("10.0.0.1:104", "refused")
    assert log.write_errors == 1 and log.lines_written == 0


def test_an_unanswered_request_keeps_its_line_and_software() -> None:
    """An RQ with no AC or RJ (reset, closed) still writes its association line at the end,
    with the proposal and the requestor's software (the failing case a vendor is asked
    about); one aborted before the answer writes it before the abort line."""
    out = io.StringIO()
    log = EventLog(out)
    unanswered, aborted = Flow(flow_id=1), Flow(flow_id=2)
    log.handle(request(), unanswered)
    log.handle(AssociationEnded(130.0, "reset", 30.0), unanswered)
    log.handle(request(), aborted)
    log.handle(Aborted(100.1, "acceptor", "service-provider", "unexpected-pdu", 2, 2), aborted)
    log.handle(AssociationEnded(100.1, "aborted", 0.1), aborted)
    records = lines(out)
    assert [(r["flow_id"], r["type"]) for r in records] == [
        (1, "association"),
        (1, "association_end"),
        (2, "association"),
        (2, "abort"),
        (2, "association_end"),
    ]
    first, second = records[0], records[2]
    assert first["outcome"] == "unanswered" and first["ts"] == 100.0
    assert second["outcome"] == "aborted-before-accept"
    for record in (first, second):
        assert record["presentation_contexts"][0]["abstract_syntax"] == CT
        assert record["requestor_implementation"] == {
            "class_uid": "1.2.276.0.7230010.3.0.3.6.7",
            "version_name": "OFFIS_DCMTK_367",
            "max_pdu_length": 16384,
            "product": "DCMTK",
        }


def test_an_answered_request_writes_one_association_line() -> None:
    out = io.StringIO()
    log = EventLog(out)
    run_association(log, Flow())
    assert [r["type"] for r in lines(out)].count("association") == 1

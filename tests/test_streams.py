"""The stream glue end to end (streams/: detect, tls, dicom): which flows are DICOM or TLS,
midstream starts, TLS on a DICOM port, connection failures. Captures are built by
pipeline_captures.py and run through ``analyze_files`` with the real sinks.
"""

from __future__ import annotations

import dataclasses
import struct

from pipeline_captures import (
    ACK,
    RST,
    SYN,
    VERIFICATION,
    Capture,
    Conn,
    Result,
    echo_rq,
    echo_rsp,
    open_association,
    release,
    run,
    store_rq,
    store_rsp,
    store_session,
)
from prometheus_client.parser import text_string_to_metric_families

from dicomsniffd.config import Config


# ======================================================================================
# classification: configured ports, any-port detection, midstream
# ======================================================================================
def test_dicom_detected_on_unconfigured_port_by_associate_rq(tmp_path):
    cap = Capture()
    c = Conn(cap, sport=5104)
    open_association(c, "ANYPORT-SCU", "ANYPORT-SCP", abstract=VERIFICATION)
    for mid in (1, 2, 3):
        c.send(0, echo_rq(mid))
        c.send(1, echo_rsp(mid))
    release(c)
    r = run(cap.write(tmp_path / "anyport.pcap"))
    assert 5104 not in Config().dicom.ports
    labels = {"calling_ae": "ANYPORT-SCU", "called_ae": "ANYPORT-SCP"}
    assert r.value("dicom_association_requests_total", **labels) == 1
    assert r.value("dicom_dimse_requests_total", command="C-ECHO", **labels) == 3
    assert r.value("dicom_dimse_responses_total", command="C-ECHO", status="0x0000", **labels) == 3
    assert r.value("dicom_association_ends_total", how="released") == 1
    assert [a["server"] for a in r.summary["associations"]] == ["10.0.0.2:5104"]
    assert not r.summary["protocol_errors"]


def test_other_traffic_on_unconfigured_port_is_not_dicom(tmp_path):
    """HTTP (and anything not starting with an A-ASSOCIATE-RQ) on 5104 is not DICOM,
    also when a DICOM association on the same port shows up later in the capture."""
    cap = Capture()
    http = Conn(cap, sport=5104, cport=40010)
    http.handshake()
    http.send(0, b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n")
    http.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"x" * 3000)
    http.close()
    junk = Conn(cap, sport=5104, cport=40011)  # 0x01 0x00 but no plausible RQ behind it
    junk.handshake()
    junk.send(0, b"\x01\x00\x00\x00\x00\x10" + bytes(16))
    junk.close()
    r = run(cap.write(tmp_path / "http.pcap"))
    assert r.value("dicom_association_requests_total") == 0
    assert r.value("dicom_pdata_bytes_total") == 0
    assert r.value("dicom_protocol_errors_total") == 0
    assert r.summary["associations"] == []
    assert r.summary["protocol_errors"] == {}
    assert r.info["packets"] == len(cap.records)

    # The same HTTP exchange on a configured DICOM port is monitored (midstream-style
    # handling of an unusual start) -- the classification really depends on the port.
    cap2 = Capture()
    http = Conn(cap2, sport=104, cport=40010)
    http.handshake()
    http.send(0, b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n")
    http.close()
    r2 = run(cap2.write(tmp_path / "http104.pcap"))
    assert r2.value("dicom_association_requests_total") == 0
    assert len(r2.summary["associations"]) <= 1


def test_detect_any_port_false_limits_dicom_to_configured_ports(tmp_path):
    cap = Capture()
    c = Conn(cap, sport=5104)
    open_association(c, "ANYPORT-SCU", "ANYPORT-SCP", abstract=VERIFICATION)
    c.send(0, echo_rq(1))
    c.send(1, echo_rsp(1))
    release(c)
    path = cap.write(tmp_path / "anyport.pcap")
    assert run(path).value("dicom_association_requests_total") == 1
    off = dataclasses.replace(
        Config(), dicom=dataclasses.replace(Config().dicom, detect_any_port=False)
    )
    r = run(path, off)
    assert r.value("dicom_association_requests_total") == 0
    assert r.value("dicom_dimse_requests_total") == 0
    assert r.summary["associations"] == []
    on_port = dataclasses.replace(off, dicom=dataclasses.replace(off.dicom, ports=(5104,)))
    assert run(path, on_port).value("dicom_association_requests_total") == 1


def _midstream_capture(start_mid_dataset: bool) -> tuple[Capture, int]:
    """A C-STORE association on 104 whose beginning was not captured: the capture starts
    with request 1's command PDU (or inside its dataset); requests 1..4 then follow."""
    full = Capture()
    c = Conn(full, sport=104)
    open_association(c)
    before = len(full.records)
    for mid in range(1, 5):
        c.send(0, store_rq(mid, 20_000))
        c.send(1, store_rsp(mid))
    release(c)
    cut = before + (6 if start_mid_dataset else 0)  # 3 data segments (+3 ACKs) later
    part = Capture()
    part.records = full.records[cut:]
    return part, cut


def test_midstream_flow_on_configured_port_counts_under_unknown_ae(tmp_path):
    cap, _ = _midstream_capture(start_mid_dataset=False)
    r = run(cap.write(tmp_path / "mid.pcap"))
    assert r.value("dicom_association_requests_total") == 0
    unknown = {"calling_ae": "unknown", "called_ae": "unknown"}
    assert r.value("dicom_dimse_requests_total", command="C-STORE", **unknown) == 4
    assert (
        r.value("dicom_dimse_responses_total", command="C-STORE", status="0x0000", **unknown) == 4
    )
    labelled = {
        (s.labels["calling_ae"], s.labels["called_ae"])
        for s in r.series("dicom_dimse_responses_total")
        if s.value
    }
    assert labelled == {("unknown", "unknown")}
    assert r.value("dicom_association_ends_total", how="released") == 1
    dimse_lines = r.of_type("dimse")
    assert [e["message_id"] for e in dimse_lines] == [1, 2, 3, 4]
    assert all(e["calling_ae"] == "unknown" and e["complete"] for e in dimse_lines)


def test_midstream_start_inside_a_dataset(tmp_path):
    cap, _ = _midstream_capture(start_mid_dataset=True)
    r = run(cap.write(tmp_path / "mid2.pcap"))
    unknown = {"calling_ae": "unknown", "called_ae": "unknown"}
    # Requests 2..4 are whole; the response to the cut request 1 may be counted.
    assert r.value(
        "dicom_dimse_responses_total", command="C-STORE", status="0x0000", **unknown
    ) in (3, 4)
    assert r.value("dicom_dimse_requests_total", command="C-STORE", **unknown) == 3
    assert {e["message_id"] for e in r.of_type("dimse") if e["complete"]} >= {2, 3, 4}
    assert {s.labels["status"] for s in r.series("dicom_dimse_responses_total") if s.value} == {
        "0x0000"
    }


# ======================================================================================
# TLS on a DICOM port
# ======================================================================================
def tls_record(content_type: int, body_len: int, version: bytes = b"\x03\x03") -> bytes:
    return bytes([content_type]) + version + struct.pack("!H", body_len) + b"\xab" * body_len


CLIENT_HELLO = tls_record(22, 512, b"\x03\x01")
SERVER_FLIGHT = tls_record(22, 90) + tls_record(20, 1) + tls_record(23, 2500)  # TLS 1.3-ish


def _tls_conn(cap: Capture, sport: int, cport: int, kind: str) -> None:
    c = Conn(cap, sport=sport, cport=cport)
    c.handshake()
    c.send(0, CLIENT_HELLO)
    if kind == "established":
        c.send(1, SERVER_FLIGHT)
        c.send(0, tls_record(20, 1) + tls_record(23, 60))  # client Finished
        c.send(0, tls_record(23, 4000))  # "DICOM" inside
        c.send(1, tls_record(23, 300))
    elif kind == "alert":
        c.send(1, tls_record(21, 2))  # handshake_failure alert
    elif kind == "server-hello-then-close":
        c.send(1, tls_record(22, 90))
    elif kind == "tls13-encrypted-alert":
        # TLS 1.3: the server's flight is encrypted (type 23); the client sends its
        # (empty) Certificate and Finished, then even data; the server refuses the missing
        # client certificate with an encrypted alert: a 19-byte type-23 record.
        c.send(1, SERVER_FLIGHT)
        c.send(0, tls_record(20, 1) + tls_record(23, 25) + tls_record(23, 69))
        c.send(0, tls_record(23, 200))
        c.send(1, tls_record(23, 19))
    c.close()


def test_tls_on_dicom_port_established_and_failed(tmp_path):
    cap = Capture()
    _tls_conn(cap, 11112, 40001, "established")
    _tls_conn(cap, 11112, 40002, "alert")
    _tls_conn(cap, 11112, 40003, "server-hello-then-close")
    _tls_conn(cap, 11112, 40004, "established")
    _tls_conn(cap, 11112, 40005, "tls13-encrypted-alert")
    r = run(cap.write(tmp_path / "tls.pcap"))
    server = "10.0.0.2:11112"
    assert r.value("dicom_tls_connections_total", server=server, outcome="established") == 2
    assert r.value("dicom_tls_connections_total", server=server, outcome="handshake-failed") == 3
    assert r.value("dicom_tls_connections_total") == 5
    for s in r.series("dicom_tls_connections_total"):
        assert set(s.labels) == {"server", "outcome"}, "no AE labels on TLS counters"
    # recognised, never decoded as DICOM
    assert r.value("dicom_association_requests_total") == 0
    assert r.value("dicom_protocol_errors_total") == 0
    assert r.summary["protocol_errors"] == {}
    assert sorted((t["outcome"], t["count"]) for t in r.summary["tls"]) == [
        ("established", 2),
        ("handshake-failed", 3),
    ]
    assert "tls" in r.findings()
    assert sorted(e["outcome"] for e in r.of_type("tls")) == [
        "established",
        "established",
        "handshake-failed",
        "handshake-failed",
        "handshake-failed",
    ]


def test_tls_on_non_dicom_port_is_ignored(tmp_path):
    cap = Capture()
    _tls_conn(cap, 8443, 40001, "established")
    _tls_conn(cap, 8443, 40002, "alert")
    r = run(cap.write(tmp_path / "https.pcap"))
    assert r.value("dicom_tls_connections_total") == 0
    assert r.summary["tls"] == []
    assert r.value("dicom_protocol_errors_total") == 0
    assert r.summary["associations"] == []
    assert "tls" not in r.findings()


# ======================================================================================
# connection failures
# ======================================================================================
def _fail_labels(r: Result) -> dict[tuple[str, str], float]:
    out = {}
    for s in r.series("dicom_tcp_connection_failures_total"):
        assert set(s.labels) == {"server", "reason"}, f"unexpected labels {s.labels}"
        if s.value:
            out[(s.labels["server"], s.labels["reason"])] = s.value
    return out


def test_refused_and_unanswered_connections(tmp_path):
    cap = Capture(step=0.01)
    t0 = cap.ts
    refused = Conn(cap, sport=104, cport=40001)
    refused.seg(0, SYN)
    refused.seg(1, RST | ACK)
    # Unanswered: the client retries its SYN (1 s, 3 s later), nobody ever answers.
    quiet = Conn(cap, sport=104, cport=40002, server=bytes([10, 0, 0, 3]))
    for delay in (0.1, 1.1, 3.1):
        quiet.next[0] = 100_000  # a retry reuses the ISN
        quiet.seg(0, SYN, at=t0 + delay)
    # Non-DICOM port, never seen speaking DICOM: not our business.
    web = Conn(cap, sport=8080, cport=40003)
    web.seg(0, SYN, at=t0 + 3.2)
    web.seg(1, RST | ACK)
    # The capture goes on past syn_timeout (10 s of capture time) with other traffic.
    store_session(cap, 1, 1000, cport=40004)
    cap.add(cap.records[-1][1], at=t0 + 15.0)  # a late duplicate ACK moves the clock on
    r = run(cap.write(tmp_path / "fail.pcap"))
    assert Config().flows.syn_timeout_s < 15.0
    assert _fail_labels(r) == {("10.0.0.2:104", "refused"): 1, ("10.0.0.3:104", "unanswered"): 1}
    js = {(f["server"], f["reason"]): f["count"] for f in r.summary["tcp"]["connection_failures"]}
    assert js == {("10.0.0.2:104", "refused"): 1, ("10.0.0.3:104", "unanswered"): 1}
    lines = sorted((e["server"], e["reason"]) for e in r.of_type("connection_failure"))
    assert lines == [("10.0.0.2:104", "refused"), ("10.0.0.3:104", "unanswered")]
    # the association in between is unaffected
    assert r.value("dicom_dimse_responses_total", command="C-STORE", status="0x0000") == 1


def test_unanswered_needs_syn_timeout_of_capture_time(tmp_path):
    """A SYN whose capture ends 3 s later is not (yet) unanswered: no verdict."""
    cap = Capture()
    t0 = cap.ts
    quiet = Conn(cap, sport=104)
    quiet.seg(0, SYN, at=t0)
    quiet.next[0] = 100_000
    quiet.seg(0, SYN, at=t0 + 3.0)
    r = run(cap.write(tmp_path / "short.pcap"))
    assert _fail_labels(r) == {}


def test_failures_on_a_learned_dicom_server_on_any_port(tmp_path):
    """Port 5104 is not configured; once the server spoke DICOM there, a refused connect
    to it is counted; a refused connect to an unrelated port is not."""
    cap = Capture()
    c = Conn(cap, sport=5104, cport=40001)
    open_association(c, abstract=VERIFICATION)
    c.send(0, echo_rq(1))
    c.send(1, echo_rsp(1))
    release(c)
    again = Conn(cap, sport=5104, cport=40002)
    again.seg(0, SYN)
    again.seg(1, RST | ACK)
    other = Conn(cap, sport=5105, cport=40003)
    other.seg(0, SYN)
    other.seg(1, RST | ACK)
    r = run(cap.write(tmp_path / "learned.pcap"))
    assert _fail_labels(r) == {("10.0.0.2:5104", "refused"): 1}


# ======================================================================================
# the fan-out to the sinks: per event type, only the sinks that handle it, in sink order
# ======================================================================================
def test_events_reach_each_sink_by_its_own_table_in_sink_order(tmp_path):
    """An EventSink is called only for the event types its EVENTS lists (straight to the
    handler), a sink that overrides handle() and a plain Sink-protocol object get every
    event, and for each event the sinks are called in the order they were given."""
    from dicomsniffd.analyze import analyze_files
    from dicomsniffd.dicom.events import AssociationRequested, DimseTransaction
    from dicomsniffd.sinks.dispatch import EventSink

    calls: list[tuple[str, str]] = []

    class OnlyTwo(EventSink):
        EVENTS = {AssociationRequested: "_rq", DimseTransaction: "_txn"}

        def __init__(self) -> None:
            super().__init__()

        def _rq(self, event, flow):
            calls.append(("only-two", type(event).__name__))

        def _txn(self, event, flow):
            calls.append(("only-two", type(event).__name__))

    class Everything(EventSink):  # overrides handle: sees every event
        def handle(self, event, flow):
            calls.append(("override", type(event).__name__))

    class Plain:  # the Sink protocol without EventSink
        def handle(self, event, flow):
            calls.append(("plain", type(event).__name__))

        def tcp_event(self, kind, sender, flow, value=0.0, ts=None):
            pass

        def add_bytes(self, kind, sender, nbytes, flow):
            pass

        def connection_failure(self, server_label, reason, ts=None):
            pass

        def tls_connection(self, server_label, outcome, ts=None):
            pass

    cap = Capture()
    c = Conn(cap, sport=104)
    open_association(c, "SCU", "SCP", abstract=VERIFICATION)
    c.send(0, echo_rq(1))
    c.send(1, echo_rsp(1))
    release(c)
    path = str(cap.write(tmp_path / "fanout.pcap"))
    analyze_files([path], Config(), [Plain(), OnlyTwo(), Everything()])

    plain = [name for who, name in calls if who == "plain"]
    assert plain == [name for who, name in calls if who == "override"]
    assert "ReleaseRequested" in plain and "AssociationEnded" in plain
    assert [name for who, name in calls if who == "only-two"] == [
        "AssociationRequested",
        "DimseTransaction",
    ]
    # per event: plain, then only-two (if it takes the type), then override
    order = [who for who, _ in calls]
    for i, who in enumerate(order):
        if who == "only-two":
            assert order[i - 1] == "plain" and order[i + 1] == "override"


def test_emitter_route_skips_a_sink_for_types_it_does_not_list():
    from dicomsniffd.dicom.events import AssociationRequested, ReleaseRequested
    from dicomsniffd.sinks.dispatch import EventSink
    from dicomsniffd.streams.emitter import Emitter

    class OnlyRq(EventSink):
        EVENTS = {AssociationRequested: "on_rq"}

        def on_rq(self, event, flow):
            pass

    class Everything(EventSink):
        def handle(self, event, flow):
            pass

    only, every = OnlyRq(), Everything()
    emitter = Emitter([only, every])
    assert emitter.route(ReleaseRequested) == (every.handle,)
    assert emitter.route(AssociationRequested) == (only.on_rq, every.handle)
    assert set(emitter.routes) == {ReleaseRequested, AssociationRequested}


def _echo_associations(path, *client_ports: int) -> str:
    """A capture of one released C-ECHO association from each client port, SCU -> SCP."""
    cap = Capture()
    for cport in client_ports:
        c = Conn(cap, sport=104, cport=cport)
        open_association(c, "SCU", "SCP", abstract=VERIFICATION)
        c.send(0, echo_rq(1))
        c.send(1, echo_rsp(1))
        release(c)
    return str(cap.write(path))


def test_a_failing_sink_ends_its_association_instead_of_leaving_it_open(tmp_path):
    """A handler that raises (here: a sink, on the association's first request) is dropped
    and closed as seen so far: dicom_associations_active goes back to 0 and the flow
    table counts the failure; the other connection is unaffected."""
    from dicomsniffd.analyze import analyze_files
    from dicomsniffd.dicom.events import DimseRequestSeen
    from dicomsniffd.sinks.dispatch import EventSink
    from dicomsniffd.sinks.metrics import MetricsStore
    from dicomsniffd.sinks.summary import Summary

    class FailsOnce(EventSink):
        EVENTS = {DimseRequestSeen: "_request"}
        failed = False

        def _request(self, event, flow):
            if not self.failed:
                self.failed = True
                raise RuntimeError("a sink's bug")

    path = _echo_associations(tmp_path / "sinkbug.pcap", 40001, 40002)
    config = Config()
    metrics = MetricsStore(config.metrics)
    summary = Summary()
    info = analyze_files([path], config, [metrics, FailsOnce(), summary], labels=metrics)
    assert "Internal: 1 connection(s) left unanalysed" in summary.render_text(info)
    text = metrics.exposition().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    pair = (("called_ae", "SCP"), ("calling_ae", "SCU"))
    assert samples[("dicom_associations_active", pair)] == 0
    assert samples[("dicom_association_requests_total", pair)] == 2
    ends = {
        dict(labels)["how"]: v
        for (n, labels), v in samples.items()
        if n == "dicom_association_ends_total"
    }
    # our failure is no fault of the peers: "we stopped watching", as at a capture's end
    assert ends == {"released": 1, "capture-ended": 1}
    assert not any(v for (n, _), v in samples.items() if n == "dicom_dimse_unanswered_total")
    assert not any(n == "dicom_protocol_errors_total" and v for (n, _), v in samples.items())
    assert info["flows"]["failed_connections"] == 1
    assert not info["_pipeline"].handlers  # none left registered


def test_a_sink_failing_again_while_its_association_closes_still_ends_it(tmp_path):
    """The sink fails on the request and again on the in-flight transaction the close
    reports: AssociationEnded still reaches the metrics store, the handler is not left
    registered, and the connection counts once."""
    from dicomsniffd.analyze import analyze_files
    from dicomsniffd.dicom.events import DimseRequestSeen, DimseTransaction
    from dicomsniffd.sinks.dispatch import EventSink
    from dicomsniffd.sinks.metrics import MetricsStore

    class AlwaysFails(EventSink):
        EVENTS = {DimseRequestSeen: "_boom", DimseTransaction: "_boom"}

        def _boom(self, event, flow):
            raise RuntimeError("a sink's bug")

    path = _echo_associations(tmp_path / "sinkbug2.pcap", 40001)
    config = Config()
    metrics = MetricsStore(config.metrics)
    info = analyze_files([path], config, [metrics, AlwaysFails()], labels=metrics)
    text = metrics.exposition().decode()
    active = [
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "dicom_associations_active"
    ]
    assert active == [0]
    assert not info["_pipeline"].handlers
    assert info["flows"]["failed_connections"] == 1


def test_the_flow_table_and_the_core_name_our_own_failure_alike():
    from dicomsniffd.dicom.conversation import OBSERVER_FAILED_HOW
    from dicomsniffd.flows.table import HANDLER_FAILED

    assert HANDLER_FAILED == OBSERVER_FAILED_HOW

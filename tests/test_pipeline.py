"""The pipeline end to end on generated captures: capture artefacts (snaplen, GRO/TSO,
padding), split captures and bad inputs (pipeline_captures.py builds them). Classification,
TLS and connection failures (the stream glue) are in test_streams.py.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess

import pytest
from pipeline_captures import (
    ACK,
    EVLE,
    HDRS,
    MSS,
    PSH,
    SYN,
    VERIFICATION,
    Capture,
    Conn,
    associate_rq,
    cli,
    echo_rq,
    echo_rsp,
    open_association,
    release,
    release_rp,
    release_rq,
    run,
    store_rq,
    store_rsp,
    store_session,
)

from dicomsniffd.config import Config


# ======================================================================================
# capture artefacts
# ======================================================================================
def test_snaplen_truncated_frames_inside_a_dataset(tmp_path):
    cap = Capture()
    c = Conn(cap, sport=104)
    open_association(c)
    size = 30_000
    rq2 = store_rq(2, size)
    c.send(0, store_rq(1, size))
    c.send(1, store_rsp(1))
    # segments 5, 6 and 9 of request 2 (all inside the data set) cut at 200 bytes
    cut = {5: 200, 6: 200, 9: 200}
    nseg = c.send(0, rq2, snap=cut)
    assert nseg > 10
    c.send(1, store_rsp(2))
    c.send(0, store_rq(3, size))
    c.send(1, store_rsp(3))
    release(c)
    r = run(cap.write(tmp_path / "snap.pcap"))
    per_frame = MSS - (200 - HDRS)
    assert r.info["truncated_packets"] == 3
    assert r.info["decode"]["truncated"] == 3
    assert r.info["missed_bytes"] == 3 * per_frame
    assert r.value("dicom_capture_missed_bytes_total", sender="requestor") == 3 * per_frame
    assert r.value("dicom_capture_missed_bytes_total", sender="acceptor") == 0
    # every C-STORE still counted, with its real status
    ae = {"calling_ae": "MODALITY1", "called_ae": "PACS"}
    assert r.value("dicom_dimse_requests_total", command="C-STORE", **ae) == 3
    assert r.value("dicom_dimse_responses_total", command="C-STORE", status="0x0000", **ae) == 3
    assert r.value("dicom_association_ends_total", how="released") == 1
    # the hit transaction (and only it) is marked incomplete in the event log
    dimse_lines = {e["message_id"]: e for e in r.of_type("dimse")}
    assert sorted(dimse_lines) == [1, 2, 3]
    assert [m for m, e in dimse_lines.items() if not e["complete"]] == [2]
    assert dimse_lines[1]["request_bytes"] == size and dimse_lines[3]["request_bytes"] == size
    assert "capture-incomplete" in r.findings()
    assert r.summary["protocol_errors"] == {}


def test_gro_tso_super_packets_are_decoded(tmp_path):
    """A 64 KiB TSO frame with IP total length 0 and a GRO frame (length > MTU, set):
    the data set is counted whole, nothing is missed, the super-packets are counted."""
    cap = Capture()
    c = Conn(cap, sport=104)
    open_association(c)
    size = 120_000
    rq = store_rq(1, size, max_pdu=0)  # one PDV for the whole data set
    first, rest = rq[: 65_536 - HDRS], rq[65_536 - HDRS :]
    c.seg(0, ACK | PSH, first, total_length=0)  # a 64 KiB frame, IP total length 0
    c.seg(1, ACK)
    for i in range(0, len(rest), 30_000):  # GRO: IP total length set, well above the MTU
        c.seg(0, ACK | PSH, rest[i : i + 30_000])
        c.seg(1, ACK)
    c.send(1, store_rsp(1))
    release(c)
    assert max(len(rec[1]) for rec in cap.records) == 65_536
    r = run(cap.write(tmp_path / "tso.pcap"))
    assert r.info["decode"]["super_packets"] >= 1 + (len(rest) + 29_999) // 30_000
    assert r.info["missed_bytes"] == 0 and r.info["truncated_packets"] == 0
    assert r.value("dicom_dimse_responses_total", command="C-STORE", status="0x0000") == 1
    (line,) = r.of_type("dimse")
    assert line["request_bytes"] == size and line["complete"]
    assert r.summary["protocol_errors"] == {}
    assert r.value("dicom_pdata_bytes_total", sender="requestor") >= size


def test_ethernet_padding_is_not_payload(tmp_path):
    """Short frames (pure ACKs, tiny segments) padded to 60 bytes with junk: the junk must
    not enter the byte stream (it would corrupt the PDU framing)."""
    cap = Capture()
    c = Conn(cap, sport=104, pad=b"\x04\xee")  # junk that even looks like a P-DATA type
    open_association(c, abstract=VERIFICATION)
    for mid in (1, 2):
        rq = echo_rq(mid)
        c.send(0, rq, mss=3)  # 3-byte segments: 57-byte frames, padded
        c.send(1, echo_rsp(mid), mss=5)
    c.send(0, release_rq(), mss=4)
    c.send(1, release_rp(), mss=4)
    c.close()
    padded = sum(1 for _ts, data, _w in cap.records if len(data) == 60)
    assert padded > 50
    r = run(cap.write(tmp_path / "pad.pcap"))
    assert r.value("dicom_dimse_responses_total", command="C-ECHO", status="0x0000") == 2
    assert r.value("dicom_association_ends_total", how="released") == 1
    assert r.summary["protocol_errors"] == {}
    assert r.value("dicom_tcp_retransmitted_segments_total") == 0
    assert r.info["missed_bytes"] == 0
    wire_payload = (
        len(associate_rq(contexts=((1, VERIFICATION, (EVLE,)),)))
        + 2 * len(echo_rq(1))
        + len(release_rq())
    )
    pdata_rq = 2 * len(echo_rq(1))
    assert r.value("dicom_pdata_bytes_total", sender="requestor") == pdata_rq
    assert wire_payload > pdata_rq  # (sanity: the association PDUs are not P-DATA)


# ======================================================================================
# several files as one; pcapng
# ======================================================================================
def test_split_capture_is_analysed_as_one(tmp_path):
    cap = Capture()
    store_session(cap, 6, 20_000, statuses={3: 0xA700, 5: 0xB000})
    whole = cap.write(tmp_path / "whole.pcap")
    subprocess.run(
        ["editcap", "-c", "40", str(whole), str(tmp_path / "part.pcap")],
        check=True,
        capture_output=True,
    )
    parts = sorted(tmp_path.glob("part_*.pcap"))
    assert len(parts) >= 3
    one = run(whole)
    split = run(parts)
    assert split.info["packets"] == one.info["packets"] == len(cap.records)
    for status, n in (("0x0000", 4), ("0xA700", 1), ("0xB000", 1)):
        assert split.value("dicom_dimse_responses_total", command="C-STORE", status=status) == n
        assert one.value("dicom_dimse_responses_total", command="C-STORE", status=status) == n
    assert split.value("dicom_association_requests_total") == 1
    assert split.value("dicom_association_ends_total", how="released") == 1
    assert split.info["missed_bytes"] == 0
    assert len(split.summary["associations"]) == 1
    # and through the CLI, files in order
    p = cli("analyze", *map(str, parts), "--json")
    assert p.returncode == 0, p.stderr
    js = json.loads(p.stdout)
    assert js["dimse"]["C-STORE"]["responses"] == {"0x0000": 4, "0xA700": 1, "0xB000": 1}
    assert js["capture"]["packets"] == len(cap.records)


def test_pcapng_same_counts_as_pcap(tmp_path):
    cap = Capture()
    store_session(cap, 3, 5000)
    pcap = cap.write(tmp_path / "s.pcap")
    ng = tmp_path / "s.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(ng)], check=True, capture_output=True)
    assert ng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    a, b = run(pcap), run(ng)
    assert a.info["packets"] == b.info["packets"]
    assert a.summary["dimse"] == b.summary["dimse"]
    assert b.value("dicom_dimse_responses_total", command="C-STORE", status="0x0000") == 3


# ======================================================================================
# bad inputs through the CLI
# ======================================================================================
def _assert_one_line_error(p: subprocess.CompletedProcess, *words: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("dicomsniffd: error:"), lines[0]
    for w in words:
        assert w in lines[0], lines[0]


def test_cli_missing_file(tmp_path):
    _assert_one_line_error(cli("analyze", str(tmp_path / "nope.pcap")), "nope.pcap", "not found")


def test_cli_not_a_capture(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a capture file\n" * 10)
    _assert_one_line_error(cli("analyze", str(bad)), "notes.txt")


def test_cli_truncated_file_header(tmp_path):
    cap = Capture()
    store_session(cap, 1, 1000)
    raw = cap.write(tmp_path / "s.pcap").read_bytes()
    short = tmp_path / "short.pcap"
    short.write_bytes(raw[:10])
    _assert_one_line_error(cli("analyze", str(short)), "short.pcap")


def test_cli_file_cut_mid_packet(tmp_path):
    """Cut inside a packet record: the complete packets are analysed and reported, and
    the cut is a one-line error with a non-zero exit (as tshark and tcpdump do)."""
    cap = Capture()
    store_session(cap, 2, 5000)
    raw = cap.write(tmp_path / "s.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(raw[: len(raw) - 30])
    metrics = tmp_path / "m.prom"
    p = cli("analyze", str(cut), "--json", "--metrics", str(metrics))
    _assert_one_line_error(p, "cut.pcap", "truncated")
    js = json.loads(p.stdout)
    assert js["capture"]["truncated_files"] == [str(cut)]
    assert js["capture"]["packets"] == len(cap.records) - 1
    assert js["dimse"]["C-STORE"]["responses"] == {"0x0000": 2}
    assert "capture-incomplete" in {f["code"] for f in js["findings"]}
    assert "dicom_dimse_responses_total" in metrics.read_text()


def test_cli_unsupported_link_type(tmp_path):
    cap = Capture()
    cap.add(b"\x08\x02" + bytes(40))  # an 802.11 frame, whatever is in it
    path = cap.write(tmp_path / "wifi.pcap", linktype=105)
    _assert_one_line_error(cli("analyze", str(path)), "wifi.pcap", "105")


def test_cli_empty_file_and_directory(tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    _assert_one_line_error(cli("analyze", str(empty)), "empty.pcap")
    _assert_one_line_error(cli("analyze", str(tmp_path)), str(tmp_path))


def test_cli_good_file_then_bad_file_fails_cleanly(tmp_path):
    cap = Capture()
    store_session(cap, 1, 1000)
    good = cap.write(tmp_path / "good.pcap")
    _assert_one_line_error(
        cli("analyze", str(good), str(tmp_path / "missing.pcap")), "missing.pcap"
    )


@pytest.mark.parametrize("tool", ["editcap"])
def test_tools_present(tool):
    assert shutil.which(tool), f"{tool} is required (apt-get install tshark)"


def _gap_capture(tmp_path):
    """An association, three days of nothing (a public capture had such a gap), then
    another connection's packets, then the first connection's again."""
    t0 = 1_700_000_000.0
    cap = Capture(start=t0)
    a = Conn(cap, cport=40001)
    open_association(a)
    for mid in (1, 2):
        a.send(0, store_rq(mid, 5000))
        a.send(1, store_rsp(mid))
    last_before_gap = cap.ts
    b = Conn(cap, cport=40002)
    b.seg(0, SYN, at=t0 + 3 * 86400)
    b.seg(1, SYN | ACK)
    b.seg(0, ACK)
    a.send(0, store_rq(3, 5000))
    a.send(1, store_rsp(3))
    release(a)
    return cap.write(tmp_path / "gap.pcap"), last_before_gap - t0


def test_idle_timeout_is_the_same_whatever_the_batch_size(tmp_path):
    """Timeouts run at fixed capture instants (pipeline.process_batch splits batches):
    the association idle for three days ends at its last packet before the gap, with the
    same numbers for every capture.batch_size (it used to last 3 days, or not)."""
    path, seconds_before_gap = _gap_capture(tmp_path)
    results = []
    for batch_size in (1, 2, 7, 512):
        config = Config()
        config = dataclasses.replace(
            config, capture=dataclasses.replace(config.capture, batch_size=batch_size)
        )
        r = run(path, config)
        first = r.summary["associations"][0]
        results.append(
            (
                first["end"],
                round(first["end_ts"] - first["start_ts"], 6),
                r.value("dicom_association_ends_total", how="timeout"),
                r.value("dicom_dimse_responses_total", command="C-STORE"),
            )
        )
    assert len(set(results)) == 1, results
    end, span, timeouts, responses = results[0]
    assert (end, timeouts) == ("timeout", 1)
    # from its first packet seen (the A-ASSOCIATE-RQ) to its last before the gap
    assert 0 < span <= seconds_before_gap
    assert responses == 3  # the third store, after the gap, is still counted (midstream)

"""The flight recorder (sans-IO level: hand-built frames in batches, events as the
pipeline hands them): what it writes, when, and the memory and directory budgets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import dpkt
import pytest
from metrics_events import transaction
from sink_fakes import Flow
from test_evidence_offline import connection
from test_evidence_walker import CANARY, PATIENT_ID

from dicomsniffd.config import Config, EvidenceConfig
from dicomsniffd.daemon.errors import StartupError
from dicomsniffd.daemon.preflight import check_startable
from dicomsniffd.dicom.events import AssociationEnded
from dicomsniffd.evidence.folder import EvidenceError
from dicomsniffd.evidence.recorder import LINGER_S, FlightRecorder

FLOW = Flow(client="10.0.0.1:40000", server="10.0.0.2:104", calling_ae="MODALITY1")
T0 = 1_700_000_000


def _batch(frames, t0=T0, step_us=1000):
    data, records = b"", []
    for i, frame in enumerate(frames):
        usec = i * step_us
        records.append((t0 + usec // 1_000_000, usec % 1_000_000, len(data), len(frame)))
        data += frame
    return data, records


def _recorder(tmp_path, **kw) -> FlightRecorder:
    config = EvidenceConfig(directory=str(tmp_path / "ev"), **kw)
    return FlightRecorder(config, linktype=1)


def _end(recorder, flow=FLOW, ts=T0 + 1.0, how="released"):
    recorder.handle(AssociationEnded(ts=ts, how=how, duration_seconds=1.0), flow)
    recorder.tick(ts + LINGER_S)


def _pcaps(recorder):
    d = recorder.config.directory
    return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".pcap"))


def test_failure_status_writes_a_scrubbed_pcap(tmp_path):
    frames, _up, _down = connection()
    recorder = _recorder(tmp_path)
    recorder.batch(*_batch(frames))
    recorder.handle(transaction(status=0xA700, status_class="failure"), FLOW)
    assert _pcaps(recorder) == []  # not before the association ended
    _end(recorder)
    [path] = _pcaps(recorder)
    data = Path(path).read_bytes()
    assert CANARY not in data and PATIENT_ID not in data and b"s3cr3t-Passc0de!" not in data
    with open(path, "rb") as f:
        written = [bytes(buf) for _ts, buf in dpkt.pcap.Reader(f)]
    assert [len(f) for f in written] == [len(f) for f in frames]
    assert b"PACS" in data and b"1.2.840.10008.5.1.4.1.1.2" in data
    text = Path(path[: -len(".pcap")] + ".txt").read_text()
    assert "triggered by: failure" in text and "1 user identity values scrubbed" in text
    assert os.path.basename(path).endswith("-assoc1-w0-MODALITY1-to-PACS.pcap")
    stats = recorder.stats()
    assert stats["evidence_files_written"] == 1 and stats["evidence_recordings"] == 0
    assert stats["evidence_bytes_written"] == os.path.getsize(path) + len(text.encode())


def test_same_bytes_as_analyze_evidence(tmp_path):
    """The recorder and the offline writer scrub the same way: identical frames."""
    from helpers_pcap import write_pcap

    from dicomsniffd.evidence import folder
    from dicomsniffd.evidence.offline import write_evidence

    frames, _up, _down = connection(reorder=True)
    recorder = _recorder(tmp_path)
    recorder.batch(*_batch(frames))
    recorder.handle(transaction(status=0xA700, status_class="failure"), FLOW)
    _end(recorder)
    capture = write_pcap(tmp_path / "in.pcap", frames)
    assoc = {"flow_id": 1, "client": FLOW.client, "server": FLOW.server, "start_ts": None}
    [w] = write_evidence([str(capture)], [assoc], folder.prepare(str(tmp_path / "off")))
    with open(_pcaps(recorder)[0], "rb") as a, open(tmp_path / "off" / w.name, "rb") as b:
        live = [bytes(buf) for _ts, buf in dpkt.pcap.Reader(a)]
        offline = [bytes(buf) for _ts, buf in dpkt.pcap.Reader(b)]
    assert live == offline


def test_clean_association_writes_nothing(tmp_path):
    frames, _, _ = connection()
    recorder = _recorder(tmp_path)
    recorder.batch(*_batch(frames))
    recorder.handle(transaction(status=0x0000, status_class="success"), FLOW)
    _end(recorder)
    assert _pcaps(recorder) == [] and recorder.recordings == 0


@pytest.mark.parametrize(
    ("trigger", "event_how"),
    [("abort", "aborted"), ("abort", "reset")],
)
def test_abort_or_reset_triggers(tmp_path, trigger, event_how):
    frames, _, _ = connection()
    recorder = _recorder(tmp_path)
    recorder.batch(*_batch(frames))
    _end(recorder, how=event_how)
    assert len(_pcaps(recorder)) == 1


def test_triggers_are_configurable(tmp_path):
    frames, _, _ = connection()
    recorder = _recorder(tmp_path, triggers=("reject",))
    recorder.batch(*_batch(frames))
    recorder.handle(transaction(status=0xA700, status_class="failure"), FLOW)
    _end(recorder, how="aborted")
    assert _pcaps(recorder) == []


def test_not_dicom_is_forgotten(tmp_path):
    from helpers_pcap import ACK, PSH, ethernet, ipv4, tcp

    frames, _, _ = connection()
    recorder = _recorder(tmp_path)
    get = ethernet(ipv4(tcp(40000, 104, 1001, 50001, ACK | PSH, payload=b"GET / HTTP/1.1\r\n")))
    recorder.batch(*_batch([*frames[:2], get]))
    assert recorder.recordings == 0
    recorder.batch(*_batch(frames[:2]))  # a new SYN on the same ports: recorded again
    assert recorder.recordings == 1


def test_memory_budget_bounds_a_flood(tmp_path):
    """300 connections at once, room for 4 recordings: 4 recorded, 296 counted."""
    recorder = _recorder(tmp_path, max_bytes_per_association=65536, max_memory_bytes=4 * 65536)
    flood = []
    for i in range(300):
        frames, _, _ = connection(sport=20000 + i)
        flood.append(frames)
    # Interleave them: every connection open at the same time.
    rows = [f for group in zip(*flood, strict=False) for f in group]
    data, records = _batch(rows, step_us=10)
    recorder.batch(data, records)
    assert recorder.recordings == 4
    assert recorder.suppressed["memory"] == 296
    assert recorder.memory_bytes() <= 4 * 65536
    for i in range(300):
        flow = Flow(client=f"10.0.0.1:{20000 + i}", server="10.0.0.2:104", flow_id=i + 1)
        recorder.handle(transaction(status=0xA700, status_class="failure"), flow)
        _end(recorder, flow=flow, ts=T0 + 2.0)
    assert len(_pcaps(recorder)) == 4


def test_one_long_association_keeps_its_start_and_end(tmp_path):
    frames, _, _ = connection()
    recorder = _recorder(tmp_path, max_bytes_per_association=65536, max_memory_bytes=65536)
    many = frames[:4] + frames[4:-1] * 200 + frames[-1:]  # retransmissions galore
    recorder.batch(*_batch(many, step_us=10))
    assert recorder.memory_bytes() <= 65536
    recorder.handle(transaction(status=0xA700, status_class="failure"), FLOW)
    _end(recorder, ts=T0 + 2.0)
    [path] = _pcaps(recorder)
    with open(path, "rb") as f:
        written = [bytes(buf) for _ts, buf in dpkt.pcap.Reader(f)]
    assert written[0][:24] == many[0][:24] and len(written) < len(many)  # 24: IP checksum
    assert "frames in the middle left out" in Path(path[:-5] + ".txt").read_text()


def test_directory_budget_removes_the_oldest_and_nothing_else(tmp_path):
    recorder = _recorder(tmp_path, max_files=2)
    (tmp_path / "ev" / "notes.txt").write_text("mine")
    for i in range(4):
        frames, _, _ = connection(sport=30000 + i)
        recorder.batch(*_batch(frames, t0=T0 + 10 * i))
        flow = Flow(client=f"10.0.0.1:{30000 + i}", server="10.0.0.2:104", flow_id=i + 1)
        recorder.handle(transaction(status=0xA700, status_class="failure"), flow)
        _end(recorder, flow=flow, ts=T0 + 10 * i + 1)
    names = sorted(os.listdir(tmp_path / "ev"))
    pcaps = [n for n in names if n.endswith(".pcap")]
    assert len(pcaps) == 2 and "assoc3" in pcaps[0] and "assoc4" in pcaps[1]
    assert "notes.txt" in names and "README.txt" in names
    assert recorder.budget.removed == 2 and recorder.written == 4


def test_full_directory_is_counted_not_raised(tmp_path):
    ev = tmp_path / "tiny"
    ev.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(ev)], check=True)
    try:
        recorder = FlightRecorder(EvidenceConfig(directory=str(ev)), linktype=1)
        frames, _, _ = connection()
        recorder.batch(*_batch(frames * 4))
        recorder.handle(transaction(status=0xA700, status_class="failure"), FLOW)
        _end(recorder)
        assert recorder.suppressed["write-error"] == 1
        assert sorted(os.listdir(ev)) == ["README.txt"]
    finally:
        subprocess.run(["umount", str(ev)], check=True)


def test_existing_file_as_directory_is_refused(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("keep")
    with pytest.raises(EvidenceError, match="exists and is not a directory"):
        FlightRecorder(EvidenceConfig(directory=str(plain)), linktype=1)
    config = Config(evidence=EvidenceConfig(directory=str(plain)))
    with pytest.raises(StartupError, match="evidence.directory .* is not a directory"):
        check_startable(config)
    assert plain.read_text() == "keep"


def test_an_internal_error_costs_one_recording_not_the_capture_loop(tmp_path, monkeypatch):
    from dicomsniffd.evidence import streams

    frames, _, _ = connection()
    recorder = _recorder(tmp_path)

    def broken(self, ts, tcp, payload):
        raise RuntimeError("bug")

    monkeypatch.setattr(streams.Tracker, "place", broken)
    recorder.batch(*_batch(frames))  # does not raise
    assert recorder.suppressed["error"] >= 1 and recorder.recordings == 0


def test_a_long_association_of_many_commands_stays_recorded_within_its_budget(tmp_path):
    """500 C-STOREs on one association: the walk's kept command sets grow past the
    budget; what it kept for the left-out middle is forgotten, the start and end stay."""
    from helpers_pcap import ACK, PSH, SYN, ethernet, ipv4, tcp
    from test_dicom_streams import abort, associate_ac, associate_rq, release_rq
    from test_evidence_walker import _store

    stores = [b"".join(_store(mid=i, dataset=CANARY * 40)) for i in range(1, 501)]
    up = associate_rq() + b"".join(stores) + release_rq()
    c, s = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])

    def frame(client: bool, seq: int, flags: int, payload: bytes = b"") -> bytes:
        ports = (40000, 104) if client else (104, 40000)
        src, dst = (c, s) if client else (s, c)
        return ethernet(ipv4(tcp(*ports, seq, 1, flags, payload=payload), src, dst))

    frames = [frame(True, 1000, SYN), frame(False, 5000, SYN | ACK)]
    for at in range(0, len(up), 1400):
        frames.append(frame(True, 1001 + at, ACK | PSH, up[at : at + 1400]))
        if at == 0:  # the AC answers the RQ in the first segment
            frames.append(frame(False, 5001, ACK | PSH, associate_ac()))
    frames.append(frame(False, 5001 + len(associate_ac()), ACK | PSH, abort(2, 0)))
    limit = 65536
    recorder = _recorder(tmp_path, max_bytes_per_association=limit, max_memory_bytes=limit)
    for i in range(0, len(frames), 256):  # batches as the capture loop reads them
        recorder.batch(*_batch(frames[i : i + 256], step_us=10))
        assert recorder.memory_bytes() <= limit
    assert recorder.recordings == 1 and recorder.suppressed["association-budget"] == 0
    recorder.handle(transaction(status=0xA700, status_class="failure"), FLOW)
    _end(recorder, ts=T0 + 2.0)
    [path] = _pcaps(recorder)
    data = Path(path).read_bytes()
    assert CANARY not in data
    assert associate_rq()[:60] in data and release_rq() in data  # the start and the end
    assert "frames in the middle left out" in Path(path[:-5] + ".txt").read_text()
    # tshark decodes the start and the A-ABORT after the hole (a PDU in its own segment;
    # PDUs that continue across the hole stay undecoded, README says so).
    argv = ["tshark", "-r", path, "-d", "tcp.port==104,dicom", "-Y", "dicom"]
    argv += ["-T", "fields", "-e", "dicom.pdu.type", "-e", "_ws.col.Info"]
    rows = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()
    assert rows[0].startswith("0x01,") and "C-STORE-RQ ID=1" in rows[0]  # the RQ, a P-DATA
    assert rows[1].startswith("0x02")  # the AC
    assert rows[-1].startswith("0x07") and "ABORT" in rows[-1]

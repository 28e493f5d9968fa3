"""Input that real users have: rotated files given out of time order, and files that break
part way (a corrupt record header, a cut). Small pcaps built here, no root needed; the
command line is run for real (``python3 -m dicomsniffd analyze ... --json``)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from helpers_pcap import ethernet, ipv4, tcp, write_pcapng
from pipeline_captures import Capture, cli, run, store_session

from dicomsniffd.capture import FileSource

N_FILES = 10


def _session(
    n: int = 6, size: int = 3000, start: float = 1_700_000_000.0, step: float = 0.001
) -> Capture:
    cap = Capture(start=start, step=step)
    store_session(cap, n, size)
    return cap


def _write_records(path: Path, records) -> Path:  # noqa: ANN001
    part = Capture()
    part.records = list(records)
    return part.write(path)


def _rotate(cap: Capture, wd: Path, n: int = N_FILES) -> list[Path]:
    """Split one capture into ``cap.pcap1`` ... ``cap.pcapN``, as ``tcpdump -C/-W`` does."""
    cuts = [len(cap.records) * i // n for i in range(n + 1)]
    assert all(a < b for a, b in zip(cuts, cuts[1:], strict=False)), "a file would be empty"
    return [
        _write_records(wd / f"cap.pcap{i + 1}", cap.records[cuts[i] : cuts[i + 1]])
        for i in range(n)
    ]


def _glob_order(paths: list[Path]) -> list[str]:
    return sorted(str(p) for p in paths)  # what `cap.pcap*` expands to: 1, 10, 2, 3, ...


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def _assert_session(js: dict, n: int) -> None:
    """Exactly the one association of ``_session``, complete and answered."""
    assocs = js["associations"]
    assert len(assocs) == 1, assocs
    (assoc,) = assocs
    assert assoc["calling_ae"] == "MODALITY1" and assoc["called_ae"] == "PACS"
    assert assoc["unanswered"] == 0
    assert assoc["dimse"]["C-STORE"] == {"0x0000": n}
    assert js["dimse"]["C-STORE"]["responses"] == {"0x0000": n}
    assert js["capture"]["last_ts"] >= js["capture"]["first_ts"]


# --------------------------------------------------------------------------------------
# files out of time order
# --------------------------------------------------------------------------------------
def _two_associations(step: float) -> Capture:
    cap = Capture(step=step)
    store_session(cap, 3, 3000, cport=40001)
    store_session(cap, 3, 3000, cport=40002)
    return cap


def test_rotated_files_from_a_glob_are_read_in_time_order(tmp_path: Path) -> None:
    # Two slow associations one after the other (a packet every 100 s: past the transaction
    # and idle timeouts between files). Read 1, 10, 2, ... as before the fix, the clock
    # jumped to file 10, a request timed out unanswered, file 2 started phantom
    # associations mid-stream and the time span came out negative.
    cap = _two_associations(step=100.0)
    paths = _rotate(cap, tmp_path)
    given = _glob_order(paths)
    assert given[:3] == [str(tmp_path / f"cap.pcap{i}") for i in (1, 10, 2)]
    p = cli("analyze", *given, "--json")
    assert p.returncode == 0, p.stderr
    js = json.loads(p.stdout)
    assocs = js["associations"]
    assert [(a["calling_ae"], a["called_ae"], a["end"]) for a in assocs] == [
        ("MODALITY1", "PACS", "released")
    ] * 2, assocs
    assert [a["unanswered"] for a in assocs] == [0, 0]
    assert [a["dimse"] for a in assocs] == [{"C-STORE": {"0x0000": 3}}] * 2
    assert js["dimse"]["C-STORE"]["responses"] == {"0x0000": 6}
    assert "unanswered" not in {f["code"] for f in js["findings"]}
    capture = js["capture"]
    assert capture["packets"] == len(cap.records)
    assert capture["first_ts"] == pytest.approx(cap.records[0][0], abs=1e-3)
    assert capture["last_ts"] == pytest.approx(cap.records[-1][0], abs=1e-3)
    in_time_order = [str(p) for p in paths]
    assert capture["files"] == in_time_order and capture["files_reordered"] is True
    (note,) = _lines(p.stderr)  # one line naming the order used
    assert note.startswith("dicomsniffd: note:") and "time order" in note
    assert note.endswith(" ".join(in_time_order))


def test_files_in_time_order_say_nothing(tmp_path: Path) -> None:
    paths = [str(p) for p in _rotate(_session(), tmp_path, 3)]
    p = cli("analyze", *paths, "--json")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    js = json.loads(p.stdout)
    _assert_session(js, 6)
    assert js["capture"]["files"] == paths and js["capture"]["files_reordered"] is False


def test_empty_file_goes_last_and_same_start_keeps_given_order(tmp_path: Path) -> None:
    cap = _session()
    a, b = _rotate(cap, tmp_path, 2)
    empty = _write_records(tmp_path / "empty.pcap", [])
    r = run([empty, b, a])
    assert r.info["files"] == [str(a), str(b), str(empty)]
    assert len(r.summary["associations"]) == 1


def test_overlapping_files_are_refused_with_how_to_merge(tmp_path: Path) -> None:
    cap = _session()
    even = _write_records(tmp_path / "even.pcap", cap.records[0::2])
    odd = _write_records(tmp_path / "odd.pcap", cap.records[1::2])
    p = cli("analyze", str(even), str(odd), "--json")
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    (line,) = _lines(p.stderr)
    assert line.startswith("dicomsniffd: error:")
    assert "overlap" in line and "mergecap -w merged.pcapng" in line
    assert str(even) in line and str(odd) in line


# --------------------------------------------------------------------------------------
# a file that breaks part way
# --------------------------------------------------------------------------------------
def _record_offset(cap: Capture, index: int) -> int:
    return 24 + sum(16 + len(data) for _ts, data, _wire in cap.records[:index])


def _corrupt(cap: Capture, path: Path, index: int) -> Path:
    """Write ``cap`` with record ``index``'s captured length made absurd."""
    raw = bytearray(cap.write(path).read_bytes())
    off = _record_offset(cap, index)
    raw[off + 8 : off + 12] = struct.pack("<I", 0x0FFFFFF0)
    path.write_bytes(raw)
    return path


def _break_index(cap: Capture) -> int:
    """A record after the association's first two C-STORE exchanges, mid file."""
    return len(cap.records) * 2 // 3


@pytest.mark.parametrize("batch", [1, 7, 512])
def test_file_source_keeps_packets_before_a_corrupt_record(tmp_path: Path, batch: int) -> None:
    cap = _session()
    k = _break_index(cap)
    path = _corrupt(cap, tmp_path / "bad.pcap", k)
    source = FileSource(str(path))
    got = [len(records) for _data, records in source.batches(batch)]
    assert sum(got) == source.packets == k
    assert not source.truncated_file
    assert source.broken is not None
    assert source.broken["kind"] == "corrupt"
    assert source.broken["packet"] == k + 1
    assert source.broken["offset"] == _record_offset(cap, k)
    assert "invalid packet capture length" in source.broken["error"]


def test_cli_corrupt_record_mid_file_keeps_results_and_says_where(tmp_path: Path) -> None:
    cap = _session()
    k = _break_index(cap)
    bad = _corrupt(cap, tmp_path / "bad.pcap", k)
    p = cli("analyze", str(bad), "--json")
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    (line,) = _lines(p.stderr)
    assert line.startswith("dicomsniffd: error: capture file broken:")
    assert str(bad) in line and f"packet {k + 1}" in line
    assert f"byte offset {_record_offset(cap, k)}" in line
    js = json.loads(p.stdout)  # the results before the break are there
    assert js["capture"]["packets"] == k
    assert js["capture"]["broken_files"] == [
        {
            "file": str(bad),
            "kind": "corrupt",
            "packet": k + 1,
            "offset": _record_offset(cap, k),
            "error": js["capture"]["broken_files"][0]["error"],
        }
    ]
    assert js["capture"]["truncated_files"] == []
    (assoc,) = js["associations"]
    assert assoc["calling_ae"] == "MODALITY1"
    assert sum(assoc["dimse"]["C-STORE"].values()) >= 2
    text = cli("analyze", str(bad))
    assert text.returncode == 2 and "MODALITY1" in text.stdout


def test_corrupt_file_among_rotated_files_keeps_the_others(tmp_path: Path) -> None:
    first = _session(2, 1000)
    second = _session(2, 1000, start=1_700_000_100.0)
    a = first.write(tmp_path / "a.pcap")
    b = _corrupt(second, tmp_path / "b.pcap", len(second.records) - 3)
    r = run([b, a])
    assert r.info["files"] == [str(a), str(b)]
    assert [x["file"] for x in r.info["broken_files"]] == [str(b)]
    assert r.info["packets"] == len(first.records) + len(second.records) - 3


def test_cut_file_says_where_it_was_cut(tmp_path: Path) -> None:
    cap = _session(2, 1000)
    raw = cap.write(tmp_path / "s.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(raw[:-30])
    p = cli("analyze", str(cut), "--json")
    assert p.returncode == 2
    (line,) = _lines(p.stderr)
    n = len(cap.records)
    assert "truncated" in line and f"packet {n}" in line
    assert f"byte offset {_record_offset(cap, n - 1)}" in line
    (broken,) = json.loads(p.stdout)["capture"]["broken_files"]
    assert broken["kind"] == "truncated" and broken["packet"] == n


def frames(n: int) -> list[bytes]:
    return [ethernet(ipv4(tcp(seq=i, payload=bytes([i]) * 100))) for i in range(n)]


def _epb_offsets(raw: bytes) -> list[int]:
    """Byte offsets of a pcapng file's Enhanced Packet Blocks."""
    offsets, off = [], 0
    while off < len(raw):
        kind, length = struct.unpack_from("<II", raw, off)
        if kind == 6:
            offsets.append(off)
        off += length
    return offsets


@pytest.mark.parametrize("batch", [1, 512])
def test_pcapng_corrupt_block_keeps_packets_before_it(tmp_path: Path, batch: int) -> None:
    sent = frames(20)
    raw = bytearray(write_pcapng(tmp_path / "ok.pcapng", sent).read_bytes())
    off = _epb_offsets(bytes(raw))[12]
    raw[off + 4 : off + 8] = struct.pack("<I", 0x7FFFFFF0)  # block total length: absurd
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(raw)
    source = FileSource(str(bad))
    got = sum(len(records) for _data, records in source.batches(batch))
    assert got == source.packets == 12
    assert source.broken is not None and source.broken["packet"] == 13
    assert source.broken["kind"] == "corrupt" and source.broken["offset"] is None

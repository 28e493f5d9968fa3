"""A pcapng whose interfaces have different link types (Ethernet + Linux cooked SLL, as a
multi-interface dumpcap or a merge with a `tcpdump -i any` capture gives): libpcap refuses
it part way, dicomsniffd reads each packet with its own interface's link type.

The mixed files are made here from the frames of a real session capture
(pipeline_captures.store_session): some packets through an Ethernet interface, the others
re-framed with a 16-byte SLL header through a second interface (nanosecond if_tsresol), and
optionally a second, big-endian section with its own interfaces. The command line is run
for real, and tshark reads the same file as a second opinion."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pcapy
import pytest
from pipeline_captures import Capture, cli, store_session

from dicomsniffd.capture import FileSource
from dicomsniffd.capture.pcapng import PcapngWalker

ETHERNET, SLL = 1, 113


def _session() -> Capture:
    cap = Capture()
    store_session(cap, 6, 3000)
    return cap


def _block(endian: str, kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(endian + "II", kind, length) + body + struct.pack(endian + "I", length)


def _shb(endian: str) -> bytes:
    return _block(endian, 0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(endian: str, linktype: int, tsresol: int | None = None) -> bytes:
    body = struct.pack(endian + "HHI", linktype, 0, 262144)
    if tsresol is not None:  # option if_tsresol, then opt_endofopt
        body += struct.pack(endian + "HHB3x", 9, 1, tsresol) + struct.pack(endian + "HH", 0, 0)
    return _block(endian, 1, body)


def _epb(endian: str, iface: int, units: int, ts: float, data: bytes, wire: int) -> bytes:
    sec = int(ts)
    usec = round((ts - sec) * 1e6)  # the microseconds Capture.write puts in the pcap
    stamp = sec * units + usec * units // 10**6
    body = struct.pack(endian + "IIIII", iface, stamp >> 32, stamp & 0xFFFFFFFF, len(data), wire)
    return _block(endian, 6, body + data)


def _sll(frame: bytes) -> bytes:
    """The Ethernet frame re-framed as Linux cooked (SLL): same IP packet, 16-byte header."""
    ethertype = frame[12:14]
    header = struct.pack("!HHH", 0, 1, 6) + frame[6:12] + b"\0\0" + ethertype
    return header + frame[14:]


def write_mixed(cap: Capture, path: Path, *, sections: int = 1) -> tuple[Path, list[int]]:
    """Write ``cap`` as a mixed pcapng: every third packet from the second record on is SLL.

    With ``sections=2`` the second half goes into a big-endian section whose interface 0
    is SLL and 1 Ethernet. Returns the path and the byte offset of every packet block.
    """
    out = bytearray()
    offsets = []
    half = len(cap.records) // 2 if sections == 2 else len(cap.records)
    endian, ifaces = "<", {ETHERNET: (0, 10**6), SLL: (1, 10**9)}
    out += _shb(endian) + _idb(endian, ETHERNET) + _idb(endian, SLL, tsresol=9)
    for i, (ts, data, wire) in enumerate(cap.records):
        if i == half:
            endian, ifaces = ">", {SLL: (0, 10**6), ETHERNET: (1, 1 << 20)}
            out += _shb(endian) + _idb(endian, SLL) + _idb(endian, ETHERNET, tsresol=0x94)
        linktype = SLL if i % 3 == 1 else ETHERNET
        if linktype == SLL:
            data, wire = _sll(data), wire + 2
        index, units = ifaces[linktype]
        offsets.append(len(out))
        out += _epb(endian, index, units, ts, data, wire)
    path.write_bytes(out)
    return path, offsets


def _tshark_count(path: Path) -> int:
    p = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    return len(p.stdout.split())


def _analyze(path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    p = cli("analyze", str(path), "--json")
    assert "Traceback" not in p.stderr
    return p, json.loads(p.stdout)


_TIMES = ("start_ts", "end_ts")


def _untimed(js: dict) -> tuple[list, dict]:
    """Associations and DIMSE counts without the times (a 2^-20 s clock rounds them)."""
    assocs = [{k: v for k, v in a.items() if k not in _TIMES} for a in js["associations"]]
    counts = {
        op: {k: v[k] for k in ("requests", "responses", "unanswered", "dataset_bytes")}
        for op, v in js["dimse"].items()
    }
    return assocs, counts


@pytest.mark.parametrize("sections", [1, 2])
def test_mixed_link_types_analyse_like_the_single_link_original(
    tmp_path: Path, sections: int
) -> None:
    cap = _session()
    original = cap.write(tmp_path / "eth.pcap")
    mixed, _ = write_mixed(cap, tmp_path / "mixed.pcapng", sections=sections)
    with pytest.raises(pcapy.PcapError, match="different from the type of the first"):
        pcapy.open_offline(str(mixed)).next_batch(10_000)  # what libpcap alone does
    assert _tshark_count(mixed) == len(cap.records)  # second opinion on the packets

    p_orig, want = _analyze(original)
    p_mixed, got = _analyze(mixed)
    assert p_orig.returncode == 0 and p_mixed.returncode == 0, p_mixed.stderr
    assert got["capture"]["packets"] == want["capture"]["packets"] == len(cap.records)
    assert got["capture"]["broken_files"] == []
    assert got["capture"]["first_ts"] == pytest.approx(want["capture"]["first_ts"], abs=2e-6)
    assert got["capture"]["last_ts"] == pytest.approx(want["capture"]["last_ts"], abs=2e-6)
    assert got["capture"]["decode"] == want["capture"]["decode"]
    assert _untimed(got) == _untimed(want)
    for a, b in zip(got["associations"], want["associations"], strict=True):
        assert [a[k] for k in _TIMES] == pytest.approx([b[k] for k in _TIMES], abs=2e-6)
    if sections == 1:  # microsecond and nanosecond clocks: the same times exactly
        assert got["associations"] == want["associations"] and got["dimse"] == want["dimse"]
    (assoc,) = got["associations"]
    assert assoc["calling_ae"] == "MODALITY1"
    assert sum(assoc["dimse"]["C-STORE"].values()) == 6


@pytest.mark.parametrize("batch", [1, 5, 512])
def test_batches_are_runs_of_one_link_type(tmp_path: Path, batch: int) -> None:
    cap = _session()
    mixed, _ = write_mixed(cap, tmp_path / "mixed.pcapng")
    source = FileSource(str(mixed))
    got = []
    for linktype, data, records in source.link_batches(batch):
        assert 0 < len(records) <= batch
        for _sec, _usec, offset, caplen in records:
            got.append((linktype, data[offset : offset + caplen]))
    assert source.mixed_interfaces and source.broken is None
    assert source.packets == len(cap.records)
    want = [
        (SLL, _sll(data)) if i % 3 == 1 else (ETHERNET, data)
        for i, (_ts, data, _wire) in enumerate(cap.records)
    ]
    assert got == want


def test_single_link_pcapng_stays_on_libpcap(tmp_path: Path) -> None:
    cap = _session()
    path = tmp_path / "eth.pcapng"
    records = cap.records
    out = _shb("<") + _idb("<", ETHERNET) + _idb("<", ETHERNET)  # two interfaces, one type
    out += b"".join(_epb("<", i % 2, 10**6, ts, d, w) for i, (ts, d, w) in enumerate(records))
    path.write_bytes(out)
    source = FileSource(str(path))
    assert sum(len(r) for _d, r in source.batches(64)) == len(records)
    assert not source.mixed_interfaces


@pytest.mark.parametrize("how", ["length", "trailer", "cut"])
def test_mixed_file_with_a_bad_block_keeps_the_packets_before_it(tmp_path: Path, how: str) -> None:
    cap = _session()
    raw_path, offsets = write_mixed(cap, tmp_path / "ok.pcapng")
    raw = bytearray(raw_path.read_bytes())
    k = len(cap.records) * 2 // 3
    off = offsets[k]
    if how == "length":  # block total length absurd: nothing after it can be framed
        raw[off + 4 : off + 8] = struct.pack("<I", 0x7FFFFFF0)
    elif how == "trailer":  # the trailing copy of the length disagrees
        end = offsets[k + 1]
        raw[end - 4 : end] = struct.pack("<I", 8)
    else:  # the file cut in the middle of block k
        del raw[off + 20 :]
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(raw)
    p, js = _analyze(bad)
    assert p.returncode == 2
    (line,) = [x for x in p.stderr.splitlines() if x.strip()]
    kind = "truncated" if how == "cut" else "corrupt"
    word = "truncated" if how == "cut" else "broken"
    assert line.startswith(f"dicomsniffd: error: capture file {word}:")
    assert str(bad) in line and f"packet {k + 1}" in line
    (broken,) = js["capture"]["broken_files"]
    assert broken["file"] == str(bad) and broken["kind"] == kind
    assert broken["packet"] == k + 1
    assert js["capture"]["packets"] == k
    assert js["capture"]["truncated_files"] == ([str(bad)] if how == "cut" else [])
    (assoc,) = js["associations"]
    assert assoc["calling_ae"] == "MODALITY1"
    assert sum(assoc["dimse"]["C-STORE"].values()) >= 2


def test_mixed_file_with_an_unsupported_interface_is_one_line_error(tmp_path: Path) -> None:
    cap = _session()
    out = _shb("<") + _idb("<", ETHERNET) + _idb("<", 147)  # 147: a user DLT
    for i, (ts, data, wire) in enumerate(cap.records[:20]):
        out += _epb("<", 1 if i == 10 else 0, 10**6, ts, data, wire)
    path = tmp_path / "user.pcapng"
    path.write_bytes(out)
    p = cli("analyze", str(path), "--json")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    (line,) = p.stderr.splitlines()
    assert line.startswith(f"dicomsniffd: error: {path}: ")
    assert "unsupported link type 147" in line


@pytest.mark.parametrize("batch", [1, 7, 512])
@pytest.mark.parametrize("where", ["interface", "section"])
def test_second_link_type_appearing_mid_file(tmp_path: Path, batch: int, where: str) -> None:
    """libpcap delivers the packets before the second interface, then refuses: the walker
    goes on from there without repeating or losing a packet."""
    cap = _session()
    out = _shb("<") + _idb("<", ETHERNET)
    want = []
    for i, (ts, data, wire) in enumerate(cap.records):
        if i == 10:  # a second interface, or a new section with only an SLL interface
            out += _idb("<", SLL) if where == "interface" else _shb("<") + _idb("<", SLL)
        sll = i >= 10 and (where == "section" or i % 3 == 1)
        index = (1 if where == "interface" else 0) if sll else 0
        frame = _sll(data) if sll else data
        out += _epb("<", index, 10**6, ts, frame, wire + 2 if sll else wire)
        want.append((SLL if sll else ETHERNET, frame))
    path = tmp_path / "mid.pcapng"
    path.write_bytes(out)
    source = FileSource(str(path))
    got = [
        (linktype, data[offset : offset + caplen])
        for linktype, data, records in source.link_batches(batch)
        for _sec, _usec, offset, caplen in records
    ]
    assert got == want and source.broken is None and source.mixed_interfaces
    assert _tshark_count(path) == len(want)
    p, js = _analyze(path)
    assert p.returncode == 0, p.stderr
    (assoc,) = js["associations"]
    assert sum(assoc["dimse"]["C-STORE"].values()) == 6


def test_walker_reads_simple_and_obsolete_packet_blocks_and_skips_unknown_ones(
    tmp_path: Path,
) -> None:
    cap = _session()
    (t0, eth, _), (t1, other, _) = cap.records[3], cap.records[4]
    e = "<"
    tsoffset = struct.pack(e + "HHq", 14, 8, 100) + struct.pack(e + "HH", 0, 0)
    idb_sll = _block(e, 1, struct.pack(e + "HHI", SLL, 0, 262144) + tsoffset)
    stamp = int(t1) * 10**6 + 5
    cooked = _sll(other)
    n = len(cooked)
    obsolete = struct.pack(e + "HHIIII", 1, 0, stamp >> 32, stamp & 0xFFFFFFFF, n, n)
    out = (
        _shb(e)
        + _idb(e, ETHERNET)
        + idb_sll
        + _block(e, 0x0101, b"unknown block")  # an unassigned type: skipped
        + _block(e, 3, struct.pack(e + "I", len(eth)) + eth)  # SPB: interface 0, no time
        + _block(e, 2, obsolete + cooked)  # obsolete PB on the SLL interface
        + _epb(e, 0, 10**6, t0, eth, len(eth))
    )
    path = tmp_path / "blocks.pcapng"
    path.write_bytes(out)
    walker = PcapngWalker(str(path))
    got = [
        (linktype, sec, usec, data[offset : offset + caplen])
        for linktype, data, records in walker.batches(512)
        for sec, usec, offset, caplen in records
    ]
    assert walker.broken is None and walker.packets == 3
    assert got == [
        (ETHERNET, 0, 0, eth),
        (SLL, int(t1) + 100, 5, cooked),  # if_tsoffset adds 100 s
        (ETHERNET, int(t0), round((t0 - int(t0)) * 1e6), eth),
    ]
    assert _tshark_count(path) == 3

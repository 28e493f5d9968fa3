"""The own classic pcap reader (capture/pcapfile.py) against pcapy-ng on real captures.

The reference is pcapy-ng (libpcap 1.10) reading the same file: FileSource with
``pcapfile.probe`` forced to refuse, which is exactly what FileSource did before the own
reader existed. The captures are real DCMTK C-STOREs (tests/scenarios, ``a_store50``);
variants are made with editcap (nanosecond timestamps) or by rewriting only the framing
(the other byte order, nanosecond fractions, a smaller snaplen, a corrupt caplen): a unit
test of the reader, the packets stay real.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dicomsniffd import accel
from dicomsniffd.capture import FileSource, pcapfile, raw_read_loop

ROOT = Path(__file__).resolve().parent.parent


def _records(path: Path) -> list[tuple[int, int, int, int]]:
    """(offset of the record header, sec, frac, caplen) per record, parsed here."""
    data = path.read_bytes()
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, caplen, _wire = struct.unpack_from(endian + "IIII", data, pos)
        out.append((pos, sec, frac, caplen))
        pos += 16 + caplen
    return out


def _big_endian(src: Path, dst: Path) -> Path:
    """The same file written in the other byte order (file and record headers only)."""
    data = bytearray(src.read_bytes())
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), "expects a little-endian file"
    magic, major, minor, zone, sigfigs, snaplen, link = struct.unpack_from("<IHHiIII", data, 0)
    struct.pack_into(">IHHiIII", data, 0, magic, major, minor, zone, sigfigs, snaplen, link)
    for pos, *_ in _records(src):
        struct.pack_into(">IIII", data, pos, *struct.unpack_from("<IIII", data, pos))
    dst.write_bytes(bytes(data))
    return dst


def _read(
    path: Path, own: bool, monkeypatch: pytest.MonkeyPatch, max_n: int = 512, check: bool = True
) -> dict:
    """Everything FileSource tells about a file, read by the own reader or by pcapy-ng.
    ``check``: position() is at a record boundary after every batch."""
    with monkeypatch.context() as m:
        if not own:
            m.setattr(pcapfile, "probe", lambda *_a: None)
        with FileSource(str(path)) as source:
            assert (source._classic is not None) == own  # noqa: SLF001 (the path under test)
            frames, positions = [], []
            for linktype, data, records in source.link_batches(max_n):
                assert len(records) <= max_n and isinstance(data, bytes)
                for sec, usec, off, caplen in records:
                    frames.append((linktype, sec, usec, caplen, data[off : off + caplen]))
                positions.append(source.position())
            recs = _records(path)
            end = recs[-1][0] + 16 + recs[-1][3] if recs else 24  # where a next record starts
            boundaries = {r[0] for r in recs} | {end}
            assert not check or set(positions) <= boundaries  # position() exact
            return {
                "frames": frames,
                "linktype": source.linktype,
                "packets": source.packets,
                "bytes": source.bytes,
                "end": source.position(),
                "truncated_file": source.truncated_file,
                "broken": source.broken,
            }


def _same(path: Path, monkeypatch: pytest.MonkeyPatch, max_n: int = 512) -> dict:
    ours, theirs = _read(path, True, monkeypatch, max_n), _read(path, False, monkeypatch, max_n)
    assert ours["frames"] == theirs["frames"]
    assert ours == theirs
    return ours


@pytest.fixture(scope="module")
def store(real_traffic) -> Path:  # noqa: ANN001
    return Path(real_traffic["a_store50"].pcap)


@pytest.fixture(scope="module")
def variants(store: Path, tmp_path_factory) -> dict[str, Path]:  # noqa: ANN001
    """The real capture as usec and nsec (editcap), each in both byte orders."""
    d = tmp_path_factory.mktemp("reader")
    nsec = d / "nsec.pcap"
    subprocess.run(["editcap", "-F", "nsecpcap", str(store), str(nsec)], check=True)
    assert nsec.read_bytes()[:4] == b"\x4d\x3c\xb2\xa1"
    return {
        "usec": store,
        "usec-be": _big_endian(store, d / "usec-be.pcap"),
        "nsec": nsec,
        "nsec-be": _big_endian(nsec, d / "nsec-be.pcap"),
    }


@pytest.mark.parametrize("variant", ["usec", "usec-be", "nsec", "nsec-be"])
def test_same_records_as_pcapy_in_every_magic(variants, variant, monkeypatch) -> None:  # noqa: ANN001
    path = variants[variant]
    got = _same(path, monkeypatch)
    assert got["broken"] is None and not got["truncated_file"]
    assert got["packets"] == len(_records(path)) > 500
    assert got["end"] == path.stat().st_size  # position() exact at the end
    # every magic gives the original's timestamps and frames
    assert got["frames"] == _read(variants["usec"], False, monkeypatch)["frames"]


def test_nanosecond_fractions_are_cut_as_libpcap_does(variants, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    src = variants["nsec"]
    data = bytearray(src.read_bytes())
    rng = random.Random(5)
    for pos, _sec, frac, _caplen in _records(src):
        # any nanosecond value, including ones libpcap's int32 sees as negative
        new = rng.choice([frac + rng.randrange(1000), 999_999_999, 0x80000000, 0xFFFFFFFF])
        struct.pack_into("<I", data, pos + 4, new)
    path = tmp_path / "frac.pcap"
    path.write_bytes(bytes(data))
    _same(path, monkeypatch)
    _same(_big_endian(path, tmp_path / "frac-be.pcap"), monkeypatch)


@pytest.mark.parametrize("max_n", [1, 7, 512, 100_000])
def test_batch_sizes(store, max_n, monkeypatch) -> None:  # noqa: ANN001
    _same(store, monkeypatch, max_n)


@pytest.mark.parametrize("chunk", [1, 16, 17, 1000, 1514 + 16, 65536])
def test_records_straddling_chunk_boundaries(variants, chunk, monkeypatch) -> None:  # noqa: ANN001
    reference = _read(variants["nsec-be"], False, monkeypatch)
    monkeypatch.setattr(pcapfile, "CHUNK_SIZE", chunk)
    assert _read(variants["nsec-be"], True, monkeypatch, 64) == _read(
        variants["nsec-be"], False, monkeypatch, 64
    )
    assert _read(variants["nsec-be"], True, monkeypatch)["frames"] == reference["frames"]


def _cut_points(path: Path, rng: random.Random) -> list[int]:
    recs = _records(path)
    size = path.stat().st_size
    points = {24, 25, 39, 40, size - 1}
    for pos, _s, _f, caplen in rng.sample(recs, 12):
        points |= {pos, pos + 1, pos + 15, pos + 16, pos + 17, pos + 16 + caplen - 1}
    points |= {rng.randrange(24, size) for _ in range(10)}
    return sorted(points)


@pytest.mark.parametrize("variant", ["usec", "nsec-be"])
def test_truncated_at_many_cut_points(variants, variant, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    full = variants[variant].read_bytes()
    monkeypatch.setattr(pcapfile, "CHUNK_SIZE", 50_000)  # cuts near and across chunk ends
    kinds = set()
    for cut in _cut_points(variants[variant], random.Random(variant)):
        path = tmp_path / f"cut{cut}.pcap"
        path.write_bytes(full[:cut])
        got = _same(path, monkeypatch, 100)
        kinds.add(got["broken"]["kind"] if got["broken"] else None)
        path.unlink()
    assert kinds == {None, "truncated"}  # both record-boundary cuts and mid-record ones


def _with_caplen(src: Path, dst: Path, index: int, caplen: int, snaplen: int | None = None) -> Path:
    data = bytearray(src.read_bytes())
    pos = _records(src)[index][0]
    struct.pack_into("<I", data, pos + 8, caplen)
    if snaplen is not None:
        struct.pack_into("<I", data, 16, snaplen)
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize(
    ("caplen", "snaplen", "words"),
    [
        (0x7FFFFFFF, None, "bigger than snaplen of 262144"),
        (300_000, 1_000_000, "bigger than maximum of 262144"),
    ],
)
def test_corrupt_caplen_at_several_positions(
    store,
    tmp_path,
    monkeypatch,
    caplen,
    snaplen,
    words,  # noqa: ANN001
) -> None:
    n = len(_records(store))
    for index in (0, 1, 511, 512, n // 2, n - 1):
        path = _with_caplen(store, tmp_path / f"bad{index}.pcap", index, caplen, snaplen)
        got = _same(path, monkeypatch)
        assert got["packets"] == index
        assert got["broken"]["kind"] == "corrupt" and words in got["broken"]["error"]
        assert got["broken"]["packet"] == index + 1
        assert got["broken"]["offset"] == _records(store)[index][0]
        path.unlink()


def test_caplen_above_snaplen_is_cut_to_the_snaplen(store, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    data = bytearray(store.read_bytes())
    struct.pack_into("<I", data, 16, 200)  # snaplen 200: the full-size frames are "too long"
    path = tmp_path / "snap.pcap"
    path.write_bytes(bytes(data))
    long = [r for r in _records(store) if r[3] > 1000][-1]
    for cut in (len(data), long[0] + 16 + 100, long[0] + 16 + 500):  # inside a long one too
        (tmp_path / "snapcut.pcap").write_bytes(bytes(data[:cut]))
        ours = _read(tmp_path / "snapcut.pcap", True, monkeypatch)
        theirs = _read(tmp_path / "snapcut.pcap", False, monkeypatch, check=False)
        assert max(f[3] for f in ours["frames"]) == 200
        # pcapy-ng's position() counts the delivered 200 bytes, not the record's length:
        # the own reader's is exact; everything else is the same.
        if cut == len(data):
            assert ours["end"] == cut and ours["broken"] is None
        else:
            assert ours["end"] == ours["broken"]["offset"] == long[0]
            theirs["broken"]["offset"] = long[0]
            assert ours["broken"]["error"] == theirs["broken"]["error"]
        assert theirs["end"] < ours["end"]
        assert ours == {**theirs, "end": ours["end"]}


def test_fifo_reads_the_same_packets(store, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    # A process, not a thread: libpcap's open of the FIFO blocks holding the GIL.
    writer = subprocess.Popen(["dd", f"if={store}", f"of={fifo}", "bs=65536", "status=none"])
    try:
        with FileSource(str(fifo)) as source:
            assert source._classic is None  # noqa: SLF001 (not seekable: libpcap reads it)
            frames = [
                (sec, usec, data[off : off + caplen])
                for data, records in source.batches(512)
                for sec, usec, off, caplen in records
            ]
    finally:
        assert writer.wait(timeout=60) == 0
    assert frames == [f[1:3] + (f[4],) for f in _read(store, True, monkeypatch)["frames"]]


def test_index_pcap_takes_bytes_bytearray_and_memoryview(store) -> None:  # noqa: ANN001
    data = store.read_bytes()[:300_000]
    args = (24, len(data), 100, False, False, 262144, 262144)
    want = accel.fastpath.index_pcap(data, *args)
    assert want[3] == 0 and len(want[0]) == 1600
    assert accel.fastpath.index_pcap(bytearray(data), *args) == want
    assert accel.fastpath.index_pcap(memoryview(data), *args) == want
    with pytest.raises(ValueError):
        accel.fastpath.index_pcap(data, 10, 5, 1, False, False, 1, 1)
    assert accel.fastpath.index_pcap(data, 24, 30, 5, False, False, 1, 1)[1:] == (24, 0, 1)


def test_raw_read_loop_stays_pcapy(store, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(pcapfile, "PcapFile", None)  # the own reader is not used
    recs = _records(store)
    assert raw_read_loop(str(store)) == (len(recs), sum(r[3] for r in recs))


def _analyze(path: Path, *, pure: bool) -> tuple[int, dict[str, Any], bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DICOMSNIFFD_PURE_PYTHON", None)
    if pure:
        env["DICOMSNIFFD_PURE_PYTHON"] = "1"
    p = subprocess.run(
        [sys.executable, "-m", "dicomsniffd", "analyze", str(path), "--json"],
        env=env,
        capture_output=True,
    )
    return p.returncode, json.loads(p.stdout), p.stderr


def test_analyze_output_equals_pure_python(variants, tmp_path) -> None:  # noqa: ANN001
    cut = tmp_path / "cut.pcap"
    data = variants["nsec-be"].read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    for path, rc in ((variants["usec"], 0), (cut, 2)):  # 2: the results cover a cut file
        ours = _analyze(path, pure=False)
        assert ours == _analyze(path, pure=True)
        assert ours[0] == rc and ours[1]["capture"]["packets"] > 300
    assert ours[1]["capture"]["truncated_files"] == [str(cut)]
    assert b"truncated dump file; tried to read" in ours[2]


def test_pure_python_keeps_pcapy(store, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(accel, "fastpath", None)  # what DICOMSNIFFD_PURE_PYTHON=1 gives
    with FileSource(str(store)) as source:
        assert source._classic is None  # noqa: SLF001
        assert sum(len(r) for _d, r in source.batches()) == len(_records(store))

"""A pcapng whose second section has the other byte order (a big-endian capture appended
to a little-endian one with `cat`, as pcapng allows): libpcap stops at the second section
header, dicomsniffd reads on with its block walker. Files made as in
test_capture_pcapng_mixed.py, from a real session's frames; tshark as second opinion."""

from __future__ import annotations

from pathlib import Path

import pcapy
import pytest
from pipeline_captures import Capture
from test_capture_pcapng_mixed import (
    ETHERNET,
    _analyze,
    _epb,
    _idb,
    _session,
    _shb,
    _tshark_count,
    _untimed,
)

from dicomsniffd.capture import FileSource


def _two_sections(cap: Capture, path: Path, first: str, split: int) -> Path:
    """``cap`` as a pcapng: packets before ``split`` in a section of byte order ``first``,
    the rest in a section of the other one (each section with one Ethernet interface)."""
    endian = first
    out = _shb(endian) + _idb(endian, ETHERNET)
    for i, (ts, data, wire) in enumerate(cap.records):
        if i == split:
            endian = ">" if endian == "<" else "<"
            out += _shb(endian) + _idb(endian, ETHERNET, tsresol=9)  # and nanoseconds
        out += _epb(endian, 0, 10**9 if i >= split else 10**6, ts, data, wire)
    path.write_bytes(out)
    return path


def test_libpcap_alone_stops_at_the_second_section(tmp_path: Path) -> None:
    cap = _session()
    path = _two_sections(cap, tmp_path / "two.pcapng", "<", 20)
    reader = pcapy.open_offline(str(path))
    with pytest.raises(pcapy.PcapError, match="pcapng block size"):
        while reader.next_batch(1)[1]:
            pass


@pytest.mark.parametrize("batch", [1, 7, 512])
@pytest.mark.parametrize("first", ["<", ">"])
def test_both_sections_are_read_in_their_own_byte_order(
    tmp_path: Path, batch: int, first: str
) -> None:
    cap = _session()
    path = _two_sections(cap, tmp_path / "two.pcapng", first, len(cap.records) // 2)
    source = FileSource(str(path))
    got = [
        data[offset : offset + caplen]
        for _linktype, data, records in source.link_batches(batch)
        for _sec, _usec, offset, caplen in records
    ]
    assert got == [data for _ts, data, _wire in cap.records]
    assert source.broken is None and not source.mixed_interfaces
    assert _tshark_count(path) == len(cap.records)


def test_analysis_is_the_original_captures(tmp_path: Path) -> None:
    cap = _session()
    original = cap.write(tmp_path / "eth.pcap")
    two = _two_sections(cap, tmp_path / "two.pcapng", "<", len(cap.records) // 2)
    p_orig, want = _analyze(original)
    p_two, got = _analyze(two)
    assert p_orig.returncode == 0 and p_two.returncode == 0, p_two.stderr
    assert got["capture"]["broken_files"] == [] and "broken" not in p_two.stderr
    assert got["capture"]["packets"] == want["capture"]["packets"] == len(cap.records)
    assert got["capture"]["decode"] == want["capture"]["decode"]
    assert _untimed(got) == _untimed(want)
    (assoc,) = got["associations"]
    assert sum(assoc["dimse"]["C-STORE"].values()) == 6

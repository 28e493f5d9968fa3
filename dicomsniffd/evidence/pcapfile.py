"""A classic pcap writer: what the evidence files are (Wireshark, tcpdump and every vendor
tool read it). Microsecond timestamps, as the capture reader delivers them."""

from __future__ import annotations

import struct
from typing import BinaryIO

_MAGIC_US = 0xA1B2C3D4
SNAPLEN = 262144


def file_header(linktype: int) -> bytes:
    return struct.pack("<IHHiIII", _MAGIC_US, 2, 4, 0, 0, SNAPLEN, linktype)


def record(sec: int, usec: int, frame: bytes, wire_len: int) -> bytes:
    return struct.pack("<IIII", sec, usec, len(frame), max(wire_len, len(frame))) + frame


class PcapWriter:
    """Frames of one link type into one file; ``bytes_written`` counts what it wrote."""

    def __init__(self, stream: BinaryIO, linktype: int) -> None:
        self._stream = stream
        self.linktype = linktype
        self.frames = 0
        self.bytes_written = 0
        self._put(file_header(linktype))

    def _put(self, data: bytes) -> None:
        self._stream.write(data)
        self.bytes_written += len(data)

    def write(self, sec: int, usec: int, frame: bytes, wire_len: int) -> None:
        self._put(record(sec, usec, frame, wire_len))
        self.frames += 1

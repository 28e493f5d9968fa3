"""A pcapng block walker for the files libpcap refuses: interfaces of different link types.

libpcap (and so pcapy-ng) reads a pcapng file only if all its interfaces share the first
one's link type and snapshot length; a `tcpdump -i any` merged with an Ethernet capture,
or a multi-interface dumpcap, has an Ethernet and a Linux cooked interface and is refused
part way. ``FileSource`` falls back to this walker then, and where libpcap stops at a
section header of the other byte order (libpcap 1.10 reads its length in the first
section's byte order); otherwise libpcap is the fast path. It streams the file block by block (memory bounded by one block), and yields
``(linktype, packet_bytes, records)``: each batch is a run of packets of one link type,
with records ``(sec, usec, offset, caplen)`` as libpcap's batches have them, so each link
type gets its own decoder in the same pipeline.

Blocks: Section Header (byte-order magic; a new one starts a new section with its own
interfaces), Interface Description (link type, snaplen, ``if_tsresol``, ``if_tsoffset``),
Enhanced, Simple and obsolete Packet blocks; any other block is skipped. A block that is
cut short or cannot be framed stops the walk; ``broken`` then says where, as for libpcap.
"""

from __future__ import annotations

import array
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO

from dicomsniffd.capture.records import BatchRecords

SHB, IDB, PB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
# libpcap's largest acceptable block is 16 MiB; a bigger length is a corrupt header.
MAX_BLOCK = 16 * 1024 * 1024
_OPT_TSRESOL, _OPT_TSOFFSET = 9, 14


class BlockError(Exception):
    """The walk cannot go on; ``truncated`` says whether the file was cut short."""

    def __init__(self, message: str, *, truncated: bool) -> None:
        super().__init__(message)
        self.truncated = truncated


class _Interface:
    __slots__ = ("linktype", "snaplen", "units", "offset")

    def __init__(self, linktype: int, snaplen: int, units: int, offset: int) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        self.units = units  # timestamp units per second (if_tsresol; default 10^6)
        self.offset = offset  # if_tsoffset, seconds


def _options(body: bytes, start: int, endian: str) -> Iterator[tuple[int, bytes]]:
    off = start
    while off + 4 <= len(body):
        code, length = struct.unpack_from(endian + "HH", body, off)
        if code == 0:  # opt_endofopt
            return
        value = body[off + 4 : off + 4 + length]
        if len(value) < length:
            return  # a malformed option list: ignore the rest, the block is framed
        yield code, value
        off += 4 + length + (-length % 4)


def _interface(body: bytes, endian: str) -> _Interface:
    if len(body) < 8:
        raise BlockError("interface description block too short", truncated=False)
    linktype, _reserved, snaplen = struct.unpack_from(endian + "HHI", body, 0)
    units, offset = 1_000_000, 0
    for code, value in _options(body, 8, endian):
        if code == _OPT_TSRESOL and len(value) >= 1:
            v = value[0]
            power = v & 0x7F
            if power > 60:  # no real clock; libpcap refuses these too
                raise BlockError(f"unsupported if_tsresol {v:#x}", truncated=False)
            units = (1 << power) if v & 0x80 else 10**power
        elif code == _OPT_TSOFFSET and len(value) >= 8:
            (offset,) = struct.unpack_from(endian + "q", value, 0)
    return _Interface(linktype, snaplen, units, offset)


class PcapngWalker:
    """Read one pcapng file block by block; see the module docstring."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.packets = 0  # packets read so far (delivered or skipped)
        self.bytes = 0
        self.broken: dict[str, Any] | None = None  # BlockError's message and kind

    def batches(
        self, max_n: int = 512, *, skip: int = 0
    ) -> Iterator[tuple[int, bytes, BatchRecords]]:
        """Yield ``(linktype, packet_bytes, records)``; the first ``skip`` packets are not
        delivered (they were, by libpcap, before it refused the file)."""
        data = bytearray()
        meta = array.array("I")
        current: int | None = None
        with open(self.path, "rb") as f:
            try:
                for linktype, sec, usec, frame in self._packets(f):
                    if self.packets <= skip:
                        continue
                    if current is not None and (linktype != current or len(meta) >= 4 * max_n):
                        yield current, bytes(data), BatchRecords(meta.tobytes())
                        data.clear()
                        meta = array.array("I")
                    current = linktype
                    meta.extend((sec & 0xFFFFFFFF, usec, len(data), len(frame)))
                    data += frame
                    self.bytes += len(frame)
            except BlockError as exc:
                self.packets += 1  # the packet that could not be read, for "packet N"
                self.broken = {"kind": "truncated" if exc.truncated else "corrupt"}
                self.broken["error"] = str(exc)
            if meta:
                yield current or 0, bytes(data), BatchRecords(meta.tobytes())

    def _packets(self, f: BinaryIO) -> Iterator[tuple[int, int, int, bytes]]:
        """``(linktype, sec, usec, frame)`` per packet block; counts ``self.packets``."""
        endian = "<"
        interfaces: list[_Interface] = []
        first = True
        while True:
            where = f.tell()
            head = f.read(8)
            if not head:
                return
            if len(head) < 8:
                raise BlockError(f"truncated pcapng block header at byte {where}", truncated=True)
            kind = struct.unpack_from(endian + "I", head)[0]
            if kind == SHB:
                magic = f.read(4)
                if len(magic) < 4:
                    raise BlockError("truncated section header block", truncated=True)
                if magic == struct.pack("<I", _BYTE_ORDER_MAGIC):
                    endian = "<"
                elif magic == struct.pack(">I", _BYTE_ORDER_MAGIC):
                    endian = ">"
                else:
                    raise BlockError("bad byte-order magic in section header", truncated=False)
                interfaces = []  # a new section: its own interfaces
                head += magic
            elif first:
                raise BlockError("not a pcapng file: no section header first", truncated=False)
            first = False
            (length,) = struct.unpack_from(endian + "I", head, 4)
            if length < 12 or length % 4 or length > MAX_BLOCK:
                raise BlockError(f"invalid pcapng block length {length}", truncated=False)
            rest = f.read(length - len(head))
            if len(rest) < length - len(head):
                raise BlockError(f"truncated pcapng block at byte {where}", truncated=True)
            (trailer,) = struct.unpack_from(endian + "I", rest, len(rest) - 4)
            if trailer != length:
                raise BlockError(
                    f"pcapng block at byte {where}: trailing length {trailer} != {length}",
                    truncated=False,
                )
            body = (head + rest)[8:-4]
            if kind == IDB:
                interfaces.append(_interface(body, endian))
            elif kind in (EPB, PB, SPB):
                self.packets += 1
                yield self._packet(kind, body, endian, interfaces)

    def _packet(
        self, kind: int, body: bytes, endian: str, interfaces: list[_Interface]
    ) -> tuple[int, int, int, bytes]:
        if kind == SPB:
            if len(body) < 4 or not interfaces:
                raise BlockError("simple packet block without interface", truncated=False)
            iface = interfaces[0]
            (wire,) = struct.unpack_from(endian + "I", body, 0)
            caplen = min(wire, len(body) - 4)
            if iface.snaplen:
                caplen = min(caplen, iface.snaplen)
            return iface.linktype, 0, 0, body[4 : 4 + caplen]
        if len(body) < 20:
            raise BlockError("packet block too short", truncated=False)
        if kind == EPB:
            index, high, low, caplen, _wire = struct.unpack_from(endian + "IIIII", body, 0)
        else:  # obsolete Packet Block: 16-bit interface id and drops count
            index, _drops, high, low, caplen, _wire = struct.unpack_from(endian + "HHIIII", body, 0)
        if index >= len(interfaces):
            raise BlockError(f"packet on unknown interface {index}", truncated=False)
        if caplen > len(body) - 20:
            raise BlockError(f"invalid packet capture length {caplen}", truncated=False)
        iface = interfaces[index]
        sec, frac = divmod((high << 32) | low, iface.units)
        usec = frac * 1_000_000 // iface.units
        return iface.linktype, sec + iface.offset, usec, body[20 : 20 + caplen]

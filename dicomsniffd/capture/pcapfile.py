"""Classic pcap files read in large chunks, without libpcap's and pcapy-ng's copies.

pcapy-ng's ``next_batch`` costs ~0.9 us per packet on a C-STORE capture: libpcap freads
each record into its own buffer, then pcapy copies it again into the batch's bytes. Here
the file is read in ``CHUNK_SIZE`` chunks (one ``read`` straight into a fresh ``bytes``)
and ``_fastpath.index_pcap`` frames the records inside the chunk, packed exactly as
pcapy-ng packs them, so a batch is ``(chunk, BatchRecords)`` with offsets into the chunk.
A chunk is never reused: a batch may still reference it. A record cut by the chunk's end
is read again at the start of the next chunk (a seek back over at most one record).

Only what this reads exactly as libpcap 1.10 does is taken (``probe``): a regular file
(seekable; a FIFO keeps going through libpcap), one of the four classic magics (us/ns,
either byte order), version 2.4, and a link type libpcap hands over unchanged. Anything
else, and every file header libpcap refuses, stays with pcapy-ng, so the refusals and
their messages do not change. Record rules (sf-pcap.c ``pcap_next_packet``): nanosecond
timestamps are divided by 1000; a caplen above the link type's maximum is a corrupt
record; above the snaplen but within the maximum, the frame is cut to the snaplen. A file
that ends inside a record, or reaches a corrupt one, sets ``broken`` with libpcap's words.
"""

from __future__ import annotations

import os
import stat
import struct
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple

from dicomsniffd.capture.records import BatchRecords

CHUNK_SIZE = 4 << 20  # bytes read per chunk (a module constant: tests shrink it)
FILE_HEADER, RECORD_HEADER = 24, 16
_USEC_MAGIC, _NSEC_MAGIC = 0xA1B2C3D4, 0xA1B23C4D
_BATCH_FULL, _NEED_BYTES, _CORRUPT = 0, 1, 2  # index_pcap's status
_INT_MAX = 2**31 - 1
# libpcap's max_snaplen_for_dlt (pcap-common.c): DBUS, EBHSCR, USBPCAP; else 256 KiB.
_MAX_SNAPLEN = {231: 128 * 1024 * 1024, 279: 8 * 1024 * 1024, 249: 1024 * 1024}
_MAXIMUM_SNAPLEN = 262144
# Link types whose packets libpcap rewrites (pcap_post_process): always USB mmapped; in a
# file of the other byte order also PFLOG, Linux SLL/SLL2, USB Linux and NFLOG.
_REWRITTEN = {220}
_REWRITTEN_SWAPPED = {117, 113, 276, 189, 220, 239}


class Header(NamedTuple):
    """What a classic pcap file header says, as libpcap reads it."""

    swapped: bool  # written in the other byte order
    nsec: bool  # nanosecond timestamps
    snaplen: int  # libpcap's snapshot (pcap_adjust_snapshot)
    max_caplen: int  # libpcap's max_snaplen_for_dlt


def probe(path: str, dlt: int) -> Header | None:
    """The header of ``path`` if this module reads the file as libpcap would, else None.

    ``dlt``: the link type libpcap reported for the file (its DLT, not the file's
    LINKTYPE: libpcap maps the two)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            raw = f.read(FILE_HEADER)
    except (OSError, ValueError):
        return None
    if len(raw) < FILE_HEADER:
        return None
    native = "<" if sys.byteorder == "little" else ">"
    other = ">" if native == "<" else "<"
    swapped = False
    (magic,) = struct.unpack_from(native + "I", raw)
    if magic not in (_USEC_MAGIC, _NSEC_MAGIC):
        (magic,) = struct.unpack_from(other + "I", raw)
        if magic not in (_USEC_MAGIC, _NSEC_MAGIC):
            return None  # pcapng, the Kuznetzov variant, ...: libpcap reads those
        swapped = True
    major, minor, _zone, _sigfigs, snaplen, _linktype = struct.unpack_from(
        (other if swapped else native) + "HHiIII", raw, 4
    )
    if (major, minor) != (2, 4) or dlt in (_REWRITTEN_SWAPPED if swapped else _REWRITTEN):
        return None  # old record layouts, rewritten packets: libpcap reads those
    max_caplen = _MAX_SNAPLEN.get(dlt, _MAXIMUM_SNAPLEN)
    if snaplen == 0 or snaplen > _INT_MAX:
        snaplen = max_caplen
    return Header(swapped, magic == _NSEC_MAGIC, snaplen, max_caplen)


class PcapFile:
    """Read the records of one classic pcap file (``probe`` said yes) in batches.

    ``broken`` after the end: None when the file ended at a record boundary, else
    ``{"kind": "truncated"|"corrupt", "error": libpcap's message}`` for the record that
    could not be read (the one after the last delivered)."""

    def __init__(self, path: str, header: Header, index: Any) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 (closed by close())
        self._header = header
        self._index = index  # _fastpath.index_pcap
        self.broken: dict[str, str] | None = None

    def batches(self, max_n: int) -> Iterator[tuple[bytes, BatchRecords, int, int]]:
        """Yield ``(chunk, records, captured bytes, position)``: at most ``max_n`` records
        each; ``position`` is the file offset of the record after them (exact, also when
        libpcap's rules cut a frame to the snaplen)."""
        h = self._header
        index = self._index
        f = self._file
        base = FILE_HEADER  # the file offset of chunk[0]
        f.seek(base)
        asked = CHUNK_SIZE
        chunk = f.read(asked)
        start = 0
        while True:
            packed, start, nbytes, status = index(
                chunk, start, len(chunk), max_n, h.swapped, h.nsec, h.snaplen, h.max_caplen
            )
            if packed:
                yield chunk, BatchRecords(packed), nbytes, base + start
            if status == _BATCH_FULL:
                continue
            if status == _CORRUPT:
                self.broken = {"kind": "corrupt", "error": self._corrupt(chunk, start)}
                return
            tail = len(chunk) - start
            if len(chunk) < asked:  # a short read: the end of the file (as it is now)
                if tail:
                    self.broken = {"kind": "truncated", "error": self._truncated(chunk, start)}
                return
            # The record at ``start`` goes on past the chunk: read on from its header.
            base += start
            f.seek(base)
            asked = max(CHUNK_SIZE, self._record_size(chunk, start))
            chunk = f.read(asked)
            start = 0

    def _caplen(self, chunk: bytes, at: int) -> int:
        endian = ">" if (sys.byteorder == "little") == self._header.swapped else "<"
        return struct.unpack_from(endian + "I", chunk, at + 8)[0]

    def _record_size(self, chunk: bytes, at: int) -> int:
        if len(chunk) - at < RECORD_HEADER:
            return RECORD_HEADER
        return RECORD_HEADER + self._caplen(chunk, at)

    def _corrupt(self, chunk: bytes, at: int) -> str:
        caplen, h = self._caplen(chunk, at), self._header
        if caplen > h.snaplen:
            return f"invalid packet capture length {caplen}, bigger than snaplen of {h.snaplen}"
        return f"invalid packet capture length {caplen}, bigger than maximum of {h.max_caplen}"

    def _truncated(self, chunk: bytes, at: int) -> str:
        got = len(chunk) - at
        if got < RECORD_HEADER:
            return f"truncated dump file; tried to read 16 header bytes, only got {got}"
        caplen, snaplen = self._caplen(chunk, at), self._header.snaplen
        got -= RECORD_HEADER
        if caplen > snaplen and got < snaplen:  # libpcap reads the snaplen part first
            return f"truncated dump file; tried to read {snaplen} captured bytes, only got {got}"
        return f"truncated dump file; tried to read {caplen} captured bytes, only got {got}"

    def close(self) -> None:
        self._file.close()

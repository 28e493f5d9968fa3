"""Capture from files: pcap/pcapng read through pcapy-ng, in batches.

With the compiled path in use, a classic pcap file that libpcap opens is then read with
capture/pcapfile.py instead (large chunks, records framed in C, no per-packet copy),
delivering the same records and the same ``broken``; pcapng and FIFOs stay with pcapy-ng.

A pcapng with interfaces of different link types, which libpcap refuses, or with a section
of the other byte order, which libpcap misreads, is read with the own block walker
(capture/pcapng.py) from where libpcap stopped.

The pipeline never sees a pcapy object: it gets ``(packet_bytes, records)`` pairs straight
from pcapy-ng's ``next_batch`` (``records.BatchRecords``, one C call per batch).
A file cut short, or broken by a corrupt record header, ends cleanly: every complete packet
before the break is delivered and ``broken`` says where the file broke.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any

import pcapy

from dicomsniffd import accel
from dicomsniffd.capture import pcapfile
from dicomsniffd.capture.errors import CaptureError
from dicomsniffd.capture.pcapng import PcapngWalker
from dicomsniffd.capture.records import RECORD_SIZE, BatchRecords


def _is_truncation(message: str) -> bool:
    # libpcap's wording for both pcap and pcapng: "truncated dump file; tried to read ..."
    # and "truncated pcapng dump file; ...".
    return message.startswith("truncated")


def _is_mixed_interfaces(message: str) -> bool:
    # libpcap 1.9 refuses a pcapng whose interfaces differ from the first one's:
    # "an interface has a type 113 different from the type of the first interface"
    # (or "... a snapshot length ... different from the snapshot length ...").
    return message.startswith("an interface has a") and "of the first interface" in message


def _is_block_size(message: str) -> bool:
    # libpcap's "pcapng block size 469762048 > maximum 16777216": what it says on reaching
    # a section header of the other byte order (it reads the length in the first
    # section's), and on a block length that is corrupt. The walker tells them apart: it
    # reads a new section in its own byte order, and reports a corrupt length as broken.
    return message.startswith("pcapng block size")


_PCAP_FILE_HEADER, _PCAP_RECORD_HEADER = 24, 16


def _describe(path: str, message: str) -> str:
    """Turn a libpcap error into one line that names the file and says what is wrong."""
    lowered = message.lower()
    if "no such file" in lowered:
        return f"capture file not found: {path}"
    if "permission denied" in lowered:
        return f"permission denied reading capture file: {path}"
    if "is a directory" in lowered:
        return f"capture file is a directory: {path}"
    if "unknown file format" in lowered or "bad dump file format" in lowered:
        return f"not a pcap or pcapng file: {path}"
    if _is_truncation(message) and "only got 0" in lowered and "file header" in lowered:
        return f"capture file is empty: {path}"
    if _is_truncation(message) and "header" in lowered:
        return f"not a pcap or pcapng file (truncated file header): {path}"
    return f"cannot read capture file {path}: {message}"


def _open(path: str) -> Any:  # pcapy's Reader type is not importable
    try:
        return pcapy.open_offline(path)
    except pcapy.PcapError as exc:
        raise CaptureError(_describe(path, str(exc))) from None
    except (OSError, TypeError, ValueError) as exc:  # e.g. an embedded NUL in the path
        raise CaptureError(f"cannot open capture file {path}: {exc}") from None


class FileSource:
    """A pcap or pcapng file read in batches.

    A file cut short (a capture still being written, a copy interrupted) ends cleanly:
    every complete packet is delivered, then ``truncated_file`` is set and iteration stops.
    A record header that libpcap refuses in the middle of the file (a corrupt length: the
    rest of the file cannot be framed) ends it the same way, keeping the packets before it.
    Either way ``broken`` then tells where: ``{"file", "kind": "truncated"|"corrupt",
    "packet": number of the packet that could not be read (1-based), "offset": its byte
    offset (classic pcap only, None for pcapng), "error": libpcap's message}``.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._reader = _open(path)
        self.linktype: int = self._reader.datalink()
        self.truncated_file = False  # the file ended in the middle of a packet
        self.broken: dict[str, Any] | None = None  # where the file broke, if it did
        self.packets = 0  # packets delivered so far
        self.bytes = 0  # captured bytes delivered so far
        self.mixed_interfaces = False  # read with PcapngWalker (see link_batches)
        self._classic: pcapfile.PcapFile | None = None  # the own reader, if it took over
        self._position: int | None = None  # the own reader's exact file offset
        index = getattr(accel.fastpath, "index_pcap", None) if accel.use(None) else None
        header = pcapfile.probe(path, self.linktype) if index is not None else None
        if header is not None:
            self._classic = pcapfile.PcapFile(path, header, index)
            self._position = pcapfile.FILE_HEADER
            self._reader.close()

    def batches(self, max_n: int = 512) -> Iterator[tuple[bytes, BatchRecords]]:
        """Yield ``(packet_bytes, records)`` until the end of the file."""
        for _linktype, data, records in self.link_batches(max_n):
            yield data, records

    def link_batches(self, max_n: int = 512) -> Iterator[tuple[int, bytes, BatchRecords]]:
        """Yield ``(linktype, packet_bytes, records)``: every packet of a batch has that
        link type. One per file through libpcap; a pcapng whose interfaces have different
        link types (or snaplens), which libpcap refuses, is read on with PcapngWalker,
        batches then being runs of packets of one link type (``mixed_interfaces`` set);
        so is one with a section of the other byte order, which libpcap misreads."""
        if max_n < 1:
            raise ValueError("max_n must be at least 1")
        if self._classic is not None:
            yield from self._read_classic(self._classic, max_n)
            return
        while True:
            try:
                data, meta = self._reader.next_batch(max_n)
            except pcapy.PcapError as exc:
                message = str(exc)
                if _is_mixed_interfaces(message):
                    self.mixed_interfaces = True
                    yield from self._walk(max_n)
                    return
                if _is_block_size(message):
                    yield from self._walk(max_n)
                    return
                # The file header was read, so any error now is a packet record that
                # cannot be read: cut short, or a corrupt record header (e.g. "invalid
                # packet capture length ..."), after which nothing can be framed.
                truncated = _is_truncation(message)
                # libpcap drops the whole batch when one packet in it is bad: re-read
                # the tail packet by packet so no complete packet before it is lost.
                for data, records in self._salvage_tail(max_n):
                    yield self.linktype, data, records
                self._broke("truncated" if truncated else "corrupt", message, self._offset())
                return
            if not meta:
                return
            yield (self.linktype, *self._account(data, meta))

    def _read_classic(
        self, reader: pcapfile.PcapFile, max_n: int
    ) -> Iterator[tuple[int, bytes, BatchRecords]]:
        linktype = self.linktype
        for chunk, records, nbytes, position in reader.batches(max_n):
            self.packets += len(records)
            self.bytes += nbytes
            self._position = position
            yield linktype, chunk, records
        if reader.broken is not None:
            self._broke(reader.broken["kind"], reader.broken["error"], self.position())

    def _walk(self, max_n: int) -> Iterator[tuple[int, bytes, BatchRecords]]:
        """Read the rest of the file with the own walker, after what libpcap delivered."""
        walker = PcapngWalker(self.path)
        for linktype, data, records in walker.batches(max_n, skip=self.packets):
            self.packets += len(records)
            self.bytes += len(data)
            yield linktype, data, records
        if walker.broken is not None:
            self._broke(walker.broken["kind"], walker.broken["error"], None)

    def _broke(self, kind: str, error: str, offset: int | None) -> None:
        """The file broke at the record after the last delivered: ``broken`` says where."""
        self.truncated_file = kind == "truncated"
        self.broken = {
            "file": self.path,
            "kind": kind,
            "packet": self.packets + 1,
            "offset": offset,
            "error": error,
        }

    def _offset(self) -> int | None:
        """Byte offset of the next record in a classic pcap (None for pcapng)."""
        try:
            with open(self.path, "rb") as f:
                magic = f.read(4)
        except OSError:
            return None
        if magic == b"\x0a\x0d\x0d\x0a":  # pcapng: block lengths vary, offset unknown
            return None
        return self.position()

    def position(self) -> int:
        """How far into the file reading is, in bytes, from what was delivered: exact for a
        classic pcap, an underestimate for pcapng (whose blocks carry more than 16 bytes
        of framing). Costs nothing per packet: for a progress display. Read by the own
        classic reader, exact also where libpcap cuts a frame to the snaplen."""
        if self._position is not None:
            return self._position
        return _PCAP_FILE_HEADER + self.packets * _PCAP_RECORD_HEADER + self.bytes

    def _account(self, data: bytes, meta: bytes) -> tuple[bytes, BatchRecords]:
        self.packets += len(meta) // RECORD_SIZE
        self.bytes += len(data)
        return data, BatchRecords(meta)

    def _salvage_tail(self, max_n: int) -> Iterator[tuple[bytes, BatchRecords]]:
        """After a truncation error, deliver the complete packets of the failed batch.

        Only runs for truncated files, so re-reading the file from the start is an
        acceptable price for not losing up to ``max_n - 1`` packets.
        """
        reader = _open(self.path)
        to_skip = self.packets
        while to_skip:
            _, meta = reader.next_batch(min(max_n, to_skip))
            if not meta:  # the file changed under us; nothing more to salvage
                return
            to_skip -= len(meta) // RECORD_SIZE
        while True:
            try:
                data, meta = reader.next_batch(1)
            except pcapy.PcapError:
                return
            if not meta:
                return
            yield self._account(data, meta)

    def close(self) -> None:
        if self._classic is not None:
            self._classic.close()
        else:
            self._reader.close()

    def __enter__(self) -> FileSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def raw_read_loop(path: str, max_n: int = 512) -> tuple[int, int]:
    """Read every packet of a file through pcapy-ng and touch nothing: the benchmark's floor.

    Always pcapy-ng's ``next_batch`` (libpcap), whatever FileSource reads the file with:
    it is the reference the benchmark measures analyze against. Walks the records the way
    the pipeline does (so the per-record iteration cost is in the baseline) but never
    slices or decodes a frame; stops at the first record libpcap cannot read. Returns
    (packets, captured bytes).
    """
    packets = 0
    nbytes = 0
    reader = _open(path)
    try:
        while True:
            try:
                _data, meta = reader.next_batch(max_n)
            except pcapy.PcapError:
                break
            if not meta:
                break
            for _sec, _usec, _offset, caplen in BatchRecords(meta):
                packets += 1
                nbytes += caplen
    finally:
        reader.close()
    return packets, nbytes

"""One capture point read into TCP connections: every distinct segment, per direction.

A capture is read with the same capture layer and decoder as ``analyze``
(``capture.FileSource``, ``decode.Decoder``); what is kept is not the bytes but, per
connection and direction, one small record per distinct segment (``Seen``): how often it
was seen, when first and last, a digest of its payload and the signature of its TCP
options. Segments are keyed by absolute sequence and acknowledgement numbers here; the
comparison (``diff.py``) makes them relative to each point's own ISN, so a firewall that
rewrites sequence numbers does not hide anything.

Memory is bounded: at most ``max_segments`` distinct segments per connection and
direction, and ``MAX_TOTAL_SEGMENTS`` per capture. Past a cap, new segments are counted
(``over_cap``) and not kept, and the comparison of that direction stops at the instant the
cap was reached (``cap_ts``). Option signatures are interned (one object per distinct
signature: a capture has a handful).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dicomsniffd.capture import CaptureError, FileSource
from dicomsniffd.decode import Decoder
from dicomsniffd.streams.context import format_endpoint

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
CONTROL = FIN | SYN | RST
MAX_SEGMENTS = 250_000  # distinct segments kept per connection and direction
# and per capture: about 350 bytes each (measured with tracemalloc, 34k segments), so
# about 350 MB per capture at most.
MAX_TOTAL_SEGMENTS = 1_000_000
_HEADER_SEARCH = 256  # the TCP header starts within the first bytes of a frame
_SEQ_PAIR = struct.Struct("!HHII")

# TCP option kinds (RFC 9293, 7323, 2018) as the report names them.
OPTION_NAMES = {2: "MSS", 3: "window-scale", 4: "SACK-permitted", 5: "SACK", 8: "timestamps"}

# (seq, seg_len, control flags, ack or -1): -1 for segments with data, whose retransmission
# may carry a newer ack, and for segments without the ACK flag.
SegmentKey = tuple[int, int, int, int]
# One option as compared: (kind, value); the value only for MSS and window scale, the
# others vary per segment (timestamps, SACK blocks) or carry none.
Options = tuple[tuple[int, int], ...]


@dataclass(slots=True)
class Seen:
    """One distinct segment at one capture point."""

    count: int
    first_ts: float
    last_ts: float
    digest: bytes | None  # payload digest; None when the capture cut the payload (snaplen)
    options: Options | None  # None: the TCP header could not be located in the frame
    ip_id: int
    window: int


@dataclass(slots=True)
class Direction:
    """One direction of a connection at one point (``c2s``: from the SYN's sender)."""

    isn: int | None = None  # the SYN's sequence number, when the SYN was seen
    first_seq: int | None = None  # the first segment's sequence number (midstream start)
    segments: dict[SegmentKey, Seen] = field(default_factory=dict)
    packets: int = 0
    duplicates: int = 0  # the same frame (IP ID) twice within 1 ms (a mirror port's copy)
    over_cap: int = 0  # distinct segments not kept (the cap was reached)
    cap_ts: float | None = None  # when the cap was reached

    def base(self) -> int:
        """The sequence number that relative numbers count from."""
        if self.isn is not None:
            return self.isn
        return self.first_seq or 0


@dataclass(slots=True)
class Connection:
    """One TCP connection at one point; ``client`` sent the SYN (else: see ``_roles``)."""

    index: int
    client: tuple[bytes, int]
    server: tuple[bytes, int]
    first_ts: float
    last_ts: float
    c2s: Direction = field(default_factory=Direction)
    s2c: Direction = field(default_factory=Direction)

    @property
    def client_text(self) -> str:
        return format_endpoint(*self.client)

    @property
    def server_text(self) -> str:
        return format_endpoint(*self.server)

    def direction(self, name: str) -> Direction:
        return self.c2s if name == "c2s" else self.s2c


@dataclass(slots=True)
class Point:
    """Everything read from one capture point."""

    path: str
    connections: list[Connection]
    packets: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    no_options: int = 0  # segments whose TCP header could not be located
    decode: dict[str, int] = field(default_factory=dict)
    broken: dict[str, Any] | None = None  # where the file broke (FileSource.broken)


def tcp_options(frame: bytes, seg: tuple) -> Options | None:
    """The options of the TCP header of ``seg`` in ``frame`` (the decoder's Segment keeps
    none): the header is found by its first 12 bytes (ports, sequence and ack numbers),
    whatever the link and IP layers before it."""
    at = frame.find(_SEQ_PAIR.pack(seg[1], seg[3], seg[4], seg[5]), 0, _HEADER_SEARCH)
    if at < 0 or at + 20 > len(frame):
        return None
    end = min(at + ((frame[at + 12] >> 4) << 2), len(frame))
    return parse_options(frame[at + 20 : end])


def parse_options(raw: bytes) -> Options:
    """TCP option bytes -> ``((kind, value), ...)`` in wire order (NOPs left out)."""
    out: list[tuple[int, int]] = []
    i, n = 0, len(raw)
    while i < n:
        kind = raw[i]
        if kind == 0:  # end of option list
            break
        if kind == 1:  # no-operation
            i += 1
            continue
        if i + 1 >= n or raw[i + 1] < 2:
            out.append((kind, -1))  # malformed length: keep the kind, stop
            break
        length = raw[i + 1]
        body = raw[i + 2 : i + length]
        if kind == 2 and len(body) == 2:
            out.append((2, body[0] << 8 | body[1]))
        elif kind == 3 and len(body) == 1:
            out.append((3, body[0]))
        else:
            out.append((kind, 0))
        i += length
    return tuple(out)


class _Reader:
    """Segments in, connections out (one capture point)."""

    def __init__(self, max_segments: int, max_total: int = MAX_TOTAL_SEGMENTS) -> None:
        self.max_segments = max_segments
        self.max_total = max_total
        self.kept = 0
        self.signatures: dict[Options, Options] = {}
        self.open: dict[tuple[bytes, int, bytes, int], Connection] = {}
        self.connections: list[Connection] = []
        self.no_options = 0

    def segment(self, ts: float, seg: tuple, options: Options | None) -> None:
        src, sport, dst, dport, seq, ack, flags = seg[:7]
        conn = self.open.get((src, sport, dst, dport))
        forward = True
        if conn is None:
            conn = self.open.get((dst, dport, src, sport))
            forward = False
        # A new SYN on a known address pair: a new connection unless it is the same SYN
        # again (a retransmission keeps its ISN).
        if (
            conn is not None
            and flags & (SYN | ACK) == SYN
            and not (forward and conn.c2s.isn == seq)
        ):
            conn = None
        if conn is None:
            conn = self._new(ts, seg)
            forward = (src, sport) == conn.client
        conn.last_ts = ts
        direction = conn.c2s if forward else conn.s2c
        self._record(direction, ts, seg, options)

    def _new(self, ts: float, seg: tuple) -> Connection:
        src, sport, dst, dport, _seq, _ack, flags = seg[:7]
        a, b = (src, sport), (dst, dport)
        if flags & (SYN | ACK) == SYN:
            client, server = a, b
        elif flags & (SYN | ACK) == SYN | ACK or sport < dport:
            client, server = b, a  # a SYN-ACK comes from the server; else the lower port
        else:
            client, server = a, b
        conn = Connection(len(self.connections), client, server, ts, ts)
        self.connections.append(conn)
        self.open[(client[0], client[1], server[0], server[1])] = conn
        return conn

    def _record(self, d: Direction, ts: float, seg: tuple, options: Options | None) -> None:
        seq, ack, flags, window, payload, seg_len, ip_id = (
            seg[4], seg[5], seg[6], seg[7], seg[8], seg[9], seg[10]
        )  # fmt: skip
        d.packets += 1
        if d.first_seq is None:
            d.first_seq = seq
        if flags & SYN:
            d.isn = seq
        control = flags & CONTROL
        key = (seq, seg_len, control, ack if seg_len == 0 and flags & ACK else -1)
        seen = d.segments.get(key)
        if seen is not None:
            if ip_id and seen.ip_id == ip_id and ts - seen.last_ts < 0.001:
                # The same frame captured twice (a mirror port's copy), not a second segment.
                # IP ID 0 tells nothing: Linux sends DF packets without a socket (resets
                # made by a firewall) with ID 0, and two of them are two segments.
                d.duplicates += 1
                return
            seen.count += 1
            seen.last_ts = ts
            seen.ip_id = ip_id
            return
        if len(d.segments) >= self.max_segments or self.kept >= self.max_total:
            d.over_cap += 1
            if d.cap_ts is None:
                d.cap_ts = ts
            return
        self.kept += 1
        if options is None:
            self.no_options += 1
        else:
            options = self.signatures.setdefault(options, options)
        digest = None
        if len(payload) == seg_len:
            digest = hashlib.blake2b(payload, digest_size=8).digest() if payload else b""
        d.segments[key] = Seen(1, ts, ts, digest, options, ip_id, window)


def read_point(path: str, max_segments: int = MAX_SEGMENTS) -> Point:
    """Read one capture file; raises CaptureError (one line) when it cannot be read."""
    reader = _Reader(max_segments)
    point = Point(path, reader.connections)
    decoders: dict[int, Decoder] = {}
    with FileSource(path) as source:
        for linktype, data, records in source.link_batches(512):
            decoder = decoders.get(linktype)
            if decoder is None:
                try:
                    decoder = decoders.setdefault(linktype, Decoder(linktype, accelerate=False))
                except CaptureError as exc:
                    raise CaptureError(f"{path}: {exc}") from None
            _batch(point, reader, decoder, data, records)
        point.broken = source.broken
    point.no_options = reader.no_options
    for decoder in decoders.values():
        for name, value in decoder.counters().items():
            point.decode[name] = point.decode.get(name, 0) + value
    return point


def _batch(point: Point, reader: _Reader, decoder: Decoder, data: bytes, records: Any) -> None:
    decode, segment = decoder.decode, reader.segment
    for sec, usec, off, caplen in records:
        ts = sec + usec * 1e-6
        point.packets += 1
        if point.first_ts is None:
            point.first_ts = ts
        point.last_ts = ts
        frame = data[off : off + caplen]
        seg = decode(frame)
        if seg is not None:
            segment(ts, seg, tcp_options(frame, seg))


def data_segments(d: Direction) -> Iterator[tuple[SegmentKey, Seen]]:
    """The segments of a direction that carry data, in no particular order."""
    return ((k, s) for k, s in d.segments.items() if k[1] > 0)

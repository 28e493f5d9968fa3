"""Decode layer: link/IP/TCP headers of one captured frame into a Segment tuple.

Measured on the dev box (2 shared cores, Python 3.11.7; `benchmarks/decode_frames.py`,
best of 3 x 500k calls, includes the timeit lambda call):
    Ethernet/IPv4/TCP, 1460-byte payload ...... ~0.85 us per frame
    Ethernet/IPv4/TCP, pure ACK ............... ~0.68 us per frame
    Ethernet/IPv6/TCP, 1460 bytes ............. ~1.4 us per frame
    802.1Q-tagged IPv4 or IPv6, 1460 bytes .... ~1.6 us per frame (general path + fast IP)
    dpkt.ethernet.Ethernet(frame), for scale .. ~9.8 us per frame
About 0.1 us of the 1460-byte figure is copying the payload out of the batch buffer.

Why it looks the way it does: this is the hottest code in the daemon. The common shapes
(Ethernet or Linux cooked or raw IP, optional VLAN tags, IPv4 without options or IPv6
without extension headers, TCP) go through one precompiled ``Struct.unpack_from`` that
reads the IP and TCP headers together, then one chained comparison that validates every
length at once. Everything else -- IP options, TSO length 0, snaplen-cut frames, fragments,
malformed headers, IPv6 extension headers (``fallback``: decode_ip6.py, then dpkt) -- takes
a slower, explicit path. Every failure is a counter: ``decode`` never raises, on any input.
"""

from __future__ import annotations

import array
import struct
from collections.abc import Callable
from typing import Any

from dicomsniffd import accel
from dicomsniffd.capture.errors import CaptureError
from dicomsniffd.decode_ip6 import EXTENSION_HEADERS, upper_layer

# (src, sport, dst, dport, seq, ack, flags, window, payload, seg_len, ip_id); see
# docs/architecture.md. A plain tuple: no object is built per packet. The one definition:
# the flow table (dicomsniffd.flows) imports it from here.
Segment = tuple[bytes, int, bytes, int, int, int, int, int, bytes, int, int]

# IPv4 header without options directly followed by the first 16 bytes of the TCP header:
# ver/ihl, (tos), total length, id, flags+fragment offset, (ttl), protocol, (checksum),
# src, dst | sport, dport, seq, ack, data offset byte, flags byte, window.
_IP4_TCP = struct.Struct("!BxHHHxBxx4s4sHHIIBBH")
_IP4 = struct.Struct("!BxHHHxBxx4s4s")
# IPv6 fixed header (ver/class/flow, payload length, next header, (hop limit), src, dst)
# directly followed by the first 16 bytes of the TCP header.
_IP6_TCP = struct.Struct("!IHBx16s16sHHIIBBH")
_IP6 = struct.Struct("!IHBx16s16s")
_TCP = struct.Struct("!HHIIBBH")
_IP4_TCP_UNPACK = _IP4_TCP.unpack_from
_IP6_TCP_UNPACK = _IP6_TCP.unpack_from
# The same IPv4+TCP layout preceded by the link header, ethertype included, for the
# combined per-link fast path.
_IP4_TCP_FIELDS = "BxHHHxBxx4s4sHHIIBBH"
_ETH_IP4_TCP = struct.Struct("!12xH" + _IP4_TCP_FIELDS)
_SLL_IP4_TCP = struct.Struct("!14xH" + _IP4_TCP_FIELDS)
_SLL2_IP4_TCP = struct.Struct("!H18x" + _IP4_TCP_FIELDS)

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
# 802.1Q, 802.1ad, and the two pre-standard QinQ types some switches still emit.
_VLAN_ETHERTYPES = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
_IPPROTO_TCP = 6
# A standard-MTU TCP segment carries at most 1460 bytes; more means GRO/LRO/TSO merged
# segments -- counted so the user can be told to turn offloads off. Jumbo-frame and
# loopback links are not merging: the limit is the largest MSS option any SYN announced
# (Decoder.mss), 1460 until one is seen. Options are read only when the SYN flag is set.
MSS = 1460
_SYN = 0x02


def syn_mss(buf: bytes, lo: int, hi: int) -> int:
    """The MSS option among the TCP options in ``buf[lo:hi]``, or 0 (none, or cut off)."""
    while lo < hi:
        kind = buf[lo]
        if kind == 0:  # end of option list
            return 0
        if kind == 1:  # NOP
            lo += 1
            continue
        if lo + 1 >= hi or buf[lo + 1] < 2:
            return 0
        if kind == 2 and buf[lo + 1] == 4 and lo + 4 <= hi:
            return buf[lo + 2] << 8 | buf[lo + 3]
        lo += buf[lo + 1]
    return 0


# pcap DLT / LINKTYPE numbers.
DLT_NULL = 0
DLT_EN10MB = 1
DLT_RAW = 12  # Linux and most platforms
DLT_RAW_OPENBSD = 14
LINKTYPE_RAW = 101  # what files store; libpcap usually maps it to 12
DLT_LOOP = 108
DLT_LINUX_SLL = 113
DLT_IPV4 = 228
DLT_IPV6 = 229
DLT_LINUX_SLL2 = 276

SLL_HEADER_LEN = 16  # protocol (ethertype) at offset 14
SLL2_HEADER_LEN = 20  # protocol (ethertype) at offset 0

# Address families a NULL/LOOP header may carry for IPv6 (Linux, NetBSD/OpenBSD,
# FreeBSD, macOS); AF_INET is 2 everywhere.
_AF_INET = 2
_AF_INET6 = frozenset((10, 24, 28, 30))

_LINK_METHODS = {
    DLT_EN10MB: "_decode_ethernet",
    DLT_LINUX_SLL: "_decode_sll",
    DLT_LINUX_SLL2: "_decode_sll2",
    DLT_RAW: "_decode_raw",
    DLT_RAW_OPENBSD: "_decode_raw",
    LINKTYPE_RAW: "_decode_raw",
    DLT_IPV4: "_decode_ipv4_link",
    DLT_IPV6: "_decode_ipv6_link",
    DLT_NULL: "_decode_null",
    DLT_LOOP: "_decode_null",
}
SUPPORTED_LINKTYPES = frozenset(_LINK_METHODS)
_BATCH_METHODS = {
    DLT_EN10MB: "_batch_ethernet",
    DLT_LINUX_SLL: "_batch_sll",
    DLT_LINUX_SLL2: "_batch_sll2",
}
# The compiled decode_batch: link kind (as _fastpath.c numbers them) and general path.
_C_LINKS = {
    DLT_EN10MB: (0, "_ethernet_general"),
    DLT_LINUX_SLL: (1, "_sll_general"),
    DLT_LINUX_SLL2: (2, "_sll2_general"),
}

COUNTER_NAMES = (
    "packets",
    "non_ip",
    "non_tcp",
    "ip_fragments",
    "truncated",
    "malformed",
    "super_packets",
    "fallback",
)


class UnsupportedLinkType(CaptureError):
    """The capture's link type is not one the decoder understands."""

    def __init__(self, linktype: int) -> None:
        self.linktype = linktype
        super().__init__(
            f"unsupported link type {linktype} (supported: Ethernet, Linux cooked SLL/SLL2, "
            "raw IPv4/IPv6, BSD loopback)"
        )


_GeneralPath = Callable[["Decoder", bytes], "Segment | None"]


def _link_fast_path(
    layout: struct.Struct, ip_off: int, general: _GeneralPath
) -> Callable[[Decoder, bytes], Segment | None]:
    """Build a decode() for a link type with an ethertype, specialised for IPv4/TCP.

    Reading the ethertype, the IPv4 header and the TCP header in ONE unpack_from, inline
    in the function the pipeline calls, saves two Python calls and two byte lookups per
    frame (about 0.2 us, a fifth of the cost). Anything else -- VLAN tags, IPv6, IP
    options, short or odd frames -- goes to ``general``, which decides from scratch.
    """
    unpack_from = layout.unpack_from
    min_start = ip_off + 40  # IPv4 header (20) + minimal TCP header (20)
    tcp_off = ip_off + 20

    def decode(self: Decoder, frame: bytes) -> Segment | None:
        self.packets += 1
        try:
            (etype, vihl, tot_len, ip_id, frag, proto, src, dst,
             sport, dport, seq, ack, doff, flags, window) = unpack_from(frame)  # fmt: skip
        except struct.error:  # too short for the fast path; the general path decides
            return general(self, frame)
        if etype == ETHERTYPE_IPV4 and vihl == 0x45 and proto == _IPPROTO_TCP:
            end = ip_off + tot_len
            start = tcp_off + ((doff >> 4) << 2)
            # One chain checks it all: TCP data offset >= 5 words, TCP header inside the
            # IP length, IP length inside the capture (so Ethernet padding is never
            # payload); and the datagram is not a fragment.
            if min_start <= start <= end <= len(frame) and not frag & 0x3FFF:
                if flags & _SYN:
                    self._syn(frame, min_start, start)
                seg_len = end - start
                if seg_len > self.mss:
                    self.super_packets += 1
                return (src, sport, dst, dport, seq, ack, flags, window,
                        frame[start:end], seg_len, ip_id)  # fmt: skip
        return general(self, frame)

    return decode


_Emit = Callable[..., None]  # emit(ts, *seg): a Segment's fields as arguments, no tuple
BatchResult = tuple[int, int, float]  # (packets, captured bytes, timestamp of the last one)


def _link_fast_batch(
    layout: struct.Struct, ip_off: int, general: _GeneralPath
) -> Callable[..., BatchResult]:
    """Build a decode_batch() for a link type with an ethertype (see ``_link_fast_path``).

    The batch interface reads each frame *in place* in pcapy-ng's batch buffer: the
    headers with ``unpack_from(buf, offset)`` and the payload with one slice of the
    buffer, so the frame is never copied out first (the per-frame ``decode`` needs a
    ``bytes`` frame: one slice of up to 1514 bytes, then a second one for the payload).
    One Python call per batch instead of one per frame, and the capture timestamp is
    computed here, in the same loop. Each segment goes to ``emit(ts, *seg)``; the decoder
    does not know who that is. Results are identical to ``decode`` frame by frame.
    """
    unpack_from = layout.unpack_from
    size = layout.size
    min_start = ip_off + 40  # IPv4 header (20) + minimal TCP header (20)
    tcp_off = ip_off + 20

    def decode_batch(self: Decoder, buf: bytes, records: Any, emit: _Emit) -> BatchResult:
        packets = nbytes = 0
        ts = 0.0
        for sec, usec, off, caplen in records:
            ts = sec + usec * 1e-6
            packets += 1
            nbytes += caplen
            # The buffer goes on with the next frame: unpack only what this frame holds.
            if caplen >= size:
                (etype, vihl, tot_len, ip_id, frag, proto, src, dst,
                 sport, dport, seq, ack, doff, flags, window) = unpack_from(buf, off)  # fmt: skip
                if etype == ETHERTYPE_IPV4 and vihl == 0x45 and proto == _IPPROTO_TCP:
                    end = ip_off + tot_len
                    start = tcp_off + ((doff >> 4) << 2)
                    if min_start <= start <= end <= caplen and not frag & 0x3FFF:
                        if flags & _SYN:
                            self._syn(buf, off + min_start, off + start)
                        seg_len = end - start
                        if seg_len > self.mss:
                            self.super_packets += 1
                        emit(ts, src, sport, dst, dport, seq, ack, flags, window,
                             buf[off + start : off + end], seg_len, ip_id)  # fmt: skip
                        continue
            seg = general(self, buf[off : off + caplen])
            if seg is not None:
                emit(ts, *seg)
        self.packets += packets
        return packets, nbytes, ts

    return decode_batch


def _compiled_batch(self: Decoder, buf: bytes, records: Any, emit: Any) -> BatchResult:
    """decode_batch() through ``_fastpath.decode_batch`` (the same clean shapes in C, every
    other frame through the same general path). ``emit`` may be the flow table's Bypass,
    which consumes skipped in-order segments without building a tuple for them."""
    packed = getattr(records, "packed", None)
    if packed is None:  # a plain sequence of records (tests, tools)
        packed = array.array("I", [word for record in records for word in record])
    packets, nbytes, ts, super_packets = accel.fastpath.decode_batch(  # type: ignore[union-attr]
        self._c_link, self._c_general, buf, packed, emit, self
    )
    self.packets += packets
    self.super_packets += super_packets
    return packets, nbytes, ts


def _generic_batch(self: Decoder, buf: bytes, records: Any, emit: _Emit) -> BatchResult:
    """decode_batch() for link types without a fused fast path: frame by frame."""
    decode = self.decode
    packets = nbytes = 0
    ts = 0.0
    for sec, usec, off, caplen in records:
        ts = sec + usec * 1e-6
        packets += 1
        nbytes += caplen
        seg = decode(buf[off : off + caplen])
        if seg is not None:
            emit(ts, *seg)
    return packets, nbytes, ts


class Decoder:
    """Decode frames of one link type into Segment tuples, counting what it drops.

    ``decode(frame)`` is bound in ``__init__`` to the method for the link type, so the hot
    path pays no dispatch. Counters are plain ints, read by the pipeline at scrape time.
    """

    decode: Callable[[bytes], Segment | None]
    # decode_batch(packet_bytes, records, emit) -> (packets, bytes, last ts): every frame
    # of a pcapy-ng batch ((sec, usec, offset, caplen) records), each segment to emit(ts, *seg)
    decode_batch: Callable[[bytes, Any, _Emit], BatchResult]

    def __init__(self, linktype: int, accelerate: bool | None = None) -> None:
        """``accelerate``: use the compiled decode_batch (None: whenever it is built)."""
        method = _LINK_METHODS.get(linktype)
        if method is None:
            raise UnsupportedLinkType(linktype)
        self.linktype = linktype
        self.packets = 0  # frames given to decode()
        self.non_ip = 0  # link payload is not IPv4/IPv6 (ARP, LLDP, ...)
        self.non_tcp = 0  # IP but not TCP (UDP, ICMP, ESP, ...)
        self.ip_fragments = 0  # IPv4/IPv6 fragments: skipped, we do not reassemble IP
        self.truncated = 0  # cut by the snaplen (segment may still be returned)
        self.malformed = 0  # impossible header values; dropped
        self.super_packets = 0  # GRO/LRO/TSO merged segments (> mss or IP length 0)
        self.mss = MSS  # the largest MSS option a SYN announced so far (1460 before any)
        self.fallback = 0  # frames that needed dpkt (IPv6 extension headers)
        self.decode = getattr(self, method)
        batch = _BATCH_METHODS.get(linktype)
        self.decode_batch = getattr(self, batch) if batch else self._generic_batch
        c_link = _C_LINKS.get(linktype)
        # decode_batch's emit may be a _fastpath.Bypass only when this is True.
        self.accelerated = c_link is not None and accel.use(accelerate)
        if self.accelerated:
            self._c_link = c_link[0]  # type: ignore[index]
            self._c_general = getattr(self, c_link[1])  # type: ignore[index]
            self.decode_batch = self._compiled_batch

    def counters(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTER_NAMES}

    # -- link layers -------------------------------------------------------------------
    # Each is a complete decode(): counts the packet and converts any exception into the
    # malformed counter, so nothing escapes whatever the input. The count/try/except is
    # written out in each on purpose: a shared wrapper would be one more call per frame.

    def _ethernet_general(self, frame: bytes) -> Segment | None:
        try:
            if len(frame) < 14:
                self.malformed += 1
                return None
            return self._ethertype(frame, 14, frame[12] << 8 | frame[13])
        except Exception:
            self.malformed += 1
            return None

    def _sll_general(self, frame: bytes) -> Segment | None:
        try:
            if len(frame) < SLL_HEADER_LEN:
                self.malformed += 1
                return None
            return self._ethertype(frame, SLL_HEADER_LEN, frame[14] << 8 | frame[15])
        except Exception:
            self.malformed += 1
            return None

    def _sll2_general(self, frame: bytes) -> Segment | None:
        try:
            if len(frame) < SLL2_HEADER_LEN:
                self.malformed += 1
                return None
            return self._ethertype(frame, SLL2_HEADER_LEN, frame[0] << 8 | frame[1])
        except Exception:
            self.malformed += 1
            return None

    _decode_ethernet = _link_fast_path(_ETH_IP4_TCP, 14, _ethernet_general)
    _decode_sll = _link_fast_path(_SLL_IP4_TCP, SLL_HEADER_LEN, _sll_general)
    _decode_sll2 = _link_fast_path(_SLL2_IP4_TCP, SLL2_HEADER_LEN, _sll2_general)
    _batch_ethernet = _link_fast_batch(_ETH_IP4_TCP, 14, _ethernet_general)
    _batch_sll = _link_fast_batch(_SLL_IP4_TCP, SLL_HEADER_LEN, _sll_general)
    _batch_sll2 = _link_fast_batch(_SLL2_IP4_TCP, SLL2_HEADER_LEN, _sll2_general)
    _generic_batch = _generic_batch
    _compiled_batch = _compiled_batch

    def _decode_raw(self, frame: bytes) -> Segment | None:
        self.packets += 1
        try:
            if not frame:
                self.malformed += 1
                return None
            version = frame[0] >> 4
            if version == 4:
                return self._ipv4(frame, 0)
            if version == 6:
                return self._ipv6(frame, 0)
            self.non_ip += 1
            return None
        except Exception:
            self.malformed += 1
            return None

    def _decode_ipv4_link(self, frame: bytes) -> Segment | None:
        self.packets += 1
        try:
            return self._ipv4(frame, 0)
        except Exception:
            self.malformed += 1
            return None

    def _decode_ipv6_link(self, frame: bytes) -> Segment | None:
        self.packets += 1
        try:
            return self._ipv6(frame, 0)
        except Exception:
            self.malformed += 1
            return None

    def _decode_null(self, frame: bytes) -> Segment | None:
        self.packets += 1
        try:
            if len(frame) < 4:
                self.malformed += 1
                return None
            # A 4-byte address family, host order (NULL) or network order (LOOP). Every
            # family value is < 256, so OR-ing the two end bytes reads it in either order.
            family = frame[0] | frame[3]
            if family == _AF_INET:
                return self._ipv4(frame, 4)
            if family in _AF_INET6:
                return self._ipv6(frame, 4)
            self.non_ip += 1
            return None
        except Exception:
            self.malformed += 1
            return None

    def _ethertype(self, frame: bytes, off: int, etype: int) -> Segment | None:
        """Skip any stack of VLAN tags, then dispatch on the inner ethertype."""
        while etype in _VLAN_ETHERTYPES:
            if off + 4 > len(frame):
                self.truncated += 1
                return None
            etype = frame[off + 2] << 8 | frame[off + 3]  # tag = TCI (2) + next type (2)
            off += 4
        if etype == ETHERTYPE_IPV4:
            return self._ipv4(frame, off)
        if etype == ETHERTYPE_IPV6:
            return self._ipv6(frame, off)
        self.non_ip += 1
        return None

    # -- IPv4 --------------------------------------------------------------------------

    def _ipv4(self, frame: bytes, off: int) -> Segment | None:
        """Fast path: IHL 5, TCP, not a fragment, fully captured, sane lengths."""
        try:
            (vihl, tot_len, ip_id, frag, proto, src, dst,
             sport, dport, seq, ack, doff, flags, window) = _IP4_TCP_UNPACK(frame, off)  # fmt: skip
        except struct.error:  # shorter than IPv4 + TCP base headers
            return self._ipv4_slow(frame, off)
        if vihl == 0x45 and proto == _IPPROTO_TCP and not frag & 0x3FFF:
            end = off + tot_len
            start = off + 20 + ((doff >> 4) << 2)
            # One chain checks it all: TCP data offset >= 5 words, TCP header inside the IP
            # length, IP length inside the capture (so Ethernet padding is never payload).
            if off + 40 <= start <= end <= len(frame):
                if flags & _SYN:
                    self._syn(frame, off + 40, start)
                seg_len = end - start
                if seg_len > self.mss:
                    self.super_packets += 1
                return (src, sport, dst, dport, seq, ack, flags, window,
                        frame[start:end], seg_len, ip_id)  # fmt: skip
        return self._ipv4_slow(frame, off)

    def _ipv4_slow(self, frame: bytes, off: int) -> Segment | None:
        """Every IPv4 case the fast path declined, each with its own counter."""
        if len(frame) - off < 20:
            self._short_header(frame, off, 4)
            return None
        vihl, tot_len, ip_id, frag, proto, src, dst = _IP4.unpack_from(frame, off)
        ihl = (vihl & 0x0F) << 2
        if vihl >> 4 != 4 or ihl < 20:
            self.malformed += 1
            return None
        if proto != _IPPROTO_TCP:
            self.non_tcp += 1
            return None
        if frag & 0x3FFF:  # more-fragments flag or a fragment offset
            self.ip_fragments += 1
            return None
        if tot_len == 0:
            # TSO on the capturing host: the kernel has not filled the length in yet.
            return self._tcp(frame, off + ihl, len(frame), src, dst, ip_id, True)
        return self._tcp(frame, off + ihl, off + tot_len, src, dst, ip_id, False)

    # -- IPv6 --------------------------------------------------------------------------

    def _ipv6(self, frame: bytes, off: int) -> Segment | None:
        """Fast path: next header TCP, fully captured, sane lengths."""
        try:
            (vtf, plen, nxt, src, dst,
             sport, dport, seq, ack, doff, flags, window) = _IP6_TCP_UNPACK(frame, off)  # fmt: skip
        except struct.error:
            return self._ipv6_slow(frame, off)
        if nxt == _IPPROTO_TCP and vtf >> 28 == 6:
            end = off + 40 + plen
            start = off + 40 + ((doff >> 4) << 2)
            # Payload length 0 (jumbo/GSO) makes end < start and takes the slow path.
            if off + 60 <= start <= end <= len(frame):
                if flags & _SYN:
                    self._syn(frame, off + 60, start)
                seg_len = end - start
                if seg_len > self.mss:
                    self.super_packets += 1
                return (src, sport, dst, dport, seq, ack, flags, window,
                        frame[start:end], seg_len, -1)  # fmt: skip
        return self._ipv6_slow(frame, off)

    def _ipv6_slow(self, frame: bytes, off: int) -> Segment | None:
        if len(frame) - off < 40:
            self._short_header(frame, off, 6)
            return None
        vtf, plen, nxt, src, dst = _IP6.unpack_from(frame, off)
        if vtf >> 28 != 6:
            self.malformed += 1
            return None
        # Payload length 0: a jumbogram or a GSO super-packet; trust the capture.
        oversize = plen == 0
        wire_end = len(frame) if oversize else off + 40 + plen
        if nxt == _IPPROTO_TCP:
            return self._tcp(frame, off + 40, wire_end, src, dst, -1, oversize)
        if nxt in EXTENSION_HEADERS:
            return self._ipv6_extensions(frame, off, wire_end, src, dst, oversize)
        self.non_tcp += 1
        return None

    def _ipv6_extensions(
        self, frame: bytes, off: int, wire_end: int, src: bytes, dst: bytes, oversize: bool
    ) -> Segment | None:
        """Walk an extension header chain with dpkt (rare on a DICOM network)."""
        self.fallback += 1
        if upper_layer(frame, off + 40, min(wire_end, len(frame)), frame[off + 6]) >= 0:
            self.non_tcp += 1  # e.g. MLD (hop-by-hop options, ICMPv6): no dpkt needed
            return None
        import dpkt.ip6  # here, not at the top: only a chain that may carry TCP needs dpkt

        try:
            packet = dpkt.ip6.IP6(frame[off:wire_end])
        except Exception:  # dpkt raises NeedData/UnpackError, occasionally others
            if wire_end > len(frame):
                self.truncated += 1
            else:
                self.malformed += 1
            return None
        header_len = 40
        for ext in packet.all_extension_headers:
            if isinstance(ext, dpkt.ip6.IP6FragmentHeader) and (ext.frag_off or ext.m_flag):
                self.ip_fragments += 1
                return None
            if isinstance(ext, dpkt.ip6.IP6ESPHeader):  # encrypted: no TCP header to read
                self.non_tcp += 1
                return None
            header_len += ext.length
        if getattr(packet, "p", None) != _IPPROTO_TCP:
            self.non_tcp += 1
            return None
        return self._tcp(frame, off + header_len, wire_end, src, dst, -1, oversize)

    # -- shared slow-path pieces -------------------------------------------------------

    def _syn(self, buf: bytes, lo: int, hi: int) -> None:
        """A SYN's options are ``buf[lo:hi]``: raise ``mss`` to the MSS it announces."""
        mss = syn_mss(buf, lo, hi)
        if mss > self.mss:
            self.mss = mss

    def _short_header(self, frame: bytes, off: int, version: int) -> None:
        """A frame that ends inside the fixed IP header."""
        if len(frame) > off and frame[off] >> 4 != version:
            self.malformed += 1
        else:
            self.truncated += 1

    def _tcp(
        self,
        frame: bytes,
        tcp_off: int,
        wire_end: int,
        src: bytes,
        dst: bytes,
        ip_id: int,
        oversize: bool,
    ) -> Segment | None:
        """TCP header at ``tcp_off``; the IP datagram ends at ``wire_end`` on the wire."""
        captured = len(frame)
        if tcp_off + 20 > wire_end:  # the IP length leaves no room for a TCP header
            self.malformed += 1
            return None
        if tcp_off + 20 > captured:
            self.truncated += 1
            return None
        sport, dport, seq, ack, doff, flags, window = _TCP.unpack_from(frame, tcp_off)
        start = tcp_off + ((doff >> 4) << 2)
        if start < tcp_off + 20 or start > wire_end:
            self.malformed += 1
            return None
        if wire_end > captured:
            # Cut by the snaplen: hand over what we have, but keep the wire length so the
            # stream layer counts the rest as missed bytes rather than losing sync.
            self.truncated += 1
        if flags & _SYN:
            self._syn(frame, tcp_off + 20, min(start, captured))
        seg_len = wire_end - start
        if oversize or seg_len > self.mss:
            self.super_packets += 1
        # Slicing clamps to the captured length (and gives b'' if even the options are cut).
        return (src, sport, dst, dport, seq, ack, flags, window,
                frame[start:wire_end], seg_len, ip_id)  # fmt: skip

"""One captured frame's TCP payload located, and rewritten in place.

Not the hot path (``decode`` is): evidence reads only the frames of the connections it
writes, so this is a plain parser that says where the IP header, the TCP header and the
payload are, and writes a frame back with new payload bytes and recomputed IP and TCP
checksums. Frames it cannot parse to TCP are not written (the caller counts them).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from dicomsniffd.decode import (
    DLT_EN10MB,
    DLT_IPV4,
    DLT_IPV6,
    DLT_LINUX_SLL,
    DLT_LINUX_SLL2,
    DLT_LOOP,
    DLT_NULL,
    DLT_RAW,
    DLT_RAW_OPENBSD,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    LINKTYPE_RAW,
    SLL2_HEADER_LEN,
    SLL_HEADER_LEN,
)

_VLAN = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
TCP_SYN, TCP_ACK, TCP_FIN, TCP_RST = 0x02, 0x10, 0x01, 0x04


class TcpFrame(NamedTuple):
    """Where one frame's layers are (offsets into the frame) and the TCP fields used (a
    tuple: the flight recorder makes one per packet)."""

    ip_at: int
    tcp_at: int
    payload_at: int
    payload_end: int  # end of the captured IP payload (link padding after it is not TCP)
    ip_end: int  # where the IP packet ends by its length field (past the frame if cut)
    version: int
    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    flags: int

    @property
    def payload_len(self) -> int:
        return self.payload_end - self.payload_at


def _ip_offset(linktype: int, frame: bytes) -> int | None:
    """Offset of the IP header after the link header, None when not IP."""
    if linktype == DLT_EN10MB:
        at, ethertype = 14, _u16(frame, 12)
        while ethertype in _VLAN:
            ethertype, at = _u16(frame, at + 2), at + 4
        return at if ethertype in (ETHERTYPE_IPV4, ETHERTYPE_IPV6) else None
    if linktype == DLT_LINUX_SLL:
        return SLL_HEADER_LEN
    if linktype == DLT_LINUX_SLL2:
        return SLL2_HEADER_LEN
    if linktype in (DLT_RAW, DLT_RAW_OPENBSD, LINKTYPE_RAW, DLT_IPV4, DLT_IPV6):
        return 0
    if linktype in (DLT_NULL, DLT_LOOP):
        return 4
    return None


def _u16(frame: bytes, at: int) -> int:
    return int.from_bytes(frame[at : at + 2], "big") if at + 2 <= len(frame) else -1


# Ethernet, IPv4 without options, TCP: the common case, read with one unpack.
_ETH_IP4_TCP = struct.Struct("!12xHBxHxxHxBxx4s4sHHIxxxxBB")
_ETH_IP4_TCP_UNPACK = _ETH_IP4_TCP.unpack_from
_ETH_IP4_TCP_SIZE = _ETH_IP4_TCP.size


def parse(linktype: int, frame: bytes) -> TcpFrame | None:
    """The TCP frame's layout, or None (not IP/TCP, a fragment, cut before the payload)."""
    if linktype == DLT_EN10MB and len(frame) >= _ETH_IP4_TCP_SIZE:
        ethertype, ver_ihl, total, fragment, proto, src, dst, sport, dport, seq, off, flags = (
            _ETH_IP4_TCP_UNPACK(frame)
        )
        if ethertype == ETHERTYPE_IPV4 and ver_ihl == 0x45 and proto == 6 and not fragment & 0x3FFF:
            payload_at = 34 + (off >> 4) * 4
            ip_end = 14 + total if total else len(frame)
            payload_end = min(ip_end, len(frame))
            if payload_at <= payload_end and off >> 4 >= 5:
                return TcpFrame(
                    14, 34, payload_at, payload_end, ip_end, 4, src, dst, sport, dport, seq, flags
                )
    return _parse_general(linktype, frame)


def _parse_general(linktype: int, frame: bytes) -> TcpFrame | None:
    ip_at = _ip_offset(linktype, frame)
    if ip_at is None or ip_at >= len(frame):
        return None
    version = frame[ip_at] >> 4
    if version == 4:
        if len(frame) < ip_at + 20:
            return None
        ihl = (frame[ip_at] & 0x0F) * 4
        total = _u16(frame, ip_at + 2)
        fragment = _u16(frame, ip_at + 6) & 0x3FFF
        if frame[ip_at + 9] != 6 or fragment or ihl < 20:
            return None
        tcp_at = ip_at + ihl
        src, dst = frame[ip_at + 12 : ip_at + 16], frame[ip_at + 16 : ip_at + 20]
        ip_end = ip_at + total if total else len(frame)  # TSO: total length 0
    elif version == 6:
        if len(frame) < ip_at + 40 or frame[ip_at + 6] != 6:  # extension headers: not here
            return None
        tcp_at = ip_at + 40
        src, dst = frame[ip_at + 8 : ip_at + 24], frame[ip_at + 24 : ip_at + 40]
        plen = _u16(frame, ip_at + 4)
        ip_end = tcp_at + plen if plen else len(frame)
    else:
        return None
    if len(frame) < tcp_at + 20:
        return None
    sport, dport, seq, _ack, offset_byte, flags = struct.unpack_from("!HHIIBB", frame, tcp_at)
    payload_at = tcp_at + (offset_byte >> 4) * 4
    payload_end = min(ip_end, len(frame))
    if payload_at > payload_end:
        return None
    return TcpFrame(
        ip_at, tcp_at, payload_at, payload_end, ip_end, version, bytes(src), bytes(dst),
        sport, dport, seq, flags,
    )  # fmt: skip


def rewrite(frame: bytes, tcp: TcpFrame, payload: bytes) -> tuple[bytes, bool]:
    """The frame with ``payload`` in place of its TCP payload and the bytes after the IP
    packet (link padding) zeroed; IP and TCP checksums recomputed when the whole segment
    was captured. Returns (frame, checksums recomputed)."""
    out = bytearray(frame)
    out[tcp.payload_at : tcp.payload_end] = payload
    out[tcp.payload_end :] = bytes(len(out) - tcp.payload_end)
    if tcp.ip_end > len(frame):  # cut by the snaplen: the checksum cannot be computed
        return bytes(out), False
    if tcp.version == 4:
        ip = tcp.ip_at
        out[ip + 10 : ip + 12] = b"\0\0"
        out[ip + 10 : ip + 12] = _checksum(out[ip : tcp.tcp_at]).to_bytes(2, "big")
        pseudo = tcp.src + tcp.dst + struct.pack("!BBH", 0, 6, tcp.payload_end - tcp.tcp_at)
    else:
        pseudo = tcp.src + tcp.dst + struct.pack("!IxxxB", tcp.payload_end - tcp.tcp_at, 6)
    out[tcp.tcp_at + 16 : tcp.tcp_at + 18] = b"\0\0"
    checksum = _checksum(pseudo + bytes(out[tcp.tcp_at : tcp.payload_end]))
    out[tcp.tcp_at + 16 : tcp.tcp_at + 18] = checksum.to_bytes(2, "big")
    return bytes(out), True


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF

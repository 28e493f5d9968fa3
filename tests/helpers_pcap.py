"""Frame builders and capture-file writers for the capture/decode tests.

Frames are built with ``struct`` by hand (not with dpkt) so that the dpkt-based reference
decoder in the tests is an independent second opinion on the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import dpkt

MAC_DST = bytes.fromhex("020000000002")
MAC_SRC = bytes.fromhex("020000000001")

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def tcp(
    sport: int = 40000,
    dport: int = 104,
    seq: int = 1000,
    ack: int = 2000,
    flags: int = ACK | PSH,
    window: int = 65535,
    payload: bytes = b"",
    options: bytes = b"",
    data_offset: int | None = None,
) -> bytes:
    """A TCP header (checksum left 0: nothing here verifies it) plus payload."""
    if data_offset is None:
        data_offset = (20 + len(options)) // 4
    header = struct.pack(
        "!HHIIBBHHH", sport, dport, seq, ack, data_offset << 4, flags, window, 0, 0
    )
    return header + options + payload


def ipv4(
    l4: bytes,
    src: bytes = bytes([10, 0, 0, 1]),
    dst: bytes = bytes([10, 0, 0, 2]),
    *,
    proto: int = 6,
    ip_id: int = 4242,
    frag: int = 0x4000,  # DF, offset 0
    options: bytes = b"",
    total_length: int | None = None,
    version_ihl: int | None = None,
) -> bytes:
    ihl = (20 + len(options)) // 4
    if version_ihl is None:
        version_ihl = 0x40 | ihl
    if total_length is None:
        total_length = 20 + len(options) + len(l4)
    header = struct.pack(
        "!BBHHHBBH4s4s", version_ihl, 0, total_length, ip_id, frag, 64, proto, 0, src, dst
    )
    return header + options + l4


def ipv6(
    l4: bytes,
    src: bytes = bytes(15) + b"\x01",
    dst: bytes = bytes(15) + b"\x02",
    *,
    nxt: int = 6,
    payload_length: int | None = None,
) -> bytes:
    if payload_length is None:
        payload_length = len(l4)
    return struct.pack("!IHBB16s16s", 6 << 28, payload_length, nxt, 64, src, dst) + l4


def ipv6_ext(nxt: int, body: bytes) -> bytes:
    """A generic (hop-by-hop / routing / destination options) extension header.

    ``body`` is padded so the header is a multiple of 8 bytes, as the length field needs.
    """
    raw = bytes([nxt, 0]) + body
    raw += bytes(-len(raw) % 8)
    return bytes([nxt, len(raw) // 8 - 1]) + raw[2:]


def ipv6_fragment(nxt: int, offset: int = 0, more: bool = False, ident: int = 7) -> bytes:
    return struct.pack("!BBHI", nxt, 0, (offset << 3) | int(more), ident)


def ethernet(l3: bytes, etype: int = 0x0800, vlans: Sequence[tuple[int, int]] = ()) -> bytes:
    """Ethernet II with zero or more VLAN tags given as (tpid, vlan id), outermost first."""
    frame = MAC_DST + MAC_SRC
    for tpid, vid in vlans:
        frame += struct.pack("!HH", tpid, vid & 0x0FFF)
    return frame + struct.pack("!H", etype) + l3


def pad_to_minimum(frame: bytes, filler: bytes = b"\xee") -> bytes:
    """What a NIC does to short frames: pad to 60 bytes (the FCS is not captured)."""
    missing = 60 - len(frame)
    return frame + filler * missing if missing > 0 else frame


def sll(l3: bytes, protocol: int = 0x0800, packet_type: int = 0, hatype: int = 1) -> bytes:
    """Linux cooked v1: type, ARPHRD, addr len, 8-byte addr, protocol (16 bytes)."""
    return struct.pack("!HHH8sH", packet_type, hatype, 6, MAC_SRC + b"\0\0", protocol) + l3


def sll2(l3: bytes, protocol: int = 0x0800, ifindex: int = 1, hatype: int = 1) -> bytes:
    """Linux cooked v2: protocol, reserved, ifindex, ARPHRD, type, addr len, addr (20)."""
    return struct.pack("!HHIHBB8s", protocol, 0, ifindex, hatype, 0, 6, MAC_SRC + b"\0\0") + l3


def null_loopback(l3: bytes, family: int, network_order: bool) -> bytes:
    return struct.pack("!I" if network_order else "<I", family) + l3


def write_pcap(
    path: Path,
    frames: Iterable[bytes],
    linktype: int = 1,
    start_ts: float = 1_700_000_000.0,
    step: float = 0.001,
) -> Path:
    return _write(dpkt.pcap.Writer, path, frames, linktype, start_ts, step)


# Same signature as write_pcap on purpose: tests pick the file format by the function's name.
def write_pcapng(
    path: Path,
    frames: Iterable[bytes],
    linktype: int = 1,
    start_ts: float = 1_700_000_000.0,
    step: float = 0.001,
) -> Path:
    return _write(dpkt.pcapng.Writer, path, frames, linktype, start_ts, step)


def _write(
    writer_class: type,
    path: Path,
    frames: Iterable[bytes],
    linktype: int,
    start_ts: float,
    step: float,
) -> Path:
    """One frame every ``step`` seconds from ``start_ts``, with dpkt's pcap or pcapng writer."""
    with open(path, "wb") as f:
        writer = writer_class(f, snaplen=262144, linktype=linktype)
        for i, frame in enumerate(frames):
            writer.writepkt(frame, ts=start_ts + i * step)
    return path

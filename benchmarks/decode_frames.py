"""Print the per-frame Decoder.decode time for a few typical frames.

python3 benchmarks/decode_frames.py
"""

from __future__ import annotations

import os
import struct
import sys

import dpkt

# this checkout's package, not whatever `pip install -e` points at
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dicomsniffd.decode import DLT_EN10MB, Decoder  # noqa: E402


def main() -> None:
    """Print the per-frame decode time for a few typical frames."""
    import timeit

    payload = bytes(1460)
    tcp = struct.pack("!HHIIBBHHH", 40000, 104, 1, 2, 0x50, 0x18, 65535, 0, 0)
    ip4 = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 7, 0x4000, 64, 6, 0,
                      b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")  # fmt: skip
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, 20 + len(payload), 6, 64, bytes(16), bytes(16))
    mac = bytes(12)
    frames = {
        "ethernet/ipv4/tcp 1460B": mac + b"\x08\x00" + ip4 + tcp + payload,
        "ethernet/ipv4/tcp ack": mac + b"\x08\x00" + ip4[:2] + b"\x00\x28" + ip4[4:] + tcp,
        "ethernet/802.1q/ipv4/tcp 1460B": mac + b"\x81\x00\x00\x05\x08\x00" + ip4 + tcp + payload,
        "ethernet/ipv6/tcp 1460B": mac + b"\x86\xdd" + ip6 + tcp + payload,
        "ethernet/802.1q/ipv6/tcp 1460B": mac + b"\x81\x00\x00\x05\x86\xdd" + ip6 + tcp + payload,
    }
    decoder = Decoder(DLT_EN10MB)
    number = 500_000
    for name, frame in frames.items():
        assert decoder.decode(frame) is not None, name
        seconds = min(timeit.repeat(lambda f=frame: decoder.decode(f), number=number, repeat=3))
        print(f"{name:32s} {seconds / number * 1e6:.3f} us/frame")
    dpkt_seconds = timeit.timeit(
        lambda: dpkt.ethernet.Ethernet(frames["ethernet/ipv4/tcp 1460B"]), number=50_000
    )
    print(f"{'dpkt Ethernet(), first frame':32s} {dpkt_seconds / 50_000 * 1e6:.3f} us/frame")


if __name__ == "__main__":
    main()

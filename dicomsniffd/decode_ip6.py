"""IPv6 extension headers for the decode layer's slow path, without importing dpkt.

dpkt walks extension header chains for ``decode`` (rare on a DICOM network), but
importing it costs ~45 ms of start-up. What decode needs before deciding to call dpkt is
here: the numbers of the headers dpkt walks, and the walk of the option-like headers that
tells a chain ending in something other than TCP (no dpkt needed for those).
"""

from __future__ import annotations

# The IPv6 extension headers dpkt walks (its ``ip6.EXT_HDRS``; IANA protocol numbers):
# hop-by-hop options, routing, fragment, ESP, AH, destination options. Written down so
# that decode does not import dpkt; tests/test_decode.py checks they equal dpkt's.
EXTENSION_HEADERS = frozenset((0, 43, 44, 50, 51, 60))
# Hop-by-hop options, routing, destination options: (next header, length in 8-octet units
# not counting the first 8) as their first two bytes (RFC 8200 §4.3-4.6).
_OPTION_HEADERS = frozenset((0, 43, 60))
_IPPROTO_TCP = 6


def upper_layer(frame: bytes, off: int, end: int, nxt: int) -> int:
    """The protocol after a chain of hop-by-hop/routing/destination options headers at
    ``frame[off:end]`` (``nxt``: the first one's number) when it is neither TCP nor another
    extension header; else -1.

    Every Linux interface sends MLD reports (ICMPv6 after a hop-by-hop header) when it comes
    up, so real captures have such chains: telling them non-TCP here keeps dpkt off the
    start-up of ``analyze``. Anything else -- TCP, a fragment, ESP or AH header, a chain
    that does not fit in ``end`` -- is left to dpkt, as before.
    """
    while nxt in _OPTION_HEADERS:
        if off + 2 > end:
            return -1
        nxt, off = frame[off], off + (frame[off + 1] + 1) * 8
        if off > end:
            return -1
    return -1 if nxt == _IPPROTO_TCP or nxt in EXTENSION_HEADERS else nxt

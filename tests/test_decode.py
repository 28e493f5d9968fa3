"""Decode layer: every link type and header case, plus property tests against dpkt."""

from __future__ import annotations

import struct

import dpkt
import pytest
from helpers_pcap import (
    ACK,
    FIN,
    PSH,
    SYN,
    ethernet,
    ipv4,
    ipv6,
    ipv6_ext,
    ipv6_fragment,
    null_loopback,
    pad_to_minimum,
    sll,
    sll2,
    tcp,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomsniffd import decode_ip6
from dicomsniffd.capture import CaptureError
from dicomsniffd.decode import (
    COUNTER_NAMES,
    DLT_EN10MB,
    DLT_IPV4,
    DLT_IPV6,
    DLT_LINUX_SLL,
    DLT_LINUX_SLL2,
    DLT_LOOP,
    DLT_NULL,
    DLT_RAW,
    DLT_RAW_OPENBSD,
    LINKTYPE_RAW,
    SUPPORTED_LINKTYPES,
    Decoder,
    UnsupportedLinkType,
)

SRC4, DST4 = bytes([192, 168, 1, 10]), bytes([192, 168, 1, 20])
SRC6, DST6 = (
    bytes.fromhex("20010db8" + "00" * 11 + "01"),
    bytes.fromhex("20010db8" + "00" * 11 + "02"),
)
DATA = b"\x04\x00\x00\x00\x00\x10" + bytes(range(16))  # a P-DATA-TF-looking payload


def segment4(payload: bytes = DATA, **tcp_kw: int) -> tuple:
    """The Segment expected for ``tcp(**tcp_kw)`` inside ``ipv4(..., SRC4, DST4)``."""
    fields = {"sport": 40000, "dport": 104, "seq": 1000, "ack": 2000, "flags": ACK | PSH}
    fields.update({"window": 65535, "ip_id": 4242})
    fields.update(tcp_kw)
    return (SRC4, fields["sport"], DST4, fields["dport"], fields["seq"], fields["ack"],
            fields["flags"], fields["window"], payload, len(payload), fields["ip_id"])  # fmt: skip


def v4_frame(payload: bytes = DATA, **kw: object) -> bytes:
    return ipv4(tcp(payload=payload), SRC4, DST4, **kw)  # type: ignore[arg-type]


def v6_packet(payload: bytes = DATA) -> bytes:
    return ipv6(tcp(payload=payload), SRC6, DST6)


def expected6(payload: bytes = DATA) -> tuple:
    return (SRC6, 40000, DST6, 104, 1000, 2000, ACK | PSH, 65535, payload, len(payload), -1)


def decode_one(linktype: int, frame: bytes) -> tuple[tuple | None, Decoder]:
    decoder = Decoder(linktype)
    return decoder.decode(frame), decoder


def nonzero(decoder: Decoder) -> dict[str, int]:
    """The counters that moved, without 'packets' (always 1 in these tests)."""
    return {k: v for k, v in decoder.counters().items() if v and k != "packets"}


# -- link types ------------------------------------------------------------------------


def test_ethernet_ipv4_tcp_all_fields() -> None:
    frame = ethernet(v4_frame())
    seg, d = decode_one(DLT_EN10MB, frame)
    assert seg == segment4()
    assert d.packets == 1 and nonzero(d) == {}


def test_tcp_flags_window_seq_extremes() -> None:
    l4 = tcp(sport=1, dport=65535, seq=0xFFFFFFFF, ack=0, flags=0xFF, window=0, payload=b"x")
    seg, _ = decode_one(DLT_EN10MB, ethernet(ipv4(l4, SRC4, DST4, ip_id=0)))
    assert seg == (SRC4, 1, DST4, 65535, 0xFFFFFFFF, 0, 0xFF, 0, b"x", 1, 0)


def test_syn_without_payload() -> None:
    seg, _ = decode_one(DLT_EN10MB, pad_to_minimum(ethernet(ipv4(tcp(flags=SYN), SRC4, DST4))))
    assert seg is not None and seg[6] == SYN and seg[8] == b"" and seg[9] == 0


@pytest.mark.parametrize(
    "vlans",
    [
        [(0x8100, 10)],
        [(0x88A8, 100), (0x8100, 10)],  # 802.1ad QinQ
        [(0x9100, 100), (0x8100, 10)],  # legacy QinQ
        [(0x8100, 1), (0x8100, 2), (0x8100, 3)],  # three stacked tags
    ],
)
def test_vlan_tags_are_skipped(vlans: list[tuple[int, int]]) -> None:
    seg, d = decode_one(DLT_EN10MB, ethernet(v4_frame(), vlans=vlans))
    assert seg == segment4()
    seg6, _ = decode_one(DLT_EN10MB, ethernet(v6_packet(), etype=0x86DD, vlans=vlans))
    assert seg6 == expected6()
    assert nonzero(d) == {}


def test_vlan_tag_cut_short_is_truncated() -> None:
    frame = ethernet(b"", etype=0x8100)[:-2] + b"\x81\x00\x00"  # tag without its type
    seg, d = decode_one(DLT_EN10MB, frame)
    assert seg is None and nonzero(d) == {"truncated": 1}


def test_ethernet_padding_is_not_payload() -> None:
    # A 1-byte segment is a 55-byte frame: the NIC pads it to 60 with junk.
    frame = pad_to_minimum(ethernet(v4_frame(b"Z")))
    assert len(frame) == 60
    seg, d = decode_one(DLT_EN10MB, frame)
    assert seg == segment4(b"Z")
    assert nonzero(d) == {}
    frame6 = pad_to_minimum(ethernet(ipv6(tcp(payload=b""), SRC6, DST6), etype=0x86DD))
    seg6, _ = decode_one(DLT_EN10MB, frame6 + b"\xee" * 8)  # IPv6 is > 60: add junk anyway
    assert seg6 == expected6(b"")


@pytest.mark.parametrize("builder,linktype", [(sll, DLT_LINUX_SLL), (sll2, DLT_LINUX_SLL2)])
def test_linux_cooked(builder, linktype: int) -> None:  # noqa: ANN001
    seg, _ = decode_one(linktype, builder(v4_frame()))
    assert seg == segment4()
    seg6, _ = decode_one(linktype, builder(v6_packet(), protocol=0x86DD))
    assert seg6 == expected6()
    # A VLAN tag left in place after the cooked header is skipped like on Ethernet.
    tagged = builder(struct.pack("!HH", 10, 0x0800) + v4_frame(), protocol=0x8100)
    assert decode_one(linktype, tagged)[0] == segment4()
    none, d = decode_one(linktype, builder(b"\x00" * 28, protocol=0x0806))  # ARP
    assert none is None and nonzero(d) == {"non_ip": 1}


def test_sll_header_layouts_differ() -> None:
    # SLL carries the protocol at offset 14 of 16 bytes, SLL2 at offset 0 of 20 bytes.
    assert len(sll(b"")) == 16 and sll(b"")[14:16] == b"\x08\x00"
    assert len(sll2(b"")) == 20 and sll2(b"")[0:2] == b"\x08\x00"
    # Reading one as the other must not produce a segment.
    assert decode_one(DLT_LINUX_SLL, sll2(v4_frame()))[0] != segment4()


@pytest.mark.parametrize("linktype", [DLT_RAW, DLT_RAW_OPENBSD, LINKTYPE_RAW])
def test_raw_ip(linktype: int) -> None:
    assert decode_one(linktype, v4_frame())[0] == segment4()
    assert decode_one(linktype, v6_packet())[0] == expected6()
    seg, d = decode_one(linktype, b"\x20" + bytes(39))  # version 2
    assert seg is None and nonzero(d) == {"non_ip": 1}


def test_dlt_ipv4_and_ipv6() -> None:
    assert decode_one(DLT_IPV4, v4_frame())[0] == segment4()
    assert decode_one(DLT_IPV6, v6_packet())[0] == expected6()
    seg, d = decode_one(DLT_IPV4, v6_packet())  # wrong version for the link
    assert seg is None and nonzero(d) == {"malformed": 1}


@pytest.mark.parametrize("linktype", [DLT_NULL, DLT_LOOP])
@pytest.mark.parametrize("family6", [10, 24, 28, 30])
def test_null_and_loop(linktype: int, family6: int) -> None:
    network_order = linktype == DLT_LOOP
    assert decode_one(linktype, null_loopback(v4_frame(), 2, network_order))[0] == segment4()
    frame6 = null_loopback(v6_packet(), family6, network_order)
    assert decode_one(linktype, frame6)[0] == expected6()
    seg, d = decode_one(linktype, null_loopback(b"junk", 17, network_order))
    assert seg is None and nonzero(d) == {"non_ip": 1}


def test_unsupported_link_type() -> None:
    with pytest.raises(UnsupportedLinkType) as info:
        Decoder(105)  # 802.11
    assert isinstance(info.value, CaptureError)
    assert "105" in str(info.value) and "\n" not in str(info.value)
    assert info.value.linktype == 105


def test_counters_dict() -> None:
    d = Decoder(DLT_EN10MB)
    d.decode(ethernet(v4_frame()))
    d.decode(ethernet(b"\x00" * 28, etype=0x0806))
    assert d.counters() == dict.fromkeys(COUNTER_NAMES, 0) | {"packets": 2, "non_ip": 1}


# -- IPv4 ------------------------------------------------------------------------------


@pytest.mark.parametrize("nopts", [1, 2, 10])
def test_ipv4_options_honour_ihl(nopts: int) -> None:
    options = b"\x01" * (4 * nopts)  # NOPs
    seg, d = decode_one(DLT_EN10MB, ethernet(v4_frame(options=options)))
    assert seg == segment4()
    assert nonzero(d) == {}


def test_tcp_options_honour_data_offset() -> None:
    options = b"\x02\x04\x05\xb4\x01\x01\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07"
    frame = ethernet(ipv4(tcp(payload=DATA, options=options), SRC4, DST4))
    assert decode_one(DLT_EN10MB, frame)[0] == segment4()


def test_tso_total_length_zero_uses_captured_length() -> None:
    payload = bytes(range(256)) * 100  # 25600 bytes, as TSO hands to the NIC
    seg, d = decode_one(DLT_EN10MB, ethernet(v4_frame(payload, total_length=0)))
    assert seg == segment4(payload)
    assert nonzero(d) == {"super_packets": 1}
    # Even a small TSO frame is counted: length 0 always means an offload.
    seg, d = decode_one(DLT_EN10MB, ethernet(v4_frame(b"abc", total_length=0)))
    assert seg == segment4(b"abc") and nonzero(d) == {"super_packets": 1}


def test_gro_super_packet_64k() -> None:
    payload = bytes(65535 - 40)
    seg, d = decode_one(DLT_EN10MB, ethernet(v4_frame(payload)))
    assert seg == segment4(payload)
    assert nonzero(d) == {"super_packets": 1}
    assert decode_one(DLT_EN10MB, ethernet(v4_frame(bytes(1460))))[1].super_packets == 0
    assert decode_one(DLT_EN10MB, ethernet(v4_frame(bytes(1461))))[1].super_packets == 1


def test_snaplen_cut_payload() -> None:
    full = ethernet(v4_frame(bytes(range(200))))
    cut = full[:128]  # 14 + 40 + 74 payload bytes captured
    seg, d = decode_one(DLT_EN10MB, cut)
    assert seg is not None
    assert seg[8] == bytes(range(74)) and seg[9] == 200
    assert nonzero(d) == {"truncated": 1}


def test_snaplen_cut_inside_tcp_options() -> None:
    options = bytes([1] * 12)
    full = ethernet(ipv4(tcp(payload=DATA, options=options), SRC4, DST4))
    seg, d = decode_one(DLT_EN10MB, full[: 14 + 20 + 24])
    assert seg is not None and seg[8] == b"" and seg[9] == len(DATA)
    assert nonzero(d) == {"truncated": 1}


@pytest.mark.parametrize("cut", [14, 20, 33, 34, 40, 53])
def test_snaplen_cut_inside_headers(cut: int) -> None:
    seg, d = decode_one(DLT_EN10MB, ethernet(v4_frame())[:cut])
    assert seg is None and nonzero(d) == {"truncated": 1}


@pytest.mark.parametrize(
    "frag", [0x2000, 0x0001, 0x00B9, 0x2000 | 0x4000 | 0x0010], ids=["MF", "off", "last", "MF+DF"]
)
def test_ipv4_fragments_are_counted_and_skipped(frag: int) -> None:
    seg, d = decode_one(DLT_EN10MB, ethernet(v4_frame(frag=frag)))
    assert seg is None and nonzero(d) == {"ip_fragments": 1}


def test_df_alone_is_not_a_fragment() -> None:
    assert decode_one(DLT_EN10MB, ethernet(v4_frame(frag=0x4000)))[0] == segment4()
    assert decode_one(DLT_EN10MB, ethernet(v4_frame(frag=0)))[0] == segment4()


def test_non_tcp_and_non_ip() -> None:
    seg, d = decode_one(DLT_EN10MB, ethernet(ipv4(b"\0" * 8, proto=17)))
    assert seg is None and nonzero(d) == {"non_tcp": 1}
    seg, d = decode_one(DLT_EN10MB, ethernet(b"\0" * 46, etype=0x88CC))  # LLDP
    assert seg is None and nonzero(d) == {"non_ip": 1}
    seg, d = decode_one(DLT_EN10MB, ethernet(b"\0" * 46, etype=0x0026))  # 802.3 length
    assert seg is None and nonzero(d) == {"non_ip": 1}


@pytest.mark.parametrize(
    "frame",
    [
        ethernet(ipv4(tcp(payload=DATA, data_offset=4), SRC4, DST4)),  # data offset < 5
        ethernet(ipv4(tcp(payload=b"", data_offset=15), SRC4, DST4)),  # offset past IP end
        ethernet(ipv4(tcp(payload=DATA), SRC4, DST4, version_ihl=0x44)),  # IHL < 5
        ethernet(ipv4(tcp(payload=DATA), SRC4, DST4, version_ihl=0x65)),  # version 6
        ethernet(ipv4(tcp(payload=DATA), SRC4, DST4, total_length=30)),  # no room for TCP
        ethernet(ipv4(tcp(payload=DATA), SRC4, DST4, total_length=19)),  # < IP header
        b"",
        b"\x02" * 13,
    ],
    ids=["doff<5", "doff>len", "ihl<5", "version", "len<tcp", "len<ip", "empty", "runt"],
)
def test_malformed(frame: bytes) -> None:
    seg, d = decode_one(DLT_EN10MB, frame)
    assert seg is None and nonzero(d) == {"malformed": 1}


# -- IPv6 ------------------------------------------------------------------------------


def test_ipv6_jumbo_payload_length_zero() -> None:
    payload = bytes(70000)
    frame = ethernet(ipv6(tcp(payload=payload), SRC6, DST6, payload_length=0), etype=0x86DD)
    seg, d = decode_one(DLT_EN10MB, frame)
    assert seg == expected6(payload)
    assert nonzero(d) == {"super_packets": 1}


def test_ipv6_snaplen_cut() -> None:
    frame = ethernet(v6_packet(bytes(1000)), etype=0x86DD)[:200]
    seg, d = decode_one(DLT_EN10MB, frame)
    assert seg is not None and seg[8] == bytes(200 - 14 - 60) and seg[9] == 1000
    assert nonzero(d) == {"truncated": 1}


@pytest.mark.parametrize(
    "chain",
    [
        [(0, b"\x01\x04\0\0\0\0")],  # hop-by-hop with a PadN
        [(43, b"\x00\x00" + bytes(4) + bytes(16))],  # routing type 0, one address
        [(60, b"\x01\x04\0\0\0\0")],  # destination options
        [(0, b"\x01\x04\0\0\0\0"), (60, b"\x01\x0c" + bytes(12))],  # two headers
    ],
    ids=["hop-by-hop", "routing", "dest-opts", "hbh+dest"],
)
def test_ipv6_extension_headers(chain: list[tuple[int, bytes]]) -> None:
    l4 = tcp(payload=DATA)
    # Build from the inside out: each header names the one after it.
    nxt = 6
    for kind, body in reversed(chain):
        l4 = ipv6_ext(nxt, body) + l4
        nxt = kind
    frame = ethernet(ipv6(l4, SRC6, DST6, nxt=nxt), etype=0x86DD)
    seg, d = decode_one(DLT_EN10MB, frame)
    assert seg == expected6()
    assert nonzero(d) == {"fallback": 1}


def test_ipv6_atomic_fragment_is_decoded() -> None:
    l4 = ipv6_fragment(6) + tcp(payload=DATA)
    seg, d = decode_one(DLT_EN10MB, ethernet(ipv6(l4, SRC6, DST6, nxt=44), etype=0x86DD))
    assert seg == expected6()
    assert nonzero(d) == {"fallback": 1}


@pytest.mark.parametrize("offset,more", [(0, True), (185, True), (185, False)])
def test_ipv6_fragments_are_counted_and_skipped(offset: int, more: bool) -> None:
    l4 = ipv6_fragment(6, offset, more) + tcp(payload=DATA)
    seg, d = decode_one(DLT_EN10MB, ethernet(ipv6(l4, SRC6, DST6, nxt=44), etype=0x86DD))
    assert seg is None and nonzero(d) == {"ip_fragments": 1, "fallback": 1}


def test_ipv6_non_tcp() -> None:
    for nxt, body in [(17, bytes(8)), (58, bytes(8)), (59, b"")]:
        seg, d = decode_one(DLT_IPV6, ipv6(body, nxt=nxt))
        assert seg is None and nonzero(d) == {"non_tcp": 1}
    seg, d = decode_one(DLT_IPV6, ipv6(bytes(40), nxt=50))  # ESP: encrypted
    assert seg is None and nonzero(d) == {"non_tcp": 1, "fallback": 1}
    seg, d = decode_one(DLT_IPV6, ipv6(ipv6_ext(17, bytes(6)) + bytes(8), nxt=0))
    assert seg is None and nonzero(d) == {"non_tcp": 1, "fallback": 1}


def test_ipv6_extension_header_numbers_are_dpkts() -> None:
    """decode writes dpkt's ``ip6.EXT_HDRS`` down (so as not to import dpkt at start-up):
    the chains it hands to dpkt must be exactly the ones dpkt walks."""
    assert frozenset(dpkt.ip6.EXT_HDRS) == decode_ip6.EXTENSION_HEADERS


def test_mld_report_is_non_tcp_without_dpkt() -> None:
    """What every Linux interface sends when it comes up (so every real capture has it): an
    MLDv2 report, ICMPv6 after a hop-by-hop header with Router Alert (RFC 3810 §5)."""
    hop_by_hop = ipv6_ext(58, b"\x05\x02\x00\x00\x01\x00")  # Router Alert: MLD, PadN
    mld = b"\x8f\x00" + bytes(6)  # type 143, no records
    seg, d = decode_one(DLT_EN10MB, ethernet(ipv6(hop_by_hop + mld, nxt=0), etype=0x86DD))
    assert seg is None and nonzero(d) == {"non_tcp": 1, "fallback": 1}
    assert decode_ip6.upper_layer(hop_by_hop + mld, 0, len(hop_by_hop + mld), 0) == 58


_EXTENSION_KINDS = st.sampled_from([0, 43, 60, 44, 51, 50])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    chain=st.lists(st.tuples(_EXTENSION_KINDS, st.binary(max_size=30)), min_size=1, max_size=4),
    last=st.sampled_from([6, 17, 58, 59, 0, 43, 44, 60]),
    cut=st.integers(0, 120),
    with_payload=st.booleans(),
)
def test_extension_chains_decode_as_dpkt_alone_would(
    chain: list[tuple[int, bytes]], last: int, cut: int, with_payload: bool
) -> None:
    """decode_ip6.upper_layer settles some chains without dpkt: for any chain, cut or not,
    the segment and every counter are what the dpkt walk alone gives."""
    inner = tcp(payload=DATA) if last == 6 and with_payload else bytes(8 * with_payload)
    nxt = last
    for kind, body in reversed(chain):
        inner = ipv6_ext(nxt, body) + inner
        nxt = kind
    frame = ethernet(ipv6(inner, SRC6, DST6, nxt=nxt), etype=0x86DD)
    frame = frame[: len(frame) - cut] if cut < len(frame) - 14 else frame
    ours = Decoder(DLT_EN10MB)
    seg = ours.decode(frame)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("dicomsniffd.decode.upper_layer", lambda *args: -1)
        alone = Decoder(DLT_EN10MB)
        assert seg == alone.decode(frame)
    assert ours.counters() == alone.counters()


def test_ipv6_extension_chain_cut_short() -> None:
    packet = ipv6(ipv6_ext(6, bytes(30)) + tcp(payload=DATA), nxt=60)
    seg, d = decode_one(DLT_IPV6, packet[:50])
    assert seg is None and d.truncated == 1 and d.fallback == 1


# -- property tests --------------------------------------------------------------------


def reference_decode(frame: bytes) -> tuple | None:
    """The same Segment, computed by dpkt: the reference the fast path must agree with."""
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    if isinstance(ip, dpkt.ip.IP):
        ip_id, ip_payload_len = ip.id, ip.len - ip.hl * 4
    elif isinstance(ip, dpkt.ip6.IP6):
        ip_id, ip_payload_len = -1, ip.plen
    else:
        return None
    segment = ip.data
    if not isinstance(segment, dpkt.tcp.TCP):
        return None
    return (bytes(ip.src), segment.sport, bytes(ip.dst), segment.dport, segment.seq,
            segment.ack, segment.flags & 0xFF, segment.win, bytes(segment.data),
            ip_payload_len - segment.off * 4, ip_id)  # fmt: skip


def words(max_words: int) -> st.SearchStrategy[bytes]:
    """Option bytes in 4-byte words, as IHL and data offset count them."""
    return st.integers(0, max_words).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))


vlan_tags = st.lists(
    st.tuples(st.sampled_from([0x8100, 0x88A8, 0x9100]), st.integers(0, 4095)), max_size=2
)


@st.composite
def tcp_frames(draw: st.DrawFn) -> bytes:
    l4 = tcp(
        sport=draw(st.integers(0, 65535)),
        dport=draw(st.integers(0, 65535)),
        seq=draw(st.integers(0, 2**32 - 1)),
        ack=draw(st.integers(0, 2**32 - 1)),
        flags=draw(st.integers(0, 255)),
        window=draw(st.integers(0, 65535)),
        options=draw(words(10)),
        payload=draw(st.binary(max_size=1600)),
    )
    if draw(st.booleans()):
        l3 = ipv4(
            l4,
            draw(st.binary(min_size=4, max_size=4)),
            draw(st.binary(min_size=4, max_size=4)),
            ip_id=draw(st.integers(0, 65535)),
            frag=draw(st.sampled_from([0, 0x4000])),
            options=draw(words(10)),
        )
        etype = 0x0800
    else:
        src = draw(st.binary(min_size=16, max_size=16))
        l3 = ipv6(l4, src, draw(st.binary(min_size=16, max_size=16)))
        etype = 0x86DD
    frame = ethernet(l3, etype, draw(vlan_tags))
    if draw(st.booleans()):
        frame = pad_to_minimum(frame, draw(st.binary(min_size=1, max_size=1)))
        frame += draw(st.binary(max_size=4))  # some capture paths keep the FCS
    return frame


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(tcp_frames())
def test_fast_path_agrees_with_dpkt(frame: bytes) -> None:
    decoder = Decoder(DLT_EN10MB)
    seg = decoder.decode(frame)
    assert seg is not None
    assert seg == reference_decode(frame)
    assert decoder.malformed == decoder.truncated == decoder.fallback == 0


@settings(max_examples=300)
@given(linktype=st.sampled_from(sorted(SUPPORTED_LINKTYPES)), frame=st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(linktype: int, frame: bytes) -> None:
    decoder = Decoder(linktype)
    seg = decoder.decode(frame)
    assert decoder.packets == 1
    assert seg is None or (len(seg) == 11 and len(seg[8]) <= seg[9])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    frame=tcp_frames(),
    cut=st.integers(0, 200),
    flips=st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=4),
)
def test_damaged_frames_never_raise(frame: bytes, cut: int, flips: list[tuple[int, int]]) -> None:
    # Random bytes rarely get past the ethertype; damaging real frames reaches the
    # IP/TCP/extension-header code paths.
    damaged = bytearray(frame[: len(frame) - cut] if cut < len(frame) else frame)
    for pos, value in flips:
        if pos < len(damaged):
            damaged[pos] = value
    for linktype in (DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_RAW):
        decoder = Decoder(linktype)
        seg = decoder.decode(bytes(damaged[14:] if linktype == DLT_RAW else damaged))
        assert seg is None or (len(seg) == 11 and len(seg[8]) <= seg[9])
        assert seg is not None or sum(decoder.counters().values()) > 1


def test_fin_flag_passes_through() -> None:
    seg, _ = decode_one(DLT_EN10MB, ethernet(ipv4(tcp(flags=FIN | ACK), SRC4, DST4)))
    assert seg is not None and seg[6] == FIN | ACK


# -- the batch interface used by the pipeline -----------------------------------------

_BASE_FRAME = bytes.fromhex(
    "020000000002020000000001080045000034000140004006000"
    "00a0000010a0000029c40006800000001000000025018ffff00000000"
) + bytes(8)


def _batch_matches_frame_by_frame(linktype: int, buf: bytes, records: list) -> None:
    batch, single = Decoder(linktype), Decoder(linktype)
    got: list = []
    result = batch.decode_batch(buf, records, lambda ts, *seg: got.append((ts, seg)))
    want = []
    for sec, usec, off, caplen in records:
        seg = single.decode(buf[off : off + caplen])
        if seg is not None:
            want.append((sec + usec * 1e-6, seg))
    assert got == want
    assert batch.counters() == single.counters()
    assert result[:2] == (len(records), sum(r[3] for r in records))


@settings(max_examples=300, deadline=None)
@given(
    linktype=st.sampled_from([1, 113, 276, 12]),
    frames=st.lists(
        st.tuples(
            st.integers(0, 40),
            st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
            st.integers(0, 200),
        ),
        min_size=1,
        max_size=8,
    ),
    tail=st.integers(0, 80),
)
def test_decode_batch_equals_decode_on_damaged_batches(linktype, frames, tail) -> None:
    """Reading headers in place in the batch buffer never looks past a frame's end: a
    plausible frame right after a short one must not leak into it."""
    buf, records, off = b"", [], 0
    for i, (extra, flips, cut) in enumerate(frames):
        frame = bytearray(_BASE_FRAME + bytes(extra))
        for pos, value in flips:
            frame[pos % len(frame)] = value
        frame = bytes(frame[: max(0, len(frame) - cut)])
        records.append((1000 + i, i, off, len(frame)))
        buf += frame
        off += len(frame)
    buf += bytes(tail) + _BASE_FRAME
    _batch_matches_frame_by_frame(linktype, buf, records)


# -- the super-packet limit follows the MSS the SYNs announce ----------------------------


def _mss_option(mss: int) -> bytes:
    # NOPs first, then MSS, SACK-permitted, window scale: the walk must skip to it.
    return b"\x01\x01" + struct.pack("!BBH", 2, 4, mss) + b"\x04\x02\x01\x03\x03\x07"


def _syn(mss: int | None, wrap=lambda l4: ethernet(ipv4(l4, SRC4, DST4))) -> bytes:
    options = _mss_option(mss) if mss is not None else b"\x01\x01\x04\x02"
    return wrap(tcp(flags=SYN, seq=999, ack=0, options=options))


def _data(size: int, wrap=lambda l4: ethernet(ipv4(l4, SRC4, DST4))) -> bytes:
    return wrap(tcp(payload=bytes(size)))


def _v6(l4: bytes) -> bytes:
    return ethernet(ipv6(l4, SRC6, DST6), etype=0x86DD)


def _v4_ip_options(l4: bytes) -> bytes:  # IHL 6: the IPv4 slow path (_tcp)
    return ethernet(ipv4(l4, SRC4, DST4, options=b"\x01\x01\x01\x00"))


def _vlan(l4: bytes) -> bytes:  # the general path, then the IPv4 fast path
    return ethernet(ipv4(l4, SRC4, DST4), vlans=[(0x8100, 5)])


def _super_packets(frames: list[bytes], path: str) -> Decoder:
    decoder = Decoder(DLT_EN10MB, accelerate=False)
    if path == "decode":
        for frame in frames:
            assert decoder.decode(frame) is not None
    else:
        buf, records, off = b"", [], 0
        for i, frame in enumerate(frames):
            records.append((1_700_000_000, i, off, len(frame)))
            buf += frame
            off += len(frame)
        decoder.decode_batch(buf, records, lambda ts, *seg: None)
    return decoder


WRAPS = [
    pytest.param(lambda l4: ethernet(ipv4(l4, SRC4, DST4)), id="ipv4"),
    pytest.param(_v6, id="ipv6"),
    pytest.param(_v4_ip_options, id="ipv4-options"),
    pytest.param(_vlan, id="vlan"),
]


@pytest.mark.parametrize("path", ["decode", "decode_batch"])
@pytest.mark.parametrize("wrap", WRAPS)
def test_a_jumbo_syn_mss_makes_jumbo_segments_ordinary(path, wrap) -> None:
    frames = [_syn(8960, wrap)] + [_data(8960, wrap)] * 3
    d = _super_packets(frames, path)
    assert d.mss == 8960 and d.super_packets == 0
    # One byte more than the announced MSS is still a merged segment.
    d = _super_packets([*frames, _data(8961, wrap)], path)
    assert d.super_packets == 1


@pytest.mark.parametrize("path", ["decode", "decode_batch"])
@pytest.mark.parametrize("wrap", WRAPS)
def test_a_standard_syn_mss_keeps_larger_segments_super_packets(path, wrap) -> None:
    d = _super_packets([_syn(1460, wrap), _data(1460, wrap), _data(3000, wrap)], path)
    assert d.mss == 1460 and d.super_packets == 1
    # No SYN, or a SYN without an MSS option: the 1460 default.
    d = _super_packets([_syn(None, wrap), _data(1461, wrap)], path)
    assert d.mss == 1460 and d.super_packets == 1


@pytest.mark.parametrize("path", ["decode", "decode_batch"])
def test_the_largest_mss_any_syn_announced_is_the_limit(path) -> None:
    # Loopback: Linux announces 65495 (MTU 65536); a later smaller SYN does not lower it.
    frames = [_syn(65495), _syn(536), _data(65495), _data(8960)]
    d = _super_packets(frames, path)
    assert d.mss == 65495 and d.super_packets == 0


@pytest.mark.parametrize("path", ["decode", "decode_batch"])
def test_only_syn_segments_have_their_mss_option_read(path) -> None:
    ack_with_mss = ethernet(ipv4(tcp(options=_mss_option(8960)), SRC4, DST4))
    d = _super_packets([ack_with_mss, _data(3000)], path)
    assert d.mss == 1460 and d.super_packets == 1


@pytest.mark.parametrize(
    "options",
    [
        b"\x01\x01\x02\x04",  # cut: the header ends inside it (the payload is \x23\x00)
        b"\x00\x00\x00\x00" + struct.pack("!BBH", 2, 4, 8960),  # after end-of-list
        b"\x08\x01\x00\x00" + struct.pack("!BBH", 2, 4, 8960),  # a length < 2 stops
        b"\x02\x03\x23\x00",  # MSS with a wrong length
    ],
)
def test_malformed_syn_options_announce_no_mss(options) -> None:
    syn = ethernet(ipv4(tcp(flags=SYN, options=options, payload=b"\x23\x00"), SRC4, DST4))
    d = _super_packets([syn, _data(3000)], "decode")
    assert d.mss == 1460 and d.super_packets == 1 and d.malformed == 0

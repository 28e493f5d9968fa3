"""The core scenarios (j)-(m), what the network does to a store: packet loss, IPv6,
802.1Q VLAN tags, and a capture that starts mid-association (derived from (a))."""

from __future__ import annotations

import os
import subprocess

import netns
from netns import VethPair

from .plumbing import (
    PY,
    SCP_PORT,
    Images,
    Scenario,
    _check,
    _store_expect,
    _storescu,
    read_scp_log,
    start_pyscp,
    start_storescp,
    stop,
)
from .tshark import tshark_view

J_DROP = 0.02


def sc_j_loss(wd: str, img: Images) -> Scenario:
    """(j) 2% random drop (iptables statistic, data segments only) on packets entering
    the SCP namespace while storescu stores 30 images of 128x128: retransmissions, and
    every store still succeeds. Captured on the sender's veth (sees both copies)."""
    pcap = os.path.join(wd, "j_loss.pcap")
    with VethPair() as net:
        scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
        net.add_random_drop("b", J_DROP, min_length=100)
        with net.capture("a", pcap):
            _storescu(net, "ANY-SCP", img.paths("s30"), timeout=120)
        dropped = net.dropped_packets("b")
        stop(scp)
    if dropped < 1:
        raise netns.NetnsError("iptables dropped nothing: the loss scenario proves nothing")
    exp = _store_expect("STORESCU", "ANY-SCP", 30, min_retransmissions={"requestor": 1})
    exp["findings_present"] = ["retransmissions"]
    return Scenario("j_loss", pcap, exp, notes={"iptables_dropped": dropped})


def sc_k_ipv6(wd: str, img: Images) -> Scenario:
    """(k) IPv6: pynetdicom's storescu app -> pynetdicom SCP on [fd00::2]:11112 (DCMTK
    3.6.7 cannot do IPv6), 5 images; -cx: only the contexts the files need."""
    pcap = os.path.join(wd, "k_ipv6.pcap")
    with VethPair() as net:
        scp = start_pyscp(net, "b", wd, {"ae_title": "V6SCP", "bind": "::"})
        with net.capture("a", pcap):
            _check(
                net.run(
                    "a",
                    [
                        PY,
                        "-m",
                        "pynetdicom",
                        "storescu",
                        "-aet",
                        "STORESCU6",
                        "-aec",
                        "V6SCP",
                        "-xe",
                        "-cx",
                        net.ip6("b"),
                        str(SCP_PORT),
                        *img.paths("s5"),
                    ],
                ),
                "pynetdicom storescu",
            )
        stop(scp)
    stored = [r for r in read_scp_log(wd) if r["op"] == "C-STORE"]
    if len(stored) != 5:
        raise netns.NetnsError(f"IPv6 SCP saw {len(stored)} C-STOREs, wanted 5")
    exp = _store_expect("STORESCU6", "V6SCP", 5, ip_version=6)
    return Scenario("k_ipv6", pcap, exp)


L_VLAN = 100


def sc_l_vlan(wd: str, img: Images) -> Scenario:
    """(l) 802.1Q-tagged frames (VLAN 100), captured on the parent veth.

    Preferred: the peers talk over VLAN subinterfaces (veth.100) and tcpdump captures on
    the parent veth. Kernels built without CONFIG_VLAN_8021Q cannot create them; then the
    same store is captured untagged, tagged with tcprewrite, and replayed through the veth
    (tcpreplay, original timing) and re-captured on the far end, so the kernel's receive
    path (tag moved to skb metadata, rebuilt by libpcap) is still exercised.
    """
    pcap = os.path.join(wd, "l_vlan.pcap")
    method = "subinterface" if netns.vlan_supported() else "tcprewrite+tcpreplay"
    if method == "subinterface":
        with VethPair(vlan=L_VLAN) as net:
            scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
            with net.capture("a", pcap, iface=net.iface("a")):
                _storescu(net, "VLAN-SCP", img.paths("s5"))
            stop(scp)
    else:
        plain = os.path.join(wd, "l_untagged.pcap")
        tagged = os.path.join(wd, "l_tagged_replay.pcap")
        with VethPair() as net:
            scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
            with net.capture("a", plain):
                _storescu(net, "VLAN-SCP", img.paths("s5"))
            stop(scp)
        _check(
            subprocess.run(
                [
                    "tcprewrite",
                    "--enet-vlan=add",
                    f"--enet-vlan-tag={L_VLAN}",
                    "--enet-vlan-cfi=0",
                    "--enet-vlan-pri=0",
                    f"--infile={plain}",
                    f"--outfile={tagged}",
                ],
                capture_output=True,
                text=True,
            ),
            "tcprewrite",
        )
        with VethPair(ipv6=False) as net, net.capture("b", pcap, bpf="vlan"):
            _check(net.run("a", ["tcpreplay", "-q", "-i", net.iface("a"), tagged]), "tcpreplay")
    exp = _store_expect("STORESCU", "VLAN-SCP", 5, vlan_id=L_VLAN, max_frame_len=1518)
    return Scenario("l_vlan", pcap, exp, notes={"method": method})


M_SEEN_BEFORE_CUT = 20  # responses before the cut


def sc_m_midstream(wd: str, img: Images, base: Scenario) -> Scenario:
    """(m) Scenario (a)'s capture with its first K packets removed (editcap): it now
    starts inside the dataset of the 21st C-STORE-RQ, after the 20th response."""
    pcap = os.path.join(wd, "m_midstream.pcap")
    view = tshark_view(base.pcap, base.ports)
    rsp_frames = sorted(m["frame"] for m in view.commands if m["command"] == "C-STORE-RSP")
    f20 = rsp_frames[M_SEEN_BEFORE_CUT - 1]
    client_data = [
        fr["frame"]
        for fr in view.frames
        if fr["frame"] > f20 and fr["dport"] == SCP_PORT and fr["tcp_len"] > 0
    ]
    # The 21st request: command PDU first, then dataset segments; cut after the 3rd.
    k = client_data[3] - 1  # delete frames 1..k: the capture starts mid-dataset
    _check(
        subprocess.run(["editcap", base.pcap, pcap, f"1-{k}"], capture_output=True, text=True),
        "editcap",
    )
    n_after = 50 - M_SEEN_BEFORE_CUT
    exp = {
        # the A-RELEASE-RQ/RP exchange is after the cut: the association still ends released
        "associations": [{"calling_ae": "unknown", "called_ae": "unknown", "end": "released"}],
        "association_requests": 0,
        # Requests 22..50 and their responses are complete; the 21st request was cut, its
        # response is whole: whether it is counted is the analyser's choice.
        "responses_any_of": {"C-STORE": {"0x0000": [n_after - 1, n_after]}},
        "findings_present": ["capture-incomplete"],
        "findings_absent": ["association-rejected", "aborts"],
        "max_frame_len": 1514,
    }
    return Scenario("m_midstream", pcap, exp, notes={"deleted_frames": k})

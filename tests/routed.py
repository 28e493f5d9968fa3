"""Three network namespaces, modality -- router -- PACS, for loss and middlebox tests (root).

    with RoutedNet() as net:                  # namespaces "a" (modality), "r" (router), "b" (PACS)
        net.add_forward_drop(0.02, min_length=100)   # the router loses 2 % of data segments
        scp = net.popen("b", ["storescp", ...])
        net.wait_listening("b", 11112)
        with net.capture("r", near, iface=net.router_iface("a")), \
             net.capture("r", far, iface=net.router_iface("b")):
            net.run("a", ["storescu", net.ip("b"), "11112", file])
        assert net.forward_dropped() > 0

Why a router: a drop in the sender's own OUTPUT chain never reaches the wire (TCP sees the
local error and resends at once), so loss that a mirror port can see needs a hop between
the peers that really forwards and really loses. Impairments go into the router's FORWARD
chain (or its nat/mangle tables), where they hit packets in flight like a bad link or a
middlebox does.

Addressing (IPv4 only): the modality side is 10.S.N.0/24 (a = .1, router = .254), the PACS
side 10.T.N.0/24 (b = .2, router = .254); a and b route everything through the router.
Offloads are off on every interface, so captured frames are Ethernet-sized.
"""

from __future__ import annotations

import os
import time

from netns import NetnsError, VethPair, _counter, _counter_lock, _sh, require_tools

ROUTED_SIDES = ("a", "r", "b")


class RoutedNet(VethPair):
    """``a`` (modality) and ``b`` (PACS) joined through ``r`` (a forwarding router)."""

    def __init__(self, *, mtu: int = 1500, offloads_off: bool = True) -> None:
        super().__init__(ipv6=False, mtu=mtu, offloads_off=offloads_off)
        with _counter_lock:
            n = next(_counter)
        pid = os.getpid()
        self.ns = {s: f"dsniff-{pid}-{n}-{s}" for s in ROUTED_SIDES}
        # a's end, the router's two ends, b's end.
        self._iface = {"a": "vetha", "b": "vethb", "ra": "vethra", "rb": "vethrb", "r": "vethra"}
        self.subnet4a = f"10.{150 + pid % 50}.{n % 250}"
        self.subnet4b = f"10.{200 + pid % 50}.{n % 250}"

    # -- addresses and names -------------------------------------------------------------
    def ip(self, side: str) -> str:
        if side == "a":
            return f"{self.subnet4a}.1"
        if side == "b":
            return f"{self.subnet4b}.2"
        raise ValueError("the router has two addresses: use router_ip('a'|'b')")

    def router_ip(self, toward: str) -> str:
        """The router's address on the link toward ``toward`` (a or b)."""
        return f"{self.subnet4a if toward == 'a' else self.subnet4b}.254"

    def router_iface(self, toward: str) -> str:
        """The router's interface on the link toward ``toward`` (capture there: one side)."""
        return self._iface["r" + toward]

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> RoutedNet:
        require_tools("ip", "ethtool", "tcpdump", "iptables")
        try:
            self._setup()
        except BaseException:
            self._teardown()
            raise
        return self

    def _setup(self) -> None:
        for s in ROUTED_SIDES:
            _sh(["ip", "netns", "add", self.ns[s]])
            self._created.append(self.ns[s])
        mtu = str(self.mtu)
        for end, r_end in (("a", "ra"), ("b", "rb")):
            _sh(
                ["ip", "link", "add", self._iface[end], "netns", self.ns[end], "mtu", mtu]
                + ["type", "veth", "peer", "name", self._iface[r_end]]
                + ["netns", self.ns["r"], "mtu", mtu]
            )
        self.run("r", ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        plan = (
            ("a", "a", f"{self.ip('a')}/24"),
            ("r", "ra", f"{self.router_ip('a')}/24"),
            ("r", "rb", f"{self.router_ip('b')}/24"),
            ("b", "b", f"{self.ip('b')}/24"),
        )
        for ns_side, key, addr in plan:
            dev = self._iface[key]
            self.run(ns_side, ["ip", "link", "set", "lo", "up"])
            if self.offloads_off:
                self._offloads_off(ns_side, dev, ("tso", "gso", "gro", "lro", "tx", "rx"))
            self.run(ns_side, ["ip", "link", "set", dev, "up"])
            self.run(ns_side, ["ip", "addr", "add", addr, "dev", dev])
        self.run("a", ["ip", "route", "add", "default", "via", self.router_ip("a")])
        self.run("b", ["ip", "route", "add", "default", "via", self.router_ip("b")])
        self._wait_link()

    def _wait_link(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        checks = (("a", "a"), ("r", "ra"), ("r", "rb"), ("b", "b"))
        while time.monotonic() < deadline:
            if all(
                "LOWER_UP" in self.run(s, ["ip", "-o", "link", "show", self._iface[k]]).stdout
                for s, k in checks
            ):
                return
            time.sleep(0.05)
        raise NetnsError("routed veth links did not come up")

    # -- impairments in the router -------------------------------------------------------
    def add_forward_drop(
        self, probability: float, *, min_length: int | None = None, source: str | None = None
    ) -> None:
        """Drop forwarded TCP packets at random (``source``: only those from a or b;
        ``min_length``: only IP packets at least that long, e.g. 100 = data segments only)."""
        rule = ["-p", "tcp"]
        if source:
            rule += ["-s", self.ip(source)]
        if min_length:
            rule += ["-m", "length", "--length", f"{min_length}:65535"]
        rule += ["-m", "statistic", "--mode", "random", "--probability", f"{probability}"]
        self.run("r", ["iptables", "-w", "-A", "FORWARD", *rule, "-j", "DROP"])

    def add_forward_drop_every(
        self, every: int, *, min_length: int | None = None, source: str | None = None
    ) -> None:
        """Drop every ``every``-th forwarded TCP packet that matches (``source``, ``min_length``
        as for ``add_forward_drop``): a share of the packets, the same share every run."""
        rule = ["-p", "tcp"]
        if source:
            rule += ["-s", self.ip(source)]
        if min_length:
            rule += ["-m", "length", "--length", f"{min_length}:65535"]
        rule += ["-m", "statistic", "--mode", "nth", "--every", str(every), "--packet", "0"]
        self.run("r", ["iptables", "-w", "-A", "FORWARD", *rule, "-j", "DROP"])

    def forward_dropped(self) -> int:
        """Packets the router's FORWARD DROP rules have dropped so far."""
        return self.dropped_packets("r", chain="FORWARD")

    # -- middleboxes in the router (NAT, MSS clamping, reset injection) -------------------
    def add_masquerade(self, toward: str = "b") -> None:
        """NAT: connections forwarded toward ``toward`` leave with the router's address on
        that link (MASQUERADE in nat POSTROUTING), so the two sides see other addresses."""
        out = self.router_iface(toward)
        self.run("r", ["iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", out]
                 + ["-p", "tcp", "-j", "MASQUERADE"])  # fmt: skip

    def masqueraded(self) -> int:
        """Connections the MASQUERADE rule translated (nat rules see each one's first packet)."""
        return self.rule_packets("MASQUERADE", table="nat", chain="POSTROUTING")

    def add_mss_clamp(self, mss: int) -> None:
        """Rewrite the MSS option of every forwarded SYN (and SYN-ACK) to ``mss`` (mangle
        FORWARD TCPMSS --set-mss), as a VPN gateway or PPPoE router does."""
        self.run("r", ["iptables", "-w", "-t", "mangle", "-A", "FORWARD", "-p", "tcp"]
                 + ["--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--set-mss", str(mss)])  # fmt: skip

    def mss_clamped(self) -> int:
        """SYNs whose MSS the TCPMSS rule rewrote (packets it matched)."""
        return self.rule_packets("TCPMSS", table="mangle", chain="FORWARD")

    def add_option_strip(self, options: str = "wscale,sack-permitted") -> None:
        """Strip TCP options (iptables names, e.g. ``wscale,sack-permitted``) from every
        forwarded SYN (mangle FORWARD TCPOPTSTRIP: they become NOPs), as an old firewall
        does. Only the opening SYN: a server then offers neither in its SYN-ACK, so each
        stripped packet is one SYN whose options really changed."""
        flags = ["--tcp-flags", "SYN,ACK", "SYN"]
        self.run("r", ["iptables", "-w", "-t", "mangle", "-A", "FORWARD", "-p", "tcp", *flags]
                 + ["-j", "TCPOPTSTRIP", "--strip-options", options])  # fmt: skip

    def options_stripped(self) -> int:
        """SYNs the TCPOPTSTRIP rule rewrote (packets it matched)."""
        return self.rule_packets("TCPOPTSTRIP", table="mangle", chain="FORWARD")

    def add_reset_injection(self, string: str, *, source: str = "a") -> None:
        """The router refuses the first forwarded segment from ``source`` whose payload
        contains ``string``: it drops the segment and sends the sender a TCP reset in the
        peer's name (FORWARD REJECT --reject-with tcp-reset), as an IPS does."""
        rule = ["-p", "tcp", "-s", self.ip(source), "-m", "string", "--algo", "bm"]
        rule += ["--string", string, "-j", "REJECT", "--reject-with", "tcp-reset"]
        self.run("r", ["iptables", "-w", "-I", "FORWARD", "1", *rule])

    def resets_injected(self) -> int:
        """Segments the REJECT rule refused (each answered by one injected reset)."""
        return self.rule_packets("REJECT", table="filter", chain="FORWARD")

    def forward_dropped_from(self, source: str) -> int:
        """Packets from ``source`` (a or b) that the FORWARD DROP rules dropped (rules added
        with ``add_forward_drop(..., source=...)``)."""
        return self.rule_packets("DROP", table="filter", chain="FORWARD", source=source)

    def rule_packets(
        self, target: str, *, table: str, chain: str, source: str | None = None
    ) -> int:
        """Packets matched so far by the router's ``target`` rules in ``table``/``chain``
        (``source``: only the rules limited to packets from that side's address)."""
        out = self.run("r", ["iptables", "-w", "-t", table, "-L", chain, "-v", "-x", "-n"])
        total = 0
        for line in out.stdout.splitlines():
            # pkts bytes target prot opt in out source destination [match...]
            f = line.split()
            mine = len(f) > 7 and f[2] == target and f[0].isdigit()
            if mine and (source is None or f[7] == self.ip(source)):
                total += int(f[0])
        return total

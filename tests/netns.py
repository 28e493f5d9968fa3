"""Two network namespaces joined by a veth pair, for real-traffic tests (needs root).

    with VethPair() as net:                 # namespaces "a" (client side) and "b" (server side)
        scp = net.popen("b", ["storescp", ...])
        net.wait_listening("b", 11112)
        with net.capture("a", pcap_path):   # tcpdump on veth "a", really listening on entry
            net.run("a", ["storescu", net.ip("b"), "11112", file])

Everything is undone on exit, also when the body raises: processes started through the
pair are ended by their pid, then both namespaces are deleted (which deletes the veth).

Names are unique per process and per use (pid + counter), so parallel test runs and
parallel scenarios never collide. The veth ends are created directly inside their
namespaces, so the interface names never touch the root namespace.

Offloads (TSO/GSO/GRO/LRO, checksum offload) are switched off on both ends: frames on the
wire are then real Ethernet-sized frames (<= 1514 bytes, 1518 with an 802.1Q tag), as a
mirror port delivers them, not 64 KiB super-packets.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

_counter = itertools.count()
_counter_lock = threading.Lock()

SIDES = ("a", "b")


class NetnsError(RuntimeError):
    pass


def require_tools(*names: str) -> None:
    """A missing tool is a failure, never a skip."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise NetnsError(f"required tool(s) not found on PATH: {', '.join(missing)}")


def _sh(
    argv: Sequence[str], *, check: bool = True, timeout: float = 30.0
) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise NetnsError(f"command failed ({p.returncode}): {' '.join(argv)}\n{p.stdout}{p.stderr}")
    return p


def vlan_supported() -> bool:
    """True when the running kernel can create 802.1Q interfaces (CONFIG_VLAN_8021Q)."""
    with VethPair(ipv6=False, offloads_off=False) as probe:
        p = probe.run(
            "a",
            [
                "ip",
                "link",
                "add",
                "link",
                probe.iface("a"),
                "name",
                "vprobe.7",
                "type",
                "vlan",
                "id",
                "7",
            ],
            check=False,
        )
        return p.returncode == 0


@dataclass
class Capture:
    """A running tcpdump. ``stop()`` ends it with SIGINT and reports its packet counters."""

    proc: subprocess.Popen
    path: str
    stderr_lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None
    _listening: threading.Event = field(default_factory=threading.Event)
    captured: int | None = None
    dropped_by_kernel: int | None = None

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))
            if "listening on" in line:
                self._listening.set()
        self._listening.set()  # EOF: stop waiting either way

    def start(self, timeout: float = 10.0) -> None:
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._listening.wait(timeout) or self.proc.poll() is not None:
            self.proc.kill()
            raise NetnsError("tcpdump did not start listening:\n" + "\n".join(self.stderr_lines))
        # "listening on" is printed once the handle is active; give the ring a moment.
        time.sleep(0.05)

    def stop(self, settle: float = 0.2) -> None:
        if self.proc.poll() is None:
            time.sleep(settle)  # let the last frames (FIN/ACK) reach the ring
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        text = "\n".join(self.stderr_lines)
        m = re.search(r"(\d+) packets? captured", text)
        self.captured = int(m.group(1)) if m else None
        m = re.search(r"(\d+) packets? dropped by kernel", text)
        self.dropped_by_kernel = int(m.group(1)) if m else None
        if self.captured is None:
            raise NetnsError("tcpdump did not report its counters:\n" + text)


class VethPair:
    """Namespaces ``a`` and ``b`` joined by a veth pair (a = .1 / ::1, b = .2 / ::2).

    ``vlan``: when set, an 802.1Q subinterface ``<veth>.<vlan>`` is created on both ends and
    carries the addresses, so frames on the parent veth are tagged (capture on ``iface()``,
    the parent, to see the tags). Raises NetnsError when the kernel lacks 802.1Q support.
    """

    def __init__(
        self,
        *,
        ipv6: bool = True,
        vlan: int | None = None,
        mtu: int = 1500,
        offloads_off: bool = True,
    ) -> None:
        with _counter_lock:
            n = next(_counter)
        pid = os.getpid()
        self.tag = f"{pid}-{n}"
        self.ns = {s: f"dsniff-{pid}-{n}-{s}" for s in SIDES}
        self._iface = {"a": "vetha", "b": "vethb"}
        self.vlan = vlan
        self.mtu = mtu
        self.ipv6 = ipv6
        self.offloads_off = offloads_off
        # 10.x.y.0/24: unique per use (only matters for readability: each pair is isolated).
        self.subnet4 = f"10.{100 + pid % 100}.{n % 250}"
        self.subnet6 = "fd00:"
        self._procs: list[subprocess.Popen] = []
        self._created: list[str] = []

    # -- addresses and names -------------------------------------------------------------
    def ip(self, side: str) -> str:
        return f"{self.subnet4}.{1 if side == 'a' else 2}"

    def ip6(self, side: str) -> str:
        return f"fd00::{1 if side == 'a' else 2}"

    def iface(self, side: str) -> str:
        """The veth end (the parent when a VLAN is configured: tagged frames are seen here)."""
        return self._iface[side]

    def l3_iface(self, side: str) -> str:
        """The interface that carries the addresses (the VLAN subinterface if any)."""
        return f"{self._iface[side]}.{self.vlan}" if self.vlan else self._iface[side]

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> VethPair:
        require_tools("ip", "ethtool", "tcpdump", "iptables")
        try:
            self._setup()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._teardown()

    def _setup(self) -> None:
        for s in SIDES:
            _sh(["ip", "netns", "add", self.ns[s]])
            self._created.append(self.ns[s])
        a, b = self._iface["a"], self._iface["b"]
        _sh(
            [
                "ip",
                "link",
                "add",
                a,
                "netns",
                self.ns["a"],
                "mtu",
                str(self.mtu),
                "type",
                "veth",
                "peer",
                "name",
                b,
                "netns",
                self.ns["b"],
                "mtu",
                str(self.mtu),
            ]
        )
        for s in SIDES:
            dev = self._iface[s]
            self.run(s, ["ip", "link", "set", "lo", "up"])
            if self.offloads_off:
                self._offloads_off(s, dev, ("tso", "gso", "gro", "lro", "tx", "rx"))
                self._verify_offloads(s)
            if self.ipv6:
                self.run(s, ["sysctl", "-qw", f"net.ipv6.conf.{dev}.accept_dad=0"], check=False)
            self.run(s, ["ip", "link", "set", dev, "up"])
            if self.vlan:
                sub = self.l3_iface(s)
                p = self.run(
                    s,
                    [
                        "ip",
                        "link",
                        "add",
                        "link",
                        dev,
                        "name",
                        sub,
                        "mtu",
                        str(self.mtu),
                        "type",
                        "vlan",
                        "id",
                        str(self.vlan),
                    ],
                    check=False,
                )
                if p.returncode != 0:
                    raise NetnsError(
                        f"cannot create 802.1Q interface (kernel without CONFIG_VLAN_8021Q?): "
                        f"{p.stderr.strip()}"
                    )
                if self.offloads_off:
                    self._offloads_off(s, sub, ("tso", "gso", "gro", "tx", "rx"))
                self.run(s, ["ip", "link", "set", sub, "up"])
            l3 = self.l3_iface(s)
            self.run(s, ["ip", "addr", "add", f"{self.ip(s)}/24", "dev", l3])
            if self.ipv6:
                self.run(s, ["ip", "-6", "addr", "add", f"{self.ip6(s)}/64", "dev", l3, "nodad"])
        self._wait_link()

    def _offloads_off(self, side: str, dev: str, features: Sequence[str]) -> None:
        """ethtool -K dev <feature> off ...: the capture sees the frames the wire carries."""
        argv = ["ethtool", "-K", dev]
        for feature in features:
            argv += [feature, "off"]
        self.run(side, argv, check=False)

    def _verify_offloads(self, side: str) -> None:
        out = self.run(side, ["ethtool", "-k", self._iface[side]]).stdout
        for feat in (
            "tcp-segmentation-offload",
            "generic-segmentation-offload",
            "generic-receive-offload",
            "large-receive-offload",
        ):
            m = re.search(rf"^{feat}: (\w+)", out, re.M)
            if m and m.group(1) != "off":
                raise NetnsError(f"{feat} still {m.group(1)} on {self._iface[side]} ({side})")

    def _wait_link(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = True
            for s in SIDES:
                out = self.run(s, ["ip", "-o", "link", "show", self.l3_iface(s)]).stdout
                if "LOWER_UP" not in out or ("state UP" not in out and "state UNKNOWN" not in out):
                    ok = False
                if self.ipv6:
                    out6 = self.run(
                        s, ["ip", "-6", "-o", "addr", "show", "dev", self.l3_iface(s)]
                    ).stdout
                    if "tentative" in out6 or self.ip6(s) not in out6:
                        ok = False
            if ok:
                return
            time.sleep(0.05)
        raise NetnsError("veth pair did not come up")

    def _teardown(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        for p in self._procs:
            if p.poll() is None:
                try:
                    p.wait(3)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.wait(3)
        # Anything still inside our (uniquely named) namespaces was started by us.
        for ns in self._created:
            pids = _sh(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for ns in reversed(self._created):
            _sh(["ip", "netns", "del", ns], check=False)
        self._created.clear()

    # -- running things ------------------------------------------------------------------
    def _argv(self, side: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[side], *map(str, argv)]

    def popen(self, side: str, argv: Sequence[str], **kw) -> subprocess.Popen:
        """Start ``argv`` inside namespace ``side`` (ended on exit if still running)."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.STDOUT)
        kw.setdefault("text", True)
        p = subprocess.Popen(self._argv(side, argv), **kw)
        self._procs.append(p)
        return p

    def run(
        self, side: str, argv: Sequence[str], *, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess:
        return _sh(self._argv(side, argv), check=check, timeout=timeout)

    def wait_listening(
        self, side: str, port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None
    ) -> None:
        """Wait until something listens on TCP ``port`` in namespace ``side``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.run(side, ["ss", "-Hltn", f"sport = :{port}"]).stdout
            if out.strip():
                return
            if proc is not None and proc.poll() is not None:
                raise NetnsError(
                    f"server exited ({proc.returncode}) before listening on {port}:\n"
                    f"{proc.stdout.read() if proc.stdout else ''}"
                )
            time.sleep(0.05)
        raise NetnsError(f"nothing listening on port {port} in {self.ns[side]}")

    # -- capture -------------------------------------------------------------------------
    def start_capture(
        self,
        side: str,
        path: str,
        *,
        iface: str | None = None,
        bpf: str | None = None,
        options: Sequence[str] = (),
        snaplen: int = 0,
    ) -> Capture:
        """tcpdump on ``iface`` (default: this side's veth), ``options`` (``-y LINUX_SLL``...)
        before the ``bpf`` filter; stop with ``.stop()``."""
        argv = [
            "tcpdump",
            "-i",
            iface or self.iface(side),
            "-w",
            path,
            "-U",
            "-s",
            str(snaplen),
            "-n",
            "-B",
            "16384",
            "-Z",
            "root",
            "--immediate-mode",
            *options,
        ]
        if bpf:
            argv += bpf.split()
        proc = self.popen(side, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        cap = Capture(proc, path)
        cap.start()
        return cap

    @contextlib.contextmanager
    def capture(self, side: str, path: str, **kw) -> Iterator[Capture]:
        cap = self.start_capture(side, path, **kw)
        try:
            yield cap
        finally:
            cap.stop()
        if cap.dropped_by_kernel:
            raise NetnsError(f"tcpdump dropped {cap.dropped_by_kernel} packets: capture unusable")
        if not cap.captured:
            raise NetnsError(f"tcpdump captured nothing on {kw.get('iface') or self.iface(side)}")

    # -- impairments ---------------------------------------------------------------------
    def add_random_drop(
        self,
        side: str,
        probability: float,
        *,
        chain: str = "INPUT",
        min_length: int | None = None,
        ipv6: bool = False,
    ) -> list[str]:
        """Drop packets entering (INPUT) or leaving (OUTPUT) ``side`` at random.

        ``min_length``: only drop IP packets at least that long (e.g. 100: data segments
        only, never a bare ACK or SYN). Returns the rule (for ``dropped_packets``)."""
        tool = "ip6tables" if ipv6 else "iptables"
        rule = ["-p", "tcp"]
        if min_length:
            rule += ["-m", "length", "--length", f"{min_length}:65535"]
        rule += [
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            f"{probability}",
            "-j",
            "DROP",
        ]
        self.run(side, [tool, "-w", "-A", chain, *rule])
        return [tool, chain]

    def dropped_packets(self, side: str, *, chain: str = "INPUT", ipv6: bool = False) -> int:
        """Packets dropped by the DROP rules of ``chain`` in namespace ``side``."""
        tool = "ip6tables" if ipv6 else "iptables"
        out = self.run(side, [tool, "-w", "-L", chain, "-v", "-x", "-n"]).stdout
        total = 0
        for line in out.splitlines():
            f = line.split()
            if len(f) > 2 and f[2] == "DROP" and f[0].isdigit():
                total += int(f[0])
        return total

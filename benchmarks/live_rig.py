"""The live replay rig shared by tests/test_replay.py and benchmarks/live_*.py (needs root).

    with ReplayRig(workers=1) as rig:            # veth pair between two namespaces
        rig.replay(pcap, mbps=1000, loops=40)    # tcpreplay in "a" onto veth a
        text = rig.scrape()                      # the daemon's /metrics (in "b")

Namespace "a" holds tcpreplay, which sends the capture out of veth "a"; namespace "b"
holds `dicomsniffd run -i <veth b>`, which sees the frames arrive on the other end, as on
a mirror port (the frames carry the capture's MAC and IP addresses, so the stack of "b"
drops them as not its own after the capture taps have seen them: nothing answers).
Offloads are off on both ends (tests/netns.py). Nothing leaves the two namespaces.

The daemon's HTTP endpoint listens on the loopback of "b". ``ns_http_get`` reaches it from
this process without a subprocess: a short-lived thread joins the namespace (``setns``
changes only the calling thread's namespace) and opens its socket there.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))
import netns  # noqa: E402  (tests/netns.py)

CLONE_NEWNET = 0x40000000
METRICS_PORT = 9104

# ---------------------------------------------------------------------------------------
# HTTP inside a namespace
# ---------------------------------------------------------------------------------------


def in_netns(ns: str, fn, *args, **kw):
    """Run ``fn(*args)`` in a fresh thread that has joined network namespace ``ns``."""
    box: dict[str, object] = {}

    def body() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        with open(f"/var/run/netns/{ns}") as f:
            if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                box["exc"] = OSError(ctypes.get_errno(), f"setns({ns}) failed")
                return
        try:
            box["value"] = fn(*args, **kw)
        except BaseException as exc:  # handed to the caller
            box["exc"] = exc

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join()
    if "exc" in box:
        raise box["exc"]  # type: ignore[misc]
    return box.get("value")


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        return 0, str(exc).encode()


def ns_http_get(ns: str, url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    return in_netns(ns, _get, url, timeout)


# ---------------------------------------------------------------------------------------
# Metrics text
# ---------------------------------------------------------------------------------------

_LINE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric(text: str, name: str, **labels: str) -> float | None:
    """Sum of the samples of ``name`` whose labels include ``labels`` (None: no sample)."""
    total = None
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = _LINE.match(line)
        if not m or m.group(1) != name:
            continue
        have = dict(_LABEL.findall(m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total = (total or 0.0) + float(m.group(4))
    return total


@dataclass
class Counts:
    associations: float
    released: float
    stores: float
    stores_ok: float
    kernel_drops: float
    interface_drops: float
    packets: float
    protocol_errors: float

    @classmethod
    def of(cls, text: str) -> Counts:
        def m(name: str, **labels: str) -> float:
            return metric(text, name, **labels) or 0.0

        return cls(
            associations=m("dicom_association_requests_total"),
            released=m("dicom_association_ends_total", how="released"),
            stores=m("dicom_dimse_responses_total", command="C-STORE"),
            stores_ok=m("dicom_dimse_responses_total", command="C-STORE", status="0x0000"),
            kernel_drops=m("dicomsniffd_capture_dropped_packets_total", where="kernel"),
            interface_drops=m("dicomsniffd_capture_dropped_packets_total", where="interface"),
            packets=m("dicomsniffd_packets_total"),
            protocol_errors=m("dicom_protocol_errors_total"),
        )


# ---------------------------------------------------------------------------------------
# Process helpers
# ---------------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / RssAnon / RssFile / RssShmem of a process, in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
    return out


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------
# Captures
# ---------------------------------------------------------------------------------------


def make_cstore_capture(path: str, associations: int, images: int, size: int = 512) -> dict:
    """A real C-STORE capture between namespaces (benchmarks/make_capture.py)."""
    import make_capture

    return make_capture.make_capture(path, associations, images, size, parallel=2)


def pcap_wire_bytes(path: str) -> tuple[int, int]:
    """(packets, frame bytes) of a classic pcap file: what tcpreplay --mbps paces on."""
    import struct

    packets = total = 0
    with open(path, "rb") as f:
        head = f.read(24)
        endian = "<" if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        rec = struct.Struct(endian + "IIII")
        while True:
            h = f.read(16)
            if len(h) < 16:
                break
            _, _, incl, orig = rec.unpack(h)
            f.seek(incl, 1)
            packets += 1
            total += orig
    return packets, total


def loops_for(path: str, mbps: float, seconds: float) -> int:
    """Loops of ``path`` that last at least ``seconds`` at ``mbps``."""
    _, wire = pcap_wire_bytes(path)
    return max(1, math.ceil(seconds * mbps * 1e6 / 8 / wire))


# ---------------------------------------------------------------------------------------
# The rig
# ---------------------------------------------------------------------------------------

CONFIG = """\
capture:
  interface: {iface}
  workers: {workers}
{capture_extra}metrics:
  listen: "127.0.0.1:{port}"
logging:
  level: info
"""


@dataclass
class ReplayResult:
    packets: int
    bytes: int
    seconds: float
    mbps: float
    failed: int
    returncode: int
    output: str


_ACTUAL = re.compile(r"Actual: (\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds")
_RATED = re.compile(r"Rated: [\d.]+ Bps, ([\d.]+) Mbps")
_FAILED = re.compile(r"Failed packets:\s+(\d+)")


class ReplayRig:
    """Veth pair + dicomsniffd on veth "b"; ``replay()`` sends a capture from veth "a"."""

    def __init__(
        self,
        workers: int = 1,
        capture: dict | None = None,
        workdir: str | None = None,
        nice: int = 0,
    ) -> None:
        self.workers = workers
        self.nice = nice
        self.capture = capture or {}
        self.workdir = workdir or tempfile.mkdtemp(prefix="dsniff-replay-")
        os.chmod(self.workdir, 0o755)
        self.net: netns.VethPair | None = None
        self.proc: subprocess.Popen | None = None
        self._log = None

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> ReplayRig:
        self.net = netns.VethPair(ipv6=False)
        self.net.__enter__()
        try:
            self._start_daemon()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop_daemon()
        finally:
            if self.net is not None:
                self.net.__exit__(None, None, None)
                self.net = None

    @property
    def ns_b(self) -> str:
        assert self.net is not None
        return self.net.ns["b"]

    def config_text(self) -> str:
        assert self.net is not None
        extra = "".join(f"  {k}: {v}\n" for k, v in self.capture.items())
        return CONFIG.format(
            iface=self.net.iface("b"), workers=self.workers, capture_extra=extra, port=METRICS_PORT
        )

    def _start_daemon(self) -> None:
        assert self.net is not None
        cfg = os.path.join(self.workdir, "dicomsniffd.yaml")
        with open(cfg, "w") as f:
            f.write(self.config_text())
        os.chmod(cfg, 0o644)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("NOTIFY_SOCKET", None)
        self.log_path = os.path.join(self.workdir, "daemon.log")
        self._log = open(self.log_path, "w")  # noqa: SIM115
        # `ip netns exec` execs the interpreter: self.proc.pid is the daemon's own pid.
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns_b, *self._nice(), sys.executable, "-m",
             "dicomsniffd", "run", "-c", cfg],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            if self.get("/healthz", 2)[0] == 200 and "capturing on" in self.log():
                time.sleep(0.3)  # the ring is live; let the first block timer pass
                return
            time.sleep(0.2)
        raise RuntimeError(f"daemon not healthy:\n{self.log()}")

    def stop_daemon(self) -> int | None:
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None
        return code

    def _nice(self) -> list[str]:
        """`nice` execs its command, so the daemon's pid stays the interpreter's."""
        return ["nice", "-n", str(self.nice)] if self.nice else []

    # -- daemon --------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        """The daemon and its worker processes (workers > 1)."""
        return [self.pid, *children(self.pid)]

    def log(self) -> str:
        return Path(self.log_path).read_text()

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        return ns_http_get(self.ns_b, f"http://127.0.0.1:{METRICS_PORT}{path}", timeout)

    def scrape(self) -> str:
        code, body = self.get("/metrics")
        if code != 200:
            raise RuntimeError(f"/metrics answered {code}: {body[:500]!r}")
        return body.decode()

    def wait_counts(self, done, timeout: float = 30.0) -> Counts:
        """Scrape until ``done(Counts)`` holds or the timeout passes; the last Counts."""
        deadline = time.monotonic() + timeout
        while True:
            counts = Counts.of(self.scrape())
            if done(counts) or time.monotonic() > deadline:
                return counts
            time.sleep(0.5)

    def settle(self, timeout: float = 30.0, quiet_s: float = 2.5) -> Counts:
        """Scrape until the packet counter has stopped moving for ``quiet_s``."""
        deadline = time.monotonic() + timeout
        last = Counts.of(self.scrape())
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = Counts.of(self.scrape())
            if now.packets != last.packets:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return now
        return last

    # -- traffic -------------------------------------------------------------------------
    def replay_argv(
        self, pcap: str, mbps: float | None, loops: int, unique_ip: bool = True
    ) -> list[str]:
        assert self.net is not None
        argv = ["tcpreplay", "-i", self.net.iface("a"), "-K", "--no-flow-stats", "--timer=nano"]
        argv += [f"--mbps={mbps:g}"] if mbps else ["--topspeed"]
        if loops > 1:
            argv += [f"--loop={loops}"]
            if unique_ip:
                argv += ["--unique-ip"]
        return [*self._nice(), *argv, pcap]

    def start_replay(
        self, pcap: str, mbps: float | None, loops: int, unique_ip: bool = True
    ) -> subprocess.Popen:
        assert self.net is not None
        return self.net.popen("a", self.replay_argv(pcap, mbps, loops, unique_ip))

    @staticmethod
    def replay_result(proc: subprocess.Popen, timeout: float | None = None) -> ReplayResult:
        out, _ = proc.communicate(timeout=timeout)
        return parse_replay(out or "", proc.returncode)

    def replay(
        self, pcap: str, mbps: float | None, loops: int, unique_ip: bool = True
    ) -> ReplayResult:
        return self.replay_result(self.start_replay(pcap, mbps, loops, unique_ip))


def parse_replay(out: str, returncode: int) -> ReplayResult:
    m = _ACTUAL.search(out)
    r = _RATED.search(out)
    f = _FAILED.search(out)
    if not m:
        raise RuntimeError(f"tcpreplay failed ({returncode}):\n{out}")
    return ReplayResult(
        packets=int(m.group(1)), bytes=int(m.group(2)), seconds=float(m.group(3)),
        mbps=float(r.group(1)) if r else 0.0, failed=int(f.group(1)) if f else 0,
        returncode=returncode, output=out,
    )  # fmt: skip


@contextlib.contextmanager
def sampled(pid: int, every_s: float, sink: list):
    """Append (t, proc_status) of ``pid`` to ``sink`` every ``every_s`` while the body runs."""
    stop = threading.Event()
    t0 = time.monotonic()

    def run() -> None:
        while True:
            with contextlib.suppress(OSError):
                sink.append((round(time.monotonic() - t0, 1), proc_status(pid)))
            if stop.wait(every_s):
                return

    th = threading.Thread(target=run, daemon=True)
    th.start()
    try:
        yield sink
    finally:
        stop.set()
        th.join()

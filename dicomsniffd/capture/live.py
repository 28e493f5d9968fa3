"""Live capture: one pcapy-ng handle on an interface, read in batches.

The handle is put in non-blocking mode and the daemon waits on its file descriptor with
``select`` itself. With TPACKET_V3 (libpcap's default on Linux) a blocking read on a quiet
interface never returns: the kernel's block timer only wakes a reader when a block holds
packets, so the read timeout alone cannot drive heartbeats, idle expiry or a clean stop.

Errors are one plain-words line (``errors.LiveCaptureError``, a ``CaptureError``) that says
what is wrong and, where there is one, what to do about it. Batches come as the same
``records.BatchRecords`` as from files.
"""

from __future__ import annotations

import logging
import os
import select
import socket
from collections.abc import Iterator
from typing import Any

import pcapy

from dicomsniffd.capture.errors import BpfError, LiveCaptureError
from dicomsniffd.capture.records import BatchRecords
from dicomsniffd.config import DEFAULT_BPF

log = logging.getLogger("dicomsniffd.live")

# linux/if_packet.h: the defrag flag reassembles IP fragments before hashing, so every
# fragment of a datagram lands on the same worker as its flow.
PACKET_FANOUT_HASH = getattr(pcapy, "PACKET_FANOUT_HASH", 0)
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
IMMEDIATE_TIMEOUT_MS = 1  # stand-in for immediate mode when the binding lacks it

# libpcap status codes returned by pcap_activate (pcap/pcap.h)
_PCAP_ERROR_NO_SUCH_DEVICE = -5
_PCAP_ERROR_PERM_DENIED = -8
_PCAP_ERROR_IFACE_NOT_UP = -9
_PCAP_ERROR_PROMISC_PERM_DENIED = -11

PRIVILEGE_FIX = (
    "run as root or grant CAP_NET_RAW and CAP_NET_ADMIN "
    "(e.g. `setcap cap_net_raw,cap_net_admin+eip $(readlink -f $(which python3))`, "
    "or AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN in the systemd unit)"
)


def interface_exists(name: str) -> bool:
    if name == "any":
        return True
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def _libpcap_message(interface: str) -> str:
    """libpcap's own text for a failed open (pcapy's activate() only returns a code)."""
    try:
        pcapy.open_live(interface, 68, 0, 0)
    except pcapy.PcapError as exc:
        return str(exc)
    return "unknown error"


def describe_open_error(interface: str, status: int) -> str:
    """One line that names the interface and, for a missing privilege, the fix."""
    if status == _PCAP_ERROR_NO_SUCH_DEVICE or not interface_exists(interface):
        return f"capture interface {interface!r} not found (see `ip link` for the names)"
    if status in (_PCAP_ERROR_PERM_DENIED, _PCAP_ERROR_PROMISC_PERM_DENIED):
        return f"no permission to capture on {interface!r}: {PRIVILEGE_FIX}"
    if status == _PCAP_ERROR_IFACE_NOT_UP:
        return f"capture interface {interface!r} is down (`ip link set {interface} up`)"
    message = _libpcap_message(interface)
    if "permission" in message.lower():
        return f"no permission to capture on {interface!r}: {PRIVILEGE_FIX}"
    return f"cannot capture on {interface!r}: {message}"


_COOKED_LINKTYPES = (113, 276)  # Linux SLL and SLL2: what the "any" pseudo-interface gives


def filter_for_link(bpf: str, linktype: int) -> str:
    """The default filter as this link type can take it.

    libpcap has no ``vlan`` keyword for Linux cooked captures (the "any" pseudo-interface,
    the embedded default): compiling the default filter there fails. On "any" the kernel
    hands over frames with the 802.1Q tag already moved into packet metadata, so the
    default's plain ``tcp`` branch matches tagged and untagged traffic alike. A filter
    the user wrote is never rewritten.
    """
    if linktype in _COOKED_LINKTYPES and bpf == DEFAULT_BPF:
        return "tcp"
    return bpf


class LiveSource:
    """A live capture handle: BPF, snaplen, kernel buffer, optional PACKET_FANOUT group."""

    def __init__(
        self,
        interface: str,
        bpf: str,
        snaplen: int = 65535,
        promiscuous: bool = True,
        buffer_size_mb: int = 64,
        timeout_ms: int = 100,
        immediate: bool = False,
        fanout_group: int | None = None,
    ) -> None:
        self.interface = interface
        self.timeout_ms = timeout_ms
        if not interface_exists(interface):
            raise LiveCaptureError(describe_open_error(interface, _PCAP_ERROR_NO_SUCH_DEVICE))
        self._handle = self._open(snaplen, promiscuous, buffer_size_mb, timeout_ms, immediate)
        self.linktype: int = self._handle.datalink()
        self.set_filter(bpf)
        if fanout_group is not None:
            self._join_fanout(fanout_group)
        # Non-blocking + our own select(): see the module doc string.
        self._handle.setnonblock(1)
        self._fd: int = self._handle.getfd()
        self.closed = False

    def _open(
        self, snaplen: int, promiscuous: bool, buffer_mb: int, timeout_ms: int, immediate: bool
    ) -> Any:
        try:
            handle = pcapy.create(self.interface)
        except pcapy.PcapError as exc:
            raise LiveCaptureError(f"cannot capture on {self.interface!r}: {exc}") from None
        handle.set_snaplen(snaplen)
        handle.set_promisc(1 if promiscuous else 0)
        handle.set_buffer_size(buffer_mb * 1_048_576)
        handle.set_timeout(self._timeout(timeout_ms, immediate, handle))
        status = handle.activate()
        # pcapy's activate() returns libpcap's status instead of raising; > 0 are warnings.
        if status is not None and status < 0:
            raise LiveCaptureError(describe_open_error(self.interface, status))
        if status:
            log.warning("capture on %s opened with libpcap warning %d", self.interface, status)
        return handle

    @staticmethod
    def _timeout(timeout_ms: int, immediate: bool, handle: Any) -> int:
        if not immediate:
            return timeout_ms
        set_immediate = getattr(handle, "set_immediate_mode", None)
        if set_immediate is not None:
            set_immediate(1)
            return timeout_ms
        # With TPACKET_V3 the read timeout is the block retire timer: 1 ms is as close to
        # per-packet delivery as this binding allows.
        log.info("pcapy-ng has no immediate mode; using a %d ms read timeout", IMMEDIATE_TIMEOUT_MS)
        return IMMEDIATE_TIMEOUT_MS

    def set_filter(self, bpf: str) -> None:
        """Compile and install a BPF filter (also on a running handle, for SIGHUP)."""
        bpf = filter_for_link(bpf, self.linktype)
        try:
            self._handle.setfilter(bpf)
        except pcapy.PcapError as exc:
            raise BpfError(f"invalid BPF filter {bpf!r}: {exc}") from None

    def _join_fanout(self, group: int) -> None:
        try:
            self._handle.set_fanout(group & 0xFFFF, PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG)
        except (pcapy.PcapError, OSError) as exc:
            raise LiveCaptureError(
                f"cannot join PACKET_FANOUT group {group} on {self.interface!r}: {exc}"
            ) from None

    def fileno(self) -> int:
        return self._fd

    def read(
        self, max_n: int, wait_s: float, wake_fd: int | None = None
    ) -> tuple[bytes, BatchRecords]:
        """One batch; when nothing is pending, wait up to ``wait_s`` for the socket first.

        An empty batch means nothing arrived in time (the caller's idle tick), or that
        ``wake_fd`` became readable: someone (a scrape) wants the loop's attention now.
        """
        packet_bytes, meta = self._next(max_n)
        if meta:
            return packet_bytes, BatchRecords(meta)
        fds = [self._fd] if wake_fd is None else [self._fd, wake_fd]
        try:
            ready, _, _ = select.select(fds, [], [], wait_s)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            ready = []
        if self._fd not in ready:
            return b"", BatchRecords(b"")
        packet_bytes, meta = self._next(max_n)
        return packet_bytes, BatchRecords(meta)

    def _next(self, max_n: int) -> tuple[bytes, bytes]:
        try:
            return self._handle.next_batch(max_n)
        except pcapy.PcapError as exc:
            raise LiveCaptureError(f"capture on {self.interface!r} failed: {exc}") from None

    def batches(
        self, max_n: int = 512, wait_s: float | None = None
    ) -> Iterator[tuple[bytes, BatchRecords]]:
        """Endless batches, empty ones on timeout; stops once ``close()`` was called."""
        wait = self.timeout_ms / 1000 if wait_s is None else wait_s
        while not self.closed:
            yield self.read(max_n, wait)

    def stats(self) -> dict[str, int]:
        """Cumulative drops since open: kernel (ps_drop) and interface (ps_ifdrop)."""
        try:
            received, dropped, ifdropped = self._handle.stats()[:3]
        except pcapy.PcapError:
            return {"kernel": 0, "interface": 0, "received": 0}
        return {"kernel": int(dropped), "interface": int(ifdropped), "received": int(received)}

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._handle.close()

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_fanout_group() -> int:
    """A group id unique to this daemon instance (groups are per network namespace)."""
    return os.getpid() & 0xFFFF

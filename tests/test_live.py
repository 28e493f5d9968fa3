"""LiveSource: the live capture handle, on loopback (needs root or CAP_NET_RAW)."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from dicomsniffd.capture import BpfError, CaptureError, LiveCaptureError
from dicomsniffd.capture.live import (
    PACKET_FANOUT_FLAG_DEFRAG,
    PACKET_FANOUT_HASH,
    LiveSource,
    filter_for_link,
)
from dicomsniffd.config import DEFAULT_BPF

SOL_PACKET = 263
PACKET_FANOUT = 18


def _udp_burst(port: int, n: int, delay: float = 0.1) -> threading.Thread:
    def send() -> None:
        time.sleep(delay)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(n):
                s.sendto(b"dicomsniffd-test-%d" % i, ("127.0.0.1", port))

    t = threading.Thread(target=send)
    t.start()
    return t


def _read_until(src: LiveSource, want: int, timeout: float = 5.0) -> list[bytes]:
    frames: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(frames) < want and time.monotonic() < deadline:
        data, records = src.read(64, 0.2)
        for _sec, _usec, offset, caplen in records:
            frames.append(data[offset : offset + caplen])
    return frames


def test_reads_batches_and_times_out_on_a_quiet_handle() -> None:
    port = 40000 + os.getpid() % 20000
    with LiveSource("lo", f"udp and dst port {port}", buffer_size_mb=4, timeout_ms=20) as src:
        assert src.linktype == 1  # DLT_EN10MB on lo
        t0 = time.monotonic()
        _data, records = src.read(64, 0.3)
        waited = time.monotonic() - t0
        assert not records and 0.25 < waited < 2.0  # returns on a quiet interface
        sender = _udp_burst(port, 5)
        frames = _read_until(src, 5)
        sender.join()
        assert len(frames) == 5
        assert all(b"dicomsniffd-test-" in f for f in frames)
        stats = src.stats()
        assert stats["kernel"] == 0 and stats["interface"] == 0


def test_records_are_reiterable() -> None:
    port = 40000 + (os.getpid() + 7) % 20000
    with LiveSource("lo", f"udp and dst port {port}", buffer_size_mb=4, timeout_ms=10) as src:
        sender = _udp_burst(port, 3)
        deadline = time.monotonic() + 5
        records = None
        while time.monotonic() < deadline:
            _data, records = src.read(64, 0.2)
            if records:
                break
        sender.join()
        assert records
        assert list(records) == list(records)  # the pipeline may walk a batch twice
        assert len(records) == len(list(records))


def test_fanout_group_with_defrag_flag() -> None:
    with (
        LiveSource("lo", "tcp", buffer_size_mb=4, fanout_group=4242) as a,
        LiveSource("lo", "tcp", buffer_size_mb=4, fanout_group=4242) as b,
    ):
        for src in (a, b):
            sock = socket.socket(fileno=os.dup(src.fileno()))
            try:
                raw = sock.getsockopt(SOL_PACKET, PACKET_FANOUT)
            finally:
                sock.close()
            value = struct.unpack("=I", struct.pack("=i", raw))[0]
            assert value & 0xFFFF == 4242
            assert (value >> 16) == PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG


def test_missing_interface_is_one_line_naming_it() -> None:
    with pytest.raises(LiveCaptureError) as err:
        LiveSource("nosuch0", "tcp")
    message = str(err.value)
    assert "nosuch0" in message and "not found" in message and "\n" not in message
    assert isinstance(err.value, CaptureError)


def test_bad_bpf_is_one_plain_line() -> None:
    with pytest.raises(BpfError) as err:
        LiveSource("lo", "tcp and bogus", buffer_size_mb=4)
    assert "invalid BPF filter 'tcp and bogus'" in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_privilege_names_the_fix() -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.fail("needs root and setpriv (util-linux) to take the capabilities away")
    code = (
        "from dicomsniffd.capture.live import LiveSource, LiveCaptureError\n"
        "try:\n    LiveSource('lo', 'tcp')\n"
        "except LiveCaptureError as e:\n    print(e)\n"
    )
    p = subprocess.run(
        [setpriv, "--bounding-set=-net_raw,-net_admin", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
    )
    line = p.stdout.strip()
    assert "no permission to capture on 'lo'" in line, p.stdout + p.stderr
    assert "CAP_NET_RAW" in line and "setcap" in line and "AmbientCapabilities" in line
    assert len(line.splitlines()) == 1


@pytest.mark.parametrize("interface", ["any", "lo"])
def test_default_filter_compiles_on_any_and_on_ethernet(interface: str) -> None:
    """The embedded default (interface any, a BPF that matches 802.1Q and QinQ on
    Ethernet) must open: libpcap has no `vlan` keyword on Linux cooked captures."""
    with LiveSource(interface, DEFAULT_BPF, buffer_size_mb=4) as src:
        assert src.linktype in ((113, 276) if interface == "any" else (1,))


def test_user_filters_are_never_rewritten() -> None:
    assert filter_for_link(DEFAULT_BPF, 113) == "tcp"
    assert filter_for_link(DEFAULT_BPF, 1) == DEFAULT_BPF
    assert filter_for_link("vlan and tcp port 104", 113) == "vlan and tcp port 104"
    with pytest.raises(CaptureError, match="invalid BPF filter"):
        LiveSource("any", "vlan and tcp", buffer_size_mb=4)


def test_readme_first_command_runs_on_the_embedded_defaults() -> None:
    """`dicomsniffd` with no arguments: capture on any, metrics on 0.0.0.0:9104."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dicomsniffd"], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen("http://127.0.0.1:9104/healthz", timeout=1) as r:
                    status = r.status
                    break
            except OSError:
                time.sleep(0.2)
        assert status == 200, proc.stderr.read() if proc.poll() is not None else "no answer"
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0

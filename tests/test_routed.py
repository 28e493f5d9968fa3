"""The three-namespace router fixture really forwards, and really loses what it drops."""

from __future__ import annotations

import sys

import pytest
from routed import RoutedNet

pytestmark = pytest.mark.netns

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 4000)); s.listen(1)
c, _ = s.accept(); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    n += len(b)
c.sendall(str(n).encode()); c.close()
"""
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], 4000)); c.sendall(b"x" * 2_000_000)
c.shutdown(socket.SHUT_WR); print(c.recv(100).decode())
"""


def test_forwarding_with_random_drop_delivers_everything_and_counts_the_drops(tmp_path):
    with RoutedNet() as net:
        net.add_forward_drop(0.05, min_length=100, source="a")
        srv = net.popen("b", [sys.executable, "-c", SERVER])
        net.wait_listening("b", 4000, proc=srv)
        near, far = tmp_path / "near.pcap", tmp_path / "far.pcap"
        with (
            net.capture("r", str(near), iface=net.router_iface("a"), bpf="tcp") as c_near,
            net.capture("r", str(far), iface=net.router_iface("b"), bpf="tcp") as c_far,
        ):
            out = net.run("a", [sys.executable, "-c", CLIENT, net.ip("b")]).stdout
        dropped = net.forward_dropped()
    # TCP recovered every drop: the server received every byte.
    assert out.strip() == "2000000"
    assert dropped > 0
    # The near side (before the router's drop) saw exactly the dropped TCP packets more than
    # the far side.
    assert c_near.captured - c_far.captured == dropped, (c_near.captured, c_far.captured)

"""The HTTP endpoint on its own: /healthz from the heartbeat, stalled clients, mutual TLS.

No capture here, so unlike tests/test_daemon.py these need no root.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from test_daemon_support import http_get

from dicomsniffd.daemon.http import Heartbeat, MetricsHTTPServer


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_healthz_ok_then_stalled_then_ok() -> None:
    clock = _Clock()
    beat = Heartbeat(stall_after_s=5, clock=clock)
    server = MetricsHTTPServer("127.0.0.1:0", lambda: b"x 1\n", beat)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        assert http_get(url + "/healthz")[0] == 503  # never beat: not started
        beat.beat("0")
        assert http_get(url + "/healthz") == (200, "ok\n")
        clock.now += 6
        code, body = http_get(url + "/healthz")
        assert code == 503 and "worker 0" in body
        beat.beat("0")
        assert http_get(url + "/healthz")[0] == 200
        assert http_get(url + "/metrics") == (200, "x 1\n")
    finally:
        server.stop()


def test_stalled_client_blocks_nobody() -> None:
    import socket

    beat = Heartbeat(stall_after_s=5)
    beat.beat()
    server = MetricsHTTPServer("127.0.0.1:0", lambda: b"x 1\n", beat)
    server.start()
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
        half = socket.create_connection(("127.0.0.1", server.port))
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finishes the request
        t0 = time.monotonic()
        assert http_get(f"http://127.0.0.1:{server.port}/metrics", timeout=3)[0] == 200
        assert time.monotonic() - t0 < 3.0  # far below the 10 s the stalled client holds
        for s in (*idle, half):
            s.close()
    finally:
        server.stop()


def _self_signed(tmp_path, name: str) -> tuple[str, str]:
    import shutil

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl CLI needed to make test certificates")
    cert, key = str(tmp_path / f"{name}.crt"), str(tmp_path / f"{name}.key")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_metrics_over_mutual_tls(tmp_path) -> None:
    import ssl
    import urllib.request

    from dicomsniffd.daemon.http import tls_context

    server_cert, server_key = _self_signed(tmp_path, "server")
    client_cert, client_key = _self_signed(tmp_path, "client")
    beat = Heartbeat(stall_after_s=5)
    beat.beat()
    ctx = tls_context(server_cert, server_key, client_ca_file=client_cert)
    server = MetricsHTTPServer("127.0.0.1:0", lambda: b"x 1\n", beat, ctx)
    server.start()
    url = f"https://127.0.0.1:{server.port}/metrics"
    try:
        client = ssl.create_default_context(cafile=server_cert)
        with pytest.raises(OSError):  # no client certificate: refused
            urllib.request.urlopen(url, context=client, timeout=5).read()
        client.load_cert_chain(client_cert, client_key)
        with urllib.request.urlopen(url, context=client, timeout=5) as r:
            assert r.status == 200 and r.read() == b"x 1\n"
    finally:
        server.stop()

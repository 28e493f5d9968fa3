"""The HTTP endpoint: /metrics (Prometheus text exposition) and /healthz.

A scrape never touches capture state: ``render_metrics`` (``MetricsView.render``) works on
snapshots the capture loop published between batches. Every connection gets its own thread, a socket timeout
and (with TLS) its handshake in that thread, so a client that connects and stalls holds
only its own thread, never the accept loop or the capture. Concurrent connections are
capped so a flood of idle clients cannot make unbounded threads.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import CollectorRegistry

from dicomsniffd.config import Config
from dicomsniffd.daemon.errors import EXIT_CONFIG, EXIT_FAILURE, StartupError
from dicomsniffd.sinks.metrics import MetricsStore

if TYPE_CHECKING:
    from dicomsniffd.daemon.reload import ReloadCounter

log = logging.getLogger("dicomsniffd.http")
daemon_log = logging.getLogger("dicomsniffd.daemon")

CONNECTION_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 32
SCRAPE_FRESHNESS_WAIT_S = 0.5  # how long a scrape waits for a fresh in-process snapshot


class ListenError(Exception):
    """The metrics address is invalid or cannot be bound (one user-facing line)."""


def parse_listen(listen: str) -> tuple[str, int]:
    """'0.0.0.0:9104', '[::]:9104', ':9104' (all IPv4 interfaces) → (host, port).

    Looser than ``config.parse_listen`` on purpose: the config is validated already, and
    port 0 (any free port) must stay possible for a server started without a config.
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ListenError(f"metrics listen address {listen!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class Heartbeat:
    """The capture loop's 'still going round' signal, read by /healthz and the watchdog."""

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._beats: dict[str, float] = {}

    def beat(self, worker: str = "0", at: float | None = None) -> None:
        # A plain dict store is atomic under the GIL: no lock on the capture path.
        self._beats[worker] = self._clock() if at is None else at

    def forget(self, worker: str) -> None:
        self._beats.pop(worker, None)

    def expect(self, workers: list[str]) -> None:
        """Workers that must beat; one that never did counts as stalled from now on."""
        now = self._clock()
        for w in workers:
            self._beats.setdefault(w, now)

    def stalled(self) -> list[str]:
        now = self._clock()
        return sorted(w for w, t in dict(self._beats).items() if now - t > self.stall_after_s)

    def healthy(self) -> bool:
        return bool(self._beats) and not self.stalled()


def _read_tls_file(key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ListenError(f"metrics.tls.{key} {path}: {exc.strerror or exc}") from None


def _no_passphrase() -> bytes:
    raise ListenError("the key is encrypted; the daemon needs an unencrypted key (no prompt)")


def tls_context(cert_file: str, key_file: str, client_ca_file: str = "") -> ssl.SSLContext:
    """Server context; a client CA turns on mutual TLS (client certificate required).

    Every error is one line that names the key and the file (ssl's own say neither).
    """
    if b"-----BEGIN CERTIFICATE-----" not in _read_tls_file("cert_file", cert_file):
        raise ListenError(f"metrics.tls.cert_file {cert_file}: no PEM certificate in it")
    if b"PRIVATE KEY-----" not in _read_tls_file("key_file", key_file):
        raise ListenError(f"metrics.tls.key_file {key_file}: no PEM private key in it")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_file, key_file, password=_no_passphrase)
    except ListenError as exc:
        raise ListenError(f"metrics.tls.key_file {key_file}: {exc}") from None
    except (OSError, ssl.SSLError) as exc:
        raise ListenError(
            f"metrics.tls.cert_file {cert_file} and key_file {key_file} do not load as a "
            f"certificate and its key: {_ssl_reason(exc)}"
        ) from None
    if client_ca_file:
        _read_tls_file("client_ca_file", client_ca_file)
        try:
            ctx.load_verify_locations(cafile=client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ListenError(
                f"metrics.tls.client_ca_file {client_ca_file}: no CA certificate loads from "
                f"it: {_ssl_reason(exc)}"
            ) from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _ssl_reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason).replace("_", " ").lower() if reason else str(exc)


class _Handler(BaseHTTPRequestHandler):
    server: MetricsHTTPServer
    timeout = CONNECTION_TIMEOUT_S
    protocol_version = "HTTP/1.1"
    server_version = "dicomsniffd"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._metrics()
        elif path == "/healthz":
            self._healthz()
        elif path == "/":
            self._send(
                200,
                b'<a href="/metrics">/metrics</a> <a href="/healthz">/healthz</a>\n',
                "text/html; charset=utf-8",
            )
        else:
            self._send(404, b"not found\n")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def _metrics(self) -> None:
        try:
            body = self.server.render_metrics()
        except Exception:  # a bug in rendering must not kill the endpoint
            log.exception("rendering /metrics failed")
            self._send(500, b"internal error\n")
            return
        self._send(200, body, CONTENT_TYPE_LATEST)

    def _healthz(self) -> None:
        stalled = self.server.heartbeat.stalled()
        if self.server.heartbeat.healthy():
            self._send(200, b"ok\n")
            return
        who = ", ".join(f"worker {w}" for w in stalled) or "capture not started"
        self._send(503, f"capture loop stalled: {who}\n".encode())

    def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)


class MetricsHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Quick restarts must not fail on a socket in TIME_WAIT.
    allow_reuse_address = True

    def __init__(
        self,
        listen: str,
        render_metrics: Callable[[], bytes],
        heartbeat: Heartbeat,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        host, port = parse_listen(listen)
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.render_metrics = render_metrics
        self.heartbeat = heartbeat
        self.ssl_context = ssl_context
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._thread: threading.Thread | None = None
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise ListenError(f"cannot listen on {listen}: {exc.strerror or exc}") from None

    @property
    def port(self) -> int:
        return self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the cap: refuse rather than queue
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the connection's own thread and under its
        # timeout, never in accept(): a client that stalls mid-handshake blocks nobody.
        request.settimeout(CONNECTION_TIMEOUT_S)
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
        self.server_close()


# ---------------------------------------------------------------------------------------
# What /metrics serves: the merged worker snapshots plus the daemon's own counters
# ---------------------------------------------------------------------------------------


class MetricsView:
    """Merged worker snapshots plus the daemon's own counters, rendered per scrape."""

    def __init__(self, config: Config, reloads: ReloadCounter) -> None:
        self.store = MetricsStore(config.metrics)  # own state stays empty: a pure merger
        # Everything on /metrics, for prometheus-client users; a scrape does not go through
        # it: render() joins the store's direct text exposition (MetricsStore.render_text,
        # the same bytes as generate_latest, ~20x cheaper) and the daemon's own counters.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.store)
        self.registry.register(reloads)
        self._seq = 0
        self._fresh = threading.Condition()
        self.request_fresh: Callable[[], None] | None = None
        self._reloads = reloads
        # One render at a time, shared by every scrape that arrived before it started:
        # a render costs CPU (and the GIL) in proportion to the series, so a burst of
        # concurrent scrapes must cost one render, not one each (benchmarks/scrape_cost.py).
        self._render_lock = threading.Lock()
        self._rendered: tuple[tuple[int, int], bytes] | None = None

    def publish(self, worker: str, snap: dict[str, Any]) -> None:
        try:
            self.store.merge_snapshot(worker, snap)
        except ValueError as exc:
            daemon_log.error("snapshot of worker %s refused: %s", worker, exc)
            return
        with self._fresh:
            self._seq += 1
            self._fresh.notify_all()

    def render(self) -> bytes:
        if self.request_fresh is not None:
            # In-process capture: ask for a snapshot taken now and wait a little for it;
            # if the loop is busy the last published one is served (at most ~1 s old).
            with self._fresh:
                seq = self._seq
                self.request_fresh()
                self._fresh.wait_for(lambda: self._seq != seq, SCRAPE_FRESHNESS_WAIT_S)
        wanted = self._seq  # the state this scrape must see (or a newer one)
        with self._render_lock:
            cached = self._rendered
            if (
                cached is not None
                and cached[0][0] >= wanted
                and cached[0][1] == self._reloads.failures
            ):
                return cached[1]
            key = (self._seq, self._reloads.failures)
            body = self.store.render_text(after=self._reloads.collect())
            self._rendered = (key, body)
            return body


def open_http_server(config: Config, view: MetricsView, heartbeat: Heartbeat) -> MetricsHTTPServer:
    """Bound now (a busy port fails before capture starts); served once ``start()`` is called."""
    tls = config.metrics.tls
    try:
        ctx = (
            tls_context(tls.cert_file, tls.key_file, tls.client_ca_file) if tls.cert_file else None
        )
    except ListenError as exc:
        raise StartupError(f"metrics TLS setup failed: {exc}", EXIT_CONFIG) from None
    try:
        return MetricsHTTPServer(config.metrics.listen, view.render, heartbeat, ctx)
    except ListenError as exc:
        raise StartupError(str(exc), EXIT_FAILURE) from None

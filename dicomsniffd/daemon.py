"""`dicomsniffd run`: the live daemon.

Order of start-up, and why:
1. config (+ command-line overrides): a bad one exits 2 before anything is opened;
2. the metrics socket is bound (a busy port fails early, before capture starts);
3. capture handle(s) are opened: in-process for ``workers: 1``, else one forked worker
   process per handle, all in one PACKET_FANOUT hash group;
4. privileges are dropped (every process): handles stay usable, nothing else is kept;
5. /metrics and /healthz are served, systemd hears READY=1, the capture loop runs.

A scrape never waits on the capture loop: it renders the snapshots that the capture loop
published between batches (about once a second, or on request of a waiting scrape in the
in-process mode), so it never sees a half-updated association.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import importlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import pkgutil
import pwd
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pcapy
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

import dicomsniffd
from dicomsniffd import accel
from dicomsniffd.config import Config, ConfigError, LoggingConfig, apply_overrides, load_config
from dicomsniffd.httpserver import Heartbeat, ListenError, MetricsHTTPServer, tls_context
from dicomsniffd.live import BpfError, CaptureError, LiveSource, default_fanout_group
from dicomsniffd.pipeline import Pipeline

log = logging.getLogger("dicomsniffd.daemon")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

PUBLISH_EVERY_S = 1.0  # snapshot cadence of the capture loop (what a scrape can lag)
IDLE_EXPIRE_EVERY_S = 1.0  # wall-time expiry while no packets arrive
SCRAPE_FRESHNESS_WAIT_S = 0.5  # how long a scrape waits for a fresh in-process snapshot
WORKER_START_TIMEOUT_S = 15.0
WORKER_STOP_TIMEOUT_S = 10.0
DEFAULT_STALL_AFTER_S = 30.0
DEFAULT_USERS = ("dicomsniffd", "nobody")

# What SIGHUP can change in a running daemon; every other key needs a restart.
HOT_KEYS = frozenset({
    "logging.level", "logging.format", "capture.bpf", "capture.batch_size",
    "metrics.max_ae_titles", "metrics.max_servers", "metrics.max_sop_classes",
})  # fmt: skip

RELOAD_FAILURES_METRIC = "dicomsniffd_config_reload_failures_total"


class Waker:
    """A flag the capture loop can also select() on, next to its capture socket.

    A scrape sets it to get a fresh snapshot; through the pipe the loop wakes at once
    instead of at the end of its read timeout (which made idle scrapes ~100 ms). The
    pipe lives as long as the process: closing it while a scrape thread may still write
    could hand its number to another file.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._write_fd, False)

    def set(self) -> None:
        self._event.set()
        with contextlib.suppress(BlockingIOError):  # a full pipe already wakes the loop
            os.write(self._write_fd, b"\0")

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        self._event.clear()
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 4096):
                pass


class StartupError(Exception):
    """Start-up cannot go on; ``str()`` is the one line for the user, ``code`` the exit."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------
# Settings of the daemon section: run user and stall threshold
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DaemonSettings:
    user: str = ""  # empty: dicomsniffd if that account exists, else nobody
    stall_after_s: float = DEFAULT_STALL_AFTER_S


def daemon_settings(config: Config) -> DaemonSettings:
    """The ``daemon`` section of the config: run user and /healthz stall threshold."""
    return DaemonSettings(user=config.daemon.user, stall_after_s=config.daemon.stall_after_s)


# ---------------------------------------------------------------------------------------
# Logging: structured lines on stderr, per-message rate limit
# ---------------------------------------------------------------------------------------

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}


class RateLimit(logging.Filter):
    """At most ``burst`` lines per message template and logger in each ``window_s``.

    Per-packet problems (a malformed frame, a parser exception per flow) can repeat
    thousands of times a second; the first few say everything, the rest is counted and the
    count is reported with the next line that gets through.
    """

    def __init__(self, burst: int = 5, window_s: float = 60.0) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self._state: dict[tuple[str, str], list[float]] = {}  # key -> [start, sent, dropped]
        self.suppressed_total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = record.created
        state = self._state.get(key)
        if state is None or now - state[0] >= self.window_s:
            dropped = int(state[2]) if state else 0
            if len(self._state) > 10_000:  # bound the table itself
                self._state.clear()
            self._state[key] = [now, 1, 0]
            if dropped:
                record.suppressed = dropped
            return True
        if state[1] < self.burst:
            state[1] += 1
            return True
        state[2] += 1
        self.suppressed_total += 1
        return False


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line.replace("\n", " | ")  # one event, one line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_extras(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


_HANDLER_NAME = "dicomsniffd-stderr"


def setup_logging(cfg: LoggingConfig) -> None:
    """(Re)configure the root logger; called again by SIGHUP with the new settings."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.addFilter(RateLimit())
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if cfg.format == "json" else TextFormatter())
    root.setLevel(cfg.level.upper())


# ---------------------------------------------------------------------------------------
# systemd notification (no dependency: a datagram on $NOTIFY_SOCKET)
# ---------------------------------------------------------------------------------------


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._sock: socket.socket | None = None
        self.watchdog_every_s: float | None = None
        path = env.get("NOTIFY_SOCKET", "")
        if path:
            address = "\0" + path[1:] if path.startswith("@") else path
            try:
                # Connected now, while we may still have the rights to the socket's path.
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.connect(address)
                self._sock = sock
            except OSError as exc:
                log.warning("cannot reach NOTIFY_SOCKET %s: %s", path, exc)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_every_s = int(usec) / 2e6  # ping at half the deadline
        self._last_ping = 0.0

    def notify(self, message: str) -> None:
        if self._sock is not None:
            # systemd gone or not listening: nothing useful to do
            with contextlib.suppress(OSError):
                self._sock.send(message.encode())

    def watchdog(self, healthy: bool) -> None:
        """WATCHDOG=1 at half the deadline, only while the capture loop is healthy."""
        if self.watchdog_every_s is None or not healthy:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_every_s:
            self._last_ping = now
            self.notify("WATCHDOG=1")


# ---------------------------------------------------------------------------------------
# Privileges
# ---------------------------------------------------------------------------------------


class PrivilegeError(StartupError):
    pass


def _preload_modules() -> None:
    """Import everything the daemon may import lazily later.

    After the drop the new user may not be able to read the Python installation (e.g. a
    pyenv under /root): a late import would then fail in the middle of the capture.
    """
    for info in pkgutil.walk_packages(dicomsniffd.__path__, "dicomsniffd."):
        if info.name not in sys.modules and not info.name.endswith("__main__"):
            try:
                importlib.import_module(info.name)
            except Exception as exc:  # an optional module must not stop the daemon
                log.debug("preload of %s failed: %s", info.name, exc)
    for name in ("encodings.idna", "encodings.ascii", "encodings.latin_1", "pickle", "ssl"):
        importlib.import_module(name)


def _run_user(settings: DaemonSettings) -> pwd.struct_passwd:
    names = (settings.user,) if settings.user else DEFAULT_USERS
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PrivilegeError(
        f"cannot drop privileges: user {' or '.join(names)} does not exist", EXIT_CONFIG
    )


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _drop_capabilities() -> None:
    """Clear every capability (effective, permitted, inheritable, ambient)."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    libc = _libc()
    libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"cannot drop capabilities: {os.strerror(err)}")


def _no_new_privs() -> None:
    _libc().prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: no setuid binary can give them back


def drop_privileges(settings: DaemonSettings) -> str:
    """Become the run user (when root) and keep no capability; returns what was done.

    Started as non-root (systemd's User=/DynamicUser= with AmbientCapabilities, or a
    setcap'd interpreter) there is no user to switch: only the capabilities go.
    """
    _preload_modules()
    if os.getuid() != 0 and os.geteuid() != 0:
        _drop_capabilities()
        _no_new_privs()
        return f"running as uid {os.getuid()}, capabilities dropped"
    user = _run_user(settings)
    if user.pw_uid == 0:
        raise PrivilegeError(
            "refusing to run the capture as root: set a non-root user", EXIT_CONFIG
        )
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    _no_new_privs()
    if os.getuid() == 0 or os.geteuid() == 0:
        raise PrivilegeError("privilege drop failed: still root")
    try:
        os.setuid(0)
    except PermissionError:
        return f"running as {user.pw_name} (uid {user.pw_uid})"
    raise PrivilegeError("privilege drop failed: root could be regained")


# ---------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------


class Signals:
    """Handlers only set flags; the loops act on them between batches."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()

    def install(self, reload: bool = True) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload if reload else signal.SIG_IGN)

    def _on_stop(self, signum: int, _frame: Any) -> None:
        self.stop.set()

    def _on_reload(self, signum: int, _frame: Any) -> None:
        self.reload.set()


# ---------------------------------------------------------------------------------------
# Config loading and reload
# ---------------------------------------------------------------------------------------


def _overrides(args: Any) -> dict[str, Any]:
    return {
        "interface": getattr(args, "interface", None),
        "bpf": getattr(args, "bpf", None),
        "listen": getattr(args, "listen", None),
        "workers": getattr(args, "workers", None),
    }


def load_effective_config(args: Any) -> Config:
    """The config file (or the embedded defaults) with the command-line flags applied."""
    try:
        return apply_overrides(load_config(getattr(args, "config", None)), **_overrides(args))
    except ConfigError as exc:
        raise StartupError(str(exc), EXIT_CONFIG) from None


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf that differs between two config dataclasses."""
    keys: list[str] = []
    for f in dataclasses.fields(old):
        a, b = getattr(old, f.name), getattr(new, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            keys.extend(changed_keys(a, b, path + "."))
        elif a != b:
            keys.append(path)
    return keys


def check_bpf(bpf: str, linktype: int, snaplen: int) -> None:
    """Compile without installing, so a bad filter is refused before anything changes."""
    try:
        pcapy.compile(linktype, snaplen, bpf, 1, 0)
    except pcapy.PcapError as exc:
        raise BpfError(f"invalid BPF filter {bpf!r}: {exc}") from None


class ReloadCounter:
    """A prometheus-client collector for the daemon's own counters."""

    def __init__(self) -> None:
        self.failures = 0

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            RELOAD_FAILURES_METRIC,
            "SIGHUP config reloads refused (the old config stayed in force).",
        )
        family.add_metric((), self.failures)
        yield family


def apply_hot_metrics(store: Any, new: Config) -> None:
    """Label caps are read by the store at call time: swapping them in is enough."""
    store.config = dataclasses.replace(
        store.config,
        max_ae_titles=new.metrics.max_ae_titles,
        max_servers=new.metrics.max_servers,
        max_sop_classes=new.metrics.max_sop_classes,
    )


def _fanout_worker_ids(n: int) -> list[str]:
    return [str(i) for i in range(n)]


# ---------------------------------------------------------------------------------------
# The capture loop (one per process)
# ---------------------------------------------------------------------------------------


def _event_log_path(path: str, worker: str, workers: int) -> str:
    """Each worker process writes its own event log file when there are several."""
    if workers <= 1 or not path:
        return path
    stem, dot, ext = path.rpartition(".")
    if not dot or "/" in ext:
        return f"{path}.worker{worker}"
    return f"{stem}.worker{worker}.{ext}"


class CaptureWorker:
    """Capture → pipeline for one handle, publishing snapshots between batches."""

    def __init__(
        self,
        config: Config,
        source: LiveSource,
        worker: str,
        publish: Callable[[dict[str, Any]], None],
        heartbeat: Heartbeat | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        from dicomsniffd.decode import Decoder
        from dicomsniffd.sinks.metrics import MetricsStore

        self.config = config
        self.source = source
        self.worker = worker
        self._publish = publish
        self.heartbeat = heartbeat
        self.notifier = notifier
        self.metrics = MetricsStore(config.metrics)
        self.event_log = self._open_event_log(config)
        sinks: list[Any] = [self.metrics]
        if self.event_log is not None:
            sinks.append(self.event_log)
        self.pipeline = Pipeline(config, sinks, worker)
        self.metrics.set_self_stats_source(self.pipeline.self_stats)
        self.decoder = Decoder(source.linktype)
        self.want_snapshot = Waker()
        self.pending_config: Config | None = None
        self._last_packet_wall = time.monotonic()
        self._next_publish = 0.0
        self._next_idle_expire = 0.0

    def _open_event_log(self, config: Config) -> Any:
        path = _event_log_path(config.event_log.path, self.worker, config.capture.workers)
        if not path:
            return None
        from dicomsniffd.sinks.eventlog import EventLog

        cfg = dataclasses.replace(config.event_log, path=path)
        try:
            return EventLog.from_config(cfg, keep_instance_uids=config.dicom.keep_instance_uids)
        except OSError as exc:
            raise StartupError(f"cannot open event log {path}: {exc.strerror or exc}") from None

    def run(self, stop: threading.Event) -> None:
        wait_s = min(0.25, max(0.01, self.config.capture.timeout_ms / 1000))
        process = self.pipeline.process_batch
        try:
            while not stop.is_set():
                packet_bytes, records = self.source.read(
                    self.config.capture.batch_size, wait_s, self.want_snapshot.fd
                )
                now = time.monotonic()
                if records:
                    process(self.decoder, packet_bytes, records)
                    self._last_packet_wall = now
                else:
                    self._idle(now)
                self._between_batches(now)
        finally:
            self.shutdown()

    def _idle(self, now: float) -> None:
        """No packets: let timeouts run anyway, on the capture clock moved by wall time."""
        if now < self._next_idle_expire:
            return
        self._next_idle_expire = now + IDLE_EXPIRE_EVERY_S
        last_ts = self.pipeline.last_ts
        if last_ts is not None:
            self.pipeline.expire(last_ts + (now - self._last_packet_wall))

    def _between_batches(self, now: float) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat(self.worker)
        if self.notifier is not None:
            self.notifier.watchdog(True)
        if self.pending_config is not None:
            self.apply_config(self.pending_config)
            self.pending_config = None
        if now >= self._next_publish or self.want_snapshot.is_set():
            self._next_publish = now + PUBLISH_EVERY_S
            self.want_snapshot.clear()
            self.publish()

    def publish(self) -> None:
        self.pipeline.flush()
        stats = self.source.stats()
        self.pipeline.dropped["kernel"] = stats["kernel"]
        self.pipeline.dropped["interface"] = stats["interface"]
        self._publish(self.metrics.snapshot())

    def apply_config(self, new: Config) -> None:
        """Hot part of a reload (already validated by whoever accepted it)."""
        if new.capture.bpf != self.config.capture.bpf:
            try:
                self.source.set_filter(new.capture.bpf)
            except BpfError as exc:
                log.error("worker %s kept its old BPF filter: %s", self.worker, exc)
                new = dataclasses.replace(
                    new, capture=dataclasses.replace(new.capture, bpf=self.config.capture.bpf)
                )
        apply_hot_metrics(self.metrics, new)
        self.config = dataclasses.replace(
            self.config,
            capture=dataclasses.replace(
                self.config.capture, bpf=new.capture.bpf, batch_size=new.capture.batch_size
            ),
            logging=new.logging,
        )

    def shutdown(self) -> None:
        """Close every flow as seen so far, publish the final state, close files."""
        try:
            self.pipeline.finish()
            self.publish()
        finally:
            if self.event_log is not None:
                self.event_log.close()
            self.source.close()


def open_source(config: Config, fanout_group: int | None = None) -> LiveSource:
    cap = config.capture
    try:
        return LiveSource(
            cap.interface,
            cap.bpf,
            snaplen=cap.snaplen,
            promiscuous=cap.promiscuous,
            buffer_size_mb=cap.buffer_size_mb,
            timeout_ms=cap.timeout_ms,
            immediate=cap.immediate,
            fanout_group=fanout_group,
        )
    except BpfError as exc:
        raise StartupError(str(exc), EXIT_CONFIG) from None
    except CaptureError as exc:
        raise StartupError(str(exc), EXIT_FAILURE) from None


# ---------------------------------------------------------------------------------------
# The metrics view the HTTP server renders
# ---------------------------------------------------------------------------------------


class MetricsView:
    """Merged worker snapshots plus the daemon's own counters, rendered per scrape."""

    def __init__(self, config: Config, reloads: ReloadCounter) -> None:
        from dicomsniffd.sinks.metrics import MetricsStore

        self.store = MetricsStore(config.metrics)  # own state stays empty: a pure merger
        # Everything on /metrics, for prometheus-client users; a scrape does not go through
        # it: render() joins the store's direct text exposition (MetricsStore.render_text,
        # the same bytes as generate_latest, ~20x cheaper) and the daemon's own counters.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.store)
        self.registry.register(reloads)
        self._own_registry = CollectorRegistry(auto_describe=False)
        self._own_registry.register(reloads)
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
            log.error("snapshot of worker %s refused: %s", worker, exc)
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
            body = self.store.render_text() + generate_latest(self._own_registry)
            self._rendered = (key, body)
            return body


def _http_server(config: Config, view: MetricsView, heartbeat: Heartbeat) -> MetricsHTTPServer:
    tls = config.metrics.tls
    try:
        ctx = (
            tls_context(tls.cert_file, tls.key_file, tls.client_ca_file) if tls.cert_file else None
        )
    except ListenError as exc:
        raise StartupError(str(exc), EXIT_CONFIG) from None
    try:
        return MetricsHTTPServer(config.metrics.listen, view.render, heartbeat, ctx)
    except ListenError as exc:
        raise StartupError(str(exc), EXIT_FAILURE) from None


# ---------------------------------------------------------------------------------------
# Reload (both modes)
# ---------------------------------------------------------------------------------------


class Reloader:
    def __init__(self, args: Any, config: Config, linktype: int, reloads: ReloadCounter) -> None:
        self.args = args
        self.config = config
        self.linktype = linktype
        self.reloads = reloads

    def reload(self) -> Config | None:
        """The new config when it is good (already applied to logging), else None."""
        path = getattr(self.args, "config", None)
        try:
            new = load_effective_config(self.args)
            check_bpf(new.capture.bpf, self.linktype, new.capture.snaplen)
        except (StartupError, BpfError) as exc:
            self.reloads.failures += 1
            log.error("config reload refused, old config kept: %s", exc)
            return None
        changed = changed_keys(self.config, new)
        hot = [k for k in changed if k in HOT_KEYS]
        cold = [k for k in changed if k not in HOT_KEYS]
        setup_logging(new.logging)
        log.info(
            "config reloaded from %s: applied %s; needs a restart: %s",
            path or "defaults",
            ", ".join(hot) or "nothing",
            ", ".join(cold) or "nothing",
        )
        # Keep the cold part as running, so the next diff is against what really runs.
        self.config = _merge_hot(self.config, new)
        return self.config


def _merge_hot(running: Config, new: Config) -> Config:
    return dataclasses.replace(
        running,
        capture=dataclasses.replace(
            running.capture, bpf=new.capture.bpf, batch_size=new.capture.batch_size
        ),
        metrics=dataclasses.replace(
            running.metrics,
            max_ae_titles=new.metrics.max_ae_titles,
            max_servers=new.metrics.max_servers,
            max_sop_classes=new.metrics.max_sop_classes,
        ),
        logging=new.logging,
    )


# ---------------------------------------------------------------------------------------
# workers: 1 — capture in the main thread, HTTP in a thread
# ---------------------------------------------------------------------------------------


def run_in_process(args: Any, config: Config, settings: DaemonSettings) -> int:
    signals = Signals()
    signals.install()
    notifier = Notifier()
    reloads = ReloadCounter()
    heartbeat = Heartbeat(settings.stall_after_s)
    view = MetricsView(config, reloads)
    server = _http_server(config, view, heartbeat)
    try:
        source = open_source(config)
        worker = CaptureWorker(
            config, source, "0", lambda snap: view.publish("0", snap), heartbeat, notifier
        )
        log.info(drop_privileges(settings))
    except BaseException:
        server.server_close()
        raise
    view.request_fresh = worker.want_snapshot.set
    reloader = Reloader(args, config, source.linktype, reloads)
    heartbeat.beat("0")
    server.start()
    _announce(config, server, source.linktype)
    notifier.notify("READY=1")

    def on_reload() -> None:
        new = reloader.reload()
        if new is not None:
            worker.pending_config = new

    stop = _StopOrReload(signals, on_reload)
    try:
        worker.run(stop)
    finally:
        notifier.notify("STOPPING=1")
        server.stop()
    log.info("stopped")
    return EXIT_OK


class _StopOrReload(threading.Event):
    """The capture loop's stop flag; looking at it also services a pending SIGHUP."""

    def __init__(self, signals: Signals, on_reload: Callable[[], None]) -> None:
        super().__init__()
        self._signals = signals
        self._on_reload = on_reload

    def is_set(self) -> bool:
        if self._signals.reload.is_set():
            self._signals.reload.clear()
            self._on_reload()
        return self._signals.stop.is_set()


def _announce(config: Config, server: MetricsHTTPServer, linktype: int) -> None:
    cap = config.capture
    scheme = "https" if server.ssl_context else "http"
    log.info(
        "capturing on %s (linktype %d, %d worker%s), metrics on %s://%s:%d/metrics; %s",
        cap.interface, linktype, cap.workers, "" if cap.workers == 1 else "s",
        scheme, server.server_address[0], server.port, accel.describe(),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# workers: N — forked capture processes in one fanout group, the parent merges
# ---------------------------------------------------------------------------------------


class _Outbox:
    """Worker → parent snapshots: bounded, drop-oldest, sent by a thread.

    The capture loop only appends to a deque (never blocks); the sender thread does the
    pickling and the pipe write, which may block while the parent is busy.
    """

    def __init__(self, conn: multiprocessing.connection.Connection, depth: int = 2) -> None:
        self._conn = conn
        self._queue: collections.deque[tuple] = collections.deque(maxlen=depth)
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def put(self, message: tuple) -> None:
        self._queue.append(message)
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._queue:
                try:
                    self._conn.send(self._queue.popleft())
                except (OSError, EOFError, ValueError):
                    return  # parent gone: nothing to deliver to
            if self._closing:
                return

    def close(self, timeout: float = 5.0) -> None:
        self._closing = True
        self._wake.set()
        self._thread.join(timeout)
        self._conn.close()


def _worker_process(
    worker: str,
    config: Config,
    settings: DaemonSettings,
    group: int,
    conn: multiprocessing.connection.Connection,
    control: multiprocessing.connection.Connection,
    inherited: list[socket.socket],
) -> None:
    """Body of one forked worker: open, report, drop privileges, capture until told."""
    for sock in inherited:
        sock.close()  # the parent's listening socket is none of our business
    signals = Signals()
    signals.install(reload=False)  # the parent validates reloads and sends them over
    try:
        source = open_source(config, group)
        outbox = _Outbox(conn)
        capture = CaptureWorker(config, source, worker, lambda s: outbox.put(("snap", worker, s)))
        drop_privileges(settings)
    except StartupError as exc:
        conn.send(("error", worker, str(exc), exc.code))
        return
    outbox.put(("ready", worker, source.linktype))
    stop = _WorkerStop(signals, control, capture)
    try:
        capture.run(stop)
    finally:
        outbox.close()


class _WorkerStop(threading.Event):
    """Stop flag of a worker; looking at it also takes new configs off the control pipe."""

    def __init__(self, signals: Signals, control: Any, capture: CaptureWorker) -> None:
        super().__init__()
        self._signals = signals
        self._control = control
        self._capture = capture

    def is_set(self) -> bool:
        try:
            while self._control.poll():
                kind, payload = self._control.recv()
                if kind == "config":
                    setup_logging(payload.logging)
                    self._capture.pending_config = payload
        except (EOFError, OSError):
            self._signals.stop.set()  # parent gone
        return self._signals.stop.is_set()


@dataclasses.dataclass
class _Child:
    worker: str
    process: Any
    conn: multiprocessing.connection.Connection
    control: multiprocessing.connection.Connection
    ready: bool = False


class WorkerSet:
    """The parent's side of N forked capture workers."""

    def __init__(self, config: Config, settings: DaemonSettings) -> None:
        self.config = config
        self.settings = settings
        self.children: dict[str, _Child] = {}
        self.linktype = -1

    def start(self, inherited: list[socket.socket]) -> None:
        ctx = multiprocessing.get_context("fork")
        group = default_fanout_group()
        for worker in _fanout_worker_ids(self.config.capture.workers):
            recv_conn, send_conn = ctx.Pipe(duplex=False)
            ctl_recv, ctl_send = ctx.Pipe(duplex=False)
            process = ctx.Process(
                target=_worker_process,
                name=f"dicomsniffd-worker-{worker}",
                args=(worker, self.config, self.settings, group, send_conn, ctl_recv, inherited),
            )
            process.start()
            send_conn.close()
            ctl_recv.close()
            self.children[worker] = _Child(worker, process, recv_conn, ctl_send)

    def wait_ready(self, on_snapshot: Callable[[str, dict], None]) -> None:
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while not all(c.ready for c in self.children.values()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise StartupError("capture workers did not start in time")
            self.poll(left, on_snapshot, starting=True)

    def poll(
        self, timeout: float, on_snapshot: Callable[[str, dict], None], starting: bool = False
    ) -> list[str]:
        """Handle worker messages; returns the workers whose pipe closed."""
        conns = {c.conn: c for c in self.children.values() if not c.conn.closed}
        gone: list[str] = []
        for conn in multiprocessing.connection.wait(list(conns), timeout):
            child = conns[conn]  # type: ignore[index]
            try:
                message = conn.recv()  # type: ignore[union-attr]
            except (EOFError, OSError):
                conn.close()  # type: ignore[union-attr]
                gone.append(child.worker)
                if starting:
                    raise StartupError(f"capture worker {child.worker} exited at start") from None
                continue
            self._handle(child, message, on_snapshot)
        return gone

    def _handle(self, child: _Child, message: tuple, on_snapshot: Callable) -> None:
        kind = message[0]
        if kind == "snap":
            on_snapshot(child.worker, message[2])
        elif kind == "ready":
            child.ready = True
            self.linktype = message[2]
        elif kind == "error":
            raise StartupError(message[2], message[3])

    def send_config(self, config: Config) -> None:
        for child in self.children.values():
            # A worker that is gone is handled by the main loop.
            with contextlib.suppress(OSError, ValueError):
                child.control.send(("config", config))

    def stop(self, on_snapshot: Callable[[str, dict], None]) -> None:
        for child in self.children.values():
            if child.process.is_alive():
                os.kill(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP_TIMEOUT_S
        # Keep draining: a worker's final snapshot can be larger than the pipe buffer.
        while any(not c.conn.closed for c in self.children.values()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(StartupError):
                self.poll(min(left, 0.5), on_snapshot)
        for child in self.children.values():
            child.process.join(max(0.1, deadline - time.monotonic()))
            if child.process.is_alive():
                log.error("worker %s did not stop in time; killing it", child.worker)
                child.process.kill()
                child.process.join(5)
            child.control.close()


def run_workers(args: Any, config: Config, settings: DaemonSettings) -> int:
    n = config.capture.workers
    reloads = ReloadCounter()
    heartbeat = Heartbeat(settings.stall_after_s)
    view = MetricsView(config, reloads)
    server = _http_server(config, view, heartbeat)
    notifier = Notifier()
    signals = Signals()
    workers = WorkerSet(config, settings)
    # Fork before any thread exists in this process (HTTP comes later).
    workers.start([server.socket])
    signals.install()

    def on_snapshot(worker: str, snap: dict) -> None:
        heartbeat.beat(worker)  # a snapshot arrives only while that capture loop turns
        view.publish(worker, snap)

    try:
        workers.wait_ready(on_snapshot)
        log.info(drop_privileges(settings))
    except StartupError:
        workers.stop(on_snapshot)
        server.server_close()
        raise
    heartbeat.expect(list(workers.children))
    server.start()
    _announce(config, server, workers.linktype)
    notifier.notify("READY=1")
    reloader = Reloader(args, config, workers.linktype, reloads)
    code = _supervise(workers, signals, reloader, notifier, heartbeat, on_snapshot)
    notifier.notify("STOPPING=1")
    workers.stop(on_snapshot)
    server.stop()
    log.info("stopped (%d workers)", n)
    return code


def _supervise(
    workers: WorkerSet,
    signals: Signals,
    reloader: Reloader,
    notifier: Notifier,
    heartbeat: Heartbeat,
    on_snapshot: Callable[[str, dict], None],
) -> int:
    while not signals.stop.is_set():
        if signals.reload.is_set():
            signals.reload.clear()
            new = reloader.reload()
            if new is not None:
                workers.send_config(new)
        gone = workers.poll(0.25, on_snapshot)
        if gone:
            # A dead worker would silently lose its share of the flows: fail loudly and
            # let the service manager restart the whole set.
            for worker in gone:
                child = workers.children[worker]
                child.process.join(1)
                log.error("capture worker %s exited (code %s)", worker, child.process.exitcode)
            return EXIT_FAILURE
        stalled = heartbeat.stalled()
        notifier.watchdog(not stalled)
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


def main(args: Any) -> int:
    """`dicomsniffd run`: exit 0 on a clean stop, 2 for a configuration error, 1 else."""
    try:
        config = load_effective_config(args)
        setup_logging(config.logging)
        settings = daemon_settings(config)
        if config.capture.workers > 1:
            return run_workers(args, config, settings)
        return run_in_process(args, config, settings)
    except StartupError as exc:
        print(f"dicomsniffd: error: {exc}", file=sys.stderr)
        return exc.code
    except CaptureError as exc:  # the capture failed while running (interface gone...)
        log.error("capture failed: %s", exc)
        return EXIT_FAILURE

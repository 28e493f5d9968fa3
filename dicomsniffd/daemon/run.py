"""`dicomsniffd run`: the entry point and its two run modes.

Order of start-up, and why:
1. config (+ command-line overrides): a bad one exits 2 before anything is opened;
2. the metrics socket is bound (a busy port fails early, before capture starts);
3. capture handle(s) are opened: in-process for ``workers: 1``, else one forked worker
   process per handle, all in one PACKET_FANOUT hash group;
4. privileges are dropped (every process): handles stay usable, nothing else is kept;
5. /metrics and /healthz are served, systemd hears READY=1, the capture loop runs.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from dicomsniffd import accel
from dicomsniffd.capture import CaptureError
from dicomsniffd.config import Config
from dicomsniffd.daemon.errors import EXIT_FAILURE, EXIT_OK, StartupError
from dicomsniffd.daemon.http import Heartbeat, MetricsHTTPServer, MetricsView, open_http_server
from dicomsniffd.daemon.logs import setup_logging
from dicomsniffd.daemon.privileges import drop_privileges
from dicomsniffd.daemon.reload import ReloadCounter, Reloader, load_effective_config
from dicomsniffd.daemon.signals import Signals
from dicomsniffd.daemon.systemd import Notifier
from dicomsniffd.daemon.worker import CaptureWorker, open_source
from dicomsniffd.daemon.workers import WorkerSet, supervise

log = logging.getLogger("dicomsniffd.daemon")


def main(args: Any) -> int:
    """`dicomsniffd run`: exit 0 on a clean stop, 2 for a configuration error, 1 else."""
    try:
        config = load_effective_config(args)
        setup_logging(config.logging)
        if config.capture.workers > 1:
            return run_workers(args, config)
        return run_in_process(args, config)
    except StartupError as exc:
        print(f"dicomsniffd: error: {exc}", file=sys.stderr)
        return exc.code
    except CaptureError as exc:  # the capture failed while running (interface gone...)
        log.error("capture failed: %s", exc)
        return EXIT_FAILURE


def _endpoint(config: Config) -> tuple[ReloadCounter, Heartbeat, MetricsView, MetricsHTTPServer]:
    """What both modes serve: the reload counter, the heartbeat and the bound HTTP server."""
    reloads = ReloadCounter()
    heartbeat = Heartbeat(config.daemon.stall_after_s)
    view = MetricsView(config, reloads)
    return reloads, heartbeat, view, open_http_server(config, view, heartbeat)


def _announce(config: Config, server: MetricsHTTPServer, linktype: int) -> None:
    cap = config.capture
    scheme = "https" if server.ssl_context else "http"
    log.info(
        "capturing on %s (linktype %d, %d worker%s), metrics on %s://%s:%d/metrics; %s",
        cap.interface, linktype, cap.workers, "" if cap.workers == 1 else "s",
        scheme, server.server_address[0], server.port, accel.describe(),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# workers: 1 — capture in the main thread, HTTP in a thread
# ---------------------------------------------------------------------------------------


def run_in_process(args: Any, config: Config) -> int:
    signals = Signals()
    signals.install()
    notifier = Notifier()
    reloads, heartbeat, view, server = _endpoint(config)
    try:
        source = open_source(config)
        worker = CaptureWorker(
            config, source, "0", lambda snap: view.publish("0", snap), heartbeat, notifier
        )
        log.info(drop_privileges(config.daemon))
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


# ---------------------------------------------------------------------------------------
# workers: N — forked capture processes in one fanout group, the parent merges
# ---------------------------------------------------------------------------------------


def run_workers(args: Any, config: Config) -> int:
    n = config.capture.workers
    reloads, heartbeat, view, server = _endpoint(config)
    notifier = Notifier()
    signals = Signals()
    workers = WorkerSet(config)
    # Fork before any thread exists in this process (HTTP comes later).
    workers.start([server.socket])
    signals.install()

    def on_snapshot(worker: str, snap: dict) -> None:
        heartbeat.beat(worker)  # a snapshot arrives only while that capture loop turns
        view.publish(worker, snap)

    try:
        workers.wait_ready(on_snapshot)
        log.info(drop_privileges(config.daemon))
    except StartupError:
        workers.stop(on_snapshot)
        server.server_close()
        raise
    heartbeat.expect(list(workers.children))
    server.start()
    _announce(config, server, workers.linktype)
    notifier.notify("READY=1")
    reloader = Reloader(args, config, workers.linktype, reloads)
    code = supervise(workers, signals, reloader, notifier, heartbeat, on_snapshot)
    notifier.notify("STOPPING=1")
    workers.stop(on_snapshot)
    server.stop()
    log.info("stopped (%d workers)", n)
    return code

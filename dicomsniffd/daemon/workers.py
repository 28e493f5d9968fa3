"""workers: N — the parent's side of N forked capture processes in one PACKET_FANOUT group.

The parent forks the workers, waits for each to report ready, merges the snapshots they
send, forwards accepted reloads and fails loudly (exit 1) when one of them dies. The body
of a worker process is ``worker.worker_process``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from dicomsniffd.capture.live import default_fanout_group
from dicomsniffd.config import Config
from dicomsniffd.daemon.errors import EXIT_FAILURE, EXIT_OK, StartupError
from dicomsniffd.daemon.http import Heartbeat
from dicomsniffd.daemon.reload import Reloader
from dicomsniffd.daemon.signals import Signals
from dicomsniffd.daemon.systemd import Notifier
from dicomsniffd.daemon.worker import worker_process

log = logging.getLogger("dicomsniffd.daemon")

WORKER_START_TIMEOUT_S = 15.0
WORKER_STOP_TIMEOUT_S = 10.0

OnSnapshot = Callable[[str, dict], None]


def _fanout_worker_ids(n: int) -> list[str]:
    return [str(i) for i in range(n)]


@dataclasses.dataclass
class _Child:
    worker: str
    process: Any
    conn: multiprocessing.connection.Connection
    control: multiprocessing.connection.Connection
    ready: bool = False


class WorkerSet:
    """The parent's side of N forked capture workers."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.children: dict[str, _Child] = {}
        self.linktype = -1

    def start(self, inherited: list[socket.socket]) -> None:
        ctx = multiprocessing.get_context("fork")
        group = default_fanout_group()
        for worker in _fanout_worker_ids(self.config.capture.workers):
            recv_conn, send_conn = ctx.Pipe(duplex=False)
            ctl_recv, ctl_send = ctx.Pipe(duplex=False)
            process = ctx.Process(
                target=worker_process,
                name=f"dicomsniffd-worker-{worker}",
                args=(worker, self.config, group, send_conn, ctl_recv, inherited),
            )
            process.start()
            send_conn.close()
            ctl_recv.close()
            self.children[worker] = _Child(worker, process, recv_conn, ctl_send)

    def wait_ready(self, on_snapshot: OnSnapshot) -> None:
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while not all(c.ready for c in self.children.values()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise StartupError("capture workers did not start in time")
            self.poll(left, on_snapshot, starting=True)

    def poll(self, timeout: float, on_snapshot: OnSnapshot, starting: bool = False) -> list[str]:
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

    def _handle(self, child: _Child, message: tuple, on_snapshot: OnSnapshot) -> None:
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

    def stop(self, on_snapshot: OnSnapshot) -> None:
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


def supervise(
    workers: WorkerSet,
    signals: Signals,
    reloader: Reloader,
    notifier: Notifier,
    heartbeat: Heartbeat,
    on_snapshot: OnSnapshot,
) -> int:
    """The parent's loop until SIGTERM (exit 0) or a dead worker (exit 1)."""
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

"""One capture loop: a live handle → the pipeline → snapshots, and the body of a worker process.

The loop publishes a snapshot of its metrics between batches (about once a second, or at
once when a waiting scrape asks), so a scrape never sees a half-updated association. With
``workers: 1`` it runs in the daemon's main thread (``run.run_in_process``); with N it runs
in each forked worker process (``worker_process``), which sends its snapshots to the parent.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing.connection
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from dicomsniffd.capture import BpfError, CaptureError
from dicomsniffd.capture.live import LiveSource
from dicomsniffd.config import Config
from dicomsniffd.daemon.errors import EXIT_CONFIG, EXIT_FAILURE, StartupError
from dicomsniffd.daemon.http import Heartbeat
from dicomsniffd.daemon.privileges import _run_user, drop_privileges
from dicomsniffd.daemon.reload import apply_to_capture, apply_to_logging, apply_to_metrics
from dicomsniffd.daemon.signals import Signals
from dicomsniffd.daemon.systemd import Notifier
from dicomsniffd.decode import Decoder
from dicomsniffd.pipeline import Pipeline
from dicomsniffd.sinks.eventlog import EventLog
from dicomsniffd.sinks.metrics import MetricsStore

PUBLISH_EVERY_S = 1.0  # snapshot cadence of the capture loop (what a scrape can lag)
IDLE_EXPIRE_EVERY_S = 1.0  # wall-time expiry while no packets arrive


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


def flight_recorder(config: Config, linktype: int, worker: str) -> Any:
    """The evidence flight recorder, or None when ``evidence.directory`` is empty. Its
    directory is made the run user's when started as root (the daemon drops to it)."""
    if not config.evidence.directory:
        return None
    from dicomsniffd.evidence.folder import EvidenceError
    from dicomsniffd.evidence.recorder import FlightRecorder

    try:
        recorder = FlightRecorder(config.evidence, linktype, worker)
    except (EvidenceError, OSError) as exc:
        raise StartupError(f"evidence.directory: {exc}", EXIT_CONFIG) from None
    if os.geteuid() == 0:
        with contextlib.suppress(Exception):  # not root after all, or no such user: as is
            user = _run_user(config.daemon)
            for name in (config.evidence.directory, *_entries(config.evidence.directory)):
                os.chown(name, user.pw_uid, user.pw_gid)
    return recorder


def _entries(directory: str) -> list[str]:
    return [os.path.join(directory, n) for n in os.listdir(directory)]


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
        self.recorder = flight_recorder(config, source.linktype, worker)
        if self.recorder is not None:
            sinks.append(self.recorder)
        self.pipeline = Pipeline(config, sinks, worker, labels=self.metrics)
        self.metrics.set_self_stats_source(self._self_stats)
        self.decoder = Decoder(source.linktype)
        self.want_snapshot = Waker()
        self.pending_config: Config | None = None
        self._last_packet_wall = time.monotonic()
        self._next_publish = 0.0
        self._next_idle_expire = 0.0

    def _self_stats(self) -> dict[str, Any]:
        stats = self.pipeline.self_stats()
        if self.recorder is not None:
            stats.update(self.recorder.stats())
        else:  # the recorder's families still carry their (zero) series
            from dicomsniffd.evidence.recorder import idle_stats

            stats.update(idle_stats())
        return stats

    def _open_event_log(self, config: Config) -> EventLog | None:
        path = _event_log_path(config.event_log.path, self.worker, config.capture.workers)
        if not path:
            return None
        cfg = dataclasses.replace(config.event_log, path=path)
        try:
            return EventLog.from_config(cfg, keep_instance_uids=config.dicom.keep_instance_uids)
        except OSError as exc:
            raise StartupError(f"cannot open event log {path}: {exc.strerror or exc}") from None

    def run(self, stop: threading.Event) -> None:
        wait_s = min(0.25, max(0.01, self.config.capture.timeout_ms / 1000))
        process = self.pipeline.process_batch
        recorder = self.recorder  # None when evidence.directory is empty: one test per batch
        try:
            while not stop.is_set():
                packet_bytes, records = self.source.read(
                    self.config.capture.batch_size, wait_s, self.want_snapshot.fd
                )
                now = time.monotonic()
                if records:
                    if recorder is not None:
                        recorder.batch(packet_bytes, records)
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
            if self.recorder is not None:
                self.recorder.tick(last_ts + (now - self._last_packet_wall))

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
        apply_to_metrics(self.metrics, new)
        self.config = apply_to_capture(self.worker, self.source, self.config, new)

    def shutdown(self) -> None:
        """Close every flow as seen so far, publish the final state, close files."""
        try:
            self.pipeline.finish()
            if self.recorder is not None:
                self.recorder.close()
            self.publish()
        finally:
            if self.event_log is not None:
                self.event_log.close()
            self.source.close()


# ---------------------------------------------------------------------------------------
# workers: N — the body of one forked worker process (the parent's side: workers.py)
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


def worker_process(
    worker: str,
    config: Config,
    group: int,
    conn: multiprocessing.connection.Connection,
    control: multiprocessing.connection.Connection,
    inherited: list[socket.socket],
) -> None:
    """Body of one forked worker: open, report, drop privileges, capture until told.

    Messages to the parent: ("ready", worker, linktype), ("snap", worker, snapshot),
    ("error", worker, message, exit code); from it: ("config", accepted new config).
    """
    for sock in inherited:
        sock.close()  # the parent's listening socket is none of our business
    signals = Signals()
    signals.install(reload=False)  # the parent validates reloads and sends them over
    try:
        source = open_source(config, group)
        outbox = _Outbox(conn)
        capture = CaptureWorker(config, source, worker, lambda s: outbox.put(("snap", worker, s)))
        drop_privileges(config.daemon)
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
                    apply_to_logging(payload)
                    self._capture.pending_config = payload
        except (EOFError, OSError):
            self._signals.stop.set()  # parent gone
        return self._signals.stop.is_set()

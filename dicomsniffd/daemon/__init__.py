"""`dicomsniffd run`, the live daemon: one module per job.

- ``run``: ``main`` and the two run modes (in-process for ``workers: 1``, forked workers);
- ``worker``: one capture loop (``CaptureWorker``) and the body of a worker process;
- ``workers``: the parent's side of N workers (``WorkerSet``, ``supervise``);
- ``http``: /metrics and /healthz (``MetricsHTTPServer``, ``Heartbeat``, ``MetricsView``);
- ``reload``: SIGHUP, with the one table of reloadable settings (``RELOADABLE``);
- ``privileges``, ``logs``, ``systemd``, ``signals``, ``errors`` (exit codes).

A new reloadable key: one line in ``reload.RELOADABLE`` and the SIGHUP list in README.md
(tests/test_daemon_reload.py checks both).
"""

from __future__ import annotations

from dicomsniffd.daemon.run import main

__all__ = ["main"]

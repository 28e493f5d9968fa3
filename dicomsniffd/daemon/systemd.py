"""systemd notification without a dependency: datagrams on $NOTIFY_SOCKET.

READY=1 once capturing, STOPPING=1 on the way out, WATCHDOG=1 while the capture loop turns
(the unit's WatchdogSec=).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time

log = logging.getLogger("dicomsniffd.daemon")


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

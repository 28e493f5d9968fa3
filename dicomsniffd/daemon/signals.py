"""SIGTERM/SIGINT (stop) and SIGHUP (reload) as flags the loops look at between batches."""

from __future__ import annotations

import signal
import threading
from typing import Any


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

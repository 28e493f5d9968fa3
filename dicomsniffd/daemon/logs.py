"""The daemon's own log: structured lines on stderr, with a per-message rate limit."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from dicomsniffd.config import LoggingConfig

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

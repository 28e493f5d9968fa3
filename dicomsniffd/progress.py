"""The progress bar of `analyze` on a terminal: the one module that imports tqdm.

The core layers know nothing of it: ``analyze_files`` takes a plain ``progress(bytes read,
packets)`` callback, called once per batch; this module turns it into a tqdm bar on
standard error (bytes read of the total, packets, associations, rate, ETA), redrawn at
most every ``_MININTERVAL_S``. No bar when standard error is not a terminal, or with
``--quiet``: ``bar`` then returns None and analyze runs with no callback at all.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

_MININTERVAL_S = 0.5


class ProgressBar:
    """A ``progress(position, packets)`` callback drawing a tqdm bar."""

    def __init__(self, total: int | None, associations: Callable[[], int], stream: TextIO) -> None:
        self._associations = associations
        self._next = 0.0
        self._last: tuple[int, int] | None = None  # the latest (position, packets)
        # Imported only when a bar is drawn: tqdm costs ~35 ms of start-up, and most runs
        # (a pipe, a cron job, --quiet) show none.
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            file=stream,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            mininterval=_MININTERVAL_S,
            dynamic_ncols=True,
            leave=False,  # the summary follows on the terminal: the bar makes way for it
            desc="analyze",
        )

    def __call__(self, position: int, packets: int) -> None:
        self._last = (position, packets)
        now = time.monotonic()
        if now < self._next:  # throttled: most batches cost this comparison only
            return
        self._next = now + _MININTERVAL_S
        self._show(position, packets)

    def _show(self, position: int, packets: int) -> None:
        bar = self._bar
        bar.postfix = f"{packets:,} packets, {self._associations():,} associations"
        bar.n = position
        bar.refresh()

    def close(self) -> None:
        """The final counts drawn once, then the bar cleared from the terminal."""
        if self._last is not None:
            self._show(*self._last)
        self._bar.close()


def _total(paths: Sequence[str]) -> int | None:
    """The sum of the files' sizes; None when one is unknown (e.g. a FIFO)."""
    total = 0
    for path in paths:
        try:
            size = os.stat(path).st_size
        except OSError:
            return None
        if size <= 0:
            return None
        total += size
    return total


@contextmanager
def bar(
    paths: Sequence[str],
    associations: Callable[[], int],
    *,
    quiet: bool = False,
    stream: TextIO | None = None,
) -> Iterator[ProgressBar | None]:
    """The callback for ``analyze_files(progress=...)``, or None (quiet, or no terminal).

    The bar is closed (cleared) when the block ends, whether analyze finished or failed.
    """
    stream = sys.stderr if stream is None else stream
    if quiet or not _isatty(stream):
        yield None
        return
    progress = ProgressBar(_total(paths), associations, stream)
    try:
        yield progress
    finally:
        progress.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False

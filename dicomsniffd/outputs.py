"""Where `dicomsniffd analyze` writes its outputs (--metrics, --events, --report).

A sniffer runs as root, so one rule for every output, checked before the capture is read:

- ``-`` is standard output (written, flushed, never closed);
- a path that exists is followed through symlinks, as the shell's ``>`` does: a regular
  file is written (the report replaces it atomically, in the directory of the resolved
  path, so a symlink stays a symlink), a FIFO or character device (``/dev/stdout``, a
  pipe, ``/dev/null``) is written through and never replaced;
- a directory, a block device or a socket is refused;
- a missing file is created; its directory must exist.

Every failure is an ``OutputError`` with a one-line message naming the path. A closed
pipe (EPIPE) is left as ``BrokenPipeError``: the command line exits quietly on it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from typing import IO

STDOUT = "-"

# check() kinds
TO_STDOUT, NEW_FILE, REGULAR_FILE, STREAM = "stdout", "new", "file", "stream"


class OutputError(Exception):
    """An output that cannot be written; ``str()`` is the one-line message."""


def error(path: str, exc: OSError) -> OutputError:
    """The one-line error of ``exc`` (an ``OSError`` while writing ``path``)."""
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")


def check(path: str) -> str:
    """What ``path`` is as an output (one of the kinds above); refuses what must not be
    written or replaced with ``OutputError``. Creates nothing."""
    if path == STDOUT:
        return TO_STDOUT
    if not path:
        raise OutputError("cannot write an output to an empty file name")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        parent = os.path.dirname(os.path.realpath(path))
        if not os.path.isdir(parent):
            raise OutputError(f"cannot write {path}: directory {parent} does not exist") from None
        return NEW_FILE
    except OSError as exc:  # ENOTDIR (a file used as a directory), ELOOP, EACCES
        raise error(path, exc) from None
    if stat.S_ISREG(mode):
        return REGULAR_FILE
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return STREAM
    if stat.S_ISDIR(mode):
        raise OutputError(f"cannot write {path}: it is a directory")
    what = "a block device" if stat.S_ISBLK(mode) else "not a file, FIFO or character device"
    raise OutputError(f"refusing to write {path}: {what}")


@contextlib.contextmanager
def opened(path: str, *, binary: bool = False, append: bool = False) -> Iterator[IO]:
    """``path`` open for writing (``-``: standard output, flushed, not closed). OSError
    (other than EPIPE) becomes ``OutputError``, also when it happens in the ``with`` body."""
    kind = check(path)
    try:
        if kind == TO_STDOUT:
            stream = sys.stdout.buffer if binary else sys.stdout
            yield stream
            stream.flush()
            return
        mode = ("a" if append else "w") + ("b" if binary else "")
        with open(path, mode, **({} if binary else {"encoding": "utf-8"})) as stream:  # noqa: SIM115
            yield stream
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise error(path, exc) from None


def write(path: str, data: bytes, *, atomic: bool = False) -> None:
    """Write ``data`` to ``path``. ``atomic``: a regular file (or a new one) is replaced by
    rename, so a reader never sees half of it; a FIFO, device or ``-`` is written through."""
    kind = check(path)
    if not atomic or kind in (TO_STDOUT, STREAM):
        with opened(path, binary=True) as out:
            out.write(data)
        return
    target = os.path.realpath(path)  # replace the file a symlink points to, not the link
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dicomsniffd-", dir=os.path.dirname(target))
    except OSError as exc:
        raise error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise error(path, exc) from None
        raise


def check_analyze(args: object) -> bool:
    """Check the outputs of ``dicomsniffd analyze`` before the capture is read (the
    options --metrics, --events, --report, --json). Returns whether one of them is ``-``:
    then standard output carries that output alone and the text summary is not printed.
    At most one output can be ``-``, and not together with --json (which prints the
    summary on standard output)."""
    named = {
        option: path
        for option in ("metrics", "events", "report")
        if (path := getattr(args, option, None)) is not None
    }
    to_stdout = [f"--{option}" for option, path in named.items() if check(path) == TO_STDOUT]
    if getattr(args, "json", False):
        to_stdout.append("--json")
    if len(to_stdout) > 1 and any(path == STDOUT for path in named.values()):
        raise OutputError(
            f"{' and '.join(to_stdout)} would all write to standard output; "
            "send all but one to a file"
        )
    return any(path == STDOUT for path in named.values())


def quiet_broken_pipe() -> None:
    """After EPIPE on standard output: point it at /dev/null so the interpreter's final
    flush does not print a second error."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


JSON_PIECE = 1 << 16  # JSON tokens per write (about 0.5 MB of an analyze summary)


def write_json(stream: IO[str], doc: object) -> None:
    """``doc`` as indented JSON and a newline, written JSON_PIECE tokens at a time.

    Not ``json.dump``: it writes every token, one system call apiece when the stream is
    unbuffered (PYTHONUNBUFFERED, common in containers: 1.3 M calls, 1.2 s, for 10,000
    associations); nor one ``json.dumps`` string: a second copy of a document that may
    be tens of MB. The pieces are joined in C (``str.join`` over ``islice``): no Python
    code runs per token beyond the encoder's own.
    """
    tokens = json.JSONEncoder(indent=2, default=str).iterencode(doc)
    while piece := "".join(itertools.islice(tokens, JSON_PIECE)):
        stream.write(piece)
    stream.write("\n")

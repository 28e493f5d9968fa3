"""Helpers to run `dicomsniffd run` as a real process (no tests in this module).

The daemon is started with the current interpreter (``python -m dicomsniffd``) so its pid
is the daemon's pid (no shim in between): /proc/PID/status and signals reach it directly.
Its stderr goes to a file the test can read while it runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readable_dir() -> str:
    """A temp dir the dropped-privilege daemon can read (pytest's tmp_path is 0700 root)."""
    path = tempfile.mkdtemp(prefix="dsniff-daemon-")
    os.chmod(path, 0o755)
    return path


def write_config(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def daemon_argv(*args: str) -> list[str]:
    return [PY, "-m", "dicomsniffd", "run", *args]


def daemon_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NOTIFY_SOCKET", None)
    env.update(extra)
    return env


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = None
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total = (total or 0.0) + float(m.group(4))
    return total


class Daemon:
    """A running `dicomsniffd run`; ``argv_prefix`` runs it elsewhere (ip netns exec...)."""

    def __init__(
        self,
        args: Sequence[str],
        workdir: str,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        argv_prefix: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.stderr_path = os.path.join(workdir, f"daemon-{self.port}.log")
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115
        argv = [*argv_prefix, *daemon_argv(*args, "--listen", f"127.0.0.1:{self.port}")]
        self.proc = subprocess.Popen(
            argv,
            stdout=self._stderr,
            stderr=subprocess.STDOUT,
            env=env or daemon_env(),
            cwd=str(REPO),
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return Path(self.stderr_path).read_text()

    def wait_log(self, pattern: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if re.search(pattern, text):
                return text
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not in daemon log:\n{self.log()}")

    def wait_healthy(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                if http_get(self.url("/healthz"), timeout=1)[0] == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"daemon not healthy in {timeout}s:\n{self.log()}")

    def metrics(self) -> str:
        code, body = http_get(self.url("/metrics"))
        assert code == 200, body
        return body

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._stderr.close()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def child_pids(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []

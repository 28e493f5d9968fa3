"""The progress bar of `analyze` (dicomsniffd/progress.py): on a terminal's stderr only.

The command runs for real with its standard error on a pseudo-terminal (``os.openpty``),
standard output on a pipe, so the results can be compared with a run without a terminal.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import struct
import subprocess
import sys
import termios

from pipeline_captures import REPO, Capture, cli, run, store_session

from dicomsniffd.analyze import analyze_files
from dicomsniffd.config import Config
from dicomsniffd.sinks.summary import Summary


def _captures(tmp_path, n_files: int = 2) -> list[str]:
    """``n_files`` pcaps in time order, each one association of a few C-STOREs."""
    paths = []
    for i in range(n_files):
        cap = Capture(start=1_700_000_000.0 + 100 * i)
        store_session(cap, 3, 5_000, cport=40001 + i)
        paths.append(str(cap.write(tmp_path / f"part{i}.pcap")))
    return paths


def _cli_on_tty(*args: str) -> tuple[int, str, str]:
    """Run the command with stderr on a pseudo-terminal: (exit code, stdout, terminal text)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dicomsniffd", *args],
            stdout=subprocess.PIPE,
            stderr=slave,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
        )
    finally:
        os.close(slave)
    terminal = b""
    while True:  # read as it comes (a full pty would block the child); EIO: child is gone
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        terminal += chunk
    stdout = proc.stdout.read()
    proc.stdout.close()
    code = proc.wait(timeout=120)
    os.close(master)
    return code, stdout.decode(), terminal.decode(errors="replace")


def test_bar_on_a_terminal_and_results_unchanged(tmp_path):
    paths = _captures(tmp_path)
    packets = run(paths).info["packets"]
    code, stdout, terminal = _cli_on_tty("analyze", *paths, "--json")
    assert code == 0, terminal
    assert "%|" in terminal  # tqdm's bar
    assert f"{packets:,} packets" in terminal
    assert "2 associations" in terminal
    assert "100%" in terminal  # the last draw reaches the sum of the file sizes
    plain = cli("analyze", *paths, "--json")
    assert plain.returncode == 0, plain.stderr
    assert json.loads(stdout) == json.loads(plain.stdout)


def test_no_bar_without_a_terminal(tmp_path):
    paths = _captures(tmp_path)
    p = cli("analyze", *paths)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert "MODALITY1" in p.stdout  # the summary itself is still printed


def test_quiet_keeps_the_terminal_silent(tmp_path):
    paths = _captures(tmp_path)
    code, stdout, terminal = _cli_on_tty("analyze", *paths, "--json", "--quiet")
    assert code == 0, terminal
    assert terminal == ""
    assert json.loads(stdout)["capture"]["packets"] == run(paths).info["packets"]


def test_progress_callback_once_per_batch_up_to_the_total(tmp_path):
    paths = _captures(tmp_path, n_files=3)
    base = Config()
    config = dataclasses.replace(base, capture=dataclasses.replace(base.capture, batch_size=4))
    calls: list[tuple[int, int]] = []
    info = analyze_files(paths, config, [Summary()], progress=lambda *a: calls.append(a))
    total = sum(os.path.getsize(p) for p in paths)
    assert calls[-1] == (total, info["packets"])
    positions = [c[0] for c in calls]
    assert positions == sorted(positions)
    # per batch, not per packet: about packets / batch_size calls (plus one per file end)
    assert len(calls) <= info["packets"] // 4 + 2 * len(paths)

"""Output safety of `dicomsniffd analyze` (a sniffer runs as root): `-` is standard output,
FIFOs and character devices are written through and never replaced, directories and
block devices are refused, a full disk or a bad path is one line and exit code 2, and a
reader that goes away (EPIPE) is a quiet exit."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_captures import REPO, Capture, store_session

from dicomsniffd import outputs


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    cap = Capture()
    store_session(cap, 3, 2000)
    return cap.write(tmp_path / "c.pcap")


def analyze(capture: Path, *args: str, cwd: Path, stdout=subprocess.PIPE):
    return subprocess.run(
        [sys.executable, "-m", "dicomsniffd", "analyze", str(capture), *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def one_line_error(p: subprocess.CompletedProcess, *words: str) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("dicomsniffd: error:"), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# -- "-" is standard output ------------------------------------------------------------------


def test_events_dash_is_stdout_and_creates_no_file(capture, tmp_path):
    p = analyze(capture, "--events", "-", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / "-").exists()
    events = [json.loads(line) for line in p.stdout.splitlines()]  # nothing but JSON lines
    assert {"association", "dimse"} <= {e["type"] for e in events}


def test_metrics_and_report_dash_are_stdout(capture, tmp_path):
    p = analyze(capture, "--metrics", "-", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("# HELP ")
    assert "dicom_association_requests_total" in p.stdout
    p = analyze(capture, "--report", "-", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("<!DOCTYPE html>") and p.stdout.rstrip().endswith("</html>")
    assert not (tmp_path / "-").exists()


def test_events_to_dev_stdout_on_a_pipe(capture, tmp_path):
    p = analyze(capture, "--events", "/dev/stdout", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert {json.loads(ln)["type"] for ln in lines} >= {"association", "dimse"}


def test_two_outputs_on_stdout_are_refused(capture, tmp_path):
    one_line_error(analyze(capture, "--events", "-", "--json", cwd=tmp_path), "--events", "--json")
    one_line_error(
        analyze(capture, "--metrics", "-", "--report", "-", cwd=tmp_path), "--metrics", "--report"
    )


# -- what exists at the path -----------------------------------------------------------------


@pytest.mark.parametrize("option", ["--events", "--metrics", "--report"])
def test_dev_full_is_one_line_and_stays_a_device(capture, tmp_path, option):
    p = analyze(capture, option, "/dev/full", cwd=tmp_path)
    one_line_error(p, "/dev/full", "No space left on device")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_report_through_a_symlink_keeps_the_link(capture, tmp_path):
    target = tmp_path / "real.html"
    target.write_text("old\n")
    link = tmp_path / "link.html"
    link.symlink_to(target.name)
    p = analyze(capture, "--report", str(link), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and os.readlink(link) == target.name
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["c.pcap", "link.html", "real.html"]


@pytest.mark.parametrize("option", ["--report", "--metrics", "--events"])
def test_fifo_is_written_through_not_replaced(capture, tmp_path, option):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    # A reader that is already open lets the writer open the FIFO; the output (< 64 KiB)
    # fits in the pipe buffer, so it is all there once the run has finished.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        p = analyze(capture, option, str(fifo), cwd=tmp_path)
        data = os.read(reader, 1 << 20).decode()
    finally:
        os.close(reader)
    assert p.returncode == 0, p.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    expected = {"--report": "<!DOCTYPE html>", "--metrics": "# HELP ", "--events": '{"ts":'}
    assert data.startswith(expected[option])


@pytest.mark.parametrize("option", ["--report", "--metrics", "--events"])
def test_bad_paths_are_one_line_errors(capture, tmp_path, option):
    one_line_error(analyze(capture, option, str(tmp_path), cwd=tmp_path), "is a directory")
    one_line_error(
        analyze(capture, option, str(tmp_path / "nodir" / "out"), cwd=tmp_path),
        "nodir",
        "does not exist",
    )
    one_line_error(
        analyze(capture, option, str(capture / "out"), cwd=tmp_path), "c.pcap/out", "Not a dir"
    )
    assert sorted(f.name for f in tmp_path.iterdir()) == ["c.pcap"]


def test_refused_before_the_capture_is_read(tmp_path):
    # the output is checked first: the missing capture is not what the error is about
    p = analyze(tmp_path / "missing.pcap", "--report", str(tmp_path), cwd=tmp_path)
    one_line_error(p, str(tmp_path), "is a directory")


def test_block_device_and_socket_are_refused(monkeypatch):
    for mode, words in ((stat.S_IFBLK | 0o660, "a block device"), (stat.S_IFSOCK | 0o777, "not a")):
        monkeypatch.setattr(
            outputs.os, "stat", lambda path, mode=mode: os.stat_result((mode,) + (0,) * 9)
        )
        with pytest.raises(outputs.OutputError, match=words):
            outputs.check("/dev/sdz")


# -- the reader goes away (EPIPE) ------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [("--events", "-"), ("--metrics", "-"), ("--report", "-"), ("--json",), ()]
)
def test_closed_pipe_is_a_quiet_exit(capture, tmp_path, args):
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write gets EPIPE, as after `| head -c1`
    try:
        p = analyze(capture, *args, cwd=tmp_path, stdout=write_end)
    finally:
        os.close(write_end)
    assert (p.returncode, p.stderr) == (0, "")
    assert not (tmp_path / "-").exists()


# -- unbuffered standard output ----------------------------------------------------------------


class _CountingStdout:
    """Stands in for an unbuffered sys.stdout (PYTHONUNBUFFERED): each write a syscall."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("piece", [1 << 16, 64])
def test_json_summary_is_written_in_pieces_on_an_unbuffered_stdout(capture, monkeypatch, piece):
    from dicomsniffd import cli

    monkeypatch.setattr(outputs, "JSON_PIECE", piece)
    out = _CountingStdout()
    monkeypatch.setattr(sys, "stdout", out)
    assert cli.main(["analyze", str(capture), "--json", "--quiet"]) in (0, 1)
    text = "".join(out.writes)
    doc = json.loads(text)
    assert doc["associations"] and text == json.dumps(doc, indent=2) + "\n"
    tokens = len(list(json.JSONEncoder(indent=2).iterencode(doc)))
    # json.dump: a write per token (over a thousand here); one string: a second copy
    assert len(out.writes) == -(-tokens // piece) + 1, (len(out.writes), tokens)

"""`dicomsniffd run` as a process on loopback: exits, health, signals, privileges."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from test_daemon_support import (
    Daemon,
    child_pids,
    daemon_argv,
    daemon_env,
    free_port,
    http_get,
    metric_value,
    proc_status,
    readable_dir,
    write_config,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")


@pytest.fixture
def conf_dir():
    """A directory the daemon can still read after dropping privileges to nobody."""
    import shutil

    path = readable_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        daemon_argv(*args), capture_output=True, text=True, timeout=timeout, env=daemon_env()
    )


def _one_error_line(p: subprocess.CompletedProcess) -> str:
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("dicomsniffd: error: "), p.stderr
    return lines[0]


# -- start-up failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("capture:\n  workers: 0\n", "capture.workers"),
        ("flows: [1, 2\n", "dicomsniffd.yaml"),
        ("nonsense_key: 1\n", "nonsense_key"),
    ],
)
def test_config_errors_exit_2_with_one_line(tmp_path, yaml_text: str, needle: str) -> None:
    path = write_config(str(tmp_path / "dicomsniffd.yaml"), yaml_text)
    p = _run("-c", path, "-i", "lo")
    assert p.returncode == 2, p.stderr
    assert needle in _one_error_line(p)


def test_missing_config_file_exits_2(tmp_path) -> None:
    p = _run("-c", str(tmp_path / "absent.yaml"))
    assert p.returncode == 2
    assert "absent.yaml" in _one_error_line(p)


def test_bad_cli_override_exits_2() -> None:
    p = _run("-i", "lo", "--workers", "0")
    assert p.returncode == 2
    assert "--workers" in _one_error_line(p)


def test_bad_bpf_exits_2() -> None:
    p = _run("-i", "lo", "-f", "tcp and bogus", "--listen", f"127.0.0.1:{free_port()}")
    assert p.returncode == 2
    assert "invalid BPF filter" in _one_error_line(p)


def test_missing_interface_one_line() -> None:
    p = _run("-i", "nosuch0", "--listen", f"127.0.0.1:{free_port()}")
    assert p.returncode == 1
    line = _one_error_line(p)
    assert "nosuch0" in line and "not found" in line


def test_busy_metrics_port_one_line() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        p = _run("-i", "lo", "--listen", f"127.0.0.1:{s.getsockname()[1]}")
    assert p.returncode == 1
    assert "cannot listen on" in _one_error_line(p)


# -- a running daemon --------------------------------------------------------------------


def test_healthz_metrics_privilege_drop_and_sigterm(tmp_path) -> None:
    with Daemon(["-i", "lo"], str(tmp_path)) as d:
        d.wait_healthy()
        assert http_get(d.url("/healthz")) == (200, "ok\n")
        status = proc_status(d.pid)
        uids = status["Uid"].split()
        assert uids[0] != "0" and all(u == uids[0] for u in uids), status["Uid"]
        assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
        assert status["NoNewPrivs"] == "1"
        text = d.metrics()
        assert metric_value(text, "dicomsniffd_packets_total", worker="0") is not None
        assert metric_value(text, "dicomsniffd_config_reload_failures_total") == 0
        assert http_get(d.url("/nope"))[0] == 404
        assert d.stop() == 0
    assert "stopped" in d.log()


def test_sighup_good_and_bad_reload(tmp_path, conf_dir) -> None:
    path = write_config(os.path.join(conf_dir, "dicomsniffd.yaml"), "logging:\n  level: info\n")
    with Daemon(["-c", path, "-i", "lo"], str(tmp_path)) as d:
        d.wait_healthy()
        # Good: a hot key (bpf, log level) applies, a cold one (buffer) is reported.
        write_config(
            path,
            "capture:\n  bpf: tcp port 11112\n  buffer_size_mb: 8\nlogging:\n  level: debug\n",
        )
        d.signal(signal.SIGHUP)
        text = d.wait_log(r"config reloaded")
        line = next(x for x in text.splitlines() if "config reloaded" in x)
        assert "capture.bpf" in line.split("needs a restart")[0]
        assert "logging.level" in line.split("needs a restart")[0]
        assert "capture.buffer_size_mb" in line.split("needs a restart")[1]
        # Bad: refused, counted, the daemon keeps running on the old config.
        write_config(path, "capture:\n  snaplen: -5\n")
        d.signal(signal.SIGHUP)
        text = d.wait_log(r"config reload refused")
        refused = [x for x in text.splitlines() if "config reload refused" in x]
        assert len(refused) == 1 and "capture.snaplen" in refused[0]
        write_config(path, "capture:\n  bpf: tcp and bogus\n")
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if metric_value(d.metrics(), "dicomsniffd_config_reload_failures_total") == 2:
                break
            time.sleep(0.1)
        assert metric_value(d.metrics(), "dicomsniffd_config_reload_failures_total") == 2
        assert http_get(d.url("/healthz"))[0] == 200
        assert d.stop() == 0


def test_workers_two_on_loopback_and_stalled_worker(tmp_path) -> None:
    config = write_config(str(tmp_path / "stall.yaml"), "daemon:\n  stall_after_s: 2\n")
    with Daemon(["-c", config, "-i", "lo", "--workers", "2"], str(tmp_path)) as d:
        d.wait_healthy()
        kids = child_pids(d.pid)
        assert len(kids) == 2, kids
        for pid in (d.pid, *kids):
            assert proc_status(pid)["Uid"].split()[0] != "0"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            text = d.metrics()
            if all(
                metric_value(text, "dicomsniffd_packets_total", worker=w) is not None
                for w in ("0", "1")
            ):
                break
            time.sleep(0.2)
        for w in ("0", "1"):
            assert metric_value(text, "dicomsniffd_packets_total", worker=w) is not None
        # A stopped worker stops sending snapshots: /healthz turns 503 naming it.
        os.kill(kids[1], signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 8
            code, body = 200, ""
            while time.monotonic() < deadline:
                code, body = http_get(d.url("/healthz"))
                if code == 503:
                    break
                time.sleep(0.2)
            assert code == 503 and "stalled" in body and "worker 1" in body, body
        finally:
            os.kill(kids[1], signal.SIGCONT)
        d.wait_healthy(timeout=8)
        assert d.stop() == 0
        for pid in kids:
            assert not os.path.exists(f"/proc/{pid}") or "Z" in proc_status(pid)["State"]


def test_worker_death_fails_the_daemon(tmp_path) -> None:
    with Daemon(["-i", "lo", "--workers", "2"], str(tmp_path)) as d:
        d.wait_healthy()
        os.kill(child_pids(d.pid)[0], signal.SIGKILL)
        assert d.proc.wait(20) == 1
    assert "capture worker" in d.log() and "exited" in d.log()


def test_event_log_flushed_on_sigterm(tmp_path, conf_dir) -> None:
    """A DICOM association on loopback ends up in the event log once SIGTERM is handled."""
    import scenarios
    from peers import make_ct

    log_dir = conf_dir
    events = os.path.join(log_dir, "events.jsonl")
    path = write_config(
        os.path.join(log_dir, "dicomsniffd.yaml"), f"event_log:\n  path: {events}\n"
    )
    files = [p for p, _ in make_ct.make_series(str(tmp_path / "ct"), 2, 64, series=7)]
    port = free_port()
    scp = subprocess.Popen(
        [scenarios.dcmtk("storescp"), "-aet", "STORESCP", "--ignore", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with Daemon(["-c", path, "-i", "lo", "-f", f"tcp port {port}"], str(tmp_path)) as d:
            d.wait_healthy()
            time.sleep(0.3)
            p = subprocess.run(
                [scenarios.dcmtk("storescu"), "-aet", "SIGTERMSCU", "-aec", "STORESCP",
                 "127.0.0.1", str(port), *files],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert p.returncode == 0, p.stdout + p.stderr
            time.sleep(0.5)  # the block timer hands the last frames over
            assert d.stop() == 0
    finally:
        scp.terminate()
        scp.wait(10)
    with open(events) as f:
        records = [json.loads(line) for line in f if line.strip()]
    assert any("SIGTERMSCU" in json.dumps(r) for r in records), records

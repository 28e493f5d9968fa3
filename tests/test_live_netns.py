"""The live daemon on a veth between two namespaces, with real DICOM peers.

Namespace "a" holds the SCUs, the daemon (capturing on veth "a") and, for the end-to-end
test, a real Prometheus server scraping the daemon over the namespace's loopback every
second; namespace "b" holds the SCPs. Nothing leaves the two namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import scenarios
from netns import VethPair
from peers import make_ct
from test_daemon_support import Daemon, daemon_env, metric_value

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and capture need root"),
]

PY = sys.executable
STORESCP_PORT = 11112
PYSCP_PORT = 11113


def ns_get(net: VethPair, url: str, timeout: float = 5.0) -> tuple[int, str]:
    """HTTP GET from inside namespace "a" (its loopback is not ours)."""
    code = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n"
        f"    r = urllib.request.urlopen({url!r}, timeout={timeout})\n"
        "    print(r.status); sys.stdout.write(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); sys.stdout.write(e.read().decode())\n"
        "except OSError as e:\n"
        "    print(0); sys.stdout.write(str(e))\n"
    )
    p = net.run("a", [PY, "-c", code], check=False, timeout=timeout + 10)
    status, _, body = p.stdout.partition("\n")
    return int(status or 0), body


def start_daemon(net: VethPair, workdir: str, *args: str) -> Daemon:
    d = Daemon(
        ["-i", net.iface("a"), *args],
        workdir,
        port=9104,  # the namespace is ours alone
        env=daemon_env(),
        argv_prefix=["ip", "netns", "exec", net.ns["a"]],
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if d.proc.poll() is not None:
            raise AssertionError(f"daemon exited {d.proc.returncode}:\n{d.log()}")
        if ns_get(net, d.url("/healthz"), 2)[0] == 200:
            time.sleep(0.3)  # the capture ring is live; let the first block timer pass
            return d
        time.sleep(0.2)
    d.close()
    raise AssertionError(f"daemon not healthy:\n{d.log()}")


def scrape_until(net: VethPair, d: Daemon, check, timeout: float = 20.0) -> str:
    """Scrape until ``check(text)`` holds (counters arrive within a snapshot period)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        code, text = ns_get(net, d.url("/metrics"))
        if code == 200 and check(text):
            return text
        time.sleep(0.3)
    return text


def storescu(net: VethPair, port: int, calling: str, called: str, files: list[str], *extra: str):
    return net.run(
        "a",
        [scenarios.dcmtk("storescu"), *extra, "-aet", calling, "-aec", called,
         net.ip("b"), str(port), *files],
        check=False,
    )  # fmt: skip


def test_two_workers_fanout_count_every_store_once(tmp_path) -> None:
    scenarios.require_all_tools()
    files = [p for p, _ in make_ct.make_series(str(tmp_path / "ct"), 3, 64, series=11)]
    associations = 10
    with VethPair() as net:
        scenarios.start_storescp(net, "b", STORESCP_PORT, "STORESCP")
        d = start_daemon(net, str(tmp_path), "--workers", "2")
        try:
            for i in range(associations):
                p = storescu(net, STORESCP_PORT, f"FANOUT{i}", "STORESCP", files)
                assert p.returncode == 0, p.stdout + p.stderr
            want = associations * len(files)

            def done(text: str) -> bool:
                got = metric_value(text, "dicom_dimse_responses_total", command="C-STORE")
                return got is not None and got >= want

            text = scrape_until(net, d, done)
            assert metric_value(text, "dicom_association_requests_total") == associations
            assert metric_value(text, "dicom_dimse_requests_total", command="C-STORE") == want
            assert (
                metric_value(
                    text, "dicom_dimse_responses_total", command="C-STORE", status="0x0000"
                )
                == want
            )
            assert metric_value(text, "dicom_association_ends_total", how="released") == (
                associations
            )
            per_worker = [
                metric_value(text, "dicomsniffd_packets_total", worker=w) or 0 for w in "01"
            ]
            assert all(n > 0 for n in per_worker), per_worker  # the hash spread the flows
            assert metric_value(text, "dicom_protocol_errors_total") in (None, 0)
            assert d.stop() == 0
        finally:
            d.close()


PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: dicomsniffd
    static_configs:
      - targets: ["127.0.0.1:9104"]
"""


def start_prometheus(net: VethPair, workdir: str) -> subprocess.Popen:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not installed (apt-get install prometheus)")
    config = os.path.join(workdir, "prometheus.yml")
    with open(config, "w") as f:
        f.write(PROMETHEUS_CONFIG)
    proc = net.popen(
        "a",
        [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir}/tsdb",
         "--web.listen-address=127.0.0.1:9090", "--log.level=warn"],
        stdout=open(os.path.join(workdir, "prometheus.log"), "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ns_get(net, "http://127.0.0.1:9090/-/ready", 2)[0] == 200:
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    raise AssertionError("prometheus did not become ready")


def prom_query(net: VethPair, expr: str) -> float | None:
    from urllib.parse import quote

    code, body = ns_get(net, f"http://127.0.0.1:9090/api/v1/query?query={quote(expr)}")
    assert code == 200, body
    result = json.loads(body)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def prom_wait(net: VethPair, expr: str, want: float, timeout: float = 30.0) -> float | None:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = prom_query(net, expr)
        if got == want:
            return got
        time.sleep(0.5)
    return got


def test_end_to_end_prometheus(tmp_path) -> None:
    scenarios.require_all_tools()
    ok_files = [p for p, _ in make_ct.make_series(str(tmp_path / "ok"), 3, 64, series=12)]
    st = make_ct.make_series(str(tmp_path / "st"), 3, 64, series=13)
    big = make_ct.make_series(str(tmp_path / "big"), 1, 256, series=14)[0][0]
    pyscp_cfg = {"ae_title": "PYSCP", "port": PYSCP_PORT, "store_status": {st[1][1]: "0xA700"}}
    with VethPair() as net:
        scenarios.start_storescp(net, "b", STORESCP_PORT, "STORESCP")
        scenarios.start_pyscp(net, "b", str(tmp_path), pyscp_cfg)
        prom = start_prometheus(net, str(tmp_path))
        d = start_daemon(net, str(tmp_path))
        try:
            p = storescu(net, STORESCP_PORT, "E2ESCU", "STORESCP", ok_files)
            assert p.returncode == 0, p.stdout + p.stderr
            # 3 stores to the pynetdicom SCP, the second answered 0xA700 (out of resources)
            storescu(net, PYSCP_PORT, "E2ESCU", "PYSCP", [x for x, _ in st], "-nh", "-R")
            p = net.run(
                "a",
                [PY, scenarios.RAWSCU_SCRIPT, "abort", net.ip("b"), str(STORESCP_PORT), big,
                 "--calling", "ABORTSCU", "--called", "STORESCP", "--fragments", "2",
                 "--fragment-size", "8000"],
                check=False,
            )  # fmt: skip
            assert p.returncode == 0, p.stdout + p.stderr

            checks = {
                "sum(dicom_association_requests_total)": 3,
                'sum(dicom_dimse_responses_total{status="0x0000"})': 5,
                'sum(dicom_dimse_responses_total{command="C-STORE",status="0xA700",'
                'called_ae="PYSCP"})': 1,
                'sum(dicom_dimse_response_latency_seconds_count{command="C-STORE"})': 6,
                'sum(dicom_association_aborts_total{calling_ae="ABORTSCU"})': 1,
            }
            results = {expr: prom_wait(net, expr, want) for expr, want in checks.items()}
            assert results == checks, d.log()
            assert prom_query(net, 'up{job="dicomsniffd"}') == 1
            assert d.stop() == 0
        finally:
            d.close()
            prom.terminate()
            prom.wait(15)

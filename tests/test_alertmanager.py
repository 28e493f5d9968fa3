"""Alerts through the real thing: exporter -> Prometheus -> Alertmanager -> webhook.

config/alertmanager/alertmanager.example.yml is checked with ``amtool check-config`` and its
routing tree with ``amtool config routes test``. Then, end to end, with Debian's packages
(``prometheus``, ``prometheus-alertmanager``; missing = FAIL, never skip):

  * a stand-in exporter on loopback serves MetricsStore.exposition() of hand-made events,
    fed 4 times a second: CT1 -> PACS C-STOREs answered 0xA700 (Out of Resources) and a
    burst of A-ABORTs on MR2 -> ARCHIVE (several per second, none before the test);
  * a real Prometheus scrapes it every second and evaluates the SHIPPED rule file with a
    1 s evaluation interval. Only one thing is changed, in a copy the test writes: every
    ``for:`` is shortened to 2s (DicomAbortSpike waits 5m in the shipped file). The
    thresholds, expressions, labels and annotations are the shipped ones;
  * a real Alertmanager runs the example config, with group_wait/group_interval shortened
    to 1s and the webhook URLs pointed at this test (again a copy; routing, grouping and
    receivers are the example's);
  * a small HTTP server on 127.0.0.1 collects the webhook POSTs.

DicomOutOfResources must arrive at the critical receiver and DicomAbortSpike at the warning
receiver, each with its AE pair labels, the rendered summary and the playbook description,
grouped by alertname/calling_ae/called_ae; no alert may reach the receiver of the other
severity. Every wait is bounded (90 s), every process is stopped.

The same chain runs (``@pytest.mark.netns``, root) behind ``dicomsniffd run`` capturing real
DICOM traffic between two network namespaces: DCMTK storescu answered 0xA700 by a
pynetdicom SCP, and rawscu associations aborted mid data set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from test_dashboard import CT, RULES, HandMadeTraffic, free_port, http_get

from dicomsniffd.config import MetricsConfig
from dicomsniffd.dicom.events import Aborted, AssociationEnded
from dicomsniffd.sinks.metrics import MetricsStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "alertmanager" / "alertmanager.example.yml"
TIMEOUT = 90.0


def need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} not found: install Debian's `{package}` (scripts/test.sh does)")
    return path


# ------------------------------------------------------------------------------------------
# The example config, offline
# ------------------------------------------------------------------------------------------


def test_example_config_passes_amtool_check_config() -> None:
    amtool = need("amtool", "prometheus-alertmanager")
    done = subprocess.run(
        [amtool, "check-config", str(EXAMPLE)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=DicomOutOfResources", "severity=critical"], "dicom-critical"),
        (["alertname=DicomsniffdDown", "severity=critical"], "dicom-critical"),
        (["alertname=DicomAbortSpike", "severity=warning"], "dicom-warning"),
        (["alertname=DicomNoTraffic", "severity=warning"], "dicom-warning"),
    ],
)
def test_example_routes_by_severity(labels: list[str], receiver: str) -> None:
    amtool = need("amtool", "prometheus-alertmanager")
    done = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={EXAMPLE}", *labels],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == [receiver]


def test_every_severity_of_the_shipped_rules_has_a_route() -> None:
    with open(RULES, encoding="utf-8") as f:
        rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "alert" in r]
    with open(EXAMPLE, encoding="utf-8") as f:
        example = yaml.safe_load(f)
    routed = {m for route in example["route"]["routes"] for m in route["matchers"]}
    for rule in rules:
        assert f'severity="{rule["labels"]["severity"]}"' in routed, rule["alert"]
    assert {"calling_ae", "called_ae"} <= set(example["route"]["group_by"])


# ------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------


class AlertTraffic(HandMadeTraffic):
    """One round: a CT1 -> PACS association whose C-STOREs get 0xA700 (and one success),
    and three MR2 -> ARCHIVE associations aborted by the SCU (the spike)."""

    def step(self) -> None:
        s = self.store
        ts = 1000.0 + self.round
        flow = self._flow("CT1", "PACS")
        self._association(flow, ts)
        for msg, (status, cls) in enumerate([(0x0000, "success"), (0xA700, "failure")], 1):
            self._transaction(flow, "C-STORE", CT, msg, status, cls, 0.02, 0.05, 500_000)
        s.handle(AssociationEnded(ts + 1, "released", 1.0), flow)
        for _ in range(3):
            flow = self._flow("MR2", "ARCHIVE")
            self._association(flow, ts)
            s.handle(Aborted(ts + 0.5, "requestor", "service-user", "not-specified", 0, 0), flow)
            s.handle(AssociationEnded(ts + 0.5, "aborted", 0.5), flow)
        self.round += 1


@pytest.fixture
def alert_exporter() -> Iterator[str]:
    from prometheus_client import start_http_server

    store = MetricsStore(MetricsConfig())
    traffic = AlertTraffic(store)
    traffic.step()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=store.registry)
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.25):
            traffic.step()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop.set()
        feeder.join()
        server.shutdown()
        server.server_close()
        thread.join()


class Webhook:
    """Collects Alertmanager's webhook POSTs: (path, JSON body)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook.lock:
                    hook.posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self) -> list[tuple[str, dict, dict]]:
        """(receiver path, notification, alert) of every firing alert received."""
        with self.lock:
            posts = list(self.posts)
        return [
            (path, note, alert)
            for path, note in posts
            for alert in note["alerts"]
            if alert["status"] == "firing"
        ]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class Process:
    """A server subprocess, ready when ``get(ready_url)`` answers; stop() always reaps it.
    ``popen``/``get``: subprocess.Popen/http_get, or their namespace equivalents."""

    def __init__(
        self, name: str, argv: list[str], ready_url: str, log: Path, *, popen=None, get=None
    ) -> None:
        self.name = name
        get = get or http_get
        self.log = open(log, "w+b")  # noqa: SIM115 (closed in stop)
        popen = popen or subprocess.Popen
        self.proc = popen(argv, stdout=self.log, stderr=subprocess.STDOUT, text=False)
        deadline = time.monotonic() + 30
        while True:
            try:
                get(ready_url, timeout=2)
                return
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = self.output()
                self.stop()
                pytest.fail(f"{name} did not start:\n{out}")
            time.sleep(0.2)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def rules_with_short_for(path: Path) -> list[str]:
    """Copy of the shipped rule file with every ``for:`` set to 2s; the alerts changed."""
    with open(RULES, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    changed = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
                changed.append(rule["alert"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return changed


def alertmanager_config_for_test(path: Path, webhook_port: int) -> None:
    """Copy of the example with 1 s grouping timers and the webhooks pointed at the test."""
    with open(EXAMPLE, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    for route in [doc["route"], *doc["route"]["routes"]]:
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = "1s"
    for receiver in doc["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = f"http://127.0.0.1:{webhook_port}/{receiver['name']}"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


WANTED = {
    "DicomOutOfResources": {
        "receiver": "/dicom-critical",
        "labels": {
            "severity": "critical",
            "calling_ae": "CT1",
            "called_ae": "PACS",
            "command": "C-STORE",
            "status": "0xA700",
        },
        "summary": "PACS refused C-STORE from CT1: Out of Resources (0xA700)",
        "description": "Check the SCP's free disk space and storage quota",
    },
    "DicomAbortSpike": {
        "receiver": "/dicom-warning",
        "labels": {"severity": "warning", "calling_ae": "MR2", "called_ae": "ARCHIVE"},
        "summary": "A-ABORT spike between MR2 and ARCHIVE",
        "description": 'Open the dashboard\'s "Aborts by source and reason" panel',
    },
}


def arrived(webhook: Webhook, name: str) -> tuple[str, dict, dict] | None:
    for path, note, alert in webhook.alerts():
        if alert["labels"].get("alertname") == name:
            return path, note, alert
    return None


def run_chain(
    target: str,
    workdir: Path,
    webhook: Webhook,
    *,
    ports: tuple[int, int] | None = None,
    popen=None,
    get=None,
    traffic=None,
) -> None:
    """Alertmanager (example config) and Prometheus (shipped rules, short ``for:``) against
    ``target``; wait (bounded) until WANTED reached ``webhook`` and check what arrived.
    ``traffic()`` is called between polls (the live variant makes its trouble there)."""
    prometheus = need("prometheus", "prometheus")
    alertmanager = need("prometheus-alertmanager", "prometheus-alertmanager")
    amtool = need("amtool", "prometheus-alertmanager")
    get = get or http_get
    shortened = rules_with_short_for(workdir / "rules.yml")
    assert "DicomAbortSpike" in shortened  # its shipped `for: 5m` would outlast the test
    alertmanager_config_for_test(workdir / "alertmanager.yml", webhook.port)
    check = subprocess.run(
        [amtool, "check-config", str(workdir / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    am_port, prom_port = ports or (free_port(), free_port())
    started: list[Process] = []
    try:
        started.append(
            Process(
                "alertmanager",
                [
                    alertmanager,
                    f"--config.file={workdir / 'alertmanager.yml'}",
                    f"--storage.path={workdir / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",  # no gossip: a single instance
                    "--log.level=warn",
                ],
                f"http://127.0.0.1:{am_port}/-/ready",
                workdir / "alertmanager.log",
                popen=popen,
                get=get,
            )
        )
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(workdir / "rules.yml")],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
            },
            "scrape_configs": [
                {
                    "job_name": "dicomsniffd-test",
                    "scrape_timeout": "1s",
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        started.append(
            Process(
                "prometheus",
                [
                    prometheus,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--log.level=warn",
                ],
                f"http://127.0.0.1:{prom_port}/-/ready",
                workdir / "prometheus.log",
                popen=popen,
                get=get,
            )
        )

        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and not all(arrived(webhook, n) for n in WANTED):
            if traffic is not None:
                traffic()
            time.sleep(0.5)
        missing = [n for n in WANTED if not arrived(webhook, n)]
        if missing:
            for proc in started:
                sys.stderr.write(f"\n[{proc.name} log]\n{proc.output()}\n")
            alerts = get(f"http://127.0.0.1:{prom_port}/api/v1/alerts", timeout=5)
            pytest.fail(
                f"no webhook for {missing} within {TIMEOUT:.0f} s; "
                f"received {[(p, a['labels']) for p, _, a in webhook.alerts()]}; "
                f"Prometheus alerts: {alerts.decode(errors='replace')[:3000]}"
            )
    finally:
        for proc in reversed(started):
            proc.stop()

    for name, want in WANTED.items():
        path, note, alert = arrived(webhook, name)
        assert path == want["receiver"], (name, path)
        assert note["receiver"] == want["receiver"].lstrip("/")
        for key, value in want["labels"].items():
            assert alert["labels"].get(key) == value, (name, key, alert["labels"])
        assert alert["labels"]["job"] == "dicomsniffd-test"
        assert alert["labels"]["instance"] == target
        assert alert["annotations"]["summary"] == want["summary"]
        assert want["description"] in alert["annotations"]["description"]
        assert "{{" not in alert["annotations"]["description"]  # rendered by Prometheus
        assert note["groupLabels"] == {
            "alertname": name,
            "calling_ae": want["labels"]["calling_ae"],
            "called_ae": want["labels"]["called_ae"],
        }
    # Routing: nothing crossed over to the receiver of the other severity.
    for path, _, alert in webhook.alerts():
        assert path == f"/dicom-{alert['labels']['severity']}", (path, alert["labels"])


def test_alerts_reach_the_webhook_through_prometheus_and_alertmanager(
    alert_exporter, tmp_path
) -> None:
    webhook = Webhook()
    try:
        run_chain(alert_exporter, tmp_path, webhook)
    finally:
        webhook.stop()


# ------------------------------------------------------------------------------------------
# Live: `dicomsniffd run` on real DICOM traffic between two network namespaces
# ------------------------------------------------------------------------------------------

LIVE_PACS_PORT, LIVE_METRICS_PORT = 11112, 9104
LIVE_CONFIG = """\
capture:
  interface: {iface}
  timeout_ms: 50
dicom:
  ports: [{pacs}]
metrics:
  listen: "127.0.0.1:{metrics}"
"""


@pytest.mark.netns
def test_alerts_reach_the_webhook_from_the_live_daemon(tmp_path) -> None:
    """Namespace "a": dicomsniffd capturing on its veth, Prometheus, Alertmanager and the
    webhook (all on a's loopback). Namespace "b": a pynetdicom SCP (called AE any title)
    that answers one CT object's C-STORE with 0xA700. Until the alerts arrive, every poll
    DCMTK storescu sends CT1 -> PACS (one 0xA700 each time) and rawscu opens MR2 -> ARCHIVE
    and aborts it mid data set (an A-ABORT spike: none before the test)."""
    from concurrent.futures import ThreadPoolExecutor

    import netns
    import scenarios
    from netns import VethPair
    from peers import make_ct
    from test_daemon_support import Daemon, daemon_env
    from test_dashboard import NetnsHttp, _enter_netns

    if os.geteuid() != 0:
        pytest.fail("the live alert test uses namespaces and captures: run it as root")
    netns.require_tools("ip", "ethtool", "ss")
    storescu = scenarios.dcmtk("storescu")
    series = make_ct.make_series(str(tmp_path / "ct"), 2, 64, series=51)
    files = [p for p, _ in series]
    big = make_ct.make_series(str(tmp_path / "big"), 1, 128, series=52)[0][0]

    with VethPair(ipv6=False) as net:
        b_ip = net.ip("b")
        scenarios.start_pyscp(
            net,
            "b",
            str(tmp_path),
            {"ae_title": "PACS", "port": LIVE_PACS_PORT, "store_status": {series[1][1]: "0xA700"}},
        )
        config = tmp_path / "dicomsniffd.yaml"
        config.write_text(
            LIVE_CONFIG.format(
                iface=net.iface("a"), pacs=LIVE_PACS_PORT, metrics=LIVE_METRICS_PORT
            ),
            encoding="utf-8",
        )
        http = NetnsHttp(net.ns["a"])
        in_a = ThreadPoolExecutor(1, initializer=_enter_netns, initargs=(net.ns["a"],))
        webhook = in_a.submit(Webhook).result()  # its socket lives on a's loopback
        daemon = Daemon(
            ["-c", str(config)],
            str(tmp_path),
            port=LIVE_METRICS_PORT,
            env=daemon_env(),
            argv_prefix=["ip", "netns", "exec", net.ns["a"]],
        )

        def traffic() -> None:
            net.run(  # exits non-zero on the 0xA700 answer: expected
                "a",
                [storescu, "-aet", "CT1", "-aec", "PACS", b_ip, str(LIVE_PACS_PORT), *files],
                check=False,
            )
            p = net.run(
                "a",
                [
                    sys.executable,
                    scenarios.RAWSCU_SCRIPT,
                    "abort",
                    b_ip,
                    str(LIVE_PACS_PORT),
                    big,
                    "--calling",
                    "MR2",
                    "--called",
                    "ARCHIVE",
                ],
                check=False,
            )
            assert p.returncode == 0, p.stdout + p.stderr

        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    http.get(daemon.url("/healthz"), timeout=2)
                    break
                except (urllib.error.URLError, OSError):
                    pass
                if daemon.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"dicomsniffd run did not become healthy:\n{daemon.log()}")
                time.sleep(0.2)
            run_chain(
                f"127.0.0.1:{LIVE_METRICS_PORT}",
                tmp_path,
                webhook,
                ports=(9093, 9090),  # a fresh namespace: free
                popen=lambda argv, **kw: net.popen("a", argv, **kw),
                get=http.get,
                traffic=traffic,
            )
        except BaseException:
            sys.stderr.write(f"\n[dicomsniffd log]\n{daemon.log()[-3000:]}\n")
            raise
        finally:
            if daemon.proc.poll() is None:
                daemon.proc.terminate()
                try:
                    daemon.proc.wait(15)
                except subprocess.TimeoutExpired:
                    daemon.proc.kill()
                    daemon.proc.wait()
            daemon.close()
            webhook.stop()
            in_a.shutdown(wait=True)
            http.close()

"""Grafana dashboard: static checks, and every panel proven against a real Prometheus.

Static: valid JSON, datasource always the ``${datasource}`` variable, the template variables,
every metric name used by the dashboard and the rules exists in the exporter's exposition
(built from a MetricsStore fed hand-made events), every recording rule the dashboard uses
is defined in the rules file.

Live: a real ``prometheus`` (Debian's package; missing = FAIL, never skip) scrapes a target
every second and evaluates config/prometheus/dicomsniffd-alerts.yml; then every PromQL
expression of the dashboard (panels, annotations, template variable queries; variables
substituted with ``.*``) is run through the HTTP API and must return at least one non-NaN
sample, and every rule must evaluate without error. The target is
  * a stand-in exporter (MetricsStore.exposition() of hand-made events, fed continuously,
    served on loopback): runs anywhere, proves the PromQL against the exporter's names;
  * the live daemon (``@pytest.mark.netns``, root): ``dicomsniffd run`` with its own config
    file capturing on a veth between two namespaces, where real peers (pynetdicom, DCMTK,
    OpenSSL, raw sockets in tests/peers/dashboard_peers.py) produce clean DICOM traffic and
    every kind of trouble the dashboard shows (rejects, aborts, unanswered requests,
    resets, iptables loss, zero windows, refused and unanswered connections, TLS,
    protocol errors, label overflow, idle evictions, capture drops and gaps). There every
    dashboard expression must return data AND each kind of trouble must show in Prometheus
    as a value > 0 (PROOFS), so no panel passes on a counter that merely exists at 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import netns
import pytest
import scenarios
import yaml
from netns import VethPair
from peers import make_ct
from prometheus_client.parser import text_string_to_metric_families
from test_daemon_support import Daemon, daemon_env, metric_value

from dicomsniffd.config import MetricsConfig
from dicomsniffd.dicom.events import (
    Aborted,
    AssociationAccepted,
    AssociationEnded,
    AssociationRejected,
    AssociationRequested,
    DimseRequestSeen,
    DimseResponseSeen,
    DimseTransaction,
    PresentationContext,
    ProtocolError,
    ProtocolViolation,
    Resynchronised,
    Stalled,
    UserInformation,
)
from dicomsniffd.sinks.metrics import MetricsStore

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "config" / "grafana" / "dicomsniffd-dashboard.json"
RULES = ROOT / "config" / "prometheus" / "dicomsniffd-alerts.yml"
PROVISIONING = ROOT / "config" / "grafana" / "provisioning"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Series Prometheus itself creates (not the exporter's).
PROMETHEUS_BUILTIN = {"up", "ALERTS", "ALERTS_FOR_STATE"}

CLONE_NEWNET = 0x40000000  # sched.h

PROMQL_WORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan"}
# Label lists of by/without/on/ignoring/group_left/group_right: label names, not metrics.
LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


# ------------------------------------------------------------------------------------------
# Expressions of the dashboard and the rules
# ------------------------------------------------------------------------------------------


def load_dashboard() -> dict:
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def all_panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every query: panel targets, annotations, variable queries."""
    out = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for ann in dashboard["annotations"]["list"]:
        if ann.get("expr"):
            out.append((f"annotation {ann['name']!r}", ann["expr"]))
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
            assert match, f"variable {var['name']}: only label_values(selector, label) is used"
            out.append(
                (f"variable {var['name']!r}", f"count by ({match.group(2)}) ({match.group(1)})")
            )
    return out


def load_rules() -> list[dict]:
    with open(RULES, encoding="utf-8") as f:
        return [rule for group in yaml.safe_load(f)["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """Metric (and recording rule) names used in a PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, regexes
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # range / subquery durations
    text = LABEL_LIST.sub(" ", text)
    text = re.sub(r"\boffset\s+\w+", " ", text)
    names = set()
    for match in IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):  # function or aggregation
            continue
        if word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def substitute(expr: str) -> str:
    """Grafana variables -> values Prometheus accepts (selection variables: everything)."""
    expr = expr.replace("$__rate_interval", "20s").replace("$__range", "5m")
    expr = expr.replace("$__interval", "5s")
    expr = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", ".*", expr)
    assert "$" not in expr, expr
    return expr


# ------------------------------------------------------------------------------------------
# A MetricsStore fed with hand-made events (every catalogue metric gets samples)
# ------------------------------------------------------------------------------------------

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
ECHO = "1.2.840.10008.1.1"
FIND = "1.2.840.10008.5.1.4.1.2.1.1"
MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"


@dataclass
class Flow:
    flow_id: int
    calling_ae_label: str
    called_ae_label: str
    calling_ae: str = ""
    called_ae: str = ""
    client: str = "10.1.2.3:50000"
    server: str = "10.9.9.9:104"
    server_label: str = "10.9.9.9:104"


class HandMadeTraffic:
    """Feeds a MetricsStore one "round" of DICOM life per call: associations, C-STOREs with
    spread timings and a few failure statuses, C-ECHO/C-FIND/C-MOVE, rejects, aborts, TCP
    trouble, gaps and sniffer self statistics that keep increasing."""

    def __init__(self, store: MetricsStore) -> None:
        self.store = store
        self.round = 0
        self.flow_id = 0
        self.stats = {
            "worker": "0",
            "packets": 0,
            "bytes": 0,
            "dropped": {"kernel": 0, "interface": 0},
            "flows_active": 0,
            "evictions": {"capacity": 0, "idle": 0, "memcap": 0},
            "buffered_bytes": 0,
            # The flight recorder (issue 14), as a worker with evidence.directory set.
            "evidence_files_written": 0,
            "evidence_bytes_written": 0,
            "evidence_suppressed": {"memory": 0, "write-error": 0},
            "evidence_files_removed": 0,
            "evidence_memory_bytes": 0,
            "evidence_recordings": 0,
        }
        store.set_self_stats_source(lambda: dict(self.stats))

    def _flow(self, calling: str, called: str) -> Flow:
        self.flow_id += 1
        return Flow(self.flow_id, calling, called, calling, called)

    def _association(self, flow: Flow, ts: float) -> None:
        s = self.store
        s.tcp_event("handshake-rtt", "requestor", flow, 0.0005 + 0.001 * (self.round % 7))
        s.handle(
            AssociationRequested(
                ts,
                flow.calling_ae,
                flow.called_ae,
                "1.2.840.10008.3.1.1.1",
                (
                    PresentationContext(1, CT, (EXPLICIT_LE, IMPLICIT_LE)),
                    PresentationContext(3, MR, (EXPLICIT_LE,)),
                    PresentationContext(5, ECHO, (IMPLICIT_LE,)),
                ),
                UserInformation(max_pdu_length=16384),
            ),
            flow,
        )
        s.handle(
            AssociationAccepted(
                ts + 0.01,
                0.01 + 0.002 * (self.round % 5),
                flow.calling_ae,
                flow.called_ae,
                (
                    PresentationContext(1, CT, (EXPLICIT_LE, IMPLICIT_LE), 0, EXPLICIT_LE),
                    PresentationContext(3, MR, (EXPLICIT_LE,), 3, ""),
                    PresentationContext(5, ECHO, (IMPLICIT_LE,), 0, IMPLICIT_LE),
                ),
                UserInformation(),
            ),
            flow,
        )

    def _transaction(
        self,
        flow: Flow,
        command: str,
        sop: str,
        msg: int,
        status: int | None,
        status_class: str,
        transfer: float,
        latency: float,
        nbytes: int,
        **extra,
    ) -> None:
        s = self.store
        ts = 1000.0 + self.round
        s.handle(DimseRequestSeen(ts, "requestor", command, sop, 1, msg), flow)
        outcome = "answered"
        if status is None:
            outcome = "unanswered-ended"
        else:
            s.handle(
                DimseResponseSeen(
                    ts + transfer + latency, "acceptor", command, status, status_class, 1, msg
                ),
                flow,
            )
        s.handle(
            DimseTransaction(
                command=command,
                sop_class_uid=sop,
                context_id=1,
                message_id=msg,
                status=status,
                status_class=status_class,
                outcome=outcome,
                request_ts=ts,
                request_complete_ts=ts + transfer,
                response_ts=None if status is None else ts + transfer + latency,
                response_complete_ts=None if status is None else ts + transfer + latency,
                request_transfer_seconds=transfer,
                response_latency_seconds=None if status is None else latency,
                duration_seconds=None if status is None else transfer + latency,
                final_response_ts=None if status is None else ts + transfer + latency,
                response_transfer_seconds=None if status is None else 0.0,
                request_dataset_bytes=nbytes,
                response_dataset_bytes=0,
                pending_responses=0,
                complete=True,
                **extra,
            ),
            flow,
        )

    def step(self) -> None:
        s = self.store
        r = self.round
        ts = 1000.0 + r
        # CT1 -> PACS: C-STOREs, the occasional out-of-resources and warning.
        flow = self._flow("CT1", "PACS")
        self._association(flow, ts)
        for i in range(5):
            status, cls = (0x0000, "success")
            if i == 3 and r % 2 == 0:
                status, cls = (0xA700, "failure")
            elif i == 4 and r % 3 == 0:
                status, cls = (0xB000, "warning")
            self._transaction(
                flow,
                "C-STORE",
                CT,
                i + 1,
                status,
                cls,
                transfer=0.02 * (1 + (r + i) % 9),
                latency=0.05 * (1 + (r * i) % 11),
                nbytes=500_000 + 10_000 * i,
            )
            s.add_bytes("pdata", "requestor", 500_000 + 10_000 * i, flow)
        s.add_bytes("pdata", "acceptor", 2_000, flow)
        self._transaction(flow, "C-ECHO", ECHO, 10, 0x0000, "success", 0.0005, 0.001, 0)
        for _ in range(3):
            s.tcp_event("retransmission", "requestor", flow)
        s.tcp_event("zero-window", "acceptor", flow)
        s.handle(Stalled(ts + 1, "acceptor", "delayed-ack", 0.04 * (1 + r % 3)), flow)
        s.add_bytes("missed", "requestor", 1448, flow)
        s.handle(AssociationEnded(ts + 2, "released", 2.0), flow)
        # MONITOR -> ARCHIVE: a failing C-ECHO, a C-FIND, a C-MOVE, an unanswered C-FIND.
        flow = self._flow("MONITOR", "ARCHIVE")
        self._association(flow, ts)
        self._transaction(flow, "C-ECHO", ECHO, 1, 0x0110, "failure", 0.0005, 0.002, 0)
        s.handle(DimseResponseSeen(ts, "acceptor", "C-FIND", 0xFF00, "pending", 1, 2), flow)
        self._transaction(flow, "C-FIND", FIND, 2, 0x0000, "success", 0.001, 0.3, 120)
        self._transaction(
            flow,
            "C-MOVE",
            MOVE,
            3,
            0x0000,
            "success",
            0.001,
            1.5,
            150,
            suboperations_completed=4,
            suboperations_failed=1,
            suboperations_warning=0,
        )
        self._transaction(flow, "C-FIND", FIND, 4, None, "unanswered", 0.001, 0, 120)
        s.add_bytes("pdata", "requestor", 3_000, flow)
        s.add_bytes("pdata", "acceptor", 9_000, flow)
        s.tcp_event("reset", "acceptor", flow)
        s.handle(ProtocolError(ts, "acceptor", "unexpected-pdu"), flow)
        s.handle(ProtocolViolation(ts, "requestor", "pdv-reserved-bits", "0x07"), flow)
        s.handle(Resynchronised(ts, "acceptor", 100), flow)
        s.handle(Aborted(ts + 1, "requestor", "service-user", "not-specified", 0, 0), flow)
        s.handle(AssociationEnded(ts + 1, "aborted", 1.0), flow)
        # US1 -> PACS with the wrong called AE title: rejected.
        flow = self._flow("US1", "PACSS")
        s.handle(
            AssociationRequested(
                ts, "US1", "PACSS", "1.2.840.10008.3.1.1.1", (), UserInformation()
            ),
            flow,
        )
        s.handle(
            AssociationRejected(
                ts + 0.005, 0.005, "permanent", "service-user", "called-ae-not-recognized", 1, 1, 7
            ),
            flow,
        )
        s.handle(AssociationEnded(ts + 0.01, "closed", 0.01), flow)
        # An association left open (the active gauge), server-level events.
        if r == 0:
            self._association(self._flow("DX1", "PACS"), ts)
        s.connection_failure("10.9.9.9:11112", "refused")
        s.tls_connection("10.9.9.9:2762", "established")
        # The sniffer's own statistics.
        st = self.stats
        st["packets"] += 1000
        st["bytes"] += 900_000
        st["dropped"]["kernel"] += 2
        st["dropped"]["interface"] += 1
        st["flows_active"] = 3 + r % 4
        st["evictions"]["idle"] += 1
        st["evictions"]["capacity"] += r % 2
        st["buffered_bytes"] = 4096 * (r % 3)
        st["evidence_files_written"] += 1
        st["evidence_bytes_written"] += 50_000
        st["evidence_suppressed"]["memory"] += r % 2
        st["evidence_files_removed"] += r % 2
        st["evidence_memory_bytes"] = 65536 * (1 + r % 3)
        st["evidence_recordings"] = 1 + r % 3
        self.round += 1


def fed_store(rounds: int = 3) -> MetricsStore:
    # max_ae_titles=4: a fifth title overflows, so dicomsniffd_label_overflow_total moves.
    store = MetricsStore(MetricsConfig(max_ae_titles=4))
    traffic = HandMadeTraffic(store)
    for _ in range(rounds):
        traffic.step()
    return store


def exposition_names(store: MetricsStore) -> set[str]:
    """Every sample name as Prometheus ingests it (_total, _bucket, _sum, _count included)."""
    names = set()
    for family in text_string_to_metric_families(store.exposition().decode()):
        for sample in family.samples:
            names.add(sample.name)
    return names


# ------------------------------------------------------------------------------------------
# Static checks
# ------------------------------------------------------------------------------------------


def test_dashboard_is_provisioning_ready_json() -> None:
    dash = load_dashboard()
    assert dash["uid"] and dash["title"]
    assert 36 <= dash["schemaVersion"] <= 41
    assert "id" not in dash or dash["id"] is None  # provisioning assigns the id
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("instance", "calling_ae", "called_ae"):
        var = variables[name]
        assert var["type"] == "query" and var["datasource"] == DATASOURCE, name
        assert var["includeAll"] and var["allValue"] == ".*", name
        assert "label_values(" in json.dumps(var["query"]), name
    ids = [p["id"] for p in all_panels(dash)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    dash = load_dashboard()
    panels = [p for p in all_panels(dash) if p["type"] != "row"]
    assert len(panels) >= 30
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
    for ann in dash["annotations"]["list"]:
        if ann.get("expr"):
            assert ann["datasource"] == DATASOURCE


def test_dashboard_covers_the_issue_rows() -> None:
    dash = load_dashboard()
    text = json.dumps(dash)
    rows = [p["title"].lower() for p in dash["panels"] if p["type"] == "row"]
    for word in (
        "overview",
        "c-store timing",
        "status codes",
        "rejects",
        "presentation contexts",
        "throughput",
        "tcp health",
        "sniffer health",
        "conformance",
    ):
        assert any(word in row for row in rows), word
    assert any(
        p["type"] == "heatmap" and "dicom_dimse_duration_seconds_bucket" in json.dumps(p)
        for p in all_panels(dash)
    )
    for needed in (
        "dicom_dimse_request_transfer_seconds",
        "dicom_dimse_response_latency_seconds",
        "dicom_dimse_response_transfer_seconds",
        "dicom_pdata_bytes",
        "dicom_tcp_retransmi",
        "dicom_tcp_zero_window",
        "dicom_tcp_resets",
        "dicom_tcp_stall_share",
        "dicom_tcp_handshake_rtt_seconds",
        "dicomsniffd_capture_dropped_packets",
        "dicom_capture_missed_bytes",
        "dicomsniffd_flows_active",
        "dicomsniffd_flow_evictions_total",
        "dicomsniffd_label_overflow_total",
        "dicom_presentation_contexts_total",
        "dicom_association_rejects",
        "dicom_association_aborts",
        "dicomsniffd_evidence_files_written_total",  # the flight recorder (issue 14)
        "dicomsniffd_evidence_suppressed_total",
        "dicom_protocol_violations_total",
    ):
        assert needed in text, needed


def test_every_metric_name_exists_in_the_exporter_and_every_recording_rule_is_defined() -> None:
    exposed = exposition_names(fed_store())
    rules = load_rules()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    uses = [(f"rule {r.get('record') or r.get('alert')}", r["expr"]) for r in rules]
    uses += dashboard_exprs(load_dashboard())
    problems = []
    for where, expr in uses:
        for name in metric_names(expr):
            if ":" in name:
                if name not in recorded:
                    problems.append(f"{where}: recording rule {name} is not defined")
            elif name not in exposed and name not in PROMETHEUS_BUILTIN:
                problems.append(f"{where}: {name} is not in the exporter's exposition")
    assert not problems, "\n".join(problems)


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, command) (rate(foo_bucket{a=~"x|y", b!="z"}[5m])))'
        " / on (job) group_left () bar:baz:rate5m and up offset 10m == 1"
    )
    assert metric_names(expr) == {"foo_bucket", "bar:baz:rate5m", "up"}


def test_provisioning_examples() -> None:
    with open(PROVISIONING / "datasources" / "dicomsniffd-prometheus.yml", encoding="utf-8") as f:
        ds = yaml.safe_load(f)
    assert ds["apiVersion"] == 1 and ds["datasources"][0]["type"] == "prometheus"
    with open(PROVISIONING / "dashboards" / "dicomsniffd.yml", encoding="utf-8") as f:
        prov = yaml.safe_load(f)
    assert prov["apiVersion"] == 1
    assert prov["providers"][0]["type"] == "file" and prov["providers"][0]["options"]["path"]


# ------------------------------------------------------------------------------------------
# Live: a real Prometheus, the rule file, every dashboard expression
# ------------------------------------------------------------------------------------------
# ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def _enter_netns(name: str) -> None:
    """Move the calling thread (only it) into network namespace ``name`` (setns(2))."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsHttp:
    """HTTP GETs from inside a network namespace: one worker thread joined it with setns,
    so its sockets reach the namespace's loopback (Prometheus, the daemon's /metrics)."""

    def __init__(self, namespace: str) -> None:
        self._pool = ThreadPoolExecutor(1, initializer=_enter_netns, initargs=(namespace,))
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _get(self, url: str, timeout: float) -> bytes:
        with self._opener.open(url, timeout=timeout) as resp:
            return resp.read()

    def get(self, url: str, timeout: float = 5.0) -> bytes:
        return self._pool.submit(self._get, url, timeout).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class Prometheus:
    """A throwaway Prometheus: 1 s scrape and rule evaluation, the repository's rule file.

    ``net``: run it inside namespace "a" of that VethPair (its loopback), queried through
    a NetnsHttp thread; otherwise on our loopback."""

    def __init__(self, target: str, workdir: Path, *, net: VethPair | None = None) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail(
                "prometheus not found: install Debian's `prometheus` package (scripts/test.sh does)"
            )
        self.port = 9090 if net is not None else free_port()  # a fresh namespace: free
        self.url = f"http://127.0.0.1:{self.port}"
        self._ns_http = NetnsHttp(net.ns["a"]) if net is not None else None
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "dicomsniffd-test",
                    "scrape_timeout": "1s",
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log = open(workdir / "prometheus.log", "w+b")  # noqa: SIM115 (closed in stop)
        argv = [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        if net is not None:
            self.proc = net.popen("a", argv, stdout=self.log, stderr=subprocess.STDOUT, text=False)
        else:
            self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/-/ready", timeout=2)
                break
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"prometheus did not start:\n{self.output()}")
            time.sleep(0.2)

    def get(self, path: str, timeout: float = 5.0) -> bytes:
        if self._ns_http is not None:
            return self._ns_http.get(self.url + path, timeout)
        return http_get(self.url + path, timeout)

    def get_json(self, path: str) -> dict:
        return json.loads(self.get(path))

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def query(self, expr: str) -> list[dict]:
        path = "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = self.get_json(path)
        except urllib.error.HTTPError as exc:  # 400: the expression does not parse
            raise AssertionError(f"{expr}: {exc.read().decode(errors='replace')}") from exc
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._ns_http is not None:
            self._ns_http.close()
        self.log.close()


def values(result: list[dict]) -> list[float]:
    """The numeric samples of an instant query (histogram_quantile of nothing gives NaN)."""
    out = []
    for series in result:
        value = float(series.get("value", [0, "NaN"])[1])
        if not math.isnan(value):
            out.append(value)
    return out


def has_value(result: list[dict]) -> bool:
    return bool(values(result))


def check_dashboard(
    prom: Prometheus,
    *,
    timeout: float = 90.0,
    may_be_empty: frozenset[str] = frozenset(),
    nonzero: frozenset[str] = frozenset(),
    proofs: dict[str, str] | None = None,
) -> None:
    """Wait until every dashboard expression returns data (except the titles in
    ``may_be_empty``; a value > 0 for the titles in ``nonzero``) and every expression of
    ``proofs`` returns a value > 0 (what the traffic is known to have caused); then check
    that every rule evaluated without error. The target must keep producing traffic."""
    exprs = [(where, substitute(expr)) for where, expr in dashboard_exprs(load_dashboard())]
    pending = dict(exprs)
    proofs_pending = dict(proofs or {})
    deadline = time.monotonic() + timeout

    def required() -> list[str]:
        return [w for w in pending if not any(s in w for s in may_be_empty)]

    def shows(where: str, result: list[dict]) -> bool:
        if any(s in where for s in nonzero):
            return any(v > 0 for v in values(result))
        return has_value(result)

    while (required() or proofs_pending) and time.monotonic() < deadline:
        for where, expr in list(pending.items()):
            if shows(where, prom.query(expr)):
                del pending[where]
        for what, expr in list(proofs_pending.items()):
            if any(v > 0 for v in values(prom.query(expr))):
                del proofs_pending[what]
        if required() or proofs_pending:
            time.sleep(1)
    missing = {w: pending[w] for w in required()}
    up = prom.query('up{job="dicomsniffd-test"}')
    assert not missing, (
        f"{len(missing)} of {len(exprs)} dashboard queries returned no data (or 0 where "
        f"the traffic must show) "
        f"(up={up}):\n" + "\n".join(f"  {w}: {e}" for w, e in missing.items())
    )
    assert not proofs_pending, (
        "the traffic did not show up in Prometheus as it should:\n"
        + "\n".join(f"  {w}: {e} = {prom.query(e)}" for w, e in proofs_pending.items())
    )
    groups = prom.get_json("/api/v1/rules")["data"]["groups"]
    bad = [
        (r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"
    ]
    assert len(groups) == 3 and not bad, bad


def assert_dashboard_works(
    target: str, workdir: Path, *, timeout: float = 90.0, may_be_empty: frozenset[str] = frozenset()
) -> None:
    """Start Prometheus (our loopback) against ``target`` and run check_dashboard."""
    prom = Prometheus(target, workdir)
    try:
        check_dashboard(prom, timeout=timeout, may_be_empty=may_be_empty)
    except BaseException:
        sys.stderr.write(f"\n[prometheus log]\n{prom.output()}\n")
        raise
    finally:
        prom.stop()


@pytest.fixture
def stand_in_exporter() -> Iterator[str]:
    """MetricsStore.exposition() of hand-made events on loopback, fed 4 times a second."""
    from prometheus_client import start_http_server

    store = MetricsStore(MetricsConfig(max_ae_titles=4))
    traffic = HandMadeTraffic(store)
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


def test_every_dashboard_query_returns_data_from_prometheus_standin(
    stand_in_exporter, tmp_path
) -> None:
    assert_dashboard_works(stand_in_exporter, tmp_path / "prom")


# ------------------------------------------------------------------------------------------
# Live daemon: real DICOM traffic between two namespaces, captured by `dicomsniffd run`
# ------------------------------------------------------------------------------------------
#
# Namespace "a" (client side): the SCUs, the C-MOVE destination, the daemon capturing on
# veth "a" (offloads off) and Prometheus scraping it over the namespace's loopback.
# Namespace "b" (server side): the SCPs, iptables for the impairments. Every dashboard
# series comes from something the peers really did on the wire:
#
#   pynetdicom loop (CT1 -> PACS, all the time)  associations, C-ECHO, C-STOREs answered
#       0x0000/0xA700/0xB000/0xC000, C-FIND with pendings, C-MOVE with a sub-operation
#       (PACS -> DEST), a rejected presentation context (MR), a rejected association
#       (wrong called AE): the timing histograms get new samples in every rate window.
#   rawscu abort                 A-ABORT in the middle of a data set
#   silent SCP, blackhole        a C-ECHO never answered, then the SCU resets: unanswered
#                                request, TCP reset
#   silent SCP, stall            the receiver stops reading: zero-window advertisements
#   garbage                      an undefined PDU type after the association: protocol error
#   idle association             quiet longer than flows.idle_timeout_s: idle eviction
#   closed port / SYNs dropped   connection failures refused / unanswered (syn_timeout_s 1)
#   openssl s_server/s_client    TLS on a DICOM port (2762)
#   iptables 2 % random drop     retransmissions during a storescu burst
#   paused sniffer + burst       capture drops and capture gaps, see _capture_pause_burst
#   metrics.max_ae_titles: 2     every AE title after CT1 and PACS overflows into "other"

# Dashboard titles allowed to return no data from the live daemon: none. Every series is
# produced by real traffic above (keep the parameter for a platform that cannot).
NEEDS_IMPAIRMENT: frozenset[str] = frozenset()

# Trouble panels whose expressions look back 5 minutes (recording rules, $__range): they
# must show a value > 0, not only "data". The $__rate_interval (20 s) panels over one-shot
# trouble (connection failures, TLS, protocol errors, evictions, drops, gaps, unanswered)
# would race the clock for that; PROOFS below checks their counters instead.
NONZERO_PANELS = frozenset(
    {
        "'Out of Resources (0xA7xx)'",
        "'A-ABORTs'",
        "'Rejects / s by reason'",
        "'Aborts / s by source and reason'",
        "'Abort rate vs. normal by AE pair'",
        "'Rejects in the time range'",
        "'Aborts in the time range'",
        "'Rejected presentation contexts (SOP class not accepted)'",
        "'Retransmission ratio (estimated)'",
        "'Retransmitted segments / s'",
        "'Zero-window advertisements / s'",
        "'TCP resets / s'",
        "'Capture drop ratio'",
    }
)

# What the traffic is known to have caused: each must reach Prometheus as a value > 0
# (a dashboard query over a counter that stayed 0 would "return data" without proof).
PROOFS = {
    "C-STORE 0x0000": 'sum(dicom_dimse_responses_total{command="C-STORE", status="0x0000"})',
    "C-STORE 0xA700": 'sum(dicom_dimse_responses_total{command="C-STORE", status="0xA700"})',
    "C-STORE 0xB000": 'sum(dicom_dimse_responses_total{command="C-STORE", status="0xB000"})',
    "C-STORE 0xC000": 'sum(dicom_dimse_responses_total{command="C-STORE", status="0xC000"})',
    "C-ECHO": 'sum(dicom_dimse_responses_total{command="C-ECHO", status="0x0000"})',
    "C-FIND pending": 'sum(dicom_dimse_responses_total{command="C-FIND", status_class="pending"})',
    "C-MOVE sub-operations": 'sum(dicom_suboperations_total{command="C-MOVE", outcome="completed"})',
    "association rejected": "sum(dicom_association_rejects_total)",
    "presentation context rejected": 'sum(dicom_presentation_contexts_total{result!="acceptance"})',
    "A-ABORT": "sum(dicom_association_aborts_total)",
    "unanswered request": "sum(dicom_dimse_unanswered_total)",
    "TCP reset": "sum(dicom_tcp_resets_total)",
    "retransmissions": "sum(dicom_tcp_retransmitted_segments_total)",
    "zero window": 'sum(dicom_tcp_zero_window_total{sender="acceptor"})',
    "connection refused": 'sum(dicom_tcp_connection_failures_total{reason="refused"})',
    "SYN unanswered": 'sum(dicom_tcp_connection_failures_total{reason="unanswered"})',
    "TLS": 'sum(dicom_tls_connections_total{outcome="established"})',
    "protocol error": 'sum(dicom_protocol_errors_total{kind="bad-pdu-type"})',
    "protocol violation": 'sum(dicom_protocol_violations_total{kind="pdv-reserved-bits"})',
    "label overflow": 'sum(dicomsniffd_label_overflow_total{label=~"calling_ae|called_ae"})',
    "idle eviction": 'sum(dicomsniffd_flow_evictions_total{reason="idle"})',
    "capture drops": 'sum(dicomsniffd_capture_dropped_packets_total{where="kernel"})',
    "capture gaps": "sum(dicom_capture_missed_bytes_total)",
}

REPEATED_PROOFS = {
    k: PROOFS[k]
    for k in (
        "A-ABORT",
        "unanswered request",
        "TCP reset",
        "retransmissions",
        "zero window",
        "protocol error",
        "protocol violation",
    )
}

PEERS = ROOT / "tests" / "peers"
DASH_PEERS = str(PEERS / "dashboard_peers.py")
PACS_PORT, DEST_PORT, BLACKHOLE_PORT, STALL_PORT = 11112, 11113, 11114, 11115
CLOSED_PORT, SYN_DROP_PORT, TLS_PORT, METRICS_PORT = 11116, 11117, 2762, 9104

DAEMON_CONFIG = """\
capture:
  interface: {iface}
  # Small on purpose: while the sniffer is paused, a burst overflows it (capture drops).
  buffer_size_mb: 2
  timeout_ms: 50
dicom:
  ports: [{pacs}, {dest}, {blackhole}, {stall}, {closed}, {syn_drop}, {tls}]
flows:
  idle_timeout_s: 3
  closed_timeout_s: 2
  syn_timeout_s: 1
metrics:
  listen: "127.0.0.1:{metrics}"
  max_ae_titles: 2
"""


def _peer(net: VethPair, *args: str, ok: bool = True) -> str:
    """Run a dashboard_peers.py client in namespace "a"; its JSON line is returned."""
    p = net.run("a", [sys.executable, DASH_PEERS, *args], check=False, timeout=60)
    if ok and p.returncode != 0:
        raise AssertionError(
            f"dashboard_peers {args} failed ({p.returncode}):\n{p.stdout}{p.stderr}"
        )
    return p.stdout.strip()


def _wait_metric(http: NetnsHttp, check, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = http.get(f"http://127.0.0.1:{METRICS_PORT}/metrics").decode()
            if check(text):
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"the daemon never showed {what}:\n{text[-3000:]}")


def _repeatable_trouble(net: VethPair, storescu: str, big: str, burst_files: list[str]) -> None:
    """A-ABORT mid-dataset, an unanswered request ended by a RST, a protocol error, a zero
    window ended by a RST, retransmissions under 2 % iptables loss during a store burst."""
    b_ip = net.ip("b")
    p = net.run(
        "a",
        [
            sys.executable,
            scenarios.RAWSCU_SCRIPT,
            "abort",
            b_ip,
            str(PACS_PORT),
            big,
            "--calling",
            "CT1",
            "--called",
            "PACS",
        ],
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    _peer(net, "unanswered", b_ip, str(BLACKHOLE_PORT))
    _peer(net, "garbage", b_ip, str(PACS_PORT))
    # one rule broken (DESIGN §4b): a PDV message control header with reserved bits set
    p = net.run(
        "a",
        [sys.executable, str(PEERS / "rulebreaker.py"), b_ip, str(PACS_PORT),
         "pdv-reserved-bits", "--calling", "CT1", "--called", "PACS"],
        check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    _peer(net, "zero-window", b_ip, str(STALL_PORT))
    # Data segments only (>= 100 bytes): handshakes stay intact, every drop is retransmitted.
    drop_rule = [
        "INPUT",
        "-p",
        "tcp",
        "-m",
        "length",
        "--length",
        "100:65535",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.02",
        "-j",
        "DROP",
    ]
    before = _random_drop_count(net)
    net.run("b", ["iptables", "-w", "-A", *drop_rule])
    try:
        p = net.run(
            "a",
            [storescu, "-aet", "CT1", "-aec", "PACS", b_ip, str(PACS_PORT), *burst_files],
            check=False,
        )
        dropped = _random_drop_count(net) - before
    finally:
        net.run("b", ["iptables", "-w", "-D", *drop_rule])
    assert p.returncode == 0, p.stdout + p.stderr
    assert dropped > 0, "iptables dropped nothing during the store burst"


def _wait_proofs(prom: Prometheus, proofs: dict[str, str], timeout: float = 30.0) -> None:
    pending = dict(proofs)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for what, expr in list(pending.items()):
            if any(v > 0 for v in values(prom.query(expr))):
                del pending[what]
        if pending:
            time.sleep(0.5)
    assert not pending, f"never reached Prometheus: {pending}"


def _random_drop_count(net: VethPair) -> int:
    """Packets dropped so far by the random-drop rule in namespace "b" (not the SYN rule)."""
    out = net.run("b", ["iptables", "-w", "-L", "INPUT", "-v", "-x", "-n"]).stdout
    return sum(
        int(line.split()[0])
        for line in out.splitlines()
        if "statistic mode random" in line and line.split()[0].isdigit()
    )


def _capture_pause_burst(net: VethPair, daemon: Daemon, target: str) -> str:
    """Capture drops and capture gaps, made certain: the sniffer stops reading (SIGSTOP,
    as when it gets no CPU) while a 32 MiB C-STORE crosses the veth, far more than the
    2 MiB capture buffer holds, so the kernel drops frames (dicomsniffd_capture_dropped_
    packets_total) that the peers did exchange; when the sniffer reads again it sees the
    receiver acknowledge bytes it never captured (dicom_capture_missed_bytes_total).
    A free-running burst against a small buffer drops only when the sniffer happens to
    fall behind, which on a fast or idle machine it may not."""
    burst = net.popen(
        "a",
        [sys.executable, DASH_PEERS, "burst", target, str(BLACKHOLE_PORT)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert burst.stdout.readline().strip() == "associated", burst.stderr.read()
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        burst.stdin.write("go\n")
        burst.stdin.flush()
        assert burst.stdout.readline().strip() == "sent", burst.stderr.read()
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    out, err = burst.communicate("finish\n", timeout=30)
    assert burst.returncode == 0, out + err
    return out.strip()


def _start_daemon(net: VethPair, workdir: Path, http: NetnsHttp) -> Daemon:
    config = workdir / "dicomsniffd.yaml"
    config.write_text(
        DAEMON_CONFIG.format(
            iface=net.iface("a"),
            pacs=PACS_PORT,
            dest=DEST_PORT,
            blackhole=BLACKHOLE_PORT,
            stall=STALL_PORT,
            closed=CLOSED_PORT,
            syn_drop=SYN_DROP_PORT,
            tls=TLS_PORT,
            metrics=METRICS_PORT,
        ),
        encoding="utf-8",
    )
    daemon = Daemon(
        ["-c", str(config)],
        str(workdir),
        port=METRICS_PORT,
        env=daemon_env(),
        argv_prefix=["ip", "netns", "exec", net.ns["a"]],
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            http.get(daemon.url("/healthz"), timeout=2)
            return daemon
        except (urllib.error.URLError, OSError):
            pass
        if daemon.proc.poll() is not None or time.monotonic() > deadline:
            log = daemon.log()
            daemon.close()
            pytest.fail(f"dicomsniffd run did not become healthy:\n{log}")
        time.sleep(0.2)


@pytest.mark.netns
def test_every_dashboard_query_returns_data_from_the_live_daemon(tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "the live daemon test uses namespaces and captures: run it as root (scripts/test.sh)"
        )
    netns.require_tools("ip", "ethtool", "tcpdump", "iptables", "ss", "openssl")
    storescu, storescp = scenarios.dcmtk("storescu"), scenarios.dcmtk("storescp")
    loop_series = make_ct.make_series(str(tmp_path / "loop"), 4, 64, series=41)
    loop_files = [p for p, _ in loop_series]
    uids = [u for _, u in loop_series]
    burst_files = [p for p, _ in make_ct.make_series(str(tmp_path / "burst"), 16, 256, series=42)]
    big = make_ct.make_series(str(tmp_path / "big"), 1, 256, series=43)[0][0]
    key, cert = str(tmp_path / "tls.key"), str(tmp_path / "tls.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=dsniff-dashboard",
        ],
        check=True,
        capture_output=True,
    )

    with VethPair(ipv6=False) as net:
        a_ip, b_ip = net.ip("a"), net.ip("b")
        # -- servers --------------------------------------------------------------------
        scenarios.start_pyscp(
            net,
            "b",
            str(tmp_path),
            {
                "ae_title": "PACS",
                "port": PACS_PORT,
                "require_called_aet": True,
                "store_status": {uids[1]: "0xA700", uids[2]: "0xB000", uids[3]: "0xC000"},
                "find_pending": 2,
                "move": {"destinations": {"DEST": [a_ip, DEST_PORT]}, "files": loop_files[:1]},
            },
        )
        dest = net.popen("a", [storescp, "-aet", "DEST", "--ignore", str(DEST_PORT)])
        net.wait_listening("a", DEST_PORT, proc=dest)
        for port, mode in ((BLACKHOLE_PORT, "blackhole"), (STALL_PORT, "stall")):
            silent = net.popen(
                "b", [sys.executable, DASH_PEERS, "silent-scp", str(port), "--mode", mode]
            )
            net.wait_listening("b", port, proc=silent)
        tls = net.popen(
            "b",
            [
                "openssl",
                "s_server",
                "-accept",
                str(TLS_PORT),
                "-cert",
                cert,
                "-key",
                key,
                "-naccept",
                "1",
                "-rev",
            ],
        )
        net.wait_listening("b", TLS_PORT, proc=tls)
        net.run(
            "b",
            [
                "iptables",
                "-w",
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "--dport",
                str(SYN_DROP_PORT),
                "--syn",
                "-j",
                "DROP",
            ],
        )

        http = NetnsHttp(net.ns["a"])
        daemon = _start_daemon(net, tmp_path, http)
        loop_log = open(tmp_path / "loop.log", "w")  # noqa: SIM115 (closed below)
        prom = None
        try:
            prom = Prometheus(f"127.0.0.1:{METRICS_PORT}", tmp_path / "prom", net=net)
            # -- clean traffic, all the time; CT1 and PACS are the first AE titles seen --
            loop = net.popen(
                "a",
                [sys.executable, DASH_PEERS, "loop", b_ip, str(PACS_PORT), *loop_files],
                stdout=loop_log,
            )
            _wait_metric(
                http,
                lambda t: (
                    'calling_ae="CT1"' in t
                    and 'called_ae="PACS"' in t
                    and metric_value(t, "dicom_suboperations_total") is not None
                ),
                "a first round of CT1 -> PACS",
            )
            # -- trouble ---------------------------------------------------------------
            idle = net.popen("a", [sys.executable, DASH_PEERS, "idle", b_ip, str(PACS_PORT), "5"])
            syn = net.popen(
                "a", [sys.executable, DASH_PEERS, "syn-timeout", b_ip, str(SYN_DROP_PORT)]
            )
            _peer(net, "refused", b_ip, str(CLOSED_PORT))
            p = net.run(
                "a",
                [
                    "sh",
                    "-c",
                    f"(echo dicom-over-tls; sleep 0.4) | openssl s_client "
                    f"-connect {b_ip}:{TLS_PORT} -tls1_2",
                ],
                check=False,
            )
            assert "slt-revo-mocid" in p.stdout, p.stdout + p.stderr
            # Twice: a counter series born with a one-shot event enters Prometheus already
            # at its value, so rate()/increase() over it stays 0 until it moves again.
            _repeatable_trouble(net, storescu, big, burst_files)
            _wait_proofs(prom, REPEATED_PROOFS)  # scraped: the series exist in Prometheus
            _repeatable_trouble(net, storescu, big, burst_files)
            _capture_pause_burst(net, daemon, b_ip)
            for proc in (idle, syn):
                out, _ = proc.communicate(timeout=30)
                assert proc.returncode == 0, out
            # -- every dashboard expression, and the proofs ------------------------------
            check_dashboard(
                prom,
                timeout=60,
                may_be_empty=NEEDS_IMPAIRMENT,
                nonzero=NONZERO_PANELS,
                proofs=PROOFS,
            )
            assert loop.poll() is None, (tmp_path / "loop.log").read_text()
        except BaseException:
            if prom is not None:
                sys.stderr.write(f"\n[prometheus log]\n{prom.output()}\n")
            if (tmp_path / "loop.log").exists():
                sys.stderr.write(
                    f"\n[traffic loop]\n{(tmp_path / 'loop.log').read_text()[-2000:]}\n"
                )
            raise
        finally:
            if prom is not None:
                prom.stop()
            http.close()
            loop_log.close()
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon.pid, signal.SIGCONT)
            if daemon.proc.poll() is None:
                daemon.proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    daemon.proc.wait(15)
            daemon.close()
            sys.stderr.write(f"\n[dicomsniffd log]\n{daemon.log()[-3000:]}\n")

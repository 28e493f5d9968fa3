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
  * the live daemon (``@pytest.mark.netns``): ``dicomsniffd run`` capturing real DICOM
    traffic between pynetdicom peers (root needed for the capture).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

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
    Resynchronised,
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
            out.append((f"variable {var['name']!r}", f"count by ({match.group(2)}) ({match.group(1)})"))
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
        rest = text[match.end():].lstrip()
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
            "worker": "0", "packets": 0, "bytes": 0,
            "dropped": {"kernel": 0, "interface": 0}, "flows_active": 0,
            "evictions": {"capacity": 0, "idle": 0, "memcap": 0}, "buffered_bytes": 0,
        }
        store.set_self_stats_source(lambda: dict(self.stats))

    def _flow(self, calling: str, called: str) -> Flow:
        self.flow_id += 1
        return Flow(self.flow_id, calling, called, calling, called)

    def _association(self, flow: Flow, ts: float) -> None:
        s = self.store
        s.tcp_event("handshake-rtt", "requestor", flow, 0.0005 + 0.001 * (self.round % 7))
        s.handle(AssociationRequested(
            ts, flow.calling_ae, flow.called_ae, "1.2.840.10008.3.1.1.1",
            (PresentationContext(1, CT, (EXPLICIT_LE, IMPLICIT_LE)),
             PresentationContext(3, MR, (EXPLICIT_LE,)),
             PresentationContext(5, ECHO, (IMPLICIT_LE,))),
            UserInformation(max_pdu_length=16384)), flow)
        s.handle(AssociationAccepted(
            ts + 0.01, 0.01 + 0.002 * (self.round % 5), flow.calling_ae, flow.called_ae,
            (PresentationContext(1, CT, (EXPLICIT_LE, IMPLICIT_LE), 0, EXPLICIT_LE),
             PresentationContext(3, MR, (EXPLICIT_LE,), 3, ""),
             PresentationContext(5, ECHO, (IMPLICIT_LE,), 0, IMPLICIT_LE)),
            UserInformation()), flow)

    def _transaction(self, flow: Flow, command: str, sop: str, msg: int, status: int | None,
                     status_class: str, transfer: float, latency: float, nbytes: int,
                     **extra) -> None:
        s = self.store
        ts = 1000.0 + self.round
        s.handle(DimseRequestSeen(ts, "requestor", command, sop, 1, msg), flow)
        outcome = "answered"
        if status is None:
            outcome = "unanswered-ended"
        else:
            s.handle(DimseResponseSeen(ts + transfer + latency, "acceptor", command, status,
                                       status_class, 1, msg), flow)
        s.handle(DimseTransaction(
            command=command, sop_class_uid=sop, context_id=1, message_id=msg, status=status,
            status_class=status_class, outcome=outcome, request_ts=ts,
            request_complete_ts=ts + transfer,
            response_ts=None if status is None else ts + transfer + latency,
            response_complete_ts=None if status is None else ts + transfer + latency,
            request_transfer_seconds=transfer,
            response_latency_seconds=None if status is None else latency,
            duration_seconds=None if status is None else transfer + latency,
            request_dataset_bytes=nbytes, response_dataset_bytes=0, pending_responses=0,
            complete=True, **extra), flow)

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
            self._transaction(flow, "C-STORE", CT, i + 1, status, cls,
                              transfer=0.02 * (1 + (r + i) % 9), latency=0.05 * (1 + (r * i) % 11),
                              nbytes=500_000 + 10_000 * i)
            s.add_bytes("pdata", "requestor", 500_000 + 10_000 * i, flow)
        s.add_bytes("pdata", "acceptor", 2_000, flow)
        self._transaction(flow, "C-ECHO", ECHO, 10, 0x0000, "success", 0.0005, 0.001, 0)
        for _ in range(3):
            s.tcp_event("retransmission", "requestor", flow)
        s.tcp_event("zero-window", "acceptor", flow)
        s.add_bytes("missed", "requestor", 1448, flow)
        s.handle(AssociationEnded(ts + 2, "released", 2.0), flow)
        # MONITOR -> ARCHIVE: a failing C-ECHO, a C-FIND, a C-MOVE, an unanswered C-FIND.
        flow = self._flow("MONITOR", "ARCHIVE")
        self._association(flow, ts)
        self._transaction(flow, "C-ECHO", ECHO, 1, 0x0110, "failure", 0.0005, 0.002, 0)
        s.handle(DimseResponseSeen(ts, "acceptor", "C-FIND", 0xFF00, "pending", 1, 2), flow)
        self._transaction(flow, "C-FIND", FIND, 2, 0x0000, "success", 0.001, 0.3, 120)
        self._transaction(flow, "C-MOVE", MOVE, 3, 0x0000, "success", 0.001, 1.5, 150,
                          suboperations_completed=4, suboperations_failed=1,
                          suboperations_warning=0)
        self._transaction(flow, "C-FIND", FIND, 4, None, "unanswered", 0.001, 0, 120)
        s.add_bytes("pdata", "requestor", 3_000, flow)
        s.add_bytes("pdata", "acceptor", 9_000, flow)
        s.tcp_event("reset", "acceptor", flow)
        s.handle(ProtocolError(ts, "acceptor", "unexpected-pdu"), flow)
        s.handle(Resynchronised(ts, "acceptor", 100), flow)
        s.handle(Aborted(ts + 1, "requestor", "service-user", "not-specified", 0, 0), flow)
        s.handle(AssociationEnded(ts + 1, "aborted", 1.0), flow)
        # US1 -> PACS with the wrong called AE title: rejected.
        flow = self._flow("US1", "PACSS")
        s.handle(AssociationRequested(ts, "US1", "PACSS", "1.2.840.10008.3.1.1.1", (),
                                      UserInformation()), flow)
        s.handle(AssociationRejected(ts + 0.005, 0.005, "permanent", "service-user",
                                     "called-ae-not-recognized", 1, 1, 7), flow)
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
    for word in ("overview", "c-store timing", "status codes", "rejects", "presentation contexts",
                 "throughput", "tcp health", "sniffer health"):
        assert any(word in row for row in rows), word
    assert any(p["type"] == "heatmap" and "dicom_dimse_duration_seconds_bucket" in json.dumps(p)
               for p in all_panels(dash))
    for needed in ("dicom_dimse_request_transfer_seconds", "dicom_dimse_response_latency_seconds",
                   "dicom_pdata_bytes", "dicom_tcp_retransmi", "dicom_tcp_zero_window",
                   "dicom_tcp_resets", "dicom_tcp_handshake_rtt_seconds",
                   "dicomsniffd_capture_dropped_packets", "dicom_capture_missed_bytes",
                   "dicomsniffd_flows_active", "dicomsniffd_flow_evictions_total",
                   "dicomsniffd_label_overflow_total", "dicom_presentation_contexts_total",
                   "dicom_association_rejects", "dicom_association_aborts"):
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
    expr = ('histogram_quantile(0.95, sum by (le, command) (rate(foo_bucket{a=~"x|y", b!="z"}[5m])))'
            ' / on (job) group_left () bar:baz:rate5m and up offset 10m == 1')
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


class Prometheus:
    """A throwaway Prometheus: 1 s scrape and rule evaluation, the repository's rule file."""

    def __init__(self, target: str, workdir: Path) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus not found: install Debian's `prometheus` package (scripts/test.sh does)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "dicomsniffd-test",
                                "static_configs": [{"targets": [target]}]}],
        }
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log = open(workdir / "prometheus.log", "w+b")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"prometheus did not start:\n{self.output()}")
            time.sleep(0.2)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def query(self, expr: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = http_json(url)
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
        self.log.close()


def has_value(result: list[dict]) -> bool:
    """At least one sample that is a number (histogram_quantile of nothing gives NaN)."""
    for series in result:
        value = series.get("value", [0, "NaN"])[1]
        if not math.isnan(float(value)):
            return True
    return False


def assert_dashboard_works(target: str, workdir: Path, *, timeout: float = 90.0,
                           may_be_empty: frozenset[str] = frozenset()) -> None:
    """Start Prometheus against ``target`` with the rule file; wait until every dashboard
    expression returns data (except the titles in ``may_be_empty``), then check that every
    rule evaluated without error. ``target`` must keep producing traffic meanwhile."""
    prom = Prometheus(target, workdir)
    try:
        exprs = [(where, substitute(expr)) for where, expr in dashboard_exprs(load_dashboard())]
        pending = dict(exprs)
        deadline = time.monotonic() + timeout
        def required() -> list[str]:
            return [w for w in pending if not any(s in w for s in may_be_empty)]

        while required() and time.monotonic() < deadline:
            for where, expr in list(pending.items()):
                if has_value(prom.query(expr)):
                    del pending[where]
            if required():
                time.sleep(1)
        missing = {w: pending[w] for w in required()}
        up = prom.query('up{job="dicomsniffd-test"}')
        assert not missing, (
            f"{len(missing)} of {len(exprs)} dashboard queries returned no data "
            f"(up={up}):\n" + "\n".join(f"  {w}: {e}" for w, e in missing.items())
        )
        groups = http_json(f"{prom.url}/api/v1/rules")["data"]["groups"]
        bad = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"]
               if r["health"] != "ok"]
        assert len(groups) == 3 and not bad, bad
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


def test_every_dashboard_query_returns_data_from_prometheus_standin(stand_in_exporter, tmp_path) -> None:
    assert_dashboard_works(stand_in_exporter, tmp_path / "prom")


# ------------------------------------------------------------------------------------------
# Live daemon: real DICOM traffic on loopback, captured by `dicomsniffd run`
# ------------------------------------------------------------------------------------------

# Panels that need network trouble or sniffer overload which clean loopback traffic cannot
# produce (the lead may drive them in a namespace with netem loss, a tiny receive buffer,
# a refused port, a TLS peer, ...). Everything else must show data.
NEEDS_IMPAIRMENT = frozenset({
    "Retransmission ratio", "Retransmitted segments", "Zero-window", "TCP resets",
    "Capture drop ratio", "Dropped packets", "Capture gaps", "Flow evictions",
    "Connection failures", "TLS connections", "Protocol errors", "Label overflow",
    "Unanswered requests", "Aborts / s", "Abort rate", "A-ABORTs", "Aborts in the time range",
    "sub-operations",
})


class DicomTrafficLoop:
    """pynetdicom SCP + SCU on loopback, looping: C-ECHO, C-STOREs (one 0xA700 and one
    0xB000 each round), C-FIND, a rejected association (wrong called AE)."""

    def __init__(self, port: int) -> None:
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, generate_uid
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import (
            CTImageStorage,
            MRImageStorage,
            PatientRootQueryRetrieveInformationModelFind,
            Verification,
        )

        self.port = port
        self.stop_event = threading.Event()
        self.count = 0

        def on_store(event):
            self.count += 1
            return {0: 0xA700, 1: 0xB000}.get(self.count % 7, 0x0000)

        def on_find(event):
            time.sleep(0.05)
            yield 0xFF00, event.identifier
            yield 0x0000, None

        scp = AE(ae_title="PACS")
        scp.require_called_aet = True
        scp.add_supported_context(Verification)
        scp.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
        scp.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
        self.server = scp.start_server(
            ("127.0.0.1", port), block=False,
            evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_C_FIND, on_find)])

        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.PatientName = "TEST^PATIENT"
        ds.Rows = ds.Columns = 256
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelRepresentation = 0
        ds.PixelData = bytes(256 * 256 * 2)
        self.dataset = ds
        self.generate_uid = generate_uid
        self.scu = AE(ae_title="CT1")
        self.scu.add_requested_context(Verification)
        self.scu.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        self.scu.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
        self.scu.add_requested_context(MRImageStorage)  # the SCP rejects it (negotiation panel)
        self.scu.dimse_timeout = self.scu.acse_timeout = self.scu.network_timeout = 10
        self.find_model = PatientRootQueryRetrieveInformationModelFind
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._round()
            except Exception:  # keep the traffic flowing; the dashboard check reports gaps
                logging.getLogger(__name__).exception("traffic round failed")
            self.stop_event.wait(0.3)

    def _round(self) -> None:
        assoc = self.scu.associate("127.0.0.1", self.port, ae_title="PACS")
        if assoc.is_established:
            assoc.send_c_echo()
            for _ in range(3):
                self.dataset.SOPInstanceUID = self.generate_uid()
                assoc.send_c_store(self.dataset)
            query = type(self.dataset)()
            query.QueryRetrieveLevel = "PATIENT"
            query.PatientID = "*"
            for _ in assoc.send_c_find(query, self.find_model):
                pass
            assoc.release()
        self.scu.associate("127.0.0.1", self.port, ae_title="WRONGAE").release()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)
        self.server.shutdown()


@pytest.mark.netns
def test_every_dashboard_query_returns_data_from_the_live_daemon(tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.fail("the live daemon test captures packets: run it as root (scripts/test.sh)")
    dicom_port = free_port()
    metrics_port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "dicomsniffd", "run", "-i", "lo", "-f", f"tcp port {dicom_port}",
         "--listen", f"127.0.0.1:{metrics_port}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    traffic = None
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).close()
                break
            except (urllib.error.URLError, OSError):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("dicomsniffd run did not serve /metrics")
                time.sleep(0.2)
        traffic = DicomTrafficLoop(dicom_port)
        assert_dashboard_works(f"127.0.0.1:{metrics_port}", tmp_path / "prom",
                               timeout=120, may_be_empty=NEEDS_IMPAIRMENT)
    finally:
        if traffic is not None:
            traffic.stop()
        daemon.terminate()
        try:
            out, _ = daemon.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            out, _ = daemon.communicate()
        sys.stderr.write(f"\n[dicomsniffd log]\n{out.decode(errors='replace')[-3000:]}\n")

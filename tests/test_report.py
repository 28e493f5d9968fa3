"""HTML report: structure, findings, escaping of hostile wire strings, self-containment,
bounded size, and rendering in headless Chromium (charts drawn with their sizes)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sink_fakes import Flow as _Flow

from dicomsniffd.dicom.events import (
    ACCEPTOR,
    REQUESTOR,
    Aborted,
    AssociationAccepted,
    AssociationEnded,
    AssociationRejected,
    AssociationRequested,
    DimseRequestSeen,
    DimseResponseSeen,
    DimseTransaction,
    PresentationContext,
    UserInformation,
)
from dicomsniffd.sinks.report import escape as escape_mod
from dicomsniffd.sinks.report import render_report, write_report
from dicomsniffd.sinks.report import svg as report_svg
from dicomsniffd.sinks.report import tables as tables_mod
from dicomsniffd.sinks.report.trace import TransactionLog
from dicomsniffd.sinks.summary import Summary

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
J2K = "1.2.840.10008.1.2.4.90"
HOSTILE_AE = "<script>alert(1)</script>"
HOSTILE_COMMENT = "<img src=x onerror=alert(2)> disk full"
INSTANCE_UID = "1.2.826.0.1.3680043.99.424242"  # must never reach the report
CHART_IDS = ("chart-timeline", "chart-latency", "chart-throughput", "chart-service-hist")
T0 = 1_700_000_000.0


def Flow(**kw) -> _Flow:  # noqa: N802 - stands in for the dataclass
    return _Flow(**{"calling_ae": "CT_SCANNER", "calling_ae_label": "CT_SCANNER", **kw})


def capture_info(**kw) -> dict:
    info = {
        "files": ["/captures/ward3 <night>.pcapng"],
        "truncated_files": [],
        "packets": 50_000,
        "bytes": 60_000_000,
        "first_ts": T0,
        "last_ts": T0 + 120.0,
        "truncated_packets": 0,
        "missed_bytes": 0,
        "decode": {"packets": 50_000, "super_packets": 0},
        "flows": {"evictions": {}},
    }
    info.update(kw)
    return info


def _rq(ts: float, calling: str, called: str, contexts) -> AssociationRequested:
    return AssociationRequested(
        ts=ts,
        calling_ae=calling,
        called_ae=called,
        application_context="1.2.840.10008.3.1.1.1",
        presentation_contexts=contexts,
        user_info=UserInformation(
            max_pdu_length=16384,
            implementation_class_uid="1.2.276.0.7230010.3.0.3.6.7",
            implementation_version_name="OFFIS_DCMTK_367",
        ),
    )


def _store(
    flow: Flow,
    summary: Summary,
    ts: float,
    msg: int,
    status: int | None,
    status_class: str,
    transfer: float = 0.2,
    service: float = 0.05,
    comment: str = "",
) -> None:
    summary.handle(DimseRequestSeen(ts, REQUESTOR, "C-STORE", CT, 1, msg), flow)
    if status is not None:
        summary.handle(
            DimseResponseSeen(
                ts + transfer + service, ACCEPTOR, "C-STORE", status, status_class, 1, msg
            ),
            flow,
        )
    summary.handle(
        DimseTransaction(
            command="C-STORE",
            sop_class_uid=CT,
            context_id=1,
            message_id=msg,
            status=status,
            status_class=status_class if status is not None else "unanswered",
            outcome="answered" if status is not None else "unanswered-ended",
            request_ts=ts,
            request_complete_ts=ts + transfer,
            response_ts=ts + transfer + service if status is not None else None,
            response_complete_ts=ts + transfer + service if status is not None else None,
            request_transfer_seconds=transfer,
            response_latency_seconds=service if status is not None else None,
            duration_seconds=transfer + service if status is not None else None,
            request_dataset_bytes=524_288,
            response_dataset_bytes=0,
            pending_responses=0,
            complete=True,
            affected_sop_instance_uid=INSTANCE_UID,
            error_comment=comment,
        ),
        flow,
    )


def build_summary() -> Summary:
    """Three associations: a busy accepted one with failures, a rejected one whose calling
    AE title is hostile markup, and one aborted by the SCP."""
    s = Summary()
    ok = Flow(flow_id=1)
    contexts_rq = (
        PresentationContext(1, CT, (J2K, EXPLICIT_LE)),
        PresentationContext(3, MR, (J2K,)),
    )
    contexts_ac = (
        PresentationContext(1, CT, (J2K, EXPLICIT_LE), 0, EXPLICIT_LE),
        PresentationContext(3, MR, (J2K,), 3, ""),
    )
    s.tcp_event("handshake-rtt", REQUESTOR, ok, value=0.0008)
    s.handle(_rq(T0 + 1, "CT_SCANNER", "PACS", contexts_rq), ok)
    s.handle(
        AssociationAccepted(
            T0 + 1.01,
            0.01,
            "CT_SCANNER",
            "PACS",
            contexts_ac,
            UserInformation(implementation_version_name="PACS_9"),
        ),
        ok,
    )
    ts = T0 + 2
    for msg in range(1, 41):
        if msg in (17, 18, 19):
            _store(ok, s, ts, msg, 0xA700, "failure", comment=HOSTILE_COMMENT)
        elif msg == 25:
            _store(ok, s, ts, msg, 0xB000, "warning")
        elif msg == 40:
            _store(ok, s, ts, msg, None, "unanswered")
        else:
            _store(ok, s, ts, msg, 0x0000, "success", service=0.05 + (msg % 7) * 0.1)
        ts += 1.0
    s.add_bytes("pdata", REQUESTOR, 40 * 524_288, ok)
    s.add_bytes("pdata", ACCEPTOR, 40 * 200, ok)
    s.tcp_event("retransmission", REQUESTOR, ok)
    s.tcp_event("zero-window", ACCEPTOR, ok)
    s.handle(AssociationEnded(ts + 1, "released", ts + 1 - (T0 + 1)), ok)

    bad = Flow(
        flow_id=2,
        client="10.1.2.4:50001",
        calling_ae=HOSTILE_AE,
        calling_ae_label="other",
    )
    s.handle(_rq(T0 + 60, HOSTILE_AE, "PACS", (PresentationContext(1, CT, (EXPLICIT_LE,)),)), bad)
    s.handle(
        AssociationRejected(
            T0 + 60.005, 0.005, "permanent", "service-user", "calling-ae-not-recognized", 1, 1, 3
        ),
        bad,
    )
    s.handle(AssociationEnded(T0 + 60.01, "closed", 0.01), bad)

    aborted = Flow(flow_id=3, client="10.1.2.5:50002", calling_ae="MR_1", calling_ae_label="MR_1")
    s.handle(_rq(T0 + 70, "MR_1", "PACS", (PresentationContext(1, CT, (EXPLICIT_LE,)),)), aborted)
    s.handle(
        AssociationAccepted(
            T0 + 70.01,
            0.01,
            "MR_1",
            "PACS",
            (PresentationContext(1, CT, (EXPLICIT_LE,), 0, EXPLICIT_LE),),
            UserInformation(),
        ),
        aborted,
    )
    _store(aborted, s, T0 + 71, 1, 0x0000, "success", transfer=1.5, service=0.02)
    s.handle(Aborted(T0 + 80, ACCEPTOR, "service-provider", "unexpected-pdu", 2, 2), aborted)
    s.handle(AssociationEnded(T0 + 80, "aborted", 10.0), aborted)
    return s


# -- HTML structure helpers -------------------------------------------------------------------

_VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
}  # fmt: skip


class _Checker(HTMLParser):
    """Records tags, attributes and text; checks every non-void tag is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False
        if tag in _VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()

    def handle_data(self, data):
        (self.script_text if self._in_script else self.text).append(data)


def parse(html_text: str) -> _Checker:
    checker = _Checker()
    checker.feed(html_text)
    checker.close()
    return checker


@pytest.fixture(scope="module")
def html_text() -> str:
    return render_report(build_summary(), capture_info())


# -- structure and content --------------------------------------------------------------------


def test_html_is_well_formed(html_text):
    assert html_text.startswith("<!DOCTYPE html>")
    checker = parse(html_text)
    assert checker.errors == []
    assert checker.stack == []
    ids = [attrs.get("id") for _tag, attrs in checker.tags if attrs.get("id")]
    assert len(ids) == len(set(ids)), "duplicate ids"
    svgs = {attrs["id"]: attrs for tag, attrs in checker.tags if tag == "svg" and attrs.get("id")}
    for chart_id in CHART_IDS:
        attrs = svgs[chart_id]
        w, h = int(attrs["width"]), int(attrs["height"])
        assert attrs["viewbox"] == f"0 0 {w} {h}" and w > 0 and h > 0


def test_self_contained_no_external_resources(html_text):
    assert not re.search(r"https?://", html_text, re.I)
    assert "url(" not in html_text and "@import" not in html_text
    checker = parse(html_text)
    linking = {"src", "href", "xlink:href", "action", "srcset", "data", "poster", "background"}
    assert not [(t, a) for t, attrs in checker.tags for a in attrs if a in linking]
    assert {tag for tag, _a in checker.tags} & {"link", "img", "iframe", "object", "embed"} == set()
    scripts = [attrs for tag, attrs in checker.tags if tag == "script"]
    assert scripts == [{}]  # one inline script, no src
    csp = next(
        attrs["content"]
        for tag, attrs in checker.tags
        if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp


def test_findings_first_ranked_with_evidence_and_advice(html_text):
    codes = re.findall(
        r"<article class='finding sev-(\w+)' id='finding-\d+' data-code='([\w-]+)'", html_text
    )
    by_code = {code: sev for sev, code in codes}
    for code in ("association-rejected", "out-of-resources", "aborts", "unanswered"):
        assert code in by_code, code
    assert by_code["association-rejected"] == "critical"
    assert by_code["out-of-resources"] == "critical"
    order = ["critical", "warning", "info"]
    ranks = [order.index(sev) for sev, _code in codes]
    assert ranks == sorted(ranks)
    # findings come before the association table and the charts
    assert html_text.index("id='findings'") < html_text.index("id='associations'")
    assert html_text.index("id='associations'") < html_text.index("id='charts'")
    text = " ".join(parse(html_text).text)
    assert "0xA700" in text and "Refused: out of resources" in text
    assert "Likely cause and what to do" in text
    assert "disk space" in text  # the out-of-resources advice


def test_association_table_rows(html_text):
    table = html_text[html_text.index("id='associations-table'") :]
    table = table[: table.index("</table></div>")]
    rows = re.findall(r"<tr id='assoc-(\d+)'", table)
    assert rows == ["1", "2", "3"]
    row1 = table[table.index("<tr id='assoc-1'") : table.index("<tr id='assoc-2'")]
    for expected in (
        "10.1.2.3:50000",
        "10.9.9.9:104",
        "CT_SCANNER",
        "PACS",
        "accepted",
        "released",
        "Explicit VR Little Endian",
        "abstract-syntax-not-supported",
        "1.2.276.0.7230010.3.0.3.6.7",
        "OFFIS_DCMTK_367",
        "0x0000: 35",
        "0xA700: 3",
        "0xB000: 1",
        "unanswered 1",
    ):
        assert expected in row1, expected
    row2 = table[table.index("<tr id='assoc-2'") : table.index("<tr id='assoc-3'")]
    assert "rejected" in row2 and "calling-ae-not-recognized" in row2
    row3 = table[table.index("<tr id='assoc-3'") :]
    assert "A-ABORT by acceptor" in row3 and "unexpected-pdu" in row3


def test_hostile_strings_are_escaped(html_text):
    assert HOSTILE_AE not in html_text
    assert "<img" not in html_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text
    assert "&lt;img src=x onerror=alert(2)&gt;" in html_text
    checker = parse(html_text)
    assert [tag for tag, _a in checker.tags].count("script") == 1
    assert not any(tag == "img" for tag, _a in checker.tags)
    assert not any(k.startswith("on") for _t, attrs in checker.tags for k in attrs)
    # the hostile AE is visible as text (the admin must see what the device sent)
    assert HOSTILE_AE in " ".join(checker.text)
    # the capture file name is escaped too
    assert "ward3 &lt;night&gt;.pcapng" in html_text


def test_control_characters_are_made_visible():
    assert escape_mod.esc("AE\x00\x1b[31m") == "AE\\x00\\x1b[31m"
    assert escape_mod.esc("a'b\"c&") == "a&#x27;b&quot;c&amp;"


def test_no_patient_data_or_instance_uids(html_text):
    assert INSTANCE_UID not in html_text
    assert "affected_sop_instance_uid" not in html_text


def test_header_capture_quality():
    clean = render_report(build_summary(), capture_info())
    assert "Capture completeness: nothing missing" in clean
    lossy = render_report(
        build_summary(),
        capture_info(missed_bytes=123_456, truncated_packets=7, truncated_files=["x.pcap"]),
    )
    section = lossy[lossy.index("id='capture-quality'") :]
    section = section[: section.index("</div>")]
    assert "What the sniffer could not see" in section
    assert "123456 bytes" in section and "7 packets cut short" in section
    assert "lower bounds" in section


def test_trace_rows_and_filters(html_text):
    trace = html_text[html_text.index("id='trace-table'") :]
    rows = re.findall(r"<tr data-assoc='(\d+)' data-status='(\w+)'", trace)
    assert len(rows) == 41
    statuses = {s for _a, s in rows}
    assert statuses == {"success", "failure", "warning", "unanswered"}
    assert "id='f-assoc'" in html_text and "id='f-status'" in html_text
    assert "<option value='1'>1: CT_SCANNER → PACS</option>" in html_text


def test_empty_summary_renders(tmp_path):
    out = tmp_path / "empty.html"
    write_report(str(out), Summary(), capture_info(first_ts=None, last_ts=None, packets=0))
    text = out.read_text(encoding="utf-8")
    checker = parse(text)
    assert checker.errors == [] and checker.stack == []
    assert "No DICOM traffic found" in text
    for chart_id in CHART_IDS:
        assert f"id='{chart_id}'" in text


# -- bounded size -----------------------------------------------------------------------------


def test_transaction_log_is_bounded_and_spans_the_capture():
    log = TransactionLog(cap=1000, notable_cap=100)
    s = Summary()
    s.transactions = log
    flow = Flow()
    n = 30_000
    for i in range(n):
        status, cls = (0xA700, "failure") if i % 100 == 0 else (0x0000, "success")
        _store(flow, s, T0 + i * 0.01, i % 65536, status, cls)
    records = log.records()
    assert len(records) <= 1000
    assert log.dropped == n - len(records)
    assert log.total == n
    assert sum(1 for r in records if r["status_class"] == "failure") == 100
    ok = [r["request_ts"] for r in records if r["status_class"] == "success"]
    assert min(ok) - T0 < 1 and T0 + n * 0.01 - max(ok) < 10  # sample spans the capture
    series = log.series()
    assert len(series["points"]) <= 512
    assert sum(p[1] for p in series["points"]) == pytest.approx(n * 524_288)
    assert sum(p[2] for p in series["points"]) == n
    assert sum(p[3] for p in series["points"]) == n // 100


def test_report_size_bounded_for_huge_capture():
    s = Summary()
    flows = [Flow(flow_id=i, client=f"10.0.{i // 250}.{i % 250}:5000") for i in range(1, 801)]
    for f in flows:
        s.handle(_rq(T0, "MOD", "PACS", (PresentationContext(1, CT, (EXPLICIT_LE,)),)), f)
    for i in range(60_000):
        f = flows[i % len(flows)]
        failed = i % 500 == 0
        _store(
            f,
            s,
            T0 + i * 0.05,
            i % 65536,
            0xA700 if failed else 0,
            "failure" if failed else "success",
        )
    text = render_report(s, capture_info(last_ts=T0 + 3000))
    assert len(text.encode()) < 6_000_000
    trace = text[text.index("id='trace-table'") :]
    assert trace.count("<tr data-assoc=") == tables_mod.MAX_TRACE_ROWS
    assert trace.count("data-status='failure'") == 120  # every failure is kept
    assert text.count("<tr id='assoc-") == tables_mod.MAX_ASSOC_ROWS
    assert "Showing 500 of 800 associations" in text
    checker = parse(text)
    assert checker.errors == [] and checker.stack == []


# -- headless Chromium ------------------------------------------------------------------------

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

_PROBE = """<script>
window.addEventListener('load', function () {
  var out = {};
  document.querySelectorAll('svg.chart').forEach(function (svg) {
    var r = svg.getBoundingClientRect(), marks = 0, drawn = 0;
    svg.querySelectorAll('rect:not(.bg),circle,path').forEach(function (el) {
      var b = el.getBBox(); marks++; if (b.width > 0 || b.height > 0) drawn++;
    });
    out[svg.id] = {w: r.width, h: r.height, marks: marks, drawn: drawn};
  });
  var st = document.getElementById('f-status'), rows = document.querySelectorAll('#trace-table tbody tr');
  st.value = 'failure'; st.dispatchEvent(new Event('change'));
  var visible = 0; rows.forEach(function (tr) { if (tr.offsetParent !== null) visible++; });
  out.failure_rows_visible = visible;
  out.count_text = document.getElementById('f-count').textContent;
  var pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"""


def _chromium(*args: str, user_dir: Path) -> subprocess.CompletedProcess:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.fail(
            f"{CHROMIUM} not found: apt-get install -y chromium (needed by the report tests)"
        )
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={user_dir}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _png_pixels(data: bytes) -> tuple[int, int, list[bytearray], int]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes): (width, height, rows, bpp)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and color in (2, 6)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif f == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        rows.append(line)
        prev = line
    return width, height, rows, bpp


def test_report_renders_in_headless_chromium(tmp_path):
    report = tmp_path / "report.html"
    write_report(str(report), build_summary(), capture_info())
    original = report.read_text(encoding="utf-8")

    # 1. the report itself: the inline script runs under its CSP (it fills the row count)
    dom = _chromium(
        "--virtual-time-budget=5000", "--dump-dom", report.as_uri(), user_dir=tmp_path / "u1"
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "41 of 41 rows shown" in dom.stdout
    for chart_id in CHART_IDS:
        assert f'id="{chart_id}"' in dom.stdout

    # 2. a probe copy measures the rendered charts and exercises the filter
    probe = tmp_path / "probe.html"
    probe_html = re.sub(r"<meta http-equiv='Content-Security-Policy'[^>]*>", "", original)
    probe.write_text(probe_html.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom = _chromium(
        "--window-size=1280,2000",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probe.as_uri(),
        user_dir=tmp_path / "u2",
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stdout[-2000:]
    measured = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    for chart_id in CHART_IDS:
        m = measured[chart_id]
        declared = re.search(
            rf"<svg id='{chart_id}'[^>]*width='(\d+)' height='(\d+)'", original
        ).groups()
        assert m["w"] == pytest.approx(int(declared[0]), abs=1), chart_id
        assert m["h"] == pytest.approx(int(declared[1]), abs=1), chart_id
        assert m["marks"] > 0 and m["drawn"] == m["marks"], (chart_id, m)
    assert measured["chart-timeline"]["marks"] >= 40  # one bar per C-STORE at least
    assert measured["failure_rows_visible"] == 3
    assert measured["count_text"] == "3 of 41 rows shown"

    # 3. screenshot of the real report (CSP intact): the page size, not blank, and the
    #    critical findings at the top are drawn (solid red severity badges)
    shot = tmp_path / "report.png"
    res = _chromium(
        "--window-size=1280,2000", f"--screenshot={shot}", report.as_uri(), user_dir=tmp_path / "u3"
    )
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    width, height, colours = _colours(shot)
    assert (width, height) == (1280, 2000)
    assert len(colours) > 20  # not a blank page
    assert bytes.fromhex("c62828") in colours

    # 4. screenshot of the charts alone (a copy with the other sections hidden): the
    #    opaque fills of the throughput and histogram bars are on screen
    charts = tmp_path / "charts.html"
    hide = (
        "<style>header,#overview,#findings,#associations,#dimse,#tcp,#trace,footer"
        "{display:none}</style>"
    )
    charts.write_text(probe_html.replace("</head>", hide + "</head>"), encoding="utf-8")
    shot = tmp_path / "charts.png"
    res = _chromium(
        "--window-size=1280,2000", f"--screenshot={shot}", charts.as_uri(), user_dir=tmp_path / "u4"
    )
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    _w, _h, colours = _colours(shot)
    for colour in (report_svg.THROUGHPUT_COLOR, report_svg.HISTOGRAM_COLOR):
        assert bytes.fromhex(colour[1:]) in colours, colour


def _colours(png: Path) -> tuple[int, int, set[bytes]]:
    width, height, rows, bpp = _png_pixels(png.read_bytes())
    colours = set()
    for line in rows:
        for x in range(0, width * bpp, bpp):
            colours.add(bytes(line[x : x + 3]))
    return width, height, colours

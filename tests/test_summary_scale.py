"""The text summary at scale: problem associations first, a per-AE-pair rollup, then the
other rows up to the cap, and every flow a finding cites printed whatever its position."""

from __future__ import annotations

import json

from pipeline_captures import (
    Capture,
    Conn,
    cli,
    open_association,
    release,
    store_rq,
    store_rsp,
)
from sink_fakes import Flow
from summary_fakes import (
    CT,
    EXPLICIT_LE,
    J2K,
    MR,
    accepted,
    capture_info,
    feed_store,
    good_association,
    requested,
)
from test_dicom_streams import abort

from dicomsniffd.dicom.events import (
    Aborted,
    AssociationEnded,
    PresentationContext,
    ProtocolError,
)
from dicomsniffd.sinks.summary import Summary
from dicomsniffd.sinks.summary.text import cited_flows


def _row(text: str, flow_id: int) -> str | None:
    """The association row of ``flow_id`` in the text (``  97 00:01:40 …``), if printed."""
    for line in text.splitlines():
        if line.startswith(f"{flow_id:>4} ") and "→" in line:
            return line
    return None


def _aborted_before_accept(summary: Summary, flow: Flow) -> None:
    summary.handle(requested(), flow)
    summary.handle(Aborted(100.5, "acceptor", "service-provider", "unexpected-pdu", 2, 2), flow)
    summary.handle(AssociationEnded(100.5, "aborted", 0.5), flow)


def _many(n: int = 120, aborted: int = 97) -> Summary:
    summary = Summary()
    for flow_id in range(1, n + 1):
        flow = Flow(flow_id=flow_id, client=f"10.1.2.3:{50000 + flow_id}")
        if flow_id == aborted:
            _aborted_before_accept(summary, flow)
        else:
            good_association(summary, flow, n=2, transfer=0.1, latency=0.05)
    return summary


def test_an_aborted_association_past_the_cap_is_cited_printed_and_listed_first() -> None:
    summary = _many()
    data = summary.to_dict(capture_info())
    assert 97 in cited_flows(data["findings"])  # the A-ABORT finding cites "flow 97 …"
    text = summary.render_text(capture_info())
    section = text[text.index("Associations (120)") :]
    row = _row(section, 97)
    assert row is not None and "aborted*" in row
    # the problem comes before every clean association, under its own title
    assert section.index("With problems (1), worst first") < section.index(row)
    assert section.index(row) < section.index("By AE pair (1)")
    assert section.index("By AE pair (1)") < section.index("Other associations (49 of 119)")
    assert section.index(row) < section.index(_row(section, 1))
    # 50 rows in all, the clean ones in time order from the first, the rest counted
    printed = [i for i in range(1, 121) if _row(section, i)]
    assert printed == [*range(1, 50), 97]
    assert "… 70 more associations (use --json for all)" in section
    for line in text.splitlines():
        assert len(line) <= 100, line


def test_the_rollup_shows_each_pairs_counts_and_p95() -> None:
    summary = _many()
    # a second pair with a failed store
    flow = Flow(flow_id=500, calling_ae="CT_2", called_ae="ARCHIVE")
    good_association(summary, flow, n=1, transfer=0.3, latency=2.0)
    feed_store(summary, flow, status=0xA700, transfer=0.3, latency=2.0)
    data = summary.to_dict(capture_info())
    json.dumps(data)
    pairs = {(p["calling_ae"], p["called_ae"]): p for p in data["pairs"]}
    mod = pairs[("MODALITY", "PACS")]
    assert (mod["associations"], mod["objects"], mod["failures"]) == (120, 238, 0)
    assert mod["request_transfer_ms"]["p95"] == 100.0
    assert mod["response_latency_ms"]["p95"] == 50.0
    assert mod["response_transfer_ms"]["p95"] == 0.0
    assert mod["duration_ms"]["p95"] == 150.0
    ct = pairs[("CT_2", "ARCHIVE")]
    assert (ct["associations"], ct["objects"], ct["failures"]) == (1, 2, 1)
    assert data["pairs"][0] is not mod  # the pair with failures first
    text = summary.render_text(capture_info())
    lines = text.splitlines()
    mod_line = next(line for line in lines if line.startswith("MODALITY → PACS "))
    assert mod_line.split() == [
        "MODALITY",
        "→",
        "PACS",
        "120",
        "238",
        "0",
        "100.0",
        "50.0",
        "0.0",
        "150.0",
    ]
    ct_line = next(line for line in lines if line.startswith("CT_2 → ARCHIVE "))
    assert ct_line.split()[3:] == ["1", "2", "1", "300.0", "2000.0", "0.0", "2300.0"]
    assert lines.index(ct_line) < lines.index(mod_line)
    # the failed store makes flow 500 a problem too, below the abort (which weighs more)
    problems = text[text.index("With problems (2)") : text.index("By AE pair")]
    assert problems.index(_row(problems, 97)) < problems.index(_row(problems, 500))


def test_json_keeps_its_keys_and_lists_every_association() -> None:
    data = _many().to_dict(capture_info())
    assert set(data) >= {"capture", "associations", "dimse", "tcp", "protocol_errors", "findings"}
    assert len(data["associations"]) == 120
    assert [a["flow_id"] for a in data["associations"]] == list(range(1, 121))


def test_a_flow_with_protocol_errors_only_counts_as_a_problem() -> None:
    summary = _many(n=80, aborted=0)
    flow = Flow(flow_id=70, client="10.1.2.3:50070")
    summary.handle(ProtocolError(101.5, "requestor", "bad-pdu-type", "PDU type 0x99"), flow)
    text = summary.render_text(capture_info())
    assert summary.to_dict(capture_info())["protocol_errors_by_flow"] == {"70": 1}
    section = text[text.index("Associations (80)") :]
    assert section.index("With problems (1)") < section.index(_row(section, 70))
    assert section.index(_row(section, 70)) < section.index(_row(section, 1))


def test_a_small_clean_capture_lists_all_in_time_order_under_the_rollup() -> None:
    summary = _many(n=3, aborted=0)
    text = summary.render_text(capture_info())
    section = text[text.index("Associations (3)") : text.index("DIMSE")]
    assert "With problems" not in section and "more associations" not in section
    assert section.index("By AE pair (1)") < section.index("Associations (3), in time order")
    assert [i for i in range(1, 4) if _row(section, i)] == [1, 2, 3]
    assert section.index(_row(section, 1)) < section.index(_row(section, 3))


def test_a_cited_flow_without_problems_is_printed_beyond_the_cap() -> None:
    summary = _many(aborted=0)
    flow = Flow(flow_id=110, client="10.1.2.3:50110")
    contexts = (
        PresentationContext(1, CT, (EXPLICIT_LE,), 0, EXPLICIT_LE),
        PresentationContext(3, MR, (J2K,), 3, ""),  # refused: abstract syntax not supported
    )
    summary.handle(accepted(contexts), flow)
    data = summary.to_dict(capture_info())
    assert cited_flows(data["findings"]) == {110}
    text = summary.render_text(capture_info())
    section = text[text.index("Associations (120)") :]
    assert "With problems" not in section
    assert [i for i in range(1, 121) if _row(section, i)] == [*range(1, 50), 110]
    assert "Associations (50 of 120), in time order" in section


def test_analyze_prints_the_aborted_association_of_a_long_capture(tmp_path) -> None:
    # a real capture through the command line: 60 associations, the 57th aborted by the SCP
    cap = Capture()
    for i in range(1, 61):
        c = Conn(cap, cport=40000 + i, sport=104)
        open_association(c, "MODALITY1", "PACS")
        c.send(0, store_rq(1, 2000))
        if i == 57:
            c.send(1, abort(2, 0))
            c.close()
        else:
            c.send(1, store_rsp(1))
            release(c)
    p = cli("analyze", str(cap.write(tmp_path / "long.pcap")))
    assert p.returncode == 0, p.stderr
    section = p.stdout[p.stdout.index("Associations (60)") :]
    problems = section[: section.index("By AE pair (1)")]
    (aborted,) = [line for line in problems.splitlines() if "aborted " in line]
    flow_id = int(aborted.split()[0])
    assert f"flow {flow_id} " in p.stdout  # the A-ABORT finding cites it
    pair = next(line for line in section.splitlines() if line.startswith("MODALITY1 → PACS "))
    assert pair.split()[3:6] == ["60", "60", "0"]  # associations, objects, failures
    assert "… 10 more associations (use --json for all)" in section

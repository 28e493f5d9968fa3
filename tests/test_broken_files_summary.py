"""A capture file that breaks part way (a corrupt record header mid file) is named, with
where it broke, in the text summary's header, the capture-incomplete finding and the HTML
report's header; files read in time order say so. A clean capture's outputs are unchanged.
The command line is run for real (``python3 -m dicomsniffd analyze ...``)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from pipeline_captures import Capture, cli, run, store_session

from dicomsniffd.sinks.summary.text import render_text

COVER = "the results cover the packets before the break"


def _session(start: float = 1_700_000_000.0) -> Capture:
    cap = Capture(start=start)
    store_session(cap, 6, 3000)
    return cap


def _record_offset(cap: Capture, index: int) -> int:
    return 24 + sum(16 + len(data) for _ts, data, _wire in cap.records[:index])


def _corrupt(tmp_path: Path) -> tuple[Path, int, int]:
    """bad.pcap with an absurd captured length in a record two thirds in: (path, the
    1-based packet number of that record, its byte offset)."""
    cap = _session()
    k = len(cap.records) * 2 // 3
    path = tmp_path / "bad.pcap"
    raw = bytearray(cap.write(path).read_bytes())
    off = _record_offset(cap, k)
    raw[off + 8 : off + 12] = struct.pack("<I", 0x0FFFFFF0)
    path.write_bytes(raw)
    return path, k + 1, off


def _where(path: Path, packet: int, offset: int) -> str:
    return f"{path}: corrupt record at packet {packet} (byte offset {offset}): "


def test_text_summary_names_the_corrupt_file_and_where_it_broke(tmp_path: Path) -> None:
    bad, packet, offset = _corrupt(tmp_path)
    p = cli("analyze", str(bad))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    header = p.stdout.split("\n\n")[0].replace("\n          ", " ")
    broken = next(line for line in header.splitlines() if line.startswith("Broken:   "))
    assert broken.startswith("Broken:   " + _where(bad, packet, offset))
    assert "invalid packet capture length" in broken and broken.endswith(COVER)
    assert all(len(line) <= 100 for line in p.stdout.splitlines())
    assert "MODALITY1" in p.stdout  # the results before the break are there


def test_capture_incomplete_finding_covers_the_corrupt_file(tmp_path: Path) -> None:
    bad, packet, offset = _corrupt(tmp_path)
    p = cli("analyze", str(bad), "--json")
    assert p.returncode == 2
    findings = {f["code"]: f for f in json.loads(p.stdout)["findings"]}
    finding = findings["capture-incomplete"]
    (line,) = [e for e in finding["evidence"] if str(bad) in e]
    assert line.startswith(_where(bad, packet, offset)) and line.endswith(COVER)
    assert "1 capture file broke at a corrupt record" in finding["detail"]
    for advice in ("re-copy", "disk", "pcapfix", "editcap"):
        assert advice in finding["advice"]
    text = cli("analyze", str(bad)).stdout
    assert "(capture-incomplete)" in text and "pcapfix" in text


def test_report_header_names_the_corrupt_file(tmp_path: Path) -> None:
    bad, packet, offset = _corrupt(tmp_path)
    report = tmp_path / "r.html"
    p = cli("analyze", str(bad), "--report", str(report))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    page = report.read_text()
    header = page[page.index("<header>") : page.index("</header>")]
    assert "What the sniffer could not see" in header
    assert f"capture file {_where(bad, packet, offset)}" in header and COVER in header


def test_files_read_in_time_order_say_so(tmp_path: Path) -> None:
    late = _session(start=1_700_000_100.0).write(tmp_path / "a.pcap")
    early = _session().write(tmp_path / "b.pcap")
    p = cli("analyze", str(late), str(early), "--report", str(tmp_path / "r.html"))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("Files:    "))
    assert f"{early}, {late}".startswith(lines[i][10:].rstrip("…"))  # cut at 100 columns
    assert "time order" in lines[i + 1] and "not in the order given" in lines[i + 1]
    page = (tmp_path / "r.html").read_text()
    assert "not in the order given" in page[: page.index("</header>")]
    q = cli("analyze", str(early), str(late))
    assert "not in the order given" not in q.stdout


def test_clean_capture_text_is_unchanged(tmp_path: Path) -> None:
    clean = _session().write(tmp_path / "clean.pcap")
    r = run(clean)
    assert r.info["broken_files"] == [] and r.info["files_reordered"] is False
    expected = render_text(r.summary)
    # the same data as a capture without the newer keys renders the same text
    old = dict(
        r.summary,
        capture={
            k: v
            for k, v in r.summary["capture"].items()
            if k not in ("broken_files", "files_reordered")
        },
    )
    assert render_text(old) == expected
    assert "Broken:" not in expected and "order given" not in expected
    p = cli("analyze", str(clean))
    assert p.returncode == 0, p.stderr
    assert p.stdout == expected

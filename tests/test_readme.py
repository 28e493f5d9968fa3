"""The README's example output and report screenshot are what the code makes today.

Both come from the capture of tests/readme_example.py, run through the real command line
by scripts/screenshot_report.py. The text summary names the file as given (relative, run
in the capture's directory) and the capture's clock is synthetic, so nothing needs
normalising; the report's "generated" time is only in the picture, which is compared
loosely (page size, not blank, the severity badges drawn), as fonts differ between machines.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest
from test_report import _colours

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SCREENSHOT = REPO / "docs" / "report-screenshot.png"
MARKER = "<!-- analyze-example: tests/test_readme.py compares this block with the real output -->"
OMITTED = "[...]"


def _script():
    spec = importlib.util.spec_from_file_location(
        "screenshot_report", REPO / "scripts" / "screenshot_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _readme_example() -> list[str]:
    text = README.read_text(encoding="utf-8")
    assert text.count(MARKER) == 1, "the example block's marker must be in README.md once"
    found = re.search(re.escape(MARKER) + r"\n```text\n(.*?)\n```\n", text, re.S)
    assert found, "the marker must be followed by a ```text block"
    return found.group(1).split("\n")


def _chunks(lines: list[str]) -> list[list[str]]:
    chunks, current = [], []
    for line in lines:
        if line == OMITTED:
            chunks.append(current)
            current = []
        else:
            current.append(line)
    chunks.append(current)
    return [c for c in chunks if c]


def _find(haystack: list[str], needle: list[str], start: int) -> int:
    for i in range(start, len(haystack) - len(needle) + 1):
        if haystack[i : i + len(needle)] == needle:
            return i
    return -1


def test_readme_example_is_what_analyze_prints(tmp_path):
    script = _script()
    lines = _readme_example()
    command = lines.pop(0)
    assert command == f"$ dicomsniffd analyze {script.FILE_NAME}"
    res = script.analyze(tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout.split("\n")
    chunks = _chunks(lines)
    assert len(chunks) >= 3 and sum(map(len, chunks)) >= 30  # an excerpt, not a token
    pos = 0
    for chunk in chunks:
        at = _find(out, chunk, pos)
        assert at >= 0, (
            "README.md's example output is stale; this part is no longer printed (in this "
            "order) by `dicomsniffd analyze` for tests/readme_example.py:\n"
            + "\n".join(chunk)
            + "\n\n--- what it prints now ---\n"
            + res.stdout
        )
        pos = at + len(chunk)
    # the README's first part is the summary's start, and it shows the instructive findings
    assert _find(out, chunks[0], 0) == 0
    shown = "\n".join(lines)
    for text in ("[CRITICAL] The SCP is out of resources (0xA700)", "A-ABORT", "By AE pair"):
        assert text in shown


def test_report_screenshot_is_committed_and_matches_a_fresh_render(tmp_path):
    script = _script()
    if not (Path(script.CHROMIUM).exists() or shutil.which(script.CHROMIUM)):
        pytest.fail(f"{script.CHROMIUM} not found: apt-get install -y chromium")
    assert script.OUT == SCREENSHOT
    assert "](docs/report-screenshot.png)" in README.read_text(encoding="utf-8")
    assert SCREENSHOT.stat().st_size < 200_000
    fresh = tmp_path / "fresh.png"
    script.render(tmp_path, fresh)
    badges = {bytes.fromhex("c62828"), bytes.fromhex("e6a000")}  # critical, warning
    for png in (SCREENSHOT, fresh):
        width, height, colours = _colours(png)
        assert (width, height) == (script.WIDTH, script.HEIGHT), png
        assert len(colours) > 20, f"{png} is blank"
        assert badges <= colours, png
    assert fresh.stat().st_size == pytest.approx(SCREENSHOT.stat().st_size, rel=0.5)


def test_readme_says_where_grafana_comes_from():
    text = README.read_text(encoding="utf-8")
    grafana = text[text.index("**Grafana**") :][:400]
    assert "Debian 12 has no `grafana` package" in grafana
    assert "Grafana Labs' APT repository" in grafana

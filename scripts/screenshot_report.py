"""Write docs/report-screenshot.png: the HTML report of the README's example capture,
rendered by headless Chromium.

    python3 scripts/screenshot_report.py [OUT.png]

Needs the test dependencies (`pip install -e ".[test]"`: the capture is built by
tests/readme_example.py) and Chromium (`apt-get install chromium`; another binary with
CHROMIUM=...). tests/test_readme.py renders the same report the same way and compares it
with the committed PNG.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from readme_example import FILE_NAME, build  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WIDTH, HEIGHT = 1200, 1300  # the header and the findings; < 200 kB as PNG
OUT = REPO / "docs" / "report-screenshot.png"


def analyze(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Build the example capture in ``workdir`` and run ``dicomsniffd analyze`` on it there
    (so the summary names the file as the README does)."""
    build(workdir / FILE_NAME)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "dicomsniffd", "analyze", FILE_NAME, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=workdir,
        env=env,
        check=False,
    )


def screenshot(html: Path, png: Path, user_dir: Path) -> subprocess.CompletedProcess:
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
        f"--window-size={WIDTH},{HEIGHT}",
        f"--screenshot={png}",
        html.as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def render(workdir: Path, png: Path) -> None:
    """The example capture → report.html → ``png``; raises with the tool's stderr."""
    res = analyze(workdir, "--report", "report.html")
    if res.returncode != 0:
        raise RuntimeError(f"dicomsniffd analyze failed: {res.stderr.strip()}")
    res = screenshot(workdir / "report.html", png, workdir / "chromium-profile")
    if res.returncode != 0 or not png.exists():
        raise RuntimeError(f"{CHROMIUM} --screenshot failed: {res.stderr.strip()[-2000:]}")


def main(argv: list[str]) -> int:
    out = Path(argv[0]).resolve() if argv else OUT
    with tempfile.TemporaryDirectory(prefix="dicomsniffd-screenshot-") as tmp:
        render(Path(tmp), out)
    print(f"{out}: {out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

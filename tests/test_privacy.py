"""Privacy with real traffic: patient data and credentials on the wire never come out.

Real DCMTK storescu sends CT images whose datasets carry a distinctive (synthetic)
patient name and ID to storescp, and a raw SCU opens an association whose A-ASSOCIATE-RQ
carries a User Identity username + passcode, sends dataset fragments and aborts; both are
captured between two network namespaces. ``dicomsniffd analyze`` is then run with every
output (metrics, event log, JSON and text summaries, HTML report, stderr at debug level),
on the capture and on a truncated copy (error paths). None of the strings may appear in
any of them; SOP Instance UIDs appear in the event log only with
``dicom.keep_instance_uids: true`` (checked both ways with a config file).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import scenarios
from netns import VethPair
from peers import make_ct
from pydicom import dcmread

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parent.parent
PATIENT_NAME = "ZQXPRIVACY^WOLFGANG"
PATIENT_ID = "PID-77Q-31415"
USER = "priv-user-8d1c"
PASSCODE = "priv-Passc0de-6b2e"
SECRETS = [PATIENT_NAME, "ZQXPRIVACY", "WOLFGANG", PATIENT_ID, USER, PASSCODE]


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    wd = tmp_path_factory.mktemp("privacy")
    files = []
    for path, _uid in make_ct.make_series(str(wd / "img"), 4, 64, series=7):
        ds = dcmread(path)
        ds.PatientName = PATIENT_NAME
        ds.PatientID = PATIENT_ID
        ds.OtherPatientIDs = PATIENT_ID
        ds.save_as(path)
        files.append((path, ds.SOPInstanceUID))
    pcap = str(wd / "privacy.pcap")
    with VethPair() as net:
        scp = scenarios.start_storescp(net, "b", scenarios.SCP_PORT, "STORESCP")
        with net.capture("a", pcap):
            scenarios._check(
                net.run(
                    "a",
                    [
                        scenarios.dcmtk("storescu"),
                        "-aet",
                        "PRIVSCU",
                        "-aec",
                        "STORESCP",
                        net.ip("b"),
                        str(scenarios.SCP_PORT),
                        *[p for p, _ in files],
                    ],
                ),
                "storescu",
            )
            scenarios._check(
                net.run(
                    "a",
                    [
                        scenarios.PY,
                        scenarios.RAWSCU_SCRIPT,
                        "abort",
                        net.ip("b"),
                        str(scenarios.SCP_PORT),
                        files[0][0],
                        "--calling",
                        "PRIVRAW",
                        "--called",
                        "STORESCP",
                        "--fragments",
                        "1",
                        "--fragment-size",
                        "4000",
                        "--user",
                        USER,
                        "--passcode",
                        PASSCODE,
                    ],
                ),
                "rawscu abort",
            )
        scenarios.stop(scp)
    raw = Path(pcap).read_bytes()
    for s in (PATIENT_NAME, PATIENT_ID, USER, PASSCODE):  # the traffic really carries them
        assert s.encode() in raw, s
    truncated = str(wd / "truncated.pcap")
    Path(truncated).write_bytes(raw[: len(raw) - 700])
    return wd, pcap, truncated, [u for _, u in files]


_RESULTS: dict[str, dict[str, str]] = {}


def analyze(wd: Path, pcap: str, keep: bool, tag: str) -> dict[str, str]:
    if tag not in _RESULTS:
        _RESULTS[tag] = _analyze(wd, pcap, keep, tag)
    return _RESULTS[tag]


def _analyze(wd: Path, pcap: str, keep: bool, tag: str) -> dict[str, str]:
    cfg = wd / f"cfg-{tag}.yaml"
    cfg.write_text(
        f"dicom:\n  keep_instance_uids: {'true' if keep else 'false'}\nlogging:\n  level: debug\n"
    )
    out = {}
    base = [sys.executable, "-m", "dicomsniffd", "analyze", pcap, "-c", str(cfg)]
    files = {
        "metrics": wd / f"m-{tag}.prom",
        "events": wd / f"e-{tag}.jsonl",
        "report": wd / f"r-{tag}.html",
    }
    p = subprocess.run(
        [
            *base,
            "--metrics",
            str(files["metrics"]),
            "--events",
            str(files["events"]),
            "--report",
            str(files["report"]),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    ok = (0, 2) if "trunc" in tag else (0,)  # a truncated capture: one-line error, exit 2
    assert p.returncode in ok, p.stderr
    out["json"], out["stderr-json"] = p.stdout, p.stderr
    p = subprocess.run(base, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode in ok, p.stderr
    out["text"], out["stderr-text"] = p.stdout, p.stderr
    for name, path in files.items():
        out[name] = path.read_text(errors="replace") if path.exists() else ""
    # an error path: the event log cannot be written
    p = subprocess.run(
        [*base, "--events", str(wd / "no-such-dir" / "e.jsonl")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    out["error"] = p.stdout + p.stderr
    return out


@pytest.mark.parametrize("keep", [False, True])
def test_no_patient_data_or_credentials_anywhere(capture, keep):
    wd, pcap, truncated, uids = capture
    outputs = dict(analyze(wd, pcap, keep, f"full-{keep}"))
    if not keep:  # error paths once: a capture cut in the middle of a packet
        outputs.update(
            {f"truncated-{k}": v for k, v in analyze(wd, truncated, keep, "trunc").items()}
        )
    # the outputs are about this traffic (not trivially empty)
    assert "PRIVSCU" in outputs["metrics"] and "PRIVRAW" in outputs["events"]
    assert '"aborted"' in outputs["events"] or "aborted" in outputs["metrics"]
    for name, text in outputs.items():
        low = text.lower()
        for secret in SECRETS:
            assert secret.lower() not in low, f"{secret!r} leaked into {name}"


def test_instance_uids_only_when_enabled(capture):
    wd, pcap, _truncated, uids = capture
    off = analyze(wd, pcap, False, "full-False")
    on = analyze(wd, pcap, True, "full-True")
    for uid in uids:
        assert uid in on["events"], uid
        assert uid not in off["events"], uid
        for name in ("metrics", "json", "text", "stderr-json"):
            assert uid not in on[name] and uid not in off[name], (uid, name)

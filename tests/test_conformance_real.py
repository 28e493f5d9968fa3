"""DESIGN §4b on real TCP: a raw-socket SCU (tests/peers/rulebreaker.py) that breaks
exactly one rule per association, against DCMTK storescp (``--max-pdu 4096``), captured
between network namespaces and analysed by ``dicomsniffd analyze``.

Each rule must give exactly its violation kind, blamed on the requestor and its software
(the peer's Implementation Version Name), and nothing else; the same exchange without the
violation (``clean``) none. The legal oddities (an RQ over 64 KiB, protocol version 2,
unknown items, command and data set in one P-DATA-TF) must be decoded from their first
byte, with no protocol error and no violation. tshark's
DICOM dissector is the second opinion where it has an expert info for the same rule.
Expected values come from what the peer was told to send, never from the analyser.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from netns import VethPair
from peers.rulebreaker import RULES
from prometheus_client.parser import text_string_to_metric_families
from scenarios.plumbing import PY, dcmtk

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parent.parent
PEER = str(REPO / "tests" / "peers" / "rulebreaker.py")
PORT = 11112
LEGAL = ["clean", "protocol-version-2", "large-rq", "unknown-items", "command-with-dataset"]
VIOLATIONS = [rule for rule in RULES if rule not in LEGAL]  # one broken rule each
# tshark's DICOM expert infos for the same rules (packet-dcm.c)
TSHARK_EXPERT = {
    "pdv-on-unaccepted-context": "Invalid Presentation Context ID",
    "even-presentation-context-id": "Invalid Presentation Context ID",
    "pdv-reserved-bits": "Invalid Flags",
    "odd-pdv-length": "Invalid PDV length (not even)",
    "malformed-context-proposal": "No Transfer Syntax provided for this Presentation Context",
}


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> dict[str, tuple[str, dict]]:
    """rule -> (pcap, what the peer reported), one association each."""
    wd = tmp_path_factory.mktemp("conformance")
    out = {}
    with VethPair() as net:
        scp = net.popen(
            "b",
            [dcmtk("storescp"), "-aet", "STORESCP", "--ignore", "--max-pdu", "4096", "-ta",
             "10", str(PORT)],
        )  # fmt: skip
        net.wait_listening("b", PORT, proc=scp)
        for rule in VIOLATIONS + LEGAL:
            pcap = str(wd / f"{rule}.pcap")
            with net.capture("a", pcap):
                p = net.run("a", [PY, PEER, net.ip("b"), str(PORT), rule], timeout=60)
            out[rule] = (pcap, json.loads(p.stdout.strip().splitlines()[-1]))
        scp.kill()
    return out


_analyses: dict[str, tuple[list, dict, list]] = {}


def analyze(pcap: str) -> tuple[list, dict, list]:
    """(metric samples, JSON summary, event log records) of ``dicomsniffd analyze``."""
    if pcap not in _analyses:
        prom, events = pcap + ".prom", pcap + ".jsonl"
        p = subprocess.run(
            [sys.executable, "-m", "dicomsniffd", "analyze", pcap, "--metrics", prom,
             "--events", events, "--json"],
            capture_output=True, text=True, timeout=120, cwd=REPO,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr[-3000:]
        samples = [
            s for fam in text_string_to_metric_families(Path(prom).read_text()) for s in fam.samples
        ]
        with open(events) as f:
            records = [json.loads(line) for line in f if line.strip()]
        _analyses[pcap] = (samples, json.loads(p.stdout), records)
    return _analyses[pcap]


def violations(samples: list) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["kind"], s.labels["sender"], s.labels["calling_ae"]): s.value
        for s in samples
        if s.name == "dicom_protocol_violations_total"
    }


def total(samples: list, name: str) -> float:
    return sum(s.value for s in samples if s.name == name)


@pytest.mark.parametrize("rule", VIOLATIONS)
def test_each_rule_broken_gives_exactly_its_kind(captures, rule):
    pcap, peer = captures[rule]
    samples, summary, records = analyze(pcap)
    calling = "BAD\\AE" if rule == "invalid-ae-title" else "RULESCU"
    found = violations(samples)
    assert set(found) == {(rule, "requestor", calling)}, (found, peer)
    # odd-pdv-length: the data set went as two odd fragments; every other rule once
    assert found[(rule, "requestor", calling)] == (2 if rule == "odd-pdv-length" else 1)
    errors = {s.labels["kind"] for s in samples if s.name == "dicom_protocol_errors_total"}
    # storescp does not answer an RQ with a context without transfer syntax: one-sided
    assert errors <= ({"one-direction-only"} if rule == "malformed-context-proposal" else set())
    # the finding names the side and its software; the event log has the association
    finding = [f for f in summary["findings"] if f["title"].endswith(f": {rule}")]
    assert len(finding) == 1 and "DSNIFF_RAWSCU" in finding[0]["detail"], summary["findings"]
    logged = [r for r in records if r["type"] == "protocol_violation"]
    assert [(r["kind"], r["sender"], r["calling_ae"], r["called_ae"]) for r in logged] == [
        (rule, "requestor", calling, "STORESCP")
    ] * int(found[(rule, "requestor", calling)])
    assert all(r["implementation_version_name"] == "DSNIFF_RAWSCU" for r in logged)


@pytest.mark.parametrize("rule", LEGAL)
def test_legal_exchanges_give_no_violation_and_are_decoded(captures, rule):
    pcap, peer = captures[rule]
    samples, summary, _ = analyze(pcap)
    assert violations(samples) == {}
    assert total(samples, "dicom_protocol_errors_total") == 0
    # decoded from the A-ASSOCIATE-RQ's first byte: its AE titles, no resync
    assert [(a["calling_ae"], a["called_ae"]) for a in summary["associations"]] == [
        ("RULESCU", "STORESCP")
    ]
    assert total(samples, "dicom_association_requests_total") == 1
    if rule == "protocol-version-2":
        assert peer["received"] == ["0x03"]
        assert summary["associations"][0]["outcome"] == "rejected"
    elif rule == "command-with-dataset":  # a C-STORE, its command and data set in one PDU
        assert peer["received"][:2] == ["0x02", "0x04"]
        assert summary["dimse"]["C-STORE"]["responses"] == {"0x0000": 1}
    else:
        assert peer["received"][:2] == ["0x02", "0x04"]
        assert summary["dimse"]["C-ECHO"]["responses"] == {"0x0000": 1}
    if rule == "large-rq":
        assert peer["rq_bytes"] > 65536 + 6


@pytest.mark.parametrize("rule", [*TSHARK_EXPERT, "clean"])
def test_tshark_flags_the_same_rules(captures, rule):
    pcap, _ = captures[rule]
    p = subprocess.run(
        ["tshark", "-r", pcap, "-n", "-d", f"tcp.port=={PORT},dicom", "-q", "-z", "expert"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    malformed = [line for line in p.stdout.splitlines() if "Malformed" in line and "DICOM" in line]
    if rule == "clean":
        assert malformed == []
    else:
        assert any(TSHARK_EXPERT[rule] in line for line in malformed), p.stdout


def test_the_peer_is_known_to_storescp_for_every_rule(captures):
    # every association reached storescp: each capture holds the RQ and its answer, except
    # the context without transfer syntax, which storescp leaves unanswered
    for rule, (pcap, peer) in captures.items():
        assert os.path.getsize(pcap) > 0
        if rule != "malformed-context-proposal":
            assert peer["received"], rule

"""DESIGN §4b on real TCP, acceptor side: a raw-socket SCP (tests/peers/rulebreaker_scp.py)
that breaks exactly one rule, answering real SCUs (DCMTK echoscu and storescu, pynetdicom),
captured between network namespaces and analysed by ``dicomsniffd analyze``.

Each rule must give exactly its kind, blamed on the acceptor and its software
(DSNIFF_RAWSCP), nothing else; the same SCP without the violation (``clean``), answering the
same SCUs, none. Expected values come from what the SCP was told to do.
"""

from __future__ import annotations

import os

import pytest
from netns import VethPair
from peers import make_ct
from scenarios.plumbing import PY, dcmtk
from test_conformance_real import analyze, total, violations

pytestmark = pytest.mark.netns

PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers")
PORT = 11112
# rule -> the SCU that meets it (echoscu: one Verification context; storescu: a C-STORE
# for the SCP's own C-STORE-RQ; pyecho: Verification on two contexts)
SCU_FOR = {
    "context-answer-mismatch": "echoscu",
    "missing-user-information": "echoscu",
    "response-to-unknown-request": "echoscu",
    "nonstandard-status": "echoscu",
    "response-on-other-context": "pyecho",
    "role-not-negotiated": "storescu",
}


def _scu(net: VethPair, which: str, ct: str) -> list[str]:
    b = net.ip("b")
    if which == "echoscu":
        return [dcmtk("echoscu"), "-aet", "ECHOSCU", "-aec", "RAWSCP", b, str(PORT)]
    if which == "storescu":
        return [dcmtk("storescu"), "-aet", "STORESCU", "-aec", "RAWSCP", b, str(PORT), ct]
    return [PY, os.path.join(PEERS, "pyecho.py"), b, str(PORT), "--called", "RAWSCP"]


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> dict[tuple[str, str], str]:
    """(rule, SCU) -> pcap: every rule with its SCU, and ``clean`` with every SCU."""
    wd = tmp_path_factory.mktemp("conformance-scp")
    ct = make_ct.make_series(str(wd / "ct"), 1, 64)[0][0]
    runs = [(rule, scu) for rule, scu in SCU_FOR.items()]
    runs += [("clean", scu) for scu in sorted(set(SCU_FOR.values()))]
    out = {}
    with VethPair() as net:
        for rule, scu in runs:
            scp = net.popen("b", [PY, os.path.join(PEERS, "rulebreaker_scp.py"), str(PORT), rule])
            net.wait_listening("b", PORT, proc=scp)
            pcap = str(wd / f"{rule}-{scu}.pcap")
            with net.capture("a", pcap):
                net.run("a", _scu(net, scu, ct), check=False, timeout=60)
            scp.kill()
            scp.wait()
            out[(rule, scu)] = pcap
    return out


@pytest.mark.parametrize("rule", list(SCU_FOR))
def test_each_rule_broken_by_the_scp_gives_exactly_its_kind(captures, rule):
    samples, summary, records = analyze(captures[(rule, SCU_FOR[rule])])
    found = violations(samples)
    calling = {"echoscu": "ECHOSCU", "storescu": "STORESCU", "pyecho": "PYECHO"}[SCU_FOR[rule]]
    assert set(found) == {(rule, "acceptor", calling)}, found
    assert total(samples, "dicom_protocol_errors_total") == 0
    finding = [f for f in summary["findings"] if f["title"].endswith(f": {rule}")]
    assert len(finding) == 1 and "DSNIFF_RAWSCP" in finding[0]["detail"], summary["findings"]
    logged = [r for r in records if r["type"] == "protocol_violation"]
    assert {(r["kind"], r["sender"], r["called_ae"]) for r in logged} == {
        (rule, "acceptor", "RAWSCP")
    }


@pytest.mark.parametrize("scu", sorted(set(SCU_FOR.values())))
def test_the_clean_scp_gives_none(captures, scu):
    samples, summary, _ = analyze(captures[("clean", scu)])
    assert violations(samples) == {}
    assert total(samples, "dicom_protocol_errors_total") == 0
    assert [a["outcome"] for a in summary["associations"]] == ["accepted"]
    assert summary["dimse"], "the SCU's request was answered"


def test_dicom_sniff_sees_the_real_scus_software(captures):
    # the requestors' Implementation Version Names come from DCMTK and pynetdicom
    samples, summary, records = analyze(captures[("nonstandard-status", "echoscu")])
    logged = [r for r in records if r["type"] == "protocol_violation"]
    assert logged and all(r["implementation_version_name"] == "DSNIFF_RAWSCP" for r in logged)
    assert "OFFIS_DCMTK" in (summary["associations"][0].get("implementation_version_name") or "")

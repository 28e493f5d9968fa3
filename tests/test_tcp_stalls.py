"""Stalls by cause (DESIGN §3) with real peers between namespaces, captured on the SCU's
veth: DCMTK storescp writes each C-STORE-RSP as a 12-byte segment and then the rest,
Nagle holds the rest until storescu's delayed ACK (~40 ms); with TCP_NODELAY, or an SCP
that writes the response in one piece (pynetdicom), there is no such stall. A receiver
that stops reading (zero window) and a sender that pauses between objects are told
apart from it."""

from __future__ import annotations

import json
import os

import pytest
from netns import VethPair
from scenarios.plumbing import PEERS, PY, SCP_PORT, _storescu, dcmtk, stop
from tcp_real import analyze, series

pytestmark = pytest.mark.netns

N = 10


def _events(result: dict) -> list[dict]:
    return [json.loads(line) for line in result["events"].splitlines()]


def _stores(result: dict) -> list[dict]:
    stores = [e for e in _events(result) if e.get("command") == "C-STORE"]
    assert len(stores) == N and all(e["status"] == "0x0000" and e["complete"] for e in stores)
    return stores


def _stall_ms(store: dict, sender: str, cause: str) -> float:
    return sum(
        s["ms"] for s in store.get("stalls", ()) if s["sender"] == sender and s["cause"] == cause
    )


def _findings(result: dict) -> dict:
    return {f["code"]: f for f in result["summary"]["findings"]}


def _store_run(wd, name: str, scp_env: dict | None = None, scu_env: dict | None = None) -> dict:
    pcap = os.path.join(wd, f"{name}.pcap")
    paths = series(wd, N, 64, 31)
    with VethPair() as net:
        argv = [dcmtk("storescp"), "-aet", "ARCHIVE", "--ignore", str(SCP_PORT)]
        scp = net.popen("b", argv, env={**os.environ, **(scp_env or {})})
        net.wait_listening("b", SCP_PORT, proc=scp)
        with net.capture("a", pcap):
            if scu_env:
                argv = [dcmtk("storescu"), "-aet", "STORESCU", "-aec", "ARCHIVE", net.ip("b")]
                p = net.popen("a", [*argv, str(SCP_PORT), *paths],
                              env={**os.environ, **scu_env})  # fmt: skip
                assert p.wait(timeout=120) == 0, p.stdout.read()
            else:
                _storescu(net, "ARCHIVE", paths, timeout=120)
        stop(scp)
    return analyze(pcap)


def test_dcmtk_to_dcmtk_responses_wait_for_the_delayed_ack(tmp_path):
    result = _store_run(str(tmp_path), "dcmtk")
    stores = _stores(result)
    # every response stalled once, the SCP's (acceptor's) data, for a delayed ACK
    waits = [_stall_ms(s, "acceptor", "delayed-ack") for s in stores]
    assert all(w > 0 for w in waits), waits
    # ... and that is most of each C-STORE: the stall is inside its duration
    assert all(w <= s["duration_ms"] for w, s in zip(waits, stores, strict=True))
    share = sum(waits) / sum(s["duration_ms"] for s in stores)
    finding = _findings(result)["stalls-delayed-ack"]
    assert f"{share:.0%} of C-STORE time STORESCU → ARCHIVE" in finding["evidence"][0]
    assert "the SCP (ARCHIVE)" in finding["evidence"][0]
    assert finding["severity"] == ("warning" if share >= 0.5 else "info")
    # the metrics say the same, by sender and cause
    line = (
        'dicom_tcp_stalls_total{called_ae="ARCHIVE",calling_ae="STORESCU",'
        f'cause="delayed-ack",sender="acceptor"}} {float(N)}'
    )
    assert line in result["metrics"].splitlines()


def test_with_tcp_nodelay_the_response_does_not_wait(tmp_path):
    # DCMTK 3.6.7 reads TCP_NODELAY from the environment (dcmnet: "disabling Nagle
    # algorithm as requested at runtime")
    result = _store_run(str(tmp_path), "nodelay", {"TCP_NODELAY": "1"}, {"TCP_NODELAY": "1"})
    stores = _stores(result)
    assert all(_stall_ms(s, "acceptor", "delayed-ack") == 0 for s in stores)
    assert "stalls-delayed-ack" not in _findings(result)


def test_an_scp_that_writes_the_response_once_does_not_wait(tmp_path):
    wd = str(tmp_path)
    pcap = os.path.join(wd, "pynetdicom.pcap")
    cfg = os.path.join(wd, "scp.json")
    with open(cfg, "w") as f:
        json.dump({"ae_title": "PYSCP", "port": SCP_PORT}, f)
    with VethPair() as net:
        scp = net.popen("b", [PY, str(PEERS / "scp.py"), "--config", cfg])
        net.wait_listening("b", SCP_PORT, proc=scp)
        with net.capture("a", pcap):
            _storescu(net, "PYSCP", series(wd, N, 64, 32), timeout=120)
        stop(scp)
    result = analyze(pcap)
    assert all(_stall_ms(s, "acceptor", "delayed-ack") == 0 for s in _stores(result))
    assert "stalls-delayed-ack" not in _findings(result)


def _orthanc_run(wd: str, env: dict) -> dict:
    """Orthanc as Debian packages it (1.10.1, linked against the system DCMTK 3.6.7), run
    by hand with a JSON config, receiving N C-STOREs from storescu."""
    os.makedirs(wd, exist_ok=True)
    pcap, cfg = os.path.join(wd, "orthanc.pcap"), os.path.join(wd, "orthanc.json")
    with open(cfg, "w") as f:
        json.dump(
            {"Name": "ORTHANC", "DicomAet": "ORTHANC", "DicomPort": SCP_PORT,
             "HttpServerEnabled": False, "DicomCheckCalledAet": False, "Plugins": [],
             "StorageDirectory": os.path.join(wd, "storage"),
             "IndexDirectory": os.path.join(wd, "index")},
            f,
        )  # fmt: skip
    with VethPair() as net:
        scp = net.popen("b", ["Orthanc", cfg], env={**os.environ, **env})
        net.wait_listening("b", SCP_PORT, proc=scp, timeout=30)
        with net.capture("a", pcap):
            _storescu(net, "ORTHANC", series(wd, N, 64, 35), timeout=120)
        stop(scp)
    return analyze(pcap)


def test_orthanc_on_the_system_dcmtk_splits_its_responses_too_unless_tcp_nodelay(tmp_path):
    # Orthanc's own static builds define DISABLE_NAGLE_ALGORITHM; the distribution's build
    # uses the system DCMTK, which writes the response in two pieces like storescp.
    split = _orthanc_run(str(tmp_path / "default"), {})
    assert all(_stall_ms(s, "acceptor", "delayed-ack") > 0 for s in _stores(split))
    assert "the SCP (ORTHANC)" in _findings(split)["stalls-delayed-ack"]["evidence"][0]
    once = _orthanc_run(str(tmp_path / "nodelay"), {"TCP_NODELAY": "1"})
    assert all(_stall_ms(s, "acceptor", "delayed-ack") == 0 for s in _stores(once))
    assert "stalls-delayed-ack" not in _findings(once)


def test_a_receiver_that_stops_reading_is_zero_window_not_delayed_ack(tmp_path):
    wd = str(tmp_path)
    pcap = os.path.join(wd, "zero-window.pcap")
    with VethPair() as net:
        # a small receive buffer, so one second without reading fills it
        net.run("b", ["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 8192 8192"])
        argv = [PY, str(PEERS / "slow_reader_scp.py"), str(SCP_PORT), "200000", "1.0"]
        scp = net.popen("b", argv)
        net.wait_listening("b", SCP_PORT, proc=scp)
        with net.capture("a", pcap):
            _storescu(net, "SLOWREAD", series(wd, N, 256, 33), timeout=120)
        stop(scp)
    result = analyze(pcap)
    stores = _stores(result)
    waited = [s for s in stores if _stall_ms(s, "requestor", "zero-window") > 0]
    assert len(waited) == 1 and _stall_ms(waited[0], "requestor", "zero-window") >= 500
    assert all(_stall_ms(s, "acceptor", "delayed-ack") == 0 for s in stores)
    found = _findings(result)
    assert "the SCU (STORESCU)'s data" in found["stalls-zero-window"]["evidence"][0]
    assert "stalls-delayed-ack" not in found
    assert result["summary"]["tcp"]["zero_windows"]["acceptor"] >= 1


def test_a_sender_pausing_between_objects_is_no_stall(tmp_path):
    wd = str(tmp_path)
    pcap = os.path.join(wd, "pausing.pcap")
    with VethPair() as net:
        scp = net.popen("b", [dcmtk("storescp"), "-aet", "ARCHIVE", "--ignore", str(SCP_PORT)])
        net.wait_listening("b", SCP_PORT, proc=scp)
        argv = [PY, str(PEERS / "pausing_scu.py"), net.ip("b"), str(SCP_PORT), "ARCHIVE", "0.3"]
        with net.capture("a", pcap):
            net.run("a", [*argv, *series(wd, N, 64, 34)], timeout=120)
        stop(scp)
    result = analyze(pcap)
    stores = _stores(result)
    # 0.3 s of silence from the SCU after each object: not inside any transfer
    assert all(not any(x["sender"] == "requestor" for x in s.get("stalls", ())) for s in stores)
    found = _findings(result)
    assert "stalls-sender-idle" not in found and "stalls-zero-window" not in found
    # The SCP is still DCMTK and still splits its responses; whether one waits depends on
    # the SCU's ACK (after each pause Linux acknowledges at once: quick-ACK mode), so the
    # only stalls left are the SCP's, and they are delayed-ack ones.
    causes = {(x["sender"], x["cause"]) for s in stores for x in s.get("stalls", ())}
    assert causes <= {("acceptor", "delayed-ack")}

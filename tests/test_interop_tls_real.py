"""TLS spoken to a plain DICOM port and the reverse, and who refused a handshake, from
real traffic between namespaces (DCMTK storescu/storescp with and without +tls, openssl
s_client/s_server; certificates made with openssl req). One capture:

  1. storescu          -> storescp (plain, 11112)            stored
  2. storescu +tls     -> storescp +tls (2762)                stored over TLS
  3. storescu +tls     -> storescp (plain, 11112)             storescp: "Unrecognized PDU
                                                              type: 16", resets
  4. storescu          -> storescp +tls (2762)                storescp: "wrong version
                                                              number", resets
  5. storescu +tls that does not trust the server's certificate -> 2762: the client's alert
  6. openssl s_client -tls1_2 without a certificate -> s_server -Verify 1 (2763): the
     server's alert
"""

from __future__ import annotations

import dataclasses
import os

import pytest
from netns import VethPair
from peers import make_ct
from pipeline_captures import run
from scenarios.more import make_tls_material
from scenarios.plumbing import dcmtk, start_storescp, stop

from dicomsniffd.config import Config

pytestmark = pytest.mark.netns

PLAIN, TLS, OPENSSL = 11112, 2762, 2763


def _storescu(net: VethPair, port: int, file: str, *tls: str):
    return net.run(
        "a",
        [dcmtk("storescu"), "-aet", "STORESCU", "-aec", "ANYSCP", *tls,
         net.ip("b"), str(port), file],
        check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> tuple:
    wd = str(tmp_path_factory.mktemp("interop-tls"))
    m = make_tls_material(wd)
    ((file, _uid),) = make_ct.make_series(os.path.join(wd, "ct"), 1, 64, series=6)
    client_tls = ["+tls", m["client_key"], m["client_crt"], "-pw"]
    pcap = os.path.join(wd, "tls.pcap")
    said = {}
    with VethPair() as net:
        plain = start_storescp(net, "b", PLAIN, "ANYSCP")
        secure = net.popen(
            "b",
            [dcmtk("storescp"), "-aet", "ANYSCP", "--ignore", "-ta", "30",
             "+tls", m["server_key"], m["server_crt"], "-pw", "+cf", m["client_crt"], "-rc",
             str(TLS)],
        )  # fmt: skip
        net.wait_listening("b", TLS, proc=secure)
        server = net.popen(
            "b",
            ["openssl", "s_server", "-accept", str(OPENSSL), "-cert", m["server_crt"],
             "-key", m["server_key"], "-Verify", "1", "-CAfile", m["client_crt"],
             "-naccept", "1", "-rev"],
        )  # fmt: skip
        net.wait_listening("b", OPENSSL, proc=server)
        b = net.ip("b")
        with net.capture("a", pcap):
            said["plain"] = _storescu(net, PLAIN, file)
            said["tls"] = _storescu(net, TLS, file, *client_tls, "+cf", m["server_crt"])
            said["tls-to-plain"] = _storescu(net, PLAIN, file, *client_tls, "+cf", m["server_crt"])
            said["plain-to-tls"] = _storescu(net, TLS, file)
            said["untrusted"] = _storescu(net, TLS, file, *client_tls)
            said["no-cert"] = net.run(
                "a",
                ["sh", "-c", f"(echo x; sleep 0.4) | openssl s_client -connect {b}:{OPENSSL} "
                 f"-tls1_2 -CAfile {m['server_crt']}"],
                check=False,
            )  # fmt: skip
        stop(plain)
        scp_said = stop(secure)
        stop(server)
    codes = {name: p.returncode for name, p in said.items()}
    config = Config()
    config = dataclasses.replace(
        config, dicom=dataclasses.replace(config.dicom, ports=(PLAIN, TLS, OPENSSL))
    )
    return run(pcap, config), codes, scp_said, b


def _finding(result, code: str) -> dict:
    found = [f for f in result.summary["findings"] if f["code"] == code]
    assert len(found) == 1, [f["code"] for f in result.summary["findings"]]
    return found[0]


def test_the_peers_did_what_the_scenario_says(tls) -> None:
    _result, codes, scp_said, _b = tls
    assert codes["plain"] == codes["tls"] == 0
    assert codes["tls-to-plain"] != 0 and codes["plain-to-tls"] != 0 and codes["untrusted"] != 0
    assert "wrong version number" in scp_said  # storescp +tls on the plain RQ


def test_tls_client_on_a_plain_port(tls) -> None:
    result, _codes, _said, b = tls
    (line,) = _finding(result, "tls-to-plain-port")["evidence"]
    assert line == (
        f"{b}:{PLAIN}: 1 TLS ClientHello answered with a reset, no TLS record; "
        "the same port answered 1 plain association"
    )


def test_plain_client_on_a_tls_port(tls) -> None:
    result, _codes, _said, b = tls
    (line,) = _finding(result, "plain-to-tls-port")["evidence"]
    assert line.endswith(
        f"STORESCU → ANYSCP to {b}:{TLS}: A-ASSOCIATE-RQ answered with a reset, no PDU; "
        "the same port completed 1 TLS handshake"
    )


def test_which_side_refused_the_handshake(tls) -> None:
    result, _codes, _said, b = tls
    finding = _finding(result, "tls-handshake-refused")
    assert finding["evidence"] == [
        f"{b}:{TLS}: 1 handshake refused by the client (its TLS alert)",
        f"{b}:{OPENSSL}: 1 handshake refused by the server (its TLS alert)",
    ]
    lines = [e for e in result.events if e["type"] == "tls"]
    assert sorted((e["server"], e["how"], e["refused_by"]) for e in lines) == sorted(
        [
            (f"{b}:{TLS}", "established", ""),
            (f"{b}:{PLAIN}", "reset-before-reply", "server"),
            (f"{b}:{TLS}", "alert", "client"),
            (f"{b}:{OPENSSL}", "alert", "server"),
        ]
    )


def test_resets_on_tls_connections_are_counted(tls) -> None:
    result, _codes, _said, _b = tls
    # the TLS connection to the plain port (no AE titles) was reset by the server
    assert result.value("dicom_tcp_resets_total", calling_ae="unknown", sender="acceptor") >= 1

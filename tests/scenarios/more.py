"""More scenarios (tests/test_real_traffic_more.py): TLS, any-port detection, connection
failures, `-i any` (SLL/SLL2), pcapng, snaplen. Own registry and generator, so the
session fixture of test_real_traffic.py is unaffected."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import netns
from netns import VethPair
from peers import make_ct

from .plumbing import (
    DEST_PORT,
    SCP_PORT,
    Scenario,
    _check,
    _start_tcpdump,
    _stop_capture,
    _store_expect,
    dcmtk,
    require_all_tools,
    run_timed,
    start_storescp,
    stop,
)

ANYPORT = 5104
SNAPLEN = 200
TLS_STORES = 3


def make_tls_material(wd: str) -> dict[str, str]:
    """Two unrelated self-signed certificates (server, client), made with openssl req."""
    out = {}
    for who in ("server", "client"):
        key, crt = os.path.join(wd, f"{who}.key"), os.path.join(wd, f"{who}.pem")
        _check(
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    key,
                    "-out",
                    crt,
                    "-days",
                    "2",
                    "-subj",
                    f"/CN=dsniff-{who}",
                ],
                capture_output=True,
                text=True,
            ),
            "openssl req",
        )
        out[f"{who}_key"], out[f"{who}_crt"] = key, crt
    return out


def sc_n_tls(wd: str, files: list[str]) -> Scenario:
    """(n) TLS on port 11112, six connections in one capture:
    1. DCMTK storescu +tls -> storescp +tls (mutual certificates): 3 images stored;
    2. DCMTK storescu +tls that does not trust the server's certificate: client alert;
    3. openssl s_client -tls1_2 without a client certificate -> s_server -Verify 1:
       the server's (cleartext) alert;
    4. the same with -tls1_3: the server's alert is encrypted (a short record);
    5./6. s_client -tls1_2 / -tls1_3 with a trusted client certificate: one line each way.
    Expected: 3 established, 3 handshake-failed."""
    pcap = os.path.join(wd, "n_tls.pcap")
    m = make_tls_material(wd)
    notes: dict = {}
    with VethPair() as net:
        cap = _start_tcpdump(net, "a", pcap)
        try:
            scp = net.popen(
                "b",
                [
                    dcmtk("storescp"),
                    "-aet",
                    "TLSSCP",
                    "--ignore",
                    "-ta",
                    "30",
                    "+tls",
                    m["server_key"],
                    m["server_crt"],
                    "-pw",
                    "+cf",
                    m["client_crt"],
                    "-rc",
                    str(SCP_PORT),
                ],
            )
            net.wait_listening("b", SCP_PORT, proc=scp)
            ok = net.run(
                "a",
                [
                    dcmtk("storescu"),
                    "-aet",
                    "TLSSCU",
                    "-aec",
                    "TLSSCP",
                    "+tls",
                    m["client_key"],
                    m["client_crt"],
                    "-pw",
                    "+cf",
                    m["server_crt"],
                    net.ip("b"),
                    str(SCP_PORT),
                    *files,
                ],
                check=False,
            )
            if ok.returncode != 0:
                raise netns.NetnsError(f"storescu over TLS failed:\n{ok.stdout}{ok.stderr}")
            # The call above without "+cf server.pem", spelled out: the difference is the point.
            bad = net.run(
                "a",
                [
                    dcmtk("storescu"),
                    "-aet",
                    "TLSSCU",
                    "-aec",
                    "TLSSCP",
                    "+tls",
                    m["client_key"],
                    m["client_crt"],
                    "-pw",
                    net.ip("b"),
                    str(SCP_PORT),
                    files[0],
                ],
                check=False,
            )
            if bad.returncode == 0:
                raise netns.NetnsError("storescu trusted an unknown server certificate")
            notes["untrusted"] = (bad.stdout + bad.stderr)[-400:]
            stop(scp)
            # -rev: the server answers every line (reversed), so both sides send data
            srv = net.popen(
                "b",
                [
                    "openssl",
                    "s_server",
                    "-accept",
                    str(SCP_PORT),
                    "-cert",
                    m["server_crt"],
                    "-key",
                    m["server_key"],
                    "-Verify",
                    "1",
                    "-CAfile",
                    m["client_crt"],
                    "-naccept",
                    "4",
                    "-rev",
                ],
            )
            net.wait_listening("b", SCP_PORT, proc=srv)
            for version, with_cert in (
                ("-tls1_2", False),
                ("-tls1_3", False),
                ("-tls1_2", True),
                ("-tls1_3", True),
            ):
                client = [
                    "openssl",
                    "s_client",
                    "-connect",
                    f"{net.ip('b')}:{SCP_PORT}",
                    version,
                    "-CAfile",
                    m["server_crt"],
                ]
                if with_cert:
                    client += ["-cert", m["client_crt"], "-key", m["client_key"]]
                # stdin stays open a moment so the answer arrives before the client quits
                p = net.run(
                    "a",
                    ["sh", "-c", f"(echo dicom-over-tls; sleep 0.4) | {' '.join(client)}"],
                    check=False,
                )
                out = p.stdout + p.stderr
                notes[f"{version}{'+cert' if with_cert else ''}"] = out[-300:]
                if with_cert and "slt-revo-mocid" not in out:
                    raise netns.NetnsError(
                        f"s_client {version} with a certificate got no answer:\n{out[-2000:]}"
                    )
            stop(srv)
        finally:
            _stop_capture(cap)
    exp = {"tls": {"established": 3, "handshake-failed": 3}, "server_port": SCP_PORT}
    return Scenario("n_tls", pcap, exp, notes=notes)


def sc_o_anyport(wd: str, files: list[str]) -> Scenario:
    """(o) storescp on port 5104 (not a configured DICOM port), storescu sends 3 images."""
    pcap = os.path.join(wd, "o_anyport.pcap")
    with VethPair() as net:
        scp = start_storescp(net, "b", ANYPORT, "STORESCP")
        with net.capture("a", pcap):
            _check(
                net.run(
                    "a",
                    [
                        dcmtk("storescu"),
                        "-aet",
                        "ANYSCU",
                        "-aec",
                        "ANY-PORT-SCP",
                        net.ip("b"),
                        str(ANYPORT),
                        *files[:3],
                    ],
                ),
                "storescu",
            )
        stop(scp)
    exp = _store_expect("ANYSCU", "ANY-PORT-SCP", 3)
    return Scenario("o_anyport", pcap, exp, ports=[ANYPORT])


def sc_p_conn_failures(wd: str, files: list[str]) -> Scenario:
    """(p) storescu to 11112 with nothing listening (RST: refused); then SYNs to 11112
    dropped by iptables in the server namespace while echoscu -to 2 tries (unanswered);
    then a working C-ECHO to storescp on 11113 moves the capture clock on (> 1 s)."""
    pcap = os.path.join(wd, "p_failures.pcap")
    with VethPair(ipv6=False) as net, net.capture("a", pcap):
        p = net.run(
            "a",
            [
                dcmtk("storescu"),
                "-aet",
                "REFUSEDSCU",
                "-aec",
                "NOBODY",
                net.ip("b"),
                str(SCP_PORT),
                files[0],
            ],
            check=False,
        )
        if p.returncode == 0:
            raise netns.NetnsError("storescu to a closed port succeeded")
        net.run(
            "b",
            [
                "iptables",
                "-w",
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "--dport",
                str(SCP_PORT),
                "--syn",
                "-j",
                "DROP",
            ],
        )
        t0 = time.monotonic()
        p = net.run(
            "a",
            [
                dcmtk("echoscu"),
                "-to",
                "2",
                "-aet",
                "DROPSCU",
                "-aec",
                "NOBODY",
                net.ip("b"),
                str(SCP_PORT),
            ],
            check=False,
        )
        if p.returncode == 0:
            raise netns.NetnsError("echoscu through a SYN DROP succeeded")
        waited = time.monotonic() - t0
        dropped = net.dropped_packets("b")
        scp = start_storescp(net, "b", DEST_PORT, "LATESCP")
        _check(
            net.run(
                "a",
                [
                    dcmtk("echoscu"),
                    "-aet",
                    "LATESCU",
                    "-aec",
                    "LATESCP",
                    net.ip("b"),
                    str(DEST_PORT),
                ],
            ),
            "echoscu",
        )
        stop(scp)
    exp = {
        "failures": {
            (f"{_ip4(net)}:{SCP_PORT}", "refused"): 1,
            (f"{_ip4(net)}:{SCP_PORT}", "unanswered"): 1,
        },
        "syn_dropped": dropped,
    }
    return Scenario(
        "p_failures",
        pcap,
        exp,
        ports=[SCP_PORT, DEST_PORT],
        notes={"echoscu_waited_s": round(waited, 2), "iptables_dropped": dropped},
    )


def _ip4(net: VethPair) -> str:
    return net.ip("b")


def sc_q_any_iface(wd: str, files: list[str]) -> Scenario:
    """(q) storescu -> storescp (5 images) captured with tcpdump -i any inside the client
    namespace, twice at once: the default link type (SLL2) and -y LINUX_SLL (SLL)."""
    sll2 = os.path.join(wd, "q_any_sll2.pcap")
    sll = os.path.join(wd, "q_any_sll.pcap")
    with VethPair() as net:
        scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
        caps = [
            _start_tcpdump(net, "a", sll2, iface="any"),
            _start_tcpdump(net, "a", sll, "-y", "LINUX_SLL", iface="any"),
        ]
        try:
            _check(
                net.run(
                    "a",
                    [
                        dcmtk("storescu"),
                        "-aet",
                        "ANYIFSCU",
                        "-aec",
                        "ANYIF-SCP",
                        net.ip("b"),
                        str(SCP_PORT),
                        *files,
                    ],
                ),
                "storescu",
            )
        finally:
            for c in caps:
                _stop_capture(c)
        stop(scp)
    exp = _store_expect("ANYIFSCU", "ANYIF-SCP", len(files))
    return Scenario("q_any_iface", sll2, exp, notes={"sll": sll})


def sc_r_snaplen(wd: str, files: list[str]) -> Scenario:
    """(r) storescu -> storescp (5 images, 64x64 CT) captured with tcpdump -s 200."""
    pcap = os.path.join(wd, "r_snaplen.pcap")
    with VethPair() as net:
        scp = start_storescp(net, "b", SCP_PORT, "STORESCP")
        cap = _start_tcpdump(net, "a", pcap, snaplen=SNAPLEN)
        try:
            _check(
                net.run(
                    "a",
                    [
                        dcmtk("storescu"),
                        "-aet",
                        "SNAPSCU",
                        "-aec",
                        "SNAP-SCP",
                        net.ip("b"),
                        str(SCP_PORT),
                        *files,
                    ],
                ),
                "storescu",
            )
        finally:
            _stop_capture(cap)
        stop(scp)
    exp = {
        "association_requests": 1,
        "calling_ae": "SNAPSCU",
        "called_ae": "SNAP-SCP",
        "stores": len(files),
        "statuses_sent": {"0x0000"},
    }
    return Scenario("r_snaplen", pcap, exp)


MORE_SCENARIOS: dict[str, Callable[[str, list[str]], Scenario]] = {
    "n_tls": sc_n_tls,
    "o_anyport": sc_o_anyport,
    "p_failures": sc_p_conn_failures,
    "q_any_iface": sc_q_any_iface,
    "r_snaplen": sc_r_snaplen,
}


def generate_more(workdir: str, *, parallel: int = 5) -> dict[str, Scenario]:
    """Run the MORE_SCENARIOS (each in its own namespace pair), in parallel."""
    require_all_tools()
    netns.require_tools("openssl")
    files = [p for p, _ in make_ct.make_series(os.path.join(workdir, "images"), 5, 64, series=21)]

    def one(name: str) -> Scenario:
        return run_timed(workdir, name, lambda wd: MORE_SCENARIOS[name](wd, files))

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as ex:
        return dict(zip(MORE_SCENARIOS, ex.map(one, MORE_SCENARIOS), strict=True))

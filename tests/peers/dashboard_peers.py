"""Peers for the live dashboard proof (tests/test_dashboard.py): clean traffic and trouble.

Every subcommand runs inside a test namespace (``ip netns exec``) and only talks to the
address it is given. PDUs are built with rawscu.py's helpers (PS3.8 §9.3).

  loop HOST PORT FILE...     pynetdicom SCU "CT1" -> "PACS", until SIGTERM, each round:
                             one association proposing Verification, CT, C-FIND, C-MOVE
                             and MR Image Storage (the SCP rejects MR: a rejected
                             presentation context); C-ECHO, a C-STORE of every FILE (the
                             SCP answers by SOP Instance UID), C-FIND, C-MOVE to --move-dest,
                             release; then an association to a wrong called AE (rejected).
  silent-scp PORT --mode M   raw acceptor: answers every A-ASSOCIATE-RQ with an
                             A-ASSOCIATE-AC (every context accepted, first transfer syntax),
                             then never answers anything. M = blackhole: reads and discards
                             everything (requests stay unanswered); stall: a tiny receive
                             buffer and never reads again (the window closes: zero window).
  unanswered HOST PORT       associate, send a C-ECHO-RQ, wait, then reset the connection
                             (SO_LINGER 0): a request that is never answered, and a RST.
  zero-window HOST PORT      associate, send a C-STORE of a large data set until the
                             send blocks (receiver's window closed), hold, then reset.
  garbage HOST PORT          associate, then send a PDU of an undefined type (0x0B).
  idle HOST PORT SECONDS     associate, stay silent SECONDS, release.
  refused HOST PORT          connect, expect a refusal (RST).
  syn-timeout HOST PORT      connect, expect no answer (SYNs dropped), give up after 1.5 s.
  burst HOST PORT            associate, print "associated", wait for "go" on stdin, send a
                             32 MiB C-STORE data set as fast as possible, print "sent", wait
                             for "finish", send 2 MiB more, close.

Each prints one JSON line saying what happened and exits 0 when the peer behaved as
the subcommand expects (non-zero otherwise, with the reason).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import rawscu  # noqa: E402

VERIFICATION = "1.2.840.10008.1.1"
CT = rawscu.CT_IMAGE_STORAGE
EXPLICIT = rawscu.EXPLICIT_VR_LE
IMPLICIT = rawscu.IMPLICIT_VR_LE
CALLING, CALLED = "CT1", "PACS"  # the two AE titles the daemon's label cap admits


# ----------------------------------------------------------------------------------------
# PDUs
# ----------------------------------------------------------------------------------------


def parse_rq_contexts(body: bytes) -> list[tuple[int, list[str]]]:
    """[(context id, proposed transfer syntaxes)] of an A-ASSOCIATE-RQ body."""
    out = []
    pos = 68
    while pos + 4 <= len(body):
        itype, _, ilen = struct.unpack(">BBH", body[pos : pos + 4])
        item = body[pos + 4 : pos + 4 + ilen]
        if itype == 0x20:
            cid = item[0]
            syntaxes = []
            sub = 4
            while sub + 4 <= len(item):
                stype, _, slen = struct.unpack(">BBH", item[sub : sub + 4])
                if stype == 0x40:
                    syntaxes.append(item[sub + 4 : sub + 4 + slen].rstrip(b"\0").decode())
                sub += 4 + slen
            out.append((cid, syntaxes))
        pos += 4 + ilen
    return out


def associate_ac(rq_body: bytes) -> bytes:
    """An A-ASSOCIATE-AC accepting every proposed context with its first transfer syntax."""
    called, calling = rq_body[4:20], rq_body[20:36]
    items = rawscu._item(0x10, rawscu.APP_CONTEXT.encode())
    for cid, syntaxes in parse_rq_contexts(rq_body):
        ts = rawscu._item(0x40, (syntaxes or [IMPLICIT])[0].encode())
        items += rawscu._item(0x21, struct.pack(">BBBB", cid, 0, 0, 0) + ts)
    ui = rawscu._item(0x51, struct.pack(">I", 16384))
    ui += rawscu._item(0x52, rawscu.IMPL_CLASS_UID.encode())
    items += rawscu._item(0x50, ui)
    body = struct.pack(">HH", 1, 0) + called + calling + b"\0" * 32 + items
    return rawscu._pdu(0x02, body)


def c_echo_rq(message_id: int) -> bytes:
    body = (
        rawscu._elem(0, 0x0002, rawscu._ui(VERIFICATION))
        + rawscu._elem(0, 0x0100, struct.pack("<H", 0x0030))
        + rawscu._elem(0, 0x0110, struct.pack("<H", message_id))
        + rawscu._elem(0, 0x0800, struct.pack("<H", 0x0101))
    )
    return rawscu._elem(0, 0x0000, struct.pack("<I", len(body))) + body


def associate(
    host: str, port: int, abstract: str, ts: str, *, calling: str = CALLING, called: str = CALLED
) -> socket.socket:
    s = rawscu.connect(host, port)
    s.sendall(rawscu.associate_rq(calling, called, [(1, abstract, [ts])]))
    ptype, body = rawscu.recv_pdu(s)
    if ptype != 0x02 or rawscu.parse_ac(body).get(1, (1,))[0] != 0:
        raise SystemExit(f"association not accepted: PDU {ptype:#x}")
    return s


def reset(s: socket.socket) -> None:
    """Close with a RST (SO_LINGER on, timeout 0) instead of a FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def store_start(message_id: int) -> bytes:
    return rawscu.pdata([(1, 0x03, rawscu.c_store_rq(message_id, CT, "1.2.3.4.5.6.7.8"))])


def dataset_pdus(total: int, chunk: int = 16000) -> list[bytes]:
    """P-DATA-TF PDUs carrying ``total`` data set bytes (never marked last)."""
    one = rawscu.pdata([(1, 0x00, bytes(chunk))])
    return [one] * (total // chunk)


# ----------------------------------------------------------------------------------------
# the silent acceptor
# ----------------------------------------------------------------------------------------


def silent_scp(a) -> int:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if a.mode == "stall":
        # Inherited by accepted sockets; set before listen() so the window scale is small.
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    srv.bind((a.bind, a.port))
    srv.listen(16)
    print(f"silent-scp {a.mode} listening {a.port}", flush=True)

    def serve(conn: socket.socket) -> None:
        try:
            ptype, body = rawscu.recv_pdu(conn)
            if ptype != 0x01:
                return
            conn.sendall(associate_ac(body))
            if a.mode == "stall":
                time.sleep(30)  # never read again; the peer resets or the test ends
                return
            while conn.recv(1 << 16):
                pass
        except OSError:
            pass
        finally:
            conn.close()

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


# ----------------------------------------------------------------------------------------
# clients
# ----------------------------------------------------------------------------------------


def cmd_unanswered(a) -> dict:
    s = associate(a.host, a.port, VERIFICATION, IMPLICIT)
    s.sendall(rawscu.pdata([(1, 0x03, c_echo_rq(1))]))
    time.sleep(0.5)
    reset(s)
    return {"op": "unanswered", "request": "C-ECHO", "ended": "reset"}


def cmd_zero_window(a) -> dict:
    s = associate(a.host, a.port, CT, EXPLICIT)
    s.sendall(store_start(1))
    s.settimeout(1.0)
    sent = 0
    blocked = False
    try:
        for pdu in dataset_pdus(64 * 1024 * 1024):
            s.sendall(pdu)
            sent += len(pdu)
    except TimeoutError:
        blocked = True  # the receiver's window is closed and our send buffer is full
    time.sleep(0.5)  # a zero-window probe or two
    reset(s)
    if not blocked:
        raise SystemExit(f"zero-window: the receiver took all {sent} bytes")
    return {"op": "zero-window", "sent_before_block": sent}


def cmd_garbage(a) -> dict:
    s = associate(a.host, a.port, VERIFICATION, IMPLICIT)
    junk = bytes(range(32)) * 2
    s.sendall(struct.pack(">BBI", 0x0B, 0, len(junk)) + junk)
    time.sleep(0.3)
    s.close()
    return {"op": "garbage", "pdu_type": "0x0B"}


def cmd_idle(a) -> dict:
    s = associate(a.host, a.port, VERIFICATION, IMPLICIT)
    time.sleep(a.seconds)
    s.sendall(rawscu.release_rq())
    try:
        ptype, _ = rawscu.recv_pdu(s)
    except OSError:
        ptype = 0
    s.close()
    return {"op": "idle", "seconds": a.seconds, "release": f"{ptype:#x}"}


def cmd_refused(a) -> dict:
    try:
        socket.create_connection((a.host, a.port), timeout=5).close()
    except ConnectionRefusedError:
        return {"op": "refused"}
    raise SystemExit("refused: the connection was accepted")


def cmd_syn_timeout(a) -> dict:
    try:
        socket.create_connection((a.host, a.port), timeout=1.5).close()
    except TimeoutError:
        return {"op": "syn-timeout"}
    raise SystemExit("syn-timeout: the connection was answered")


def cmd_burst(a) -> dict:
    s = associate(a.host, a.port, CT, EXPLICIT)
    s.sendall(store_start(1))
    print("associated", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("burst: no go")
    sent = 0
    for pdu in dataset_pdus(32 * 1024 * 1024):
        s.sendall(pdu)
        sent += len(pdu)
    print("sent", flush=True)
    if sys.stdin.readline().strip() != "finish":
        raise SystemExit("burst: no finish")
    for pdu in dataset_pdus(2 * 1024 * 1024):
        s.sendall(pdu)
        sent += len(pdu)
    time.sleep(0.2)
    s.close()
    return {"op": "burst", "sent": sent}


def cmd_loop(a) -> dict:
    from pydicom import dcmread
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE
    from pynetdicom.sop_class import (
        CTImageStorage,
        MRImageStorage,
        PatientRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelMove,
        Verification,
    )

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    datasets = [dcmread(f) for f in a.files]
    ae = AE(ae_title=CALLING)
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelMove)
    ae.add_requested_context(MRImageStorage)  # not supported by the SCP: rejected context
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = "*"
    rounds = 0
    print("loop running", flush=True)
    while not stop.is_set():
        try:
            assoc = ae.associate(a.host, a.port, ae_title=CALLED)
            if assoc.is_established:
                assoc.send_c_echo()
                for ds in datasets:
                    assoc.send_c_store(ds)
                for _ in assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind):
                    pass
                for _ in assoc.send_c_move(
                    query, a.move_dest, PatientRootQueryRetrieveInformationModelMove
                ):
                    pass
                assoc.release()
            ae.associate(a.host, a.port, ae_title="WRONGAE").release()  # rejected
            rounds += 1
        except Exception as exc:  # keep the traffic flowing; the test reports what is missing
            print(f"loop round failed: {exc!r}", file=sys.stderr, flush=True)
        stop.wait(a.pause)
    return {"op": "loop", "rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("silent-scp")
    p.add_argument("port", type=int)
    p.add_argument("--mode", choices=("blackhole", "stall"), required=True)
    p.add_argument("--bind", default="0.0.0.0")
    for name in (
        "unanswered",
        "zero-window",
        "garbage",
        "idle",
        "refused",
        "syn-timeout",
        "burst",
        "loop",
    ):
        p = sub.add_parser(name)
        p.add_argument("host")
        p.add_argument("port", type=int)
        if name == "idle":
            p.add_argument("seconds", type=float)
        if name == "loop":
            p.add_argument("files", nargs="+")
            p.add_argument("--move-dest", default="DEST")
            p.add_argument("--pause", type=float, default=0.3)
    a = ap.parse_args(argv)
    if a.cmd == "silent-scp":
        return silent_scp(a)
    handler = {
        "unanswered": cmd_unanswered,
        "zero-window": cmd_zero_window,
        "garbage": cmd_garbage,
        "idle": cmd_idle,
        "refused": cmd_refused,
        "syn-timeout": cmd_syn_timeout,
        "burst": cmd_burst,
        "loop": cmd_loop,
    }[a.cmd]
    print(json.dumps(handler(a)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

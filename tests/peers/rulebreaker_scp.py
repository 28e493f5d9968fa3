"""A raw-socket DICOM SCP that breaks exactly one PS3.8/PS3.7 rule (DESIGN §4b), or none.

    rulebreaker_scp.py PORT RULE

Accepts associations (every proposed context, its first transfer syntax), answers
C-ECHO-RQ and C-STORE-RQ with status 0x0000 and A-RELEASE-RQ with A-RELEASE-RP, one
association at a time, until killed. RULE ``clean`` does exactly that; every other RULE
changes one thing:

  context-answer-mismatch     the A-ASSOCIATE-AC accepts every context with JPEG Baseline,
                              a transfer syntax the SCUs here never propose
  missing-user-information    the A-ASSOCIATE-AC has no Implementation Class UID sub-item
  response-to-unknown-request a response's Message ID Being Responded To is the request's + 100
  response-on-other-context   the response goes on the other accepted context with the same
                              abstract syntax (the SCU must propose two)
  nonstandard-status          C-ECHO/C-STORE answered with status 0x9999 (not in PS3.7 C)
  role-not-negotiated         after its C-STORE-RSP, the SCP sends a C-STORE-RQ of its own to
                              the SCU on the same context (no SCP role was negotiated)
"""

from __future__ import annotations

import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # rawscu, imported or run
from rawscu import IMPL_CLASS_UID, _elem, _item, _pdu, _ui, c_store_rq, pdata, recv_pdu  # noqa: E402

RULES = (
    "clean",
    "context-answer-mismatch",
    "missing-user-information",
    "response-to-unknown-request",
    "response-on-other-context",
    "nonstandard-status",
    "role-not-negotiated",
)
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
IMPL_VERSION = "DSNIFF_RAWSCP"


def parse_rq(body: bytes) -> tuple[bytes, bytes, list[tuple[int, str, list[str]]]]:
    """(called, calling, [(context id, abstract syntax, transfer syntaxes)])."""
    contexts = []
    pos = 68
    while pos + 4 <= len(body):
        itype, _, ilen = struct.unpack(">BBH", body[pos : pos + 4])
        if itype == 0x20:
            cid, abstract, syntaxes = body[pos + 4], "", []
            sub = pos + 8
            while sub < pos + 4 + ilen:
                stype, _, slen = struct.unpack(">BBH", body[sub : sub + 4])
                value = body[sub + 4 : sub + 4 + slen].rstrip(b"\0").decode()
                if stype == 0x30:
                    abstract = value
                elif stype == 0x40:
                    syntaxes.append(value)
                sub += 4 + slen
            contexts.append((cid, abstract, syntaxes))
        pos += 4 + ilen
    return body[4:20], body[20:36], contexts


def associate_ac(rule: str, called: bytes, calling: bytes, contexts) -> bytes:
    items = _item(0x10, b"1.2.840.10008.3.1.1.1")
    for cid, _abstract, syntaxes in contexts:
        ts = JPEG_BASELINE if rule == "context-answer-mismatch" else syntaxes[0]
        items += _item(0x21, bytes([cid, 0, 0, 0]) + _item(0x40, ts.encode()))
    ui = _item(0x51, struct.pack(">I", 16384))
    if rule != "missing-user-information":
        ui += _item(0x52, IMPL_CLASS_UID.encode())
    ui += _item(0x55, IMPL_VERSION.encode())
    body = struct.pack(">HH", 1, 0) + called + calling + b"\0" * 32 + items + _item(0x50, ui)
    return _pdu(0x02, body)


def command(data: bytes) -> dict[int, bytes]:
    """{element: value} of an Implicit VR LE group 0000 command set."""
    out, pos = {}, 0
    while pos + 8 <= len(data):
        _group, elem, length = struct.unpack("<HHI", data[pos : pos + 8])
        out[elem] = data[pos + 8 : pos + 8 + length]
        pos += 8 + length
    return out


def response(field: int, mid: int, sop_class: bytes, status: int) -> bytes:
    body = (
        _elem(0, 0x0002, sop_class)
        + _elem(0, 0x0100, struct.pack("<H", field | 0x8000))
        + _elem(0, 0x0120, struct.pack("<H", mid))
        + _elem(0, 0x0800, struct.pack("<H", 0x0101))
        + _elem(0, 0x0900, struct.pack("<H", status))
    )
    return _elem(0, 0x0000, struct.pack("<I", len(body))) + body


def serve(conn: socket.socket, rule: str) -> None:
    ptype, body = recv_pdu(conn)
    if ptype != 0x01:
        return
    called, calling, contexts = parse_rq(body)
    conn.sendall(associate_ac(rule, called, calling, contexts))
    abstract_of = {cid: abstract for cid, abstract, _ in contexts}
    syntax_of = {cid: syntaxes[0] for cid, _, syntaxes in contexts}
    cmd_buf: dict[int, bytes] = {}
    waiting: dict[int, dict[int, bytes]] = {}  # context -> command awaiting its data set
    while True:
        ptype, body = recv_pdu(conn)
        if ptype == 0x05:
            conn.sendall(_pdu(0x06, b"\0\0\0\0"))
            return
        if ptype != 0x04:
            return
        pos = 0
        while pos + 6 <= len(body):
            length, ctx, mch = struct.unpack(">IBB", body[pos : pos + 6])
            fragment = body[pos + 6 : pos + 4 + length]
            pos += 4 + length
            if mch & 1:
                cmd_buf[ctx] = cmd_buf.get(ctx, b"") + fragment
                if not mch & 2:
                    continue
                cmd = command(cmd_buf.pop(ctx))
                if cmd.get(0x0800) != b"\x01\x01":
                    waiting[ctx] = cmd  # a data set follows
                    continue
            elif mch & 2 and ctx in waiting:
                cmd = waiting.pop(ctx)
            else:
                continue
            answer(conn, rule, ctx, cmd, abstract_of, syntax_of[ctx])


def answer(
    conn: socket.socket, rule: str, ctx: int, cmd: dict, abstract_of: dict, syntax: str
) -> None:
    field = struct.unpack("<H", cmd[0x0100])[0]
    mid = struct.unpack("<H", cmd[0x0110])[0]
    status = 0x9999 if rule == "nonstandard-status" else 0x0000
    if rule == "response-to-unknown-request":
        mid += 100
    out_ctx = ctx
    if rule == "response-on-other-context":
        others = [c for c, a in abstract_of.items() if a == abstract_of[ctx] and c != ctx]
        out_ctx = others[0] if others else ctx
    conn.sendall(pdata([(out_ctx, 0x03, response(field, mid, cmd.get(0x0002, b""), status))]))
    if rule == "role-not-negotiated" and field == 0x0001:
        sop = abstract_of[ctx]
        conn.sendall(pdata([(ctx, 0x03, c_store_rq(77, sop, "1.2.826.0.1.3680043.8.498.7303"))]))
        value = _ui(sop)  # (0008,0016) SOP Class UID, in the context's transfer syntax
        if syntax == "1.2.840.10008.1.2":
            element = _elem(0x0008, 0x0016, value)
        else:
            element = struct.pack("<HH2sH", 0x0008, 0x0016, b"UI", len(value)) + value
        conn.sendall(pdata([(ctx, 0x02, element)]))


def main(argv: list[str]) -> int:
    port, rule = int(argv[0]), argv[1]
    if rule not in RULES:
        raise SystemExit(f"rulebreaker_scp: unknown rule {rule!r} (one of {', '.join(RULES)})")
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(4)
    print(f"rulebreaker_scp ready {rule} port {port}", flush=True)
    while True:
        conn, _ = srv.accept()
        conn.settimeout(10)
        try:
            serve(conn, rule)
        except (ConnectionError, TimeoutError, OSError):
            pass
        finally:
            conn.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

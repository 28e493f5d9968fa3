"""A raw-socket DICOM SCU that breaks exactly one PS3.8/PS3.7 rule (DESIGN §4b), or none.

    rulebreaker.py HOST PORT RULE

One association to a real SCP (DCMTK storescp): A-ASSOCIATE-RQ proposing Verification
(context 1, and 3 for the interleaving rule) and CT Image Storage (5), one exchange, then
A-RELEASE-RQ. RULE ``clean`` sends exactly that; every other RULE changes one thing:

  max-pdu-length-exceeded   a C-STORE whose one P-DATA-TF is longer than the SCP's Maximum
                            Length (run storescp with --max-pdu 4096)
  pdv-on-unaccepted-context the C-ECHO-RQ on context 7, never proposed
  even-presentation-context-id  the C-ECHO-RQ on context 2
  odd-pdv-length            a C-STORE data set sent as two fragments of odd length
  pdv-reserved-bits         the C-ECHO-RQ's message control header 0x07
  fragments-interleaved     C-ECHO-RQ 1 in two fragments on context 1, C-ECHO-RQ 2 on
                            context 3 between them (its response awaited before going on)
  async-window-exceeded     two C-ECHO-RQs sent before the first response (no window
                            negotiated)
  sop-class-context-mismatch  a C-ECHO-RQ naming CT Image Storage on the Verification context
  dataset-encoding-mismatch  a C-STORE data set in Explicit VR on the Implicit VR context
  pdata-outside-association  the C-ECHO-RQ in the same segment as the A-ASSOCIATE-RQ
  malformed-context-proposal an extra context 9 with an abstract syntax and no transfer
                            syntax
  missing-user-information  no Implementation Class UID sub-item in the RQ
  invalid-ae-title          calling AE title "BAD\\AE" (a backslash)
  protocol-version-2        protocol version 2 (not a violation: the SCP rejects it)
  large-rq                  a 65,400-byte User Identity token: an RQ over 64 KiB (legal)
  unknown-items             an unknown item (0x77) and user information sub-item (0x5F),
                            which PS3.8 9.3 says to skip (legal)
  command-with-dataset      a C-STORE whose command and data set share one P-DATA-TF
                            (legal, PS3.8 E.1; an interoperability hint, findings/interop.py)

Prints one JSON line: what was sent and what came back.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # rawscu, imported or run
from rawscu import (
    APP_CONTEXT,
    CT_IMAGE_STORAGE,
    IMPL_CLASS_UID,
    IMPL_VERSION,
    IMPLICIT_VR_LE,
    _ae,
    _elem,
    _item,
    _pdu,
    _ui,
    c_store_rq,
    connect,
    pdata,
    recv_pdu,
    release_rq,
)  # noqa: E402

VERIFICATION = "1.2.840.10008.1.1"
RULES = (
    "clean",
    "max-pdu-length-exceeded",
    "pdv-on-unaccepted-context",
    "even-presentation-context-id",
    "odd-pdv-length",
    "pdv-reserved-bits",
    "fragments-interleaved",
    "async-window-exceeded",
    "sop-class-context-mismatch",
    "dataset-encoding-mismatch",
    "pdata-outside-association",
    "malformed-context-proposal",
    "missing-user-information",
    "invalid-ae-title",
    "protocol-version-2",
    "large-rq",
    "unknown-items",
    "command-with-dataset",
)


def echo_rq(message_id: int, sop_class: str = VERIFICATION) -> bytes:
    body = (
        _elem(0, 0x0002, _ui(sop_class))
        + _elem(0, 0x0100, struct.pack("<H", 0x0030))
        + _elem(0, 0x0110, struct.pack("<H", message_id))
        + _elem(0, 0x0800, struct.pack("<H", 0x0101))
    )
    return _elem(0, 0x0000, struct.pack("<I", len(body))) + body


def small_ct(size: int, explicit: bool = False) -> tuple[str, bytes]:
    """(SOP Instance UID, a CT data set of about ``size`` bytes), Implicit VR Little
    Endian, or Explicit VR Little Endian with ``explicit``."""
    uid = "1.2.826.0.1.3680043.8.498.7302.1"
    pad = b"\0" * (size - (size % 2))

    def el(group: int, elem: int, vr: str, value: bytes) -> bytes:
        if not explicit:
            return _elem(group, elem, value)
        if vr == "OB":  # PS3.5 7.1.2: reserved 2 bytes, 4-byte length
            return struct.pack("<HH2sHI", group, elem, b"OB", 0, len(value)) + value
        return struct.pack("<HH2sH", group, elem, vr.encode(), len(value)) + value

    ds = (
        el(0x0008, 0x0016, "UI", _ui(CT_IMAGE_STORAGE))
        + el(0x0008, 0x0018, "UI", _ui(uid))
        + el(0x0008, 0x0060, "CS", b"CT")
        + el(0x0010, 0x0010, "PN", b"RULE^BREAKER")
        + el(0x0011, 0x0010, "LO", b"DSNIFF  ")  # private creator
        + el(0x0011, 0x1010, "OB", pad)  # private padding: the data set's size
    )
    return uid, ds


def associate(rule: str, calling: str, called: str) -> bytes:
    contexts = [(1, VERIFICATION, [IMPLICIT_VR_LE]), (5, CT_IMAGE_STORAGE, [IMPLICIT_VR_LE])]
    if rule == "fragments-interleaved":
        contexts.append((3, VERIFICATION, [IMPLICIT_VR_LE]))
    items = _item(0x10, APP_CONTEXT.encode())
    for cid, abstract, syntaxes in contexts:
        sub = _item(0x30, abstract.encode()) + b"".join(_item(0x40, t.encode()) for t in syntaxes)
        items += _item(0x20, struct.pack(">BBBB", cid, 0, 0, 0) + sub)
    if rule == "malformed-context-proposal":
        items += _item(0x20, struct.pack(">BBBB", 9, 0, 0, 0) + _item(0x30, VERIFICATION.encode()))
    if rule == "unknown-items":
        items += _item(0x77, b"an item PS3.8 does not define")
    ui = _item(0x51, struct.pack(">I", 16384))
    if rule != "missing-user-information":
        ui += _item(0x52, IMPL_CLASS_UID.encode())
    ui += _item(0x55, IMPL_VERSION.encode())
    if rule == "unknown-items":
        ui += _item(0x5F, b"\1\2\3\4")
    if rule == "large-rq":
        token = b"t" * 65400  # e.g. a SAML assertion or a JWT (User Identity type 3-5)
        ui += _item(0x58, struct.pack(">BBH", 5, 0, len(token)) + token + b"\0\0")
    items += _item(0x50, ui)
    version = 2 if rule == "protocol-version-2" else 1
    body = struct.pack(">HH", version, 0) + _ae(called) + _ae(calling) + b"\0" * 32 + items
    return _pdu(0x01, body)


def ac_max_pdu(body: bytes) -> int:
    pos = 68
    while pos + 4 <= len(body):
        itype, _, ilen = struct.unpack(">BBH", body[pos : pos + 4])
        if itype == 0x50:
            sub = pos + 4
            while sub < pos + 4 + ilen:
                stype, _, slen = struct.unpack(">BBH", body[sub : sub + 4])
                if stype == 0x51:
                    return struct.unpack(">I", body[sub + 4 : sub + 8])[0]
                sub += 4 + slen
        pos += 4 + ilen
    return 0


def responses(s: socket.socket, n: int, seen: list) -> bool:
    """Read PDUs until ``n`` P-DATA-TF arrived; False if the SCP aborted or closed."""
    got = 0
    while got < n:
        try:
            ptype, _ = recv_pdu(s)
        except (ConnectionError, TimeoutError, OSError) as exc:
            seen.append(type(exc).__name__)
            return False
        seen.append(f"0x{ptype:02X}")
        if ptype == 0x04:
            got += 1
        elif ptype in (0x07, 0x03):
            return False
    return True


def run(host: str, port: int, rule: str, calling: str, called: str) -> dict:
    seen: list = []
    res = {"rule": rule, "received": seen}
    s = connect(host, port)
    s.settimeout(5)
    rq = associate(rule, "BAD\\AE" if rule == "invalid-ae-title" else calling, called)
    res["rq_bytes"] = len(rq)
    if rule == "pdata-outside-association":
        s.sendall(rq + pdata([(1, 0x03, echo_rq(1))]))  # one segment: P-DATA before the AC
    else:
        s.sendall(rq)
    try:
        ptype, body = recv_pdu(s)
    except (ConnectionError, TimeoutError, OSError) as exc:  # e.g. no answer to a bad RQ
        seen.append(type(exc).__name__)
        s.close()
        return res
    seen.append(f"0x{ptype:02X}")
    if ptype != 0x02:
        s.close()
        return res
    res["scp_max_pdu"] = ac_max_pdu(body)
    ok = True
    if rule == "pdata-outside-association":
        ok = responses(s, 1, seen)
    elif rule in ("max-pdu-length-exceeded", "odd-pdv-length", "dataset-encoding-mismatch"):
        size = 4 * max(res["scp_max_pdu"], 4096) if rule == "max-pdu-length-exceeded" else 2000
        uid, ds = small_ct(size, explicit=rule == "dataset-encoding-mismatch")
        s.sendall(pdata([(5, 0x03, c_store_rq(1, CT_IMAGE_STORAGE, uid))]))
        if rule == "max-pdu-length-exceeded":
            s.sendall(pdata([(5, 0x02, ds)]))  # the whole data set in one PDU
        elif rule == "dataset-encoding-mismatch":
            s.sendall(pdata([(5, 0x02, ds)]))
        else:
            s.sendall(pdata([(5, 0x00, ds[:1001])]) + pdata([(5, 0x02, ds[1001:])]))
        ok = responses(s, 1, seen)
    elif rule == "command-with-dataset":
        uid, ds = small_ct(2000)
        s.sendall(pdata([(5, 0x03, c_store_rq(1, CT_IMAGE_STORAGE, uid)), (5, 0x02, ds)]))
        ok = responses(s, 1, seen)
    elif rule == "fragments-interleaved":
        first = echo_rq(1)
        s.sendall(pdata([(1, 0x01, first[:20])]))  # command, not last
        s.sendall(pdata([(3, 0x03, echo_rq(2))]))  # another message's command
        ok = responses(s, 1, seen)
        if ok:
            s.sendall(pdata([(1, 0x03, first[20:])]))
            ok = responses(s, 1, seen)
    elif rule == "async-window-exceeded":
        s.sendall(pdata([(1, 0x03, echo_rq(1))]))
        s.sendall(pdata([(1, 0x03, echo_rq(2))]))
        ok = responses(s, 2, seen)
    else:
        ctx, mch, sop = 1, 0x03, VERIFICATION
        if rule == "pdv-on-unaccepted-context":
            ctx = 7
        elif rule == "even-presentation-context-id":
            ctx = 2
        elif rule == "pdv-reserved-bits":
            mch = 0x07
        elif rule == "sop-class-context-mismatch":
            sop = CT_IMAGE_STORAGE
        s.sendall(pdata([(ctx, mch, echo_rq(1, sop))]))
        ok = responses(s, 1, seen)
    if ok:
        s.sendall(release_rq())
        responses(s, 0, seen)
        try:
            seen.append(f"0x{recv_pdu(s)[0]:02X}")
        except (ConnectionError, TimeoutError, OSError) as exc:
            seen.append(type(exc).__name__)
    s.close()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("rule", choices=RULES)
    ap.add_argument("--calling", default="RULESCU")
    ap.add_argument("--called", default="STORESCP")
    a = ap.parse_args(argv)
    print(json.dumps(run(a.host, a.port, a.rule, a.calling, a.called)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

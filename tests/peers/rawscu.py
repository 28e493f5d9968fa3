"""A raw-socket DICOM SCU for what DCMTK and pynetdicom will not do on purpose.

Builds the Upper Layer PDUs by hand (PS3.8 §9.3), so the bytes on the wire are exactly
the ones the test asked for:

  abort   HOST PORT FILE   A-ASSOCIATE-RQ (optionally with User Identity username+passcode),
                           C-STORE-RQ command, the first --fragments dataset PDVs (never the
                           last one), then A-ABORT (service-user) and close.
  propose HOST PORT        A-ASSOCIATE-RQ proposing CT Image Storage with only the given
                           transfer syntaxes (default JPEG 2000 lossless); after the
                           A-ASSOCIATE-AC, A-RELEASE-RQ and wait for A-RELEASE-RP.

Prints one JSON line describing what happened (AC/RJ, per-context results, bytes sent).
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time

APP_CONTEXT = "1.2.840.10008.3.1.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
IMPL_CLASS_UID = "1.2.826.0.1.3680043.8.498.7301"
IMPL_VERSION = "DSNIFF_RAWSCU"


def _item(itype: int, body: bytes) -> bytes:
    return struct.pack(">BBH", itype, 0, len(body)) + body


def _pdu(ptype: int, body: bytes) -> bytes:
    return struct.pack(">BBI", ptype, 0, len(body)) + body


def _ae(title: str) -> bytes:
    return title.encode("ascii").ljust(16, b" ")[:16]


def associate_rq(
    calling: str,
    called: str,
    contexts: list[tuple[int, str, list[str]]],
    max_pdu: int = 16384,
    user: str | None = None,
    passcode: str | None = None,
) -> bytes:
    items = _item(0x10, APP_CONTEXT.encode())
    for cid, abstract, syntaxes in contexts:
        sub = _item(0x30, abstract.encode()) + b"".join(_item(0x40, t.encode()) for t in syntaxes)
        items += _item(0x20, struct.pack(">BBBB", cid, 0, 0, 0) + sub)
    ui = _item(0x51, struct.pack(">I", max_pdu))
    ui += _item(0x52, IMPL_CLASS_UID.encode())
    ui += _item(0x55, IMPL_VERSION.encode())
    if user is not None:
        primary = user.encode()
        secondary = (passcode or "").encode()
        id_type = 2 if passcode is not None else 1  # 2 = username and passcode
        ui += _item(
            0x58,
            struct.pack(">BBH", id_type, 0, len(primary))
            + primary
            + struct.pack(">H", len(secondary))
            + secondary,
        )
    items += _item(0x50, ui)
    body = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + b"\0" * 32 + items
    return _pdu(0x01, body)


def pdata(pdvs: list[tuple[int, int, bytes]]) -> bytes:
    """pdvs: (context id, message control header, fragment)."""
    body = b"".join(struct.pack(">IBB", len(f) + 2, cid, mch) + f for cid, mch, f in pdvs)
    return _pdu(0x04, body)


def abort_pdu(source: int = 0, reason: int = 0) -> bytes:
    return _pdu(0x07, struct.pack(">BBBB", 0, 0, source, reason))


def release_rq() -> bytes:
    return _pdu(0x05, b"\0\0\0\0")


def _elem(group: int, elem: int, value: bytes) -> bytes:
    return struct.pack("<HHI", group, elem, len(value)) + value


def _ui(uid: str) -> bytes:
    b = uid.encode()
    return b + b"\0" if len(b) % 2 else b


def c_store_rq(message_id: int, sop_class: str, sop_instance: str) -> bytes:
    """The C-STORE-RQ command set, Implicit VR Little Endian (PS3.7 §9.3.1.1)."""
    body = (
        _elem(0, 0x0002, _ui(sop_class))
        + _elem(0, 0x0100, struct.pack("<H", 0x0001))
        + _elem(0, 0x0110, struct.pack("<H", message_id))
        + _elem(0, 0x0700, struct.pack("<H", 0))
        + _elem(0, 0x0800, struct.pack("<H", 0x0000))
        + _elem(0, 0x1000, _ui(sop_instance))
    )
    return _elem(0, 0x0000, struct.pack("<I", len(body))) + body


def recv_pdu(sock: socket.socket) -> tuple[int, bytes]:
    hdr = _recv_exact(sock, 6)
    ptype, _, length = struct.unpack(">BBI", hdr)
    return ptype, _recv_exact(sock, length)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        buf += chunk
    return buf


def parse_ac(body: bytes) -> dict[int, tuple[int, str]]:
    """{context id: (result, transfer syntax)} from an A-ASSOCIATE-AC body."""
    out = {}
    pos = 68
    while pos + 4 <= len(body):
        itype, _, ilen = struct.unpack(">BBH", body[pos : pos + 4])
        item = body[pos + 4 : pos + 4 + ilen]
        if itype == 0x21:
            cid, result = item[0], item[2]
            ts = ""
            if len(item) >= 8 and item[4] == 0x40:
                tlen = struct.unpack(">H", item[6:8])[0]
                ts = item[8 : 8 + tlen].rstrip(b"\0").decode()
            out[cid] = (result, ts)
        pos += 4 + ilen
    return out


def read_dataset(path: str) -> tuple[str, str, bytes]:
    """(SOP class, SOP instance, dataset bytes in the file's transfer syntax)."""
    from pydicom import dcmread

    ds = dcmread(path)
    raw = open(path, "rb").read()  # noqa: SIM115
    # Preamble (128) + "DICM" + group 0002: its group length element is the first one.
    meta_len = struct.unpack("<I", raw[132 + 8 : 132 + 12])[0]
    start = 132 + 12 + meta_len
    if str(ds.file_meta.TransferSyntaxUID) != EXPLICIT_VR_LE:
        raise SystemExit("rawscu: files must be Explicit VR Little Endian")
    return str(ds.SOPClassUID), str(ds.SOPInstanceUID), raw[start:]


def connect(host: str, port: int) -> socket.socket:
    s = socket.create_connection((host, port), timeout=15)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def cmd_abort(a) -> dict:
    sop_class, sop_instance, data = read_dataset(a.file)
    s = connect(a.host, a.port)
    s.sendall(
        associate_rq(
            a.calling,
            a.called,
            [(1, sop_class, [EXPLICIT_VR_LE])],
            user=a.user,
            passcode=a.passcode,
        )
    )
    ptype, body = recv_pdu(s)
    if ptype != 0x02:
        raise SystemExit(f"rawscu: expected A-ASSOCIATE-AC, got PDU type {ptype:#x}")
    ctx = parse_ac(body)
    if ctx.get(1, (1,))[0] != 0:
        raise SystemExit(f"rawscu: context 1 not accepted: {ctx}")
    s.sendall(pdata([(1, 0x03, c_store_rq(1, sop_class, sop_instance))]))
    frag = a.fragment_size
    nfrag = min(a.fragments, max(1, (len(data) - 1) // frag))  # never the whole dataset
    sent = 0
    for i in range(nfrag):
        chunk = data[i * frag : (i + 1) * frag]
        s.sendall(pdata([(1, 0x00, chunk)]))  # dataset, not last
        sent += len(chunk)
    time.sleep(a.pause)
    s.sendall(abort_pdu(0, 0))
    time.sleep(0.1)
    s.close()
    return {
        "op": "abort",
        "dataset_bytes": len(data),
        "dataset_bytes_sent": sent,
        "fragments_sent": nfrag,
        "sop_instance_uid": sop_instance,
    }


def cmd_propose(a) -> dict:
    s = connect(a.host, a.port)
    s.sendall(
        associate_rq(
            a.calling, a.called, [(1, CT_IMAGE_STORAGE, a.ts)], user=a.user, passcode=a.passcode
        )
    )
    ptype, body = recv_pdu(s)
    res: dict = {"op": "propose", "proposed": a.ts}
    if ptype == 0x03:
        res["outcome"] = "rejected"
        res["rj"] = list(body[1:4])
        s.close()
        return res
    if ptype != 0x02:
        raise SystemExit(f"rawscu: unexpected PDU type {ptype:#x}")
    res["outcome"] = "accepted"
    res["contexts"] = {str(k): v for k, v in parse_ac(body).items()}
    s.sendall(release_rq())
    ptype, _ = recv_pdu(s)
    res["release"] = "replied" if ptype == 0x06 else f"pdu {ptype:#x}"
    s.close()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("abort", "propose"):
        p = sub.add_parser(name)
        p.add_argument("host")
        p.add_argument("port", type=int)
        if name == "abort":
            p.add_argument("file")
            p.add_argument("--fragments", type=int, default=2)
            p.add_argument("--fragment-size", type=int, default=8000)
            p.add_argument("--pause", type=float, default=0.05)
        else:
            p.add_argument("--ts", nargs="+", default=[JPEG2000_LOSSLESS])
        p.add_argument("--calling", default="RAWSCU")
        p.add_argument("--called", default="ANY-SCP")
        p.add_argument("--user")
        p.add_argument("--passcode")
    a = ap.parse_args(argv)
    res = cmd_abort(a) if a.cmd == "abort" else cmd_propose(a)
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

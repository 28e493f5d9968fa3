"""Valid DICOM Upper Layer streams as *structure* (so mutations can target fields).

A stream is a list of ``Pdu`` (direction 0 = requestor -> acceptor, 1 = back). Each PDU is
kept as its parts (type, items or PDVs, optional length overrides) and serialised by
``Pdu.encode``, so a mutation can flip a PDU type, lie in a PDU/item/PDV length, change
PDV flags, truncate, duplicate or reorder -- and everything else stays valid.

Written from PS3.8 §9.3 and PS3.7 §E; used by the fuzzers, the hypothesis strategies and
the adversarial tests. Synthetic values only.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
APP_CONTEXT = "1.2.840.10008.3.1.1.1"


@dataclass
class Item:
    """A TLV item (association PDUs): type(1) reserved(1) length(2) value."""

    itype: int
    value: bytes
    length: int | None = None  # override (a lie) for the encoded length

    def encode(self) -> bytes:
        n = len(self.value) if self.length is None else self.length & 0xFFFF
        return struct.pack(">BBH", self.itype, 0, n) + self.value


@dataclass
class Pdv:
    ctx: int
    mch: int  # bit 0 command, bit 1 last fragment
    data: bytes
    length: int | None = None  # override of the PDV item length (normally len(data) + 2)

    def encode(self) -> bytes:
        n = len(self.data) + 2 if self.length is None else self.length & 0xFFFFFFFF
        return struct.pack(">IBB", n, self.ctx, self.mch) + self.data


@dataclass
class Pdu:
    d: int
    ptype: int
    fixed: bytes = b""  # association: the 68 fixed bytes; RJ/ABORT/RELEASE: 4 bytes
    items: list[Item] = field(default_factory=list)
    pdvs: list[Pdv] = field(default_factory=list)
    length: int | None = None  # override of the PDU length
    truncate: int | None = None  # keep only this many encoded bytes

    def body(self) -> bytes:
        if self.ptype == 0x04 and self.pdvs:
            return b"".join(p.encode() for p in self.pdvs)
        return self.fixed + b"".join(i.encode() for i in self.items)

    def encode(self) -> bytes:
        body = self.body()
        n = len(body) if self.length is None else self.length & 0xFFFFFFFF
        raw = struct.pack(">BBI", self.ptype, 0, n) + body
        return raw if self.truncate is None else raw[: self.truncate]

    def copy(self) -> Pdu:
        return dataclasses.replace(
            self,
            items=[dataclasses.replace(i) for i in self.items],
            pdvs=[dataclasses.replace(p) for p in self.pdvs],
        )


def _ae(title: str) -> bytes:
    return title.encode("ascii")[:16].ljust(16, b" ")


def _uid(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + (b"\x00" if len(raw) % 2 else b"")


def associate_rq(
    calling: str = "FUZZSCU",
    called: str = "FUZZSCP",
    contexts: tuple[tuple[int, str, tuple[str, ...]], ...] = (
        (1, CT_IMAGE_STORAGE, (EXPLICIT_LE, IMPLICIT_LE)),
        (3, VERIFICATION, (IMPLICIT_LE,)),
    ),
    user: str | None = None,
    passcode: str | None = None,
) -> Pdu:
    fixed = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + bytes(32)
    items = [Item(0x10, APP_CONTEXT.encode())]
    for ctx, abstract, tss in contexts:
        sub = Item(0x30, abstract.encode()).encode() + b"".join(
            Item(0x40, ts.encode()).encode() for ts in tss
        )
        items.append(Item(0x20, bytes([ctx, 0, 0, 0]) + sub))
    ui = Item(0x51, struct.pack(">I", 16384)).encode() + Item(0x52, b"1.2.3.4.5.6").encode()
    if user is not None:
        u = user.encode()
        p = (passcode or "").encode()
        ui += Item(
            0x58,
            bytes([2 if passcode else 1, 0])
            + struct.pack(">H", len(u))
            + u
            + struct.pack(">H", len(p))
            + p,
        ).encode()
    items.append(Item(0x50, ui))
    return Pdu(0, 0x01, fixed, items)


def associate_ac(
    calling: str = "FUZZSCU",
    called: str = "FUZZSCP",
    accepted: tuple[tuple[int, int, str], ...] = ((1, 0, EXPLICIT_LE), (3, 0, IMPLICIT_LE)),
) -> Pdu:
    fixed = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + bytes(32)
    items = [Item(0x10, APP_CONTEXT.encode())]
    for ctx, result, ts in accepted:
        items.append(Item(0x21, bytes([ctx, 0, result, 0]) + Item(0x40, ts.encode()).encode()))
    items.append(Item(0x50, Item(0x51, struct.pack(">I", 16384)).encode()))
    return Pdu(1, 0x02, fixed, items)


def associate_rj(result: int = 1, source: int = 1, reason: int = 7) -> Pdu:
    return Pdu(1, 0x03, bytes([0, result, source, reason]))


def release_rq(d: int = 0) -> Pdu:
    return Pdu(d, 0x05, bytes(4))


def release_rp(d: int = 1) -> Pdu:
    return Pdu(d, 0x06, bytes(4))


def abort(d: int = 0, source: int = 0, reason: int = 0) -> Pdu:
    return Pdu(d, 0x07, bytes([0, 0, source, reason]))


def _el(elem: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HHI", 0, elem, len(value)) + value


def _us(v: int) -> bytes:
    return struct.pack("<H", v)


def command_set(
    field_: int,
    *,
    sop_class: str = CT_IMAGE_STORAGE,
    message_id: int | None = None,
    responding_to: int | None = None,
    has_dataset: bool = False,
    status: int | None = None,
    instance_uid: str | None = None,
    error_comment: str | None = None,
) -> bytes:
    body = _el(0x0002, _uid(sop_class)) + _el(0x0100, _us(field_))
    if message_id is not None:
        body += _el(0x0110, _us(message_id))
    if responding_to is not None:
        body += _el(0x0120, _us(responding_to))
    if not field_ & 0x8000:
        body += _el(0x0700, _us(0))
    body += _el(0x0800, _us(0x0000 if has_dataset else 0x0101))
    if status is not None:
        body += _el(0x0900, _us(status))
    if error_comment is not None:
        body += _el(0x0902, error_comment.encode())
    if instance_uid is not None:
        body += _el(0x1000, _uid(instance_uid))
    return _el(0x0000, struct.pack("<I", len(body))) + body


def pdata(d: int, *pdvs: Pdv) -> Pdu:
    return Pdu(d, 0x04, pdvs=list(pdvs))


def c_store(
    message_id: int,
    dataset: bytes,
    *,
    ctx: int = 1,
    status: int = 0x0000,
    instance_uid: str = "1.2.826.0.1.3680043.99.1",
    fragment: int = 4000,
    cmd_fragments: int = 1,
) -> list[Pdu]:
    """A C-STORE-RQ (command [split in cmd_fragments], dataset in PDVs) and its RSP."""
    cmd = command_set(0x0001, message_id=message_id, has_dataset=True, instance_uid=instance_uid)
    out = []
    step = -(-len(cmd) // cmd_fragments)
    parts = [cmd[i : i + step] for i in range(0, len(cmd), step)]
    for i, part in enumerate(parts):
        out.append(pdata(0, Pdv(ctx, 0x01 | (0x02 if i == len(parts) - 1 else 0), part)))
    chunks = [dataset[i : i + fragment] for i in range(0, len(dataset), fragment)] or [b""]
    for i, chunk in enumerate(chunks):
        out.append(pdata(0, Pdv(ctx, 0x02 if i == len(chunks) - 1 else 0x00, chunk)))
    rsp = command_set(0x8001, responding_to=message_id, status=status, instance_uid=instance_uid)
    out.append(pdata(1, Pdv(ctx, 0x03, rsp)))
    return out


def c_echo(message_id: int, ctx: int = 3) -> list[Pdu]:
    rq = command_set(0x0030, sop_class=VERIFICATION, message_id=message_id)
    rsp = command_set(0x8030, sop_class=VERIFICATION, responding_to=message_id, status=0)
    return [pdata(0, Pdv(ctx, 0x03, rq)), pdata(1, Pdv(ctx, 0x03, rsp))]


def store_association(
    n: int = 3,
    *,
    size: int = 9000,
    statuses: tuple[int, ...] = (),
    user: str | None = "fuzz-user",
    passcode: str | None = "fuzz-pass",
    echo: bool = True,
    calling: str = "FUZZSCU",
    called: str = "FUZZSCP",
) -> list[Pdu]:
    """RQ, AC, [C-ECHO], n C-STOREs (given statuses, else success), release."""
    pdus = [
        associate_rq(calling, called, user=user, passcode=passcode),
        associate_ac(calling, called),
    ]
    if echo:
        pdus += c_echo(1)
    for i in range(n):
        status = statuses[i] if i < len(statuses) else 0x0000
        data = bytes((j * 7 + i) & 0xFF for j in range(size))
        pdus += c_store(i + 2, data, status=status, instance_uid=f"1.2.826.0.1.3680043.99.{i + 1}")
    pdus += [release_rq(), release_rp()]
    return pdus


def encode_stream(pdus: list[Pdu]) -> list[tuple[int, bytes]]:
    """[(direction, bytes)] in order, one entry per PDU."""
    return [(p.d, p.encode()) for p in pdus]

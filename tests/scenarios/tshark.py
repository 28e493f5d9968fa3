"""tshark: an independent second opinion on the captures (DICOM forced on the SCP
ports), as plain records the real-traffic tests compare the analyser with."""

from __future__ import annotations

import statistics
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass

from .plumbing import hexstatus

COMMAND_FIELDS = {
    0x0001: "C-STORE-RQ",
    0x8001: "C-STORE-RSP",
    0x0010: "C-GET-RQ",
    0x8010: "C-GET-RSP",
    0x0020: "C-FIND-RQ",
    0x8020: "C-FIND-RSP",
    0x0021: "C-MOVE-RQ",
    0x8021: "C-MOVE-RSP",
    0x0030: "C-ECHO-RQ",
    0x8030: "C-ECHO-RSP",
    0x0FFF: "C-CANCEL-RQ",
}


@dataclass
class TsharkView:
    frames: list[dict]  # every TCP frame: frame, ts, len, ip_version, sport, dport,
    # tcp_len, retrans, tshark_flagged (bool), vlan (int or None)
    commands: list[dict]  # every DIMSE command: frame, ts, sport, dport, command, msg_id,
    # responding_to, status, remaining/completed/failed/warning
    pdus: list[dict]  # association PDUs: frame, ts, type, and decoded fields
    max_frame_len: int = 0  # over every frame in the file (TCP or not)

    def responses(self, command: str) -> Counter:
        return Counter(
            hexstatus(c["status"]) for c in self.commands if c["command"] == f"{command}-RSP"
        )

    def requests(self, command: str) -> int:
        return sum(1 for c in self.commands if c["command"] == f"{command}-RQ")

    def retransmissions(self, sport: int | None = None, dport: int | None = None) -> int:
        return sum(
            1
            for f in self.frames
            if f["retrans"]
            and f["tcp_len"] > 0
            and (sport is None or f["sport"] == sport)
            and (dport is None or f["dport"] == dport)
        )


def _tshark(args: list[str], timeout: float = 120) -> str:
    p = subprocess.run(["tshark", *args], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"tshark {' '.join(args)} failed: {p.stderr}")
    return p.stdout


def _decode_as(ports: list[int]) -> list[str]:
    out = []
    for port in ports:
        out += ["-d", f"tcp.port=={port},dicom"]
    return out


def _elements(raw: bytes) -> dict[int, bytes]:
    """Implicit VR LE group-0000 elements of one command element's raw bytes."""
    out = {}
    pos = 0
    while pos + 8 <= len(raw):
        group, elem, length = (
            int.from_bytes(raw[pos : pos + 2], "little"),
            int.from_bytes(raw[pos + 2 : pos + 4], "little"),
            int.from_bytes(raw[pos + 4 : pos + 8], "little"),
        )
        out[(group << 16) | elem] = raw[pos + 8 : pos + 8 + length]
        pos += 8 + length
    return out


def _us(v: bytes | None) -> int | None:
    return int.from_bytes(v[:2], "little") if v and len(v) >= 2 else None


def tshark_view(pcap: str, ports: list[int]) -> TsharkView:
    """Decode ``pcap`` with tshark (DICOM forced on ``ports``) into plain records."""
    frames = []
    fields = [
        "frame.number",
        "frame.time_epoch",
        "frame.len",
        "ip.version",
        "ipv6.version",
        "tcp.srcport",
        "tcp.dstport",
        "tcp.len",
        "vlan.id",
        "tcp.stream",
        "tcp.seq",
    ]
    text = _tshark(
        [
            "-r",
            pcap,
            "-n",
            "-T",
            "fields",
            "-E",
            "separator=\t",
            "-E",
            "occurrence=f",
            *sum((["-e", f] for f in fields), []),
        ]
    )
    flagged = {
        int(x)
        for x in _tshark(
            [
                "-r",
                pcap,
                "-n",
                "-Y",
                "tcp.analysis.retransmission or tcp.analysis.fast_retransmission",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ]
        ).split()
    }
    # Retransmission = a data segment whose sequence range overlaps data already sent in
    # that direction (tshark's relative sequence numbers). tshark's own flags call some of
    # them "out-of-order" when they follow the original closely; with the capture on the
    # sender's veth nothing can be reordered, so overlap is the reliable definition.
    sent: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for line in text.splitlines():
        f = line.split("\t")
        f += [""] * (len(fields) - len(f))
        if not f[5]:
            continue  # not TCP (ARP, ICMPv6...)
        tcp_len = int(f[7] or 0)
        retrans = False
        if tcp_len:
            seen = sent.setdefault((int(f[9]), int(f[5])), [])
            a, b = int(f[10]), int(f[10]) + tcp_len
            retrans = any(x < b and a < y for x, y in seen)
            seen.append((a, b))
        frames.append(
            {
                "frame": int(f[0]),
                "ts": float(f[1]),
                "len": int(f[2]),
                "ip_version": 6 if f[4] else 4,
                "sport": int(f[5]),
                "dport": int(f[6]),
                "tcp_len": tcp_len,
                "retrans": retrans,
                "tshark_flagged": int(f[0]) in flagged,
                "vlan": int(f[8]) if f[8] else None,
            }
        )
    all_frames_len = [int(line.split("\t")[2]) for line in text.splitlines()]

    commands: list[dict] = []
    pdus: list[dict] = []
    pdml = _tshark(["-r", pcap, "-n", *_decode_as(ports), "-Y", "dicom", "-T", "pdml"])
    root = ET.fromstring(pdml)
    for packet in root.iter("packet"):
        info: dict = {}
        for proto in packet.findall("proto"):
            pname = proto.get("name")
            if pname == "geninfo":
                for fl in proto.iter("field"):
                    if fl.get("name") == "num":
                        info["frame"] = int(fl.get("show"))
                    elif fl.get("name") == "timestamp":
                        info["ts"] = float(fl.get("value"))
            elif pname == "tcp":
                for fl in proto.findall("field"):
                    if fl.get("name") == "tcp.srcport":
                        info["sport"] = int(fl.get("show"))
                    elif fl.get("name") == "tcp.dstport":
                        info["dport"] = int(fl.get("show"))
            elif pname == "dicom":
                _dicom_proto(proto, info, commands, pdus)
    return TsharkView(frames, commands, pdus, max(all_frames_len, default=0))


def _dicom_proto(proto: ET.Element, info: dict, commands: list, pdus: list) -> None:
    base = {k: info.get(k) for k in ("frame", "ts", "sport", "dport")}
    ptype = None
    for fl in proto.findall("field"):
        if fl.get("name") == "dicom.pdu.type":
            ptype = int(fl.get("show"), 16)
    if ptype in (1, 2, 3, 5, 6, 7):
        rec = {**base, "type": ptype}
        for fl in proto.iter("field"):
            n = fl.get("name")
            if n == "dicom.assoc.ae.calling":
                rec["calling_ae"] = fl.get("show").strip()
            elif n == "dicom.assoc.ae.called":
                rec["called_ae"] = fl.get("show").strip()
            elif n == "dicom.pctx.result":
                rec.setdefault("pctx_results", []).append(int(fl.get("show"), 0))
            elif n == "dicom.pctx.abss.syntax":
                rec.setdefault("abstract_syntaxes", []).append(fl.get("show"))
            elif n in (
                "dicom.assoc.reject.result",
                "dicom.assoc.reject.source",
                "dicom.assoc.reject.reason",
                "dicom.assoc.abort.source",
                "dicom.assoc.abort.reason",
                "dicom.userinfo.user_identify.type",
            ):
                rec[n.split(".", 2)[2]] = int(fl.get("show"), 0)
            elif n == "dicom.userinfo.user_identify.primary_field":
                rec["user_identity.primary"] = fl.get("show")
        pdus.append(rec)
        return
    if ptype != 4:
        return
    for pdv in proto.findall("field"):
        if not (pdv.get("show") or "").startswith("PDV"):
            continue
        flags = None
        raw = b""
        for fl in pdv.findall("field"):
            if fl.get("name") == "dicom.pdv.flags":
                flags = int(fl.get("show"), 16)
            elif fl.get("name") == "" and (fl.get("show") or "").startswith("(0000,"):
                raw += bytes.fromhex(fl.get("value") or "")
        if flags is None or not flags & 0x01 or not raw:
            continue
        el = _elements(raw)
        field_ = _us(el.get(0x00000100))
        commands.append(
            {
                **base,
                "command": COMMAND_FIELDS.get(field_, f"0x{field_:04X}" if field_ else "?"),
                "msg_id": _us(el.get(0x00000110)),
                "responding_to": _us(el.get(0x00000120)),
                "status": _us(el.get(0x00000900)),
                "remaining": _us(el.get(0x00001020)),
                "completed": _us(el.get(0x00001021)),
                "failed": _us(el.get(0x00001022)),
                "warning": _us(el.get(0x00001023)),
            }
        )


def tcp_response_latencies_ms(view: TsharkView, command: str, server_port: int) -> list[float]:
    """Service time as DESIGN §3 defines it, measured with tshark's frames only: for every
    response, its frame time minus the time of the last client->server data frame before
    it (the frame that completed the request; the SCU sends nothing while it waits)."""
    out = []
    data = [
        (f["frame"], f["ts"]) for f in view.frames if f["dport"] == server_port and f["tcp_len"] > 0
    ]
    for c in view.commands:
        if c["command"] != f"{command}-RSP" or c["sport"] != server_port:
            continue
        # first frame of the response: the response PDU is small, one frame here
        before = [ts for fr, ts in data if fr < c["frame"]]
        out.append((c["ts"] - before[-1]) * 1000.0)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)

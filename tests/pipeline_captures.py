"""Captures built for the whole-pipeline tests (test_pipeline.py, test_streams.py).

TCP/IP/Ethernet with dpkt, DICOM PDUs with pynetdicom's encoders (test_dicom_streams), so
expected values come from how the bytes were made; ``run`` puts them through
``analyze_files`` with the real sinks (MetricsStore, Summary, EventLog), ``cli`` through
the command line. Timestamps are synthetic: the capture clock is whatever the test says.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import dpkt
from prometheus_client.parser import text_string_to_metric_families
from test_dicom_streams import (
    CT,
    EVLE,
    VERIFICATION,
    associate_ac,
    associate_rq,
    dimse,
    release_rp,
    release_rq,
)

from dicomsniffd.analyze import analyze_files
from dicomsniffd.config import Config
from dicomsniffd.sinks.eventlog import EventLog
from dicomsniffd.sinks.metrics import MetricsStore
from dicomsniffd.sinks.summary import Summary

REPO = Path(__file__).resolve().parent.parent

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
CLIENT_IP, SERVER_IP = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
MSS = 1448
HDRS = 14 + 20 + 20  # Ethernet + IPv4 + TCP without options


# --------------------------------------------------------------------------------------
# building captures
# --------------------------------------------------------------------------------------
class Capture:
    """Frames with their capture times; ``write`` makes a pcap (caplen may be < wire len)."""

    def __init__(self, start: float = 1_700_000_000.0, step: float = 0.001) -> None:
        self.ts = start
        self.step = step
        self.records: list[tuple[float, bytes, int]] = []  # (ts, captured bytes, wire len)

    def add(self, frame: bytes, *, snaplen: int | None = None, at: float | None = None) -> None:
        if at is not None:
            self.ts = at
        else:
            self.ts += self.step
        cut = frame if snaplen is None else frame[:snaplen]
        self.records.append((self.ts, cut, len(frame)))

    def write(self, path: Path, *, linktype: int = 1, snaplen: int = 262144) -> Path:
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
            for ts, data, wire in self.records:
                sec = int(ts)
                usec = round((ts - sec) * 1e6)
                f.write(struct.pack("<IIII", sec, usec, len(data), wire) + data)
        return path


def frame(
    src: bytes,
    sport: int,
    dst: bytes,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    *,
    ip_id: int = 1,
    pad: bytes | None = None,
) -> bytes:
    tcp = dpkt.tcp.TCP(
        sport=sport,
        dport=dport,
        seq=seq & 0xFFFFFFFF,
        ack=ack & 0xFFFFFFFF,
        flags=flags,
        win=65535,
        data=payload,
    )
    ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, id=ip_id, ttl=64, data=tcp)
    eth = dpkt.ethernet.Ethernet(
        src=b"\x02\x00\x00\x00\x00\x01",
        dst=b"\x02\x00\x00\x00\x00\x02",
        type=dpkt.ethernet.ETH_TYPE_IP,
        data=ip,
    )
    raw = bytes(eth)
    if pad is not None and len(raw) < 60:  # what a NIC does to a short frame
        raw += (pad * 60)[: 60 - len(raw)]
    return raw


class Conn:
    """One TCP connection written into a Capture; direction 0 = client -> server."""

    def __init__(
        self,
        cap: Capture,
        *,
        cport: int = 40001,
        sport: int = 104,
        client: bytes = CLIENT_IP,
        server: bytes = SERVER_IP,
        pad: bytes | None = None,
    ) -> None:
        self.cap = cap
        self.ends = [(client, cport), (server, sport)]
        self.next = [100_000, 900_000]  # next sequence number per direction
        self.ip_id = [1, 1]
        self.pad = pad

    def seg(
        self,
        d: int,
        flags: int,
        payload: bytes = b"",
        *,
        wire: bytes | None = None,
        snaplen: int | None = None,
        total_length: int | None = None,
        at: float | None = None,
    ) -> None:
        (src, sp), (dst, dp) = self.ends[d], self.ends[1 - d]
        raw = frame(
            src,
            sp,
            dst,
            dp,
            self.next[d],
            self.next[1 - d],
            flags,
            payload,
            ip_id=self.ip_id[d],
            pad=self.pad,
        )
        if total_length is not None:
            raw = raw[:16] + struct.pack("!H", total_length) + raw[18:]
        self.ip_id[d] += 1
        self.next[d] += len(payload) + (1 if flags & (SYN | FIN) else 0)
        self.cap.add(raw, snaplen=snaplen, at=at)

    def handshake(self) -> None:
        self.seg(0, SYN)
        self.seg(1, SYN | ACK)
        self.seg(0, ACK)

    def send(
        self,
        d: int,
        data: bytes,
        *,
        mss: int = MSS,
        snap: dict[int, int] | None = None,
        ack: bool = True,
    ) -> int:
        """Send ``data`` in MSS-sized segments (segment i cut at ``snap[i]`` if given), the
        other side ACKing each; returns the number of segments."""
        n = 0
        for i in range(0, len(data), mss):
            self.seg(d, ACK | PSH, data[i : i + mss], snaplen=(snap or {}).get(n))
            if ack:
                self.seg(1 - d, ACK)
            n += 1
        return n

    def close(self) -> None:
        self.seg(0, FIN | ACK)
        self.seg(1, FIN | ACK)
        self.seg(0, ACK)


def pdus(*groups) -> bytes:
    out = b""
    for g in groups:
        out += b"".join(g) if isinstance(g, list) else g
    return out


def store_rq(mid: int, size: int, max_pdu: int = 16382) -> bytes:
    return pdus(
        dimse(
            "C_STORE_RQ",
            MessageID=mid,
            AffectedSOPClassUID=CT,
            AffectedSOPInstanceUID=f"1.2.3.4.{mid}",
            Priority=0,
            dataset=explicit_dataset(size, mid & 0xFF),
            max_pdu=max_pdu,
        )
    )


def explicit_dataset(size: int, fill: int) -> bytes:
    """``size`` bytes of data set that start as Explicit VR Little Endian does (the
    contexts here accept it, and dicomsniffd reads the first element header): one
    private OB element holding ``fill`` bytes."""
    if size < 12:
        return bytes([fill]) * size
    return struct.pack("<HH2sHI", 0x0011, 0x1010, b"OB", 0, size - 12) + bytes([fill]) * (size - 12)


def store_rsp(mid: int, status: int = 0) -> bytes:
    return pdus(
        dimse(
            "C_STORE_RSP",
            MessageIDBeingRespondedTo=mid,
            AffectedSOPClassUID=CT,
            AffectedSOPInstanceUID=f"1.2.3.4.{mid}",
            Status=status,
        )
    )


def echo_rq(mid: int) -> bytes:
    return pdus(dimse("C_ECHO_RQ", MessageID=mid, AffectedSOPClassUID=VERIFICATION))


def echo_rsp(mid: int) -> bytes:
    return pdus(
        dimse(
            "C_ECHO_RSP", MessageIDBeingRespondedTo=mid, AffectedSOPClassUID=VERIFICATION, Status=0
        )
    )


def open_association(c: Conn, calling="MODALITY1", called="PACS", abstract=CT) -> None:
    c.handshake()
    c.send(0, associate_rq(calling, called, contexts=((1, abstract, (EVLE,)),)))
    c.send(1, associate_ac(calling, called, results=((1, 0, EVLE),)))


def release(c: Conn) -> None:
    c.send(0, release_rq())
    c.send(1, release_rp())
    c.close()


def store_session(
    cap: Capture,
    n: int,
    size: int,
    *,
    sport: int = 104,
    cport: int = 40001,
    statuses: dict[int, int] | None = None,
) -> Conn:
    c = Conn(cap, cport=cport, sport=sport)
    open_association(c, "MODALITY1", "PACS")
    for mid in range(1, n + 1):
        c.send(0, store_rq(mid, size))
        c.send(1, store_rsp(mid, (statuses or {}).get(mid, 0)))
    release(c)
    return c


# --------------------------------------------------------------------------------------
# analysing them
# --------------------------------------------------------------------------------------
@dataclasses.dataclass
class Result:
    info: dict
    samples: list
    summary: dict
    events: list[dict]

    def value(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.series(name, **labels))

    def series(self, name: str, **labels: str) -> list:
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def findings(self) -> set[str]:
        return {f["code"] for f in self.summary["findings"]}

    def of_type(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]


def run(paths, config: Config | None = None) -> Result:
    config = config or Config()
    metrics = MetricsStore(config.metrics)
    summary = Summary()
    stream = io.StringIO()
    log = EventLog(stream)
    paths = [str(p) for p in (paths if isinstance(paths, list | tuple) else [paths])]
    info = analyze_files(paths, config, [metrics, summary, log], labels=metrics)
    pipeline = info.pop("_pipeline")
    metrics.set_self_stats_source(pipeline.self_stats)
    text = metrics.exposition().decode()
    samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    return Result(info, samples, summary.to_dict(info), events)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dicomsniffd", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )

"""Shared fuzz harness: turn arbitrary bytes into traffic and run the whole offline pipeline.

Used by ``fuzz/fuzz_pipeline.py`` (atheris, coverage guided), by the hypothesis tests
(tests/test_fuzz.py) and by the adversarial tests. Nothing here opens a socket.

An input is interpreted in one of three modes (first byte % 3):

0. FRAMES  raw Ethernet frames: ``[u16 length][frame]...`` straight into the decoder
           (decode -> flows -> DICOM core -> sinks).
1. TCP     a scripted TCP connection client 10.0.0.1:40000 -> server 10.0.0.2:104 with a
           real handshake; then records ``[ctl][u16 length][data]`` become segments. The
           control byte bends the TCP layer: direction, skipped bytes (capture gap),
           out-of-order hold-back, overlapping retransmission with *different* bytes,
           exact duplicate, FIN, RST, a time jump past the idle/transaction timeouts.
           The seeds made from real captures are in this mode (one record per segment).
2. CONV    straight into ``DicomConversation``: records ``[ctl][u16 length][data]``;
           ctl bit 0 direction, bit 1 "gap of length bytes" instead of data, bit 2 call
           expire() after a jump of the transaction timeout.

``run_input`` checks the invariants after every input and raises ``InvariantError`` (the
fuzzer's "crash") when one breaks:
- no exception escapes decode / flows / the core / any sink / any output renderer;
- no exception was *contained* either: a ``parser-exception`` ProtocolError or a flow
  handler error means a bug that the containment hid, so the fuzzer reports it as well;
- memory state stays within the configured caps (reassembly buffers <= memcap, framer
  buffers <= max_command_bytes / max_association_pdu_bytes, pending transactions <=
  max_pending_per_association, flows <= capacity).
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from dicomsniffd import accel
from dicomsniffd.config import Config
from dicomsniffd.decode import Decoder
from dicomsniffd.dicom.conversation import DicomConversation
from dicomsniffd.dicom.events import ProtocolError
from dicomsniffd.pipeline import Pipeline
from dicomsniffd.sinks.eventlog import EventLog
from dicomsniffd.sinks.metrics import MetricsStore
from dicomsniffd.sinks.summary import Summary

MODE_FRAMES, MODE_TCP, MODE_CONV = 0, 1, 2

CLIENT = (bytes([10, 0, 0, 1]), 40000)
SERVER = (bytes([10, 0, 0, 2]), 104)
MAC = bytes.fromhex("020000000002020000000001")

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# TCP-mode control byte
C_DIR = 0x01  # 1: server -> client
C_SKIP = 0x02  # the data is "lost": sequence advances, nothing is sent (a capture gap)
C_HOLD = 0x04  # send this segment after the next one (out of order)
C_CONFLICT = 0x08  # then re-send the same range with the bytes inverted (conflicting retx)
C_DUP = 0x10  # send the frame twice (SPAN duplicate)
C_FIN = 0x20
C_RST = 0x40
C_JUMP = 0x80  # advance the capture clock by 700 s (idle + transaction timeouts)

# CONV-mode control byte
V_DIR, V_GAP, V_EXPIRE = 0x01, 0x02, 0x04


class InvariantError(AssertionError):
    """A broken invariant: the fuzzer's crash."""


def fuzz_config(**flows: Any) -> Config:
    """Small caps so that the fuzzer reaches the limits with small inputs."""
    base = Config()
    fl = dataclasses.replace(
        base.flows,
        **{
            "capacity": 64,
            "max_out_of_order_segments": 16,
            "max_out_of_order_bytes": 16384,
            "memcap_bytes": 65536,
            **flows,
        },
    )
    dicom = dataclasses.replace(
        base.dicom, max_command_bytes=4096, max_association_pdu_bytes=8192, ports=(104,)
    )
    tx = dataclasses.replace(base.transactions, max_pending_per_association=32)
    return dataclasses.replace(base, flows=fl, dicom=dicom, transactions=tx)


# --------------------------------------------------------------------------------------
# frame building (struct only; checksums are not verified by anything downstream)
# --------------------------------------------------------------------------------------
def frame(
    src: tuple[bytes, int],
    dst: tuple[bytes, int],
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    window: int = 65535,
    ip_id: int = 1,
) -> bytes:
    tcp = struct.pack(
        "!HHIIBBHHH",
        src[1],
        dst[1],
        seq & 0xFFFFFFFF,
        ack & 0xFFFFFFFF,
        5 << 4,
        flags,
        window,
        0,
        0,
    )
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(tcp) + len(payload),
        ip_id & 0xFFFF,
        0x4000,
        64,
        6,
        0,
        src[0],
        dst[0],
    )
    return MAC + b"\x08\x00" + ip + tcp + payload


class TcpScript:
    """Builds the frames of one TCP connection with correct sequence numbers."""

    def __init__(
        self,
        client: tuple[bytes, int] = CLIENT,
        server: tuple[bytes, int] = SERVER,
        isn: tuple[int, int] = (1000, 5000),
        handshake: bool = True,
    ) -> None:
        self.ends = (client, server)
        self.seq = [isn[0] + 1, isn[1] + 1]
        self.frames: list[bytes] = []
        self.ip_id = [1, 1]
        if handshake:
            self.frames.append(frame(client, server, isn[0], 0, SYN))
            self.frames.append(frame(server, client, isn[1], isn[0] + 1, SYN | ACK))
            self.frames.append(frame(client, server, isn[0] + 1, isn[1] + 1, ACK))

    def make(self, d: int, payload: bytes, flags: int = ACK | PSH, seq: int | None = None) -> bytes:
        src, dst = self.ends[d], self.ends[1 - d]
        self.ip_id[d] += 1
        return frame(
            src,
            dst,
            self.seq[d] if seq is None else seq,
            self.seq[1 - d],
            flags,
            payload,
            ip_id=self.ip_id[d],
        )

    def send(self, d: int, payload: bytes, mss: int = 1448) -> None:
        for i in range(0, len(payload), mss) or [0]:
            chunk = payload[i : i + mss]
            self.frames.append(self.make(d, chunk))
            self.seq[d] += len(chunk)

    def fin(self, d: int) -> None:
        self.frames.append(self.make(d, b"", ACK | FIN))
        self.seq[d] += 1

    def close(self) -> None:
        self.fin(0)
        self.fin(1)


def frames_to_batch(
    frames: Sequence[bytes],
    start: float = 1_700_000_000.0,
    step: float = 0.001,
    times: Sequence[float] | None = None,
) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """(packet_bytes, records) as capture.FileSource.batches yields them."""
    buf = bytearray()
    records = []
    for i, fr in enumerate(frames):
        ts = times[i] if times is not None else start + i * step
        sec = int(ts)
        usec = int(round((ts - sec) * 1e6))
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        records.append((sec, usec, len(buf), len(fr)))
        buf += fr
    return bytes(buf), records


# --------------------------------------------------------------------------------------
# input interpretation
# --------------------------------------------------------------------------------------
def _records(data: bytes, pos: int) -> Iterable[tuple[int, bytes]]:
    n = len(data)
    while pos + 3 <= n:
        ctl = data[pos]
        length = (data[pos + 1] << 8) | data[pos + 2]
        pos += 3
        yield ctl, data[pos : pos + length]
        pos += length


def tcp_frames(data: bytes, pos: int = 1) -> tuple[list[bytes], list[float]]:
    """TCP mode: records -> frames (+ capture timestamps)."""
    script = TcpScript()
    frames = script.frames
    times = [0.0, 0.0005, 0.001]
    t = 0.001
    held: list[tuple[bytes, float]] = []
    for ctl, payload in _records(data, pos):
        d = ctl & C_DIR
        t += 700.0 if ctl & C_JUMP else 0.0005
        if ctl & C_SKIP:
            script.seq[d] += len(payload)
            continue
        if ctl & C_RST:
            frames.append(script.make(d, b"", RST | ACK))
            times.append(t)
            continue
        seq0 = script.seq[d]
        flags = ACK | PSH | (FIN if ctl & C_FIN else 0)
        fr = script.make(d, payload, flags)
        script.seq[d] += len(payload) + (1 if ctl & C_FIN else 0)
        out = [fr]
        if ctl & C_DUP:
            out.append(fr)
        if ctl & C_CONFLICT and payload:
            out.append(script.make(d, bytes(b ^ 0xFF for b in payload), ACK | PSH, seq=seq0))
        if ctl & C_HOLD:
            held.extend((f, t) for f in out)
            continue
        for f in out:
            frames.append(f)
            times.append(t)
        for f, _ in held:
            frames.append(f)
            times.append(t)
        held.clear()
    for f, _ in held:  # never released before the end: the hole stays
        frames.append(f)
        times.append(t)
    base = 1_700_000_000.0
    return frames, [base + x for x in times]


def raw_frames(data: bytes, pos: int = 1) -> list[bytes]:
    out = []
    n = len(data)
    while pos + 2 <= n and len(out) < 4096:
        length = (data[pos] << 8) | data[pos + 1]
        pos += 2
        out.append(data[pos : pos + length])
        pos += length
    return out


# --------------------------------------------------------------------------------------
# running and checking
# --------------------------------------------------------------------------------------
class CheckingSink:
    """Records every event; parser exceptions that the core contained are bugs too."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.contained: list[ProtocolError] = []

    def handle(self, event: Any, flow: Any) -> None:
        self.events.append(event)
        if isinstance(event, ProtocolError) and event.kind == "parser-exception":
            self.contained.append(event)

    def tcp_event(self, kind: str, sender: str, flow: Any, value: float = 0.0, ts=None) -> None:
        pass

    def add_bytes(self, kind: str, sender: str, nbytes: int, flow: Any) -> None:
        pass

    def connection_failure(self, server_label: str, reason: str, ts=None) -> None:
        pass

    def tls_connection(self, server_label: str, outcome: str, ts=None) -> None:
        pass


@dataclasses.dataclass
class Result:
    pipeline: Pipeline | None
    metrics: MetricsStore
    summary: Summary
    events: list[Any]
    eventlog_text: str
    exposition: str
    summary_json: str
    summary_text: str


def make_sinks(config: Config, *, keep_uids: bool = False):
    metrics = MetricsStore(config.metrics)
    summary = Summary()
    stream = io.StringIO()
    elog = EventLog(stream, keep_instance_uids=keep_uids)
    checker = CheckingSink()
    return metrics, summary, elog, stream, checker


def _check_pipeline_bounds(pipeline: Pipeline, config: Config) -> None:
    flows = pipeline.flows
    if flows.flows_active > config.flows.capacity:
        raise InvariantError(f"{flows.flows_active} flows > capacity {config.flows.capacity}")
    if flows.buffered_bytes > config.flows.memcap_bytes:
        raise InvariantError(f"buffered {flows.buffered_bytes} > memcap")
    if flows.buffered_bytes < 0:
        raise InvariantError(f"buffered_bytes negative: {flows.buffered_bytes}")
    for handler in pipeline.handlers.values():
        check_conversation_bounds(handler.conv, config)


def check_conversation_bounds(conv: DicomConversation, config: Config) -> None:
    dc = config.dicom
    for framer in conv._framers:
        limit = max(dc.max_command_bytes, dc.max_association_pdu_bytes) + 16
        held = len(framer._buf) + len(framer._hdr) + len(framer._scan)
        if held > limit:
            raise InvariantError(f"framer holds {held} bytes > {limit}")
    dimse = conv._dimse
    for m in dimse.messages.values():
        if m.buf is not None and len(m.buf) > dc.max_command_bytes:
            raise InvariantError(f"command buffer {len(m.buf)} > max_command_bytes")
    if len(dimse.messages) > 2 * 128 + 2:  # at most one per (direction, odd context id)
        raise InvariantError(f"{len(dimse.messages)} partial messages")
    if len(dimse.transactions) > dimse.max_pending + 1:
        raise InvariantError(
            f"{len(dimse.transactions)} pending transactions > {dimse.max_pending}"
        )


def _render(result_parts, info: dict[str, Any]) -> tuple[str, str, str]:
    metrics, summary = result_parts
    exposition = metrics.exposition().decode("utf-8")
    summary_json = json.dumps(summary.to_dict(info), default=str)
    summary_text = summary.render_text(info)
    return exposition, summary_json, summary_text


def run_frames(
    frames: Sequence[bytes],
    config: Config | None = None,
    times: Sequence[float] | None = None,
    *,
    batch: int = 64,
    check_every: int = 0,
    keep_uids: bool = False,
) -> Result:
    """Frames through decode -> flows -> core -> every sink, then render every output."""
    config = config or fuzz_config()
    metrics, summary, elog, stream, checker = make_sinks(config, keep_uids=keep_uids)
    pipeline = Pipeline(config, [metrics, summary, elog, checker], labels=metrics)
    decoder = Decoder(1)
    for i in range(0, len(frames), batch):
        chunk = frames[i : i + batch]
        buf, records = frames_to_batch(
            chunk,
            times=None if times is None else times[i : i + batch],
            start=1_700_000_000.0 + i * 0.001,
        )
        pipeline.process_batch(decoder, buf, records)
        if check_every and (i // batch) % check_every == 0:
            _check_pipeline_bounds(pipeline, config)
    _check_pipeline_bounds(pipeline, config)
    pipeline.finish()
    metrics.set_self_stats_source(pipeline.self_stats)
    info = {
        "files": ["fuzz"],
        "truncated_files": [],
        "packets": pipeline.packets,
        "bytes": pipeline.bytes,
        "first_ts": pipeline.first_ts,
        "last_ts": pipeline.last_ts,
        "truncated_packets": decoder.truncated,
        "missed_bytes": summary.missed_bytes_total(),
        "decode": {},
        "flows": {"evictions": dict(pipeline.flows.evictions)},
    }
    exposition, sjson, stext = _render((metrics, summary), info)
    elog.flush()
    if checker.contained:
        raise InvariantError(f"parser exception contained: {checker.contained[0]}")
    if pipeline.flows.handler_errors:
        raise InvariantError(f"{pipeline.flows.handler_errors} stream handler errors")
    if pipeline.handlers:
        raise InvariantError(f"{len(pipeline.handlers)} handlers left open after finish()")
    return Result(
        pipeline, metrics, summary, checker.events, stream.getvalue(), exposition, sjson, stext
    )


def run_conversation(data: bytes, pos: int = 1, config: Config | None = None) -> list[Any]:
    """CONV mode: the sans-IO core alone."""
    config = config or fuzz_config()
    conv = DicomConversation(
        0,
        max_command_bytes=config.dicom.max_command_bytes,
        max_association_pdu_bytes=config.dicom.max_association_pdu_bytes,
        keep_instance_uids=config.dicom.keep_instance_uids,
        transaction_timeout=config.transactions.timeout_s,
        max_pending=config.transactions.max_pending_per_association,
    )
    events: list[Any] = []
    ts = 1_700_000_000.0
    for ctl, payload in _records(data, pos):
        d = ctl & V_DIR
        ts += 0.001
        if ctl & V_GAP:
            events += conv.gap(d, len(payload) or 1, ts)
        else:
            events += conv.feed(d, payload, ts)
        if ctl & V_EXPIRE:
            ts += config.transactions.timeout_s + 1
            events += conv.expire(ts)
        check_conversation_bounds(conv, config)
    events += conv.close("fin", ts + 0.001)
    bad = [e for e in events if isinstance(e, ProtocolError) and e.kind == "parser-exception"]
    if bad:
        raise InvariantError(f"parser exception contained: {bad[0]}")
    # the sinks must accept whatever the core emits
    metrics, summary, elog, _stream, _checker = make_sinks(config)
    ctx = _Ctx()
    for e in events:
        metrics.handle(e, ctx)
        summary.handle(e, ctx)
        elog.handle(e, ctx)
    metrics.exposition()
    summary.render_text({"files": [], "packets": 0, "bytes": 0})
    return events


class _Ctx:
    flow_id = 1
    client = "10.0.0.1:40000"
    server = "10.0.0.2:104"
    server_label = "10.0.0.2:104"
    calling_ae = called_ae = calling_ae_label = called_ae_label = "unknown"


def run_input(data: bytes, config: Config | None = None, *, differential: bool = False) -> None:
    """The fuzz target: any bytes. Raises only on a broken invariant (a finding).

    ``differential``: run the frames through the compiled hot path and through pure
    Python (dicomsniffd/accel.py) and count any difference in the outputs as a finding.
    """
    if not data:
        return
    mode = data[0] % 3
    if mode == MODE_CONV:
        run_conversation(data, 1, config)
        return
    frames, times = (raw_frames(data), None) if mode == MODE_FRAMES else tcp_frames(data)
    compiled = run_frames(frames, config, times)
    if differential and accel.fastpath is not None:
        saved = accel.fastpath
        accel.fastpath = None
        try:
            pure = run_frames(frames, config, times)
        finally:
            accel.fastpath = saved
        for part in ("exposition", "summary_json", "summary_text", "eventlog_text"):
            if getattr(compiled, part) != getattr(pure, part):
                raise InvariantError(f"compiled and pure-Python paths differ in {part}")


# --------------------------------------------------------------------------------------
# seeds
# --------------------------------------------------------------------------------------
def encode_tcp_records(records: Iterable[tuple[int, bytes]]) -> bytes:
    out = bytearray([MODE_TCP])
    for ctl, payload in records:
        for i in range(0, len(payload), 0xFFFF) or [0]:
            chunk = payload[i : i + 0xFFFF]
            out += bytes([ctl]) + len(chunk).to_bytes(2, "big") + chunk
    return bytes(out)


def encode_conv_records(records: Iterable[tuple[int, bytes]]) -> bytes:
    out = bytearray([MODE_CONV])
    for ctl, payload in records:
        out += bytes([ctl]) + len(payload).to_bytes(2, "big") + payload
    return bytes(out)


# --------------------------------------------------------------------------------------
# reading the results
# --------------------------------------------------------------------------------------
def metric_sum(exposition: str, name: str, **labels: str) -> float:
    """Sum of the samples ``name`` whose labels include ``labels`` (parsed exposition)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for fam in text_string_to_metric_families(exposition):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def metric_samples(exposition: str, name: str) -> list[tuple[dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (dict(s.labels), s.value)
        for fam in text_string_to_metric_families(exposition)
        for s in fam.samples
        if s.name == name
    ]

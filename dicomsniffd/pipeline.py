"""The one pipeline shared by `analyze` and `run`: frames → segments → flows → DICOM → sinks.

This module is the wiring: it decides which TCP flows are DICOM (configured ports, or a
plausible A-ASSOCIATE-RQ as the first bytes on any port), which are TLS on a DICOM port,
and fans every event out to the sinks together with the flow it belongs to.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from dicomsniffd.config import Config
from dicomsniffd.dicom.conversation import DicomConversation
from dicomsniffd.dicom.events import (
    ACCEPTOR,
    REQUESTOR,
    AssociationAccepted,
    AssociationRequested,
    ProtocolError,
)
from dicomsniffd.flows import FlowTable

_SENDERS = (REQUESTOR, ACCEPTOR)
_EXPIRE_EVERY_S = 1.0
_MAX_LEARNED_SERVERS = 10_000
_TITLE_EVENTS = frozenset({AssociationRequested, AssociationAccepted})  # carry AE titles
_TLS13_ALERT_MAX = 19  # alert (2) + inner content type (1) + AEAD tag (16)


class Sink(Protocol):
    def handle(self, event: Any, flow: Any) -> None: ...
    def tcp_event(self, kind: str, sender: str, flow: Any, value: float = 0.0) -> None: ...
    def add_bytes(self, kind: str, sender: str, nbytes: int, flow: Any) -> None: ...
    def connection_failure(self, server_label: str, reason: str) -> None: ...
    def tls_connection(self, server_label: str, outcome: str) -> None: ...


def format_endpoint(ip: bytes, port: int) -> str:
    """'10.0.0.1:104' or '[fd00::1]:104' (for the event log and report only)."""
    if len(ip) == 4:
        return f"{ip[0]}.{ip[1]}.{ip[2]}.{ip[3]}:{port}"
    return f"[{ipaddress.IPv6Address(ip).compressed}]:{port}"


def looks_like_associate_rq(data: bytes) -> bool:
    """A plausible A-ASSOCIATE-RQ header: type 0x01, protocol version 1, sane length.

    The fixed part of the PDU is 68 bytes after the 6-byte header; an RQ without an
    application context and a presentation context is useless, so anything shorter is
    not DICOM.
    """
    if len(data) < 10 or data[0] != 0x01 or data[1] != 0x00:
        return False
    length = int.from_bytes(data[2:6], "big")
    return 68 <= length <= 1_048_576 and data[6:8] == b"\x00\x01"


def looks_like_tls(data: bytes) -> bool:
    """A TLS handshake record (ClientHello): content type 22, version 3.x."""
    return len(data) >= 5 and data[0] == 0x16 and data[1] == 0x03 and data[2] <= 0x04


class _FlowContext:
    """What sinks need to know about the connection an event belongs to."""

    __slots__ = (
        "flow_id",
        "client",
        "server",
        "server_label",
        "calling_ae",
        "called_ae",
        "calling_ae_label",
        "called_ae_label",
    )

    def __init__(self, flow_id: int, client: str, server: str, server_label: str) -> None:
        self.flow_id = flow_id
        self.client = client
        self.server = server
        self.server_label = server_label
        self.calling_ae = "unknown"
        self.called_ae = "unknown"
        self.calling_ae_label = "unknown"
        self.called_ae_label = "unknown"


class DicomFlowHandler:
    """StreamHandler of one DICOM TCP connection: bytes to the core, events to the sinks."""

    __slots__ = (
        "pipeline",
        "ctx",
        "conv",
        "deliver",
        "skip_budget",
        "skip_taken",
        "_flushed_pdata",
        "closed",
    )

    def __init__(self, pipeline: Pipeline, ctx: _FlowContext, conv: DicomConversation) -> None:
        self.pipeline = pipeline
        self.ctx = ctx
        self.conv = conv
        # The flow table's split hot path (flows.StreamHandler): it calls the core's feed
        # directly and hands non-empty results to dispatch(), so an in-order data segment
        # costs one Python call (feed) instead of two (data -> feed). data() below is the
        # same thing in one call, for everyone else.
        self.deliver = conv.feed
        # The skipping contract (flows.StreamHandler): PDV bytes the core would skip
        # unseen may be consumed by the compiled bypass and handed over as a count.
        self.skip_budget = conv.skip_budget
        self.skip_taken = conv.skip_taken
        self._flushed_pdata = [0, 0]
        self.closed = False

    def _sender(self, direction: int) -> str:
        return REQUESTOR if direction == self.conv.requestor_direction else ACCEPTOR

    def data(self, direction: int, data: bytes, ts: float) -> None:
        events = self.conv.feed(direction, data, ts)
        if events:
            self.dispatch(events)

    def gap(self, direction: int, nbytes: int, ts: float) -> None:
        self.pipeline.emit_bytes("missed", self._sender(direction), nbytes, self.ctx)
        events = self.conv.gap(direction, nbytes, ts)
        if events:
            self.dispatch(events)

    def tcp_event(self, kind: str, direction: int, ts: float, value: float = 0.0) -> None:
        if kind in ("retransmission", "zero-window", "reset", "handshake-rtt"):
            self.pipeline.emit_tcp(kind, self._sender(direction), self.ctx, value, ts)

    def close(self, how: str, ts: float) -> None:
        if self.closed:
            return
        self.closed = True
        ended = {"reset": "reset", "fin": "closed", "end": "closed"}.get(how, "timeout")
        events = list(self.conv.close(ended, ts))
        silent = self.conv.silent_direction()
        if silent is not None:
            # DESIGN §2b: a one-sided capture must be flagged, not silently half-counted.
            sender = self.conv.sender(silent)
            events.append(
                ProtocolError(ts, sender, "one-direction-only", f"nothing seen from the {sender}")
            )
        self.flush()
        if events:
            self.dispatch(events)
        self.pipeline.handler_closed(self)

    def expire(self, now: float) -> None:
        events = self.conv.expire(now)
        if events:
            self.dispatch(events)

    def flush(self) -> None:
        """Publish P-DATA byte counts accumulated by the core since the last flush."""
        pdata = self.conv.pdata_bytes
        for direction in (0, 1):
            delta = pdata[direction] - self._flushed_pdata[direction]
            if delta:
                self._flushed_pdata[direction] = pdata[direction]
                self.pipeline.emit_bytes("pdata", self._sender(direction), delta, self.ctx)

    def dispatch(self, events: Iterable[Any]) -> None:
        ctx = self.ctx
        emit = self.pipeline.emit_event
        for event in events:
            # a set probe on the exact type (event classes are final) instead of
            # isinstance() against a union on every event
            if type(event) in _TITLE_EVENTS:
                self._learn_titles(event.calling_ae, event.called_ae)
            emit(event, ctx)

    def _learn_titles(self, calling: str, called: str) -> None:
        ctx = self.ctx
        if calling and calling != "unknown" and ctx.calling_ae != calling:
            ctx.calling_ae = calling
            ctx.calling_ae_label = self.pipeline.ae_label(calling, "calling_ae")
        if called and called != "unknown" and ctx.called_ae != called:
            ctx.called_ae = called
            ctx.called_ae_label = self.pipeline.ae_label(called, "called_ae")
        self.pipeline.learn_server(ctx.server)


class TlsFlowHandler:
    """TLS on a DICOM port: recognised and counted, never decoded.

    The handshake is taken as established once both sides have sent an application-data
    record (content type 23); an alert record before that, or the end of the connection,
    is a failed handshake. TLS 1.3 (recognised by the server sending content type 23 before
    the client does: its encrypted handshake flight) hides everything in type 23 records:
    the server's flight before the client's first one does not count, and a record of at
    most 19 bytes (a 2-byte alert, its content type and a 16-byte AEAD tag; smaller than
    any handshake message or DICOM PDU) is an encrypted alert, e.g. the server refusing a
    missing client certificate after the client has already sent its Finished.
    """

    __slots__ = (
        "pipeline",
        "ctx",
        "_skip",
        "_header",
        "_app_data_seen",
        "outcome",
        "_last_ts",
        "_tls13",
    )

    def __init__(self, pipeline: Pipeline, ctx: _FlowContext) -> None:
        self.pipeline = pipeline
        self.ctx = ctx
        self._skip = [0, 0]  # bytes left in the current record body, per direction
        self._header = [b"", b""]  # partial 5-byte record header, per direction
        self._app_data_seen = [False, False]
        self.outcome = ""
        self._last_ts: float | None = None
        self._tls13 = False

    def data(self, direction: int, data: bytes, ts: float) -> None:
        if self.outcome:
            return
        self._last_ts = ts
        pos, size = 0, len(data)
        while pos < size and not self.outcome:
            skip = self._skip[direction]
            if skip:
                step = min(skip, size - pos)
                self._skip[direction] = skip - step
                pos += step
                continue
            partial = self._header[direction]
            chunk = data[pos : pos + 5 - len(partial)]
            pos += len(chunk)
            partial += chunk
            if len(partial) < 5:
                self._header[direction] = partial
                return
            header = partial
            self._header[direction] = b""
            self._record(direction, header[0], int.from_bytes(header[3:5], "big"))

    def _record(self, direction: int, content_type: int, length: int) -> None:
        self._skip[direction] = length
        if content_type == 21:  # alert before both sides talk application data
            self._finish("handshake-failed")
        elif content_type == 23:
            seen = self._app_data_seen
            if direction == 1 and not seen[0]:
                self._tls13 = True  # the server's encrypted handshake flight
                return
            if self._tls13 and length <= _TLS13_ALERT_MAX:
                self._finish("handshake-failed")
                return
            seen[direction] = True
            if all(seen):
                self._finish("established")
        elif content_type not in (20, 22):  # not TLS after all
            self._finish("handshake-failed")

    def _finish(self, outcome: str) -> None:
        self.outcome = outcome
        self.pipeline.emit_tls(self.ctx.server_label, outcome, self._last_ts)

    def gap(self, direction: int, nbytes: int, ts: float) -> None:
        skip = self._skip[direction]
        self._skip[direction] = max(0, skip - nbytes)
        if nbytes > skip and not self.outcome:
            self.outcome = "unknown"  # lost record alignment: no verdict rather than a wrong one

    def tcp_event(self, kind: str, direction: int, ts: float, value: float = 0.0) -> None:
        pass

    def close(self, how: str, ts: float) -> None:
        self._last_ts = ts
        if not self.outcome:
            self._finish("handshake-failed")


class Pipeline:
    """Frames in, sink calls out. One instance per worker process."""

    def __init__(self, config: Config, sinks: Sequence[Sink], worker: str = "0") -> None:
        self.config = config
        self.sinks = list(sinks)
        self.worker = worker
        self._ports = frozenset(config.dicom.ports)
        self._any_port = config.dicom.detect_any_port
        self._metrics = next((s for s in self.sinks if hasattr(s, "ae_label")), None)
        self.flows = FlowTable(config.flows, self._classify, self._connection_failure)
        self.handlers: dict[int, DicomFlowHandler] = {}
        self._learned_servers: dict[str, None] = {}
        self._next_flow_id = 1
        self._next_expiry = 0.0
        self.packets = 0
        self.bytes = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.dropped = {"kernel": 0, "interface": 0}
        self.decoders: list[Any] = []

    # -- packets ---------------------------------------------------------------------------

    def process_batch(self, decoder: Any, packet_bytes: bytes, records: Iterable[Any]) -> None:
        """Run one batch of (sec, usec, offset, caplen) records through decode and flows.

        The decoder's batch interface reads the frames in place in ``packet_bytes`` and
        hands each segment straight to the flow table: one call per batch here instead of
        a frame copy and a decode call per packet (see docs/performance.md).
        """
        emit = self.flows.emit_for(decoder)  # the compiled Bypass, or FlowTable.segment
        packets, nbytes, ts = decoder.decode_batch(packet_bytes, records, emit)
        if packets:
            if self.first_ts is None:
                self.first_ts = ts if packets == 1 else self._first_ts_of(records)
            self.last_ts = ts
            self.packets += packets
            self.bytes += nbytes
            if ts >= self._next_expiry:
                self.expire(ts)

    @staticmethod
    def _first_ts_of(records: Iterable[Any]) -> float:
        for sec, usec, _offset, _caplen in records:
            return sec + usec * 1e-6
        return 0.0

    def expire(self, now: float) -> None:
        """Timeouts run on the capture clock, about once per second of capture time."""
        self._next_expiry = now + _EXPIRE_EVERY_S
        self.flows.expire(now)
        for handler in list(self.handlers.values()):
            handler.expire(now)

    def finish(self, ts: float | None = None) -> None:
        """End of capture (or shutdown): every open flow is closed as seen so far."""
        end = ts if ts is not None else (self.last_ts or 0.0)
        self.flows.close_all(end)

    def flush(self) -> None:
        """Publish counters kept on live flows (before a scrape)."""
        for handler in list(self.handlers.values()):
            handler.flush()

    # -- classification ----------------------------------------------------------------------

    def _classify(self, info: Any, direction: int, payload: bytes) -> Any:
        known = info.server_port in self._ports or info.client_port in self._ports
        if looks_like_tls(payload):
            return self._new_tls(info) if known else None
        if looks_like_associate_rq(payload) and (known or self._any_port):
            return self._new_dicom(info, direction)
        if known:
            # Midstream or unusual start on a DICOM port: the requestor is the side that is
            # not listening on the DICOM port.
            requestor = 0 if info.server_port in self._ports else 1
            return self._new_dicom(info, requestor)
        return None

    def _context(self, info: Any) -> _FlowContext:
        flow_id = self._next_flow_id
        self._next_flow_id += 1
        server = format_endpoint(info.server_ip, info.server_port)
        client = format_endpoint(info.client_ip, info.client_port)
        return _FlowContext(flow_id, client, server, self.server_label(server))

    def _new_dicom(self, info: Any, requestor: int) -> DicomFlowHandler:
        ctx = self._context(info)
        conv = DicomConversation(
            requestor,
            config=self.config.dicom,
            transaction_timeout=self.config.transactions.timeout_s,
            max_pending=self.config.transactions.max_pending_per_association,
        )
        handler = DicomFlowHandler(self, ctx, conv)
        self.handlers[ctx.flow_id] = handler
        return handler

    def _new_tls(self, info: Any) -> TlsFlowHandler:
        return TlsFlowHandler(self, self._context(info))

    def _connection_failure(
        self, server_ip: bytes, server_port: int, reason: str, ts: float
    ) -> None:
        server = format_endpoint(server_ip, server_port)
        if server_port in self._ports or server in self._learned_servers:
            label = self.server_label(server)
            for sink in self.sinks:
                sink.connection_failure(label, reason, ts=ts)

    def learn_server(self, server: str) -> None:
        """Remember servers that spoke DICOM so failed connections to them are counted."""
        if (
            server not in self._learned_servers
            and len(self._learned_servers) < _MAX_LEARNED_SERVERS
        ):
            self._learned_servers[server] = None

    def handler_closed(self, handler: DicomFlowHandler) -> None:
        self.handlers.pop(handler.ctx.flow_id, None)

    # -- labels and fan-out ------------------------------------------------------------------

    def ae_label(self, title: str, label: str) -> str:
        return self._metrics.ae_label(title, label) if self._metrics else title

    def server_label(self, server: str) -> str:
        return self._metrics.server_label(server) if self._metrics else server

    def emit_event(self, event: Any, ctx: _FlowContext) -> None:
        for sink in self.sinks:
            sink.handle(event, ctx)

    def emit_tcp(self, kind: str, sender: str, ctx: _FlowContext, value: float, ts: float) -> None:
        for sink in self.sinks:
            sink.tcp_event(kind, sender, ctx, value, ts=ts)

    def emit_bytes(self, kind: str, sender: str, nbytes: int, ctx: _FlowContext) -> None:
        for sink in self.sinks:
            sink.add_bytes(kind, sender, nbytes, ctx)

    def emit_tls(self, server_label: str, outcome: str, ts: float | None) -> None:
        for sink in self.sinks:
            sink.tls_connection(server_label, outcome, ts=ts)

    # -- self metrics ----------------------------------------------------------------------

    def self_stats(self) -> dict[str, Any]:
        flows = self.flows
        return {
            "worker": self.worker,
            "packets": self.packets,
            "bytes": self.bytes,
            "dropped": dict(self.dropped),
            "flows_active": flows.flows_active,
            "evictions": dict(flows.evictions),
            "buffered_bytes": flows.buffered_bytes,
        }

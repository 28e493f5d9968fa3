"""Which TCP flows are DICOM or TLS, and their handlers (the flow table's ``classify``).

A flow is DICOM when it is on a configured DICOM port, or (with ``detect_any_port``) when
its first bytes are a plausible A-ASSOCIATE-RQ: the framer's own check
(``dicom.pdu.plausible_associate_header``). TLS is recognised on DICOM ports only.
"""

from __future__ import annotations

from typing import Any

from dicomsniffd.config import DicomConfig, TransactionsConfig
from dicomsniffd.dicom.acse import A_ASSOCIATE_RQ, AssociateDecoder
from dicomsniffd.dicom.conversation import DicomConversation
from dicomsniffd.dicom.pdu import MAX_ASSOCIATE_PDU_LENGTH, plausible_associate_header

from .context import FlowContext, format_endpoint
from .dicom import DicomFlowHandler
from .emitter import Emitter
from .tls import TlsFlowHandler, looks_like_tls

# The largest A-ASSOCIATE-RQ believed as the first bytes of a flow: the largest the item
# structure allows (PS3.8 9.3.2), as the framer believes it at a connection's start. It is
# larger than dicom.max_association_pdu_bytes (default 64 KiB) on purpose: a legal RQ
# with a large User Identity token is DICOM, and the framer decodes its first 64 KiB.
MAX_DETECTED_ASSOCIATE_LENGTH = MAX_ASSOCIATE_PDU_LENGTH
_MAX_LEARNED_SERVERS = 10_000


def looks_like_associate_rq(data: bytes, any_version: bool = True) -> bool:
    """A plausible A-ASSOCIATE-RQ header as the first bytes of a flow (PS3.8 9.3.2).

    Unlike the framer's resync scan, the reserved field after the protocol version is not
    tested: PS3.8 says it is sent as 0 but not tested when received. ``any_version``: an
    RQ of another protocol version than 1 is DICOM too (the acceptor rejects it); off a
    configured DICOM port the version 1 is kept as evidence against random bytes.
    """
    return (
        len(data) >= 10
        and data[0] == A_ASSOCIATE_RQ
        and plausible_associate_header(data, 0, MAX_DETECTED_ASSOCIATE_LENGTH, any_version)
    )


class StreamDetector:
    """Classifies flows, makes their handlers, and keeps what the glue must remember.

    ``handlers``: the live DICOM handlers by flow id (timeouts and scrapes reach them
    here). Servers that spoke DICOM (AE titles seen) are remembered, at most 10,000, so a
    failed connection to them counts even off the configured ports.
    """

    def __init__(
        self, dicom: DicomConfig, transactions: TransactionsConfig, emitter: Emitter
    ) -> None:
        self._dicom = dicom
        self._transactions = transactions
        self._emitter = emitter
        self._ports = frozenset(dicom.ports)
        self._any_port = dicom.detect_any_port
        # one memo of decoded A-ASSOCIATE-RQ/AC for all connections (acse.AssociateDecoder)
        self._associate_decoder = AssociateDecoder()
        self.handlers: dict[int, DicomFlowHandler] = {}
        self._learned_servers: dict[str, None] = {}
        self._next_flow_id = 1
        # bound once, not per connection: every DicomFlowHandler gets the same two
        self._closed = self.handler_closed
        self._learn = self.learn_server

    def classify(self, info: Any, direction: int, payload: bytes) -> Any:
        """flows.Classify: a handler for the flow whose first payload this is, or None."""
        known = info.server_port in self._ports or info.client_port in self._ports
        if looks_like_tls(payload):
            return self._new_tls(info) if known else None
        if (known or self._any_port) and looks_like_associate_rq(payload, known):
            return self._new_dicom(info, direction)
        if known:
            # Midstream or unusual start on a DICOM port: the requestor is the side that is
            # not listening on the DICOM port.
            requestor = 0 if info.server_port in self._ports else 1
            return self._new_dicom(info, requestor)
        return None

    def connection_failure(
        self, server_ip: bytes, server_port: int, reason: str, ts: float
    ) -> None:
        """The flow table's on_connection_failure: counted for DICOM servers only."""
        server = format_endpoint(server_ip, server_port)
        if server_port in self._ports or server in self._learned_servers:
            emitter = self._emitter
            emitter.connection_failure(emitter.server_label(server), reason, ts)

    def learn_server(self, server: str) -> None:
        """Remember servers that spoke DICOM so failed connections to them are counted."""
        if (
            server not in self._learned_servers
            and len(self._learned_servers) < _MAX_LEARNED_SERVERS
        ):
            self._learned_servers[server] = None

    def handler_closed(self, handler: DicomFlowHandler) -> None:
        self.handlers.pop(handler.ctx.flow_id, None)

    def _context(self, info: Any) -> FlowContext:
        flow_id = self._next_flow_id
        self._next_flow_id += 1
        server = format_endpoint(info.server_ip, info.server_port)
        client = format_endpoint(info.client_ip, info.client_port)
        return FlowContext(flow_id, client, server, self._emitter.server_label(server))

    def _new_dicom(self, info: Any, requestor: int) -> DicomFlowHandler:
        ctx = self._context(info)
        dicom, transactions = self._dicom, self._transactions
        conv = DicomConversation(
            requestor,
            max_command_bytes=dicom.max_command_bytes,
            max_association_pdu_bytes=dicom.max_association_pdu_bytes,
            keep_instance_uids=dicom.keep_instance_uids,
            transaction_timeout=transactions.timeout_s,
            max_pending=transactions.max_pending_per_association,
            associate_decoder=self._associate_decoder,
        )
        handler = DicomFlowHandler(self._emitter, ctx, conv, self.handler_closed, self.learn_server)
        self.handlers[ctx.flow_id] = handler
        return handler

    def _new_tls(self, info: Any) -> TlsFlowHandler:
        return TlsFlowHandler(self._emitter, self._context(info))

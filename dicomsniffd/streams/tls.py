"""TLS on a DICOM port (PS3.15 B.1): recognised by its record layer and counted, never
decoded. A TLS record header is content type(1) version(2) length(2) (RFC 8446 5.1).

Besides the outcome (the metric's label), the handshake's ending is told to the sinks
that want it (``tls_handshake``): who refused (the direction of the alert, or of the reset)
and how, e.g. a server that answers a ClientHello with a reset or a DICOM PDU before any
TLS record: a TLS client on a plain DICOM port. Resets on TLS connections are counted
like those on DICOM connections.
"""

from __future__ import annotations

from dicomsniffd.dicom.conversation import OBSERVER_FAILED_HOW
from dicomsniffd.dicom.events import ACCEPTOR, REQUESTOR

from .context import FlowContext
from .emitter import Emitter

_TLS13_ALERT_MAX = 19  # alert (2) + inner content type (1) + AEAD tag (16)
_CHANGE_CIPHER_SPEC, _ALERT, _HANDSHAKE, _APPLICATION_DATA = 20, 21, 22, 23
_TLS_TYPES = (_CHANGE_CIPHER_SPEC, _ALERT, _HANDSHAKE, _APPLICATION_DATA)
_DICOM_PDU_TYPES = range(1, 8)  # A-ASSOCIATE-RQ … A-ABORT (PS3.8 9.3.1)
_SIDES = ("client", "server")  # direction 0 is client -> server
_SENDERS = (REQUESTOR, ACCEPTOR)  # the TLS client is the association requestor

# how a handshake ended (the detail of tls_handshake), besides "established":
ALERT = "alert"  # an alert record (or TLS 1.3's short encrypted one) from refused_by
DICOM_REPLY = "dicom-reply"  # the server answered the ClientHello with a DICOM PDU
RESET_BEFORE_REPLY = "reset-before-reply"  # the server reset before sending anything
RESET = "reset"  # a reset during the handshake, from refused_by
CLOSED = "closed"  # the connection ended (FIN, timeout) before the handshake did
NOT_TLS = "not-tls"  # a record that is no TLS content type (not a DICOM PDU either)


def looks_like_tls(data: bytes) -> bool:
    """A TLS handshake record (ClientHello): content type 22, version 3.x."""
    return len(data) >= 5 and data[0] == _HANDSHAKE and data[1] == 0x03 and data[2] <= 0x04


class TlsFlowHandler:
    """StreamHandler of a TLS connection: the handshake's outcome, once.

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
        "emitter",
        "ctx",
        "_skip",
        "_header",
        "_app_data_seen",
        "outcome",
        "_last_ts",
        "_tls13",
        "_replied",
        "_reset_by",
    )

    def __init__(self, emitter: Emitter, ctx: FlowContext) -> None:
        self.emitter = emitter
        self.ctx = ctx
        self._skip = [0, 0]  # bytes left in the current record body, per direction
        self._header = [b"", b""]  # partial 5-byte record header, per direction
        self._app_data_seen = [False, False]
        self.outcome = ""
        self._last_ts: float | None = None
        self._tls13 = False
        self._replied = False  # the server sent a byte
        self._reset_by = -1  # direction of the first reset

    def data(self, direction: int, data: bytes, ts: float) -> None:
        if self.outcome:
            return
        self._last_ts = ts
        if direction == 1 and data:
            self._replied = True
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
        if content_type == _ALERT:  # alert before both sides talk application data
            self._finish("handshake-failed", ALERT, _SIDES[direction])
        elif content_type == _APPLICATION_DATA:
            seen = self._app_data_seen
            if direction == 1 and not seen[0]:
                self._tls13 = True  # the server's encrypted handshake flight
                return
            if self._tls13 and length <= _TLS13_ALERT_MAX:
                self._finish("handshake-failed", ALERT, _SIDES[direction])
                return
            seen[direction] = True
            if all(seen):
                self._finish("established", "established", "")
        elif content_type not in _TLS_TYPES:  # not TLS after all
            if direction == 1 and content_type in _DICOM_PDU_TYPES:
                self._finish("handshake-failed", DICOM_REPLY, "server")
            else:
                self._finish("handshake-failed", NOT_TLS, _SIDES[direction])

    def _finish(self, outcome: str, how: str, refused_by: str) -> None:
        self.outcome = outcome
        detail = {"how": how, "refused_by": refused_by}
        self.emitter.tls_handshake(self.ctx, outcome, detail, self._last_ts)

    def gap(self, direction: int, nbytes: int, ts: float) -> None:
        skip = self._skip[direction]
        self._skip[direction] = max(0, skip - nbytes)
        if nbytes > skip and not self.outcome:
            self.outcome = "unknown"  # lost record alignment: no verdict rather than a wrong one

    def tcp_event(self, kind: str, direction: int, ts: float, value: float = 0.0) -> None:
        if kind == "reset":
            if self._reset_by < 0:
                self._reset_by = direction
            self.emitter.tcp_event("reset", _SENDERS[direction], self.ctx, value, ts)

    def close(self, how: str, ts: float) -> None:
        self._last_ts = ts
        if self.outcome or how == OBSERVER_FAILED_HOW:
            return  # (after our own failure the handshake's outcome is unknown: not counted)
        reset_by = self._reset_by
        if reset_by < 0:
            self._finish("handshake-failed", CLOSED, "")
        elif reset_by == 1 and not self._replied:
            self._finish("handshake-failed", RESET_BEFORE_REPLY, "server")
        else:
            self._finish("handshake-failed", RESET, _SIDES[reset_by])

"""streams/tls.py, byte level: how a handshake ended and who refused it, and resets
counted (real traffic: tests/test_interop_tls_real.py)."""

from __future__ import annotations

from dicomsniffd.streams.context import FlowContext
from dicomsniffd.streams.tls import TlsFlowHandler

CLIENT_HELLO = bytes([22, 3, 1, 0, 4]) + b"\x01\x00\x00\x00"
SERVER_HELLO = bytes([22, 3, 3, 0, 4]) + b"\x02\x00\x00\x00"
ALERT = bytes([21, 3, 3, 0, 2, 2, 48])  # fatal, unknown_ca
A_ABORT = bytes([7, 0, 0, 0, 0, 4, 0, 0, 0, 0])


class Recorder:
    def __init__(self) -> None:
        self.handshakes: list[tuple[str, dict]] = []
        self.tcp: list[tuple[str, str]] = []

    def tls_handshake(self, ctx, outcome, detail, ts) -> None:
        self.handshakes.append((outcome, detail))

    def tcp_event(self, kind, sender, ctx, value, ts) -> None:
        self.tcp.append((kind, sender))


def _handler() -> tuple[TlsFlowHandler, Recorder]:
    rec = Recorder()
    return TlsFlowHandler(rec, FlowContext(1, "10.0.0.1:5000", "10.0.0.2:2762", "x")), rec


def test_alert_direction_names_the_side_that_refused() -> None:
    for direction, side in ((0, "client"), (1, "server")):
        handler, rec = _handler()
        handler.data(0, CLIENT_HELLO, 1.0)
        handler.data(1, SERVER_HELLO, 1.1)
        handler.data(direction, ALERT, 1.2)
        handler.close("fin", 1.3)
        assert rec.handshakes == [("handshake-failed", {"how": "alert", "refused_by": side})]


def test_a_reset_before_any_reply_and_a_dicom_reply_mean_a_plain_port() -> None:
    handler, rec = _handler()
    handler.data(0, CLIENT_HELLO, 1.0)
    handler.tcp_event("reset", 1, 1.1)
    handler.close("reset", 1.1)
    assert rec.handshakes == [
        ("handshake-failed", {"how": "reset-before-reply", "refused_by": "server"})
    ]
    assert rec.tcp == [("reset", "acceptor")]  # counted like a reset on a DICOM connection
    handler, rec = _handler()
    handler.data(0, CLIENT_HELLO, 1.0)
    handler.data(1, A_ABORT, 1.1)
    assert rec.handshakes == [("handshake-failed", {"how": "dicom-reply", "refused_by": "server"})]


def test_a_reset_after_the_server_replied_is_no_plain_port() -> None:
    handler, rec = _handler()
    handler.data(0, CLIENT_HELLO, 1.0)
    handler.data(1, SERVER_HELLO, 1.1)
    handler.tcp_event("reset", 0, 1.2)
    handler.close("reset", 1.2)
    assert rec.handshakes == [("handshake-failed", {"how": "reset", "refused_by": "client"})]
    assert rec.tcp == [("reset", "requestor")]


def test_closed_before_the_handshake_ended() -> None:
    handler, rec = _handler()
    handler.data(0, CLIENT_HELLO, 1.0)
    handler.close("fin", 1.1)
    assert rec.handshakes == [("handshake-failed", {"how": "closed", "refused_by": ""})]


def test_closed_after_our_own_failure_counts_no_outcome() -> None:
    """The flow table closes a handler whose code raised with how="handler-failed": the
    handshake's outcome is unknown then, so no handshake-failed is counted (an alert
    could fire on it)."""
    handler, rec = _handler()
    handler.data(0, CLIENT_HELLO, 1.0)
    handler.close("handler-failed", 1.1)
    assert rec.handshakes == []

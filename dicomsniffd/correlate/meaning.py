"""The DICOM meaning of a segment: which association, which message it belonged to.

Each capture is also run through the normal pipeline (``analyze_files``, the same one
``analyze`` uses); ``Conversations``, a sink, keeps per connection the association (AE
titles, when it was negotiated, how it ended) and each DIMSE message's time span on that
point's clock. A segment is then placed by its timestamp at the point where it was seen:
inside the transfer of a request or response sent in its direction, else during a
message in flight the other way (an ACK, an injected reset), else in the association's
negotiation or release.

In DICOM the association requestor opens the TCP connection (PS3.8 §9.1.2), so the
client -> server direction is the requestor's.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from dicomsniffd.analyze import analyze_files
from dicomsniffd.config import Config
from dicomsniffd.dicom import events as ev
from dicomsniffd.sinks.dispatch import EventSink

NEGOTIATION = "association negotiation (A-ASSOCIATE)"
MAX_MESSAGES = 200_000  # messages kept per capture (each a few numbers)


@dataclass(slots=True)
class Message:
    start: float
    end: float | None  # None: never completed (the association ended first)
    sender: str  # "requestor" | "acceptor"
    text: str  # "C-STORE-RQ message 3 (context 1)"
    outcome: str  # "answered 0x0000 (success)", "unanswered", ...


@dataclass(slots=True)
class Association:
    client: str
    server: str
    start: float
    calling_ae: str = "unknown"
    called_ae: str = "unknown"
    established: float | None = None  # A-ASSOCIATE-AC/RJ seen
    result: str = ""  # "accepted" | "rejected ..." | ""
    release: float | None = None
    end: float | None = None
    how: str = ""
    messages: list[Message] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "calling_ae": self.calling_ae,
            "called_ae": self.called_ae,
            "result": self.result or "not seen",
            "end": self.how or "open at the end of the capture",
            "messages": len(self.messages),
        }


class Conversations(EventSink):
    """The associations of one capture, by (client, server) endpoint text."""

    EVENTS = {
        ev.AssociationRequested: "_requested",
        ev.AssociationAccepted: "_accepted",
        ev.AssociationRejected: "_rejected",
        ev.ReleaseRequested: "_release",
        ev.AssociationEnded: "_ended",
        ev.DimseRequestSeen: "_request",
        ev.DimseTransaction: "_transaction",
    }

    def __init__(self) -> None:
        super().__init__()
        self.by_endpoints: dict[tuple[str, str], list[Association]] = defaultdict(list)
        self._current: dict[int, Association] = {}
        self._senders: dict[tuple[int, int, int], str] = {}
        self.messages = 0
        self.messages_dropped = 0

    def _assoc(self, flow: Any, ts: float) -> Association:
        key = flow.flow_id
        assoc = self._current.get(key)
        if assoc is None:
            assoc = Association(flow.client, flow.server, ts)
            self._current[key] = assoc
            self.by_endpoints[(flow.client, flow.server)].append(assoc)
        return assoc

    def _requested(self, e: ev.AssociationRequested, flow: Any) -> None:
        a = self._assoc(flow, e.ts)
        a.calling_ae, a.called_ae = e.calling_ae, e.called_ae

    def _accepted(self, e: ev.AssociationAccepted, flow: Any) -> None:
        a = self._assoc(flow, e.ts)
        a.calling_ae, a.called_ae = e.calling_ae, e.called_ae
        a.established, a.result = e.ts, "accepted"

    def _rejected(self, e: ev.AssociationRejected, flow: Any) -> None:
        a = self._assoc(flow, e.ts)
        a.established, a.result = e.ts, f"rejected ({e.reason})"

    def _release(self, e: ev.ReleaseRequested, flow: Any) -> None:
        a = self._assoc(flow, e.ts)
        if a.release is None:
            a.release = e.ts

    def _ended(self, e: ev.AssociationEnded, flow: Any) -> None:
        a = self._assoc(flow, e.ts)
        a.end, a.how = e.ts, e.how
        self._current.pop(flow.flow_id, None)

    def _request(self, e: ev.DimseRequestSeen, flow: Any) -> None:
        self._assoc(flow, e.ts)
        self._senders[(flow.flow_id, e.context_id, e.message_id)] = e.sender

    def _transaction(self, e: ev.DimseTransaction, flow: Any) -> None:
        a = self._assoc(flow, e.request_ts)
        if self.messages >= MAX_MESSAGES:
            self.messages_dropped += 1
            return
        sender = self._senders.pop((flow.flow_id, e.context_id, e.message_id), ev.REQUESTOR)
        other = ev.ACCEPTOR if sender == ev.REQUESTOR else ev.REQUESTOR
        which = f"message {e.message_id} (context {e.context_id})"
        if e.status is None:
            outcome = e.outcome.replace("-", " ")  # "unanswered ended", "unanswered timeout"
        else:
            outcome = f"answered 0x{e.status:04X} ({e.status_class})"
        rq = Message(
            e.request_ts, e.request_complete_ts, sender, f"{e.command}-RQ {which}", outcome
        )
        a.messages.append(rq)
        if e.response_ts is not None:
            text = f"{e.command}-RSP to {which}"
            a.messages.append(Message(e.response_ts, e.response_complete_ts, other, text, outcome))
        self.messages += 1


def read_conversations(path: str, config: Config) -> Conversations:
    """Run one capture through the normal pipeline; raises CaptureError like analyze."""
    sink = Conversations()
    analyze_files([path], config, [sink])
    for assocs in sink.by_endpoints.values():
        for a in assocs:
            a.messages.sort(key=lambda m: m.start)
    return sink


def find_association(
    conv: Conversations, client: str, server: str, first_ts: float, last_ts: float
) -> Association | None:
    """The association on the connection ``client`` -> ``server`` alive in that span."""
    best = None
    for a in conv.by_endpoints.get((client, server), ()):
        end = a.end if a.end is not None else float("inf")
        if a.start <= last_ts and end >= first_ts:
            best = a
            if a.start >= first_ts:
                break
    return best


def place(assoc: Association | None, sender: str, ts: float) -> str:
    """What a segment sent by ``sender`` at ``ts`` belonged to, in words."""
    if assoc is None:
        return ""
    if assoc.established is None or ts <= assoc.established:
        return NEGOTIATION
    starts = [m.start for m in assoc.messages]
    stop = bisect_right(starts, ts)
    in_flight_other = None
    for m in reversed(assoc.messages[max(0, stop - 64) : stop]):
        end = m.end if m.end is not None else (assoc.end if assoc.end is not None else ts)
        if m.start <= ts <= end:
            if m.sender == sender:
                return f"{m.text}, {m.outcome}"
            in_flight_other = in_flight_other or m
    if in_flight_other is not None:
        return f"during {in_flight_other.text}, {in_flight_other.outcome}"
    if assoc.end is not None and ts >= assoc.end:
        return f"after the association ended ({assoc.how})"
    if assoc.release is not None and ts >= assoc.release:
        return "association release (A-RELEASE)"
    if not starts or ts < starts[0]:
        return NEGOTIATION  # the rest of the A-ASSOCIATE-AC, before the first message
    return "between DIMSE messages"

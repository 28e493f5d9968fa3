"""Conformance checks (DESIGN §4b): PDUs that parse but break a rule of PS3.8/PS3.7.

Where each check runs, and what it costs:

- **Every PDU/PDV header** (max-pdu-length-exceeded, pdv-on-unaccepted-context,
  even-presentation-context-id, odd-pdv-length, pdv-reserved-bits,
  pdata-outside-association): in the framer (pdu.py), where it unpacks those headers.
  The compiled lease (flows/lease.py, _fastpath.c) only ever consumes bytes *inside* a
  data set PDV, so every header reaches the Python framer and no check needs the lease
  to hand back control anywhere new. The common case (a P-DATA-TF on an accepted odd
  context, legal lengths and bits) costs one combined test per PDV header; anything else
  goes to ``PduFramer._violations``. This module only tells each framer what was
  negotiated (``Conformance.on_*`` set ``pdu_limit``, ``contexts``, ``pdata_allowed``).
- **Association PDUs** (malformed-context-proposal, missing-user-information,
  invalid-ae-title, part of context-answer-mismatch): while acse.py decodes them
  (``associate_violations``), so the decode memo keeps the verdict and a repeated
  byte-identical RQ/AC is not checked again; the RQ-vs-AC comparison (``answer_violations``)
  once per A-ASSOCIATE-AC.
- **DIMSE** (fragments-interleaved, response-to-unknown-request, response-on-other-context,
  async-window-exceeded, sop-class-context-mismatch, role-not-negotiated,
  nonstandard-status): once per command PDV, from the events the transactions emitted for
  it (``Conformance.after_command``); never per data set byte.
- **dataset-encoding-mismatch**: the framer buffers the first 8 bytes of the first data set
  PDV after a command (the first element header, DESIGN §4b's one exception to "data sets
  are never read"; never logged) and hands them over once per data set
  (``on_dataset_head``): Explicit VR or not, against the context's accepted transfer syntax.

A check that depends on state is only made when that state was seen: an association
watched from its A-ASSOCIATE-RQ, with no capture gap or lost command since (a midstream
start or a gap is not the peers' fault).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from .events import (
    ACCEPTOR,
    REQUESTOR,
    DimseRequestSeen,
    DimseResponseSeen,
    PresentationContext,
    ProtocolError,
    ProtocolViolation,
    UserInformation,
)
from .headerchecks import ANY_CONTEXT, NO_CONTEXT, UNLIMITED
from .problems import (
    ASYNC_WINDOW_EXCEEDED,
    CONTEXT_ANSWER_MISMATCH,
    DATASET_ENCODING_MISMATCH,
    EVEN_PRESENTATION_CONTEXT_ID,
    FRAGMENTS_INTERLEAVED,
    INVALID_AE_TITLE,
    MALFORMED_CONTEXT_PROPOSAL,
    MISSING_USER_INFORMATION,
    NONSTANDARD_STATUS,
    RESPONSE_ON_OTHER_CONTEXT,
    RESPONSE_TO_UNKNOWN_REQUEST,
    ROLE_NOT_NEGOTIATED,
    SOP_CLASS_CONTEXT_MISMATCH,
)

MAX_TRACKED_REQUESTS = 1024  # open requests followed for the response/window checks

# PS3.5 6.2: AE is the default repertoire without backslash and control characters.
_AE_CHARS = frozenset(range(0x20, 0x7F)) - {0x5C}
# Services with pending responses / with C-CANCEL (PS3.7 9.1.2-9.1.5, 9.3.2.3)
_PENDING_SERVICES = frozenset({"C-FIND", "C-GET", "C-MOVE"})
# C-services checked against the context's abstract syntax (N-services may run on a Meta
# SOP Class context, e.g. print management, whose commands name the member SOP classes)
_C_SERVICES = frozenset({"C-STORE", "C-FIND", "C-GET", "C-MOVE", "C-ECHO"})
# Transfer syntaxes whose data sets have an explicit VR (PS3.5 A.1-A.4: the encapsulated
# ones, JPEG/JPEG 2000/RLE/..., are Explicit VR Little Endian). Deflated and private ones
# are not told apart: their bytes are compressed or unknown.
_IMPLICIT_VR_LE = "1.2.840.10008.1.2"
_EXPLICIT_TS = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
_ENCAPSULATED_ROOTS = ("1.2.840.10008.1.2.4.", "1.2.840.10008.1.2.5")


def explicit_vr(uid: str) -> bool | None:
    """Whether data sets in transfer syntax ``uid`` have explicit VRs (None: not told)."""
    if uid == _IMPLICIT_VR_LE:
        return False
    if uid in _EXPLICIT_TS or uid.startswith(_ENCAPSULATED_ROOTS):
        return True
    return None


# the VRs of PS3.5 6.2 (two upper-case letters where an Explicit VR data set has its VR)
_VRS = frozenset(
    v.encode()
    for v in [
        "AE",
        "AS",
        "AT",
        "CS",
        "DA",
        "DS",
        "DT",
        "FD",
        "FL",
        "IS",
        "LO",
        "LT",
        "OB",
        "OD",
        "OF",
        "OL",
        "OV",
        "OW",
        "PN",
        "SH",
        "SL",
        "SQ",
        "SS",
        "ST",
        "SV",
        "TM",
        "UC",
        "UI",
        "UL",
        "UN",
        "UR",
        "US",
        "UT",
        "UV",
    ]
)


def associate_violations(
    is_rq: bool,
    called: bytes,
    calling: bytes,
    contexts: Sequence[PresentationContext],
    user_info: UserInformation | None,
) -> list[tuple[str, str]]:
    """The rules a complete A-ASSOCIATE-RQ (``is_rq``) or -AC breaks, as (kind, detail).

    ``called``/``calling`` are the raw 16-byte AE title fields, ``user_info`` None when
    the PDU has no User Information item. The AC's AE titles are not tested (PS3.8 9.3.3:
    they are echoed, "shall not be tested").
    """
    found: list[tuple[str, str]] = []
    if is_rq:
        for which, raw in (("called", called), ("calling", calling)):
            why = ae_title_problem(raw)
            if why:
                found.append((INVALID_AE_TITLE, f"{which} AE title {why}"))
        seen: set[int] = set()
        for pc in contexts:
            cid = pc.context_id
            if not cid & 1:
                found.append((EVEN_PRESENTATION_CONTEXT_ID, f"proposed context {cid}"))
            if cid in seen:
                found.append((MALFORMED_CONTEXT_PROPOSAL, f"context {cid} proposed twice"))
            seen.add(cid)
    missing = []
    if user_info is None or user_info.max_pdu_length is None:
        missing.append("Maximum Length")
    if user_info is None or not user_info.implementation_class_uid:
        missing.append("Implementation Class UID")
    if missing:
        found.append((MISSING_USER_INFORMATION, "no " + " and no ".join(missing)))
    return found


def ae_title_problem(raw: bytes) -> str:
    """Why the 16-byte AE title field ``raw`` is not a valid AE value ("" if it is)."""
    if not raw.strip(b" "):
        return "is all spaces"
    bad = sorted({b for b in raw if b not in _AE_CHARS})
    if bad:
        return "has characters " + " ".join(f"0x{b:02X}" for b in bad)
    return ""


def answer_violations(
    proposed: Sequence[PresentationContext], answered: Sequence[PresentationContext]
) -> list[tuple[str, str]]:
    """How an A-ASSOCIATE-AC's answers differ from the RQ's proposals (PS3.8 9.3.3.2)."""
    found: list[tuple[str, str]] = []
    by_id = {pc.context_id: pc for pc in proposed}
    answered_ids = set()
    for ac in answered:
        cid = ac.context_id
        rq = by_id.get(cid)
        if rq is None:
            found.append((CONTEXT_ANSWER_MISMATCH, f"context {cid} answered, not proposed"))
        elif cid in answered_ids:
            found.append((CONTEXT_ANSWER_MISMATCH, f"context {cid} answered twice"))
        elif ac.result == 0 and ac.accepted_transfer_syntax not in rq.transfer_syntaxes:
            detail = f"context {cid} accepts {ac.accepted_transfer_syntax}, not proposed"
            found.append((CONTEXT_ANSWER_MISMATCH, detail))
        answered_ids.add(cid)
    for cid in by_id.keys() - answered_ids:
        found.append((CONTEXT_ANSWER_MISMATCH, f"context {cid} proposed, not answered"))
    return found


def nonstandard_status(command: str, status: int) -> bool:
    """A status outside the PS3.7 Annex C classes, or pending/cancel where the service
    has none (C-STORE, C-ECHO and the N-services never answer pending)."""
    if status in (0xFF00, 0xFF01, 0xFE00):
        return command not in _PENDING_SERVICES
    return not (
        status in (0x0000, 0x0001, 0x0107, 0x0116)
        or 0x0100 <= status <= 0x02FF
        or 0xA000 <= status <= 0xCFFF
    )


class Negotiation:
    """What an A-ASSOCIATE-AC (with its RQ) settled, as the checks read it: computed once
    per distinct RQ/AC pair (``negotiation``, memoised: a modality repeats them)."""

    __slots__ = ("accepted", "abstract", "encoding", "scp_role", "windows", "answer_problems")

    def __init__(
        self,
        proposed: Sequence[PresentationContext],
        answered: Sequence[PresentationContext],
        merged: Sequence[PresentationContext],
        info: UserInformation,
    ) -> None:
        self.accepted = frozenset(pc.context_id for pc in merged if pc.result == 0)
        # accepted context id -> abstract syntax
        self.abstract = {pc.context_id: pc.abstract_syntax for pc in merged if pc.result == 0}
        # accepted context id -> (explicit VR?, the transfer syntax), where it can be told
        self.encoding = {}
        for pc in merged:
            explicit = explicit_vr(pc.accepted_transfer_syntax) if pc.result == 0 else None
            if explicit is not None:
                self.encoding[pc.context_id] = (explicit, pc.accepted_transfer_syntax)
        # SOP classes for which the AC gave the requestor the SCP role (PS3.7 D.3.3.4)
        self.scp_role = frozenset(r.sop_class_uid for r in info.role_selections if r.scp_role)
        performed, invoked = info.async_ops_performed, info.async_ops_invoked
        # The AC's Asynchronous Operations Window (PS3.7 D.3.3.3.2): what the acceptor
        # performs bounds the requestor's outstanding requests, what it invokes its own
        # (0: unlimited).
        self.windows = {
            REQUESTOR: 1 if performed is None else performed,
            ACCEPTOR: 1 if invoked is None else invoked,
        }
        self.answer_problems = tuple(answer_violations(proposed, answered))


def negotiation(
    memo: dict, proposed: tuple, ac: object, merged: tuple, info: UserInformation
) -> Negotiation:
    """``Negotiation(...)`` memoised by the identity of the (memoised, frozen) RQ proposal,
    AC and merged contexts; the entry keeps them alive, so their ids are not reused."""
    key = (id(proposed), id(ac), id(merged))
    entry = memo.get(key)
    if entry is not None and entry[0] is proposed and entry[1] is ac and entry[2] is merged:
        return entry[3]
    result = Negotiation(proposed, ac.presentation_contexts, merged, info)  # type: ignore[attr-defined]
    if len(memo) >= 512:
        memo.clear()
    memo[key] = (proposed, ac, merged, result)
    return result


_NOTHING = Negotiation((), (), (), UserInformation())  # before (or without) an AC


class Conformance:
    """The association state the DIMSE and framing checks of one connection need.

    Owned by the DicomConversation; ``framers`` are its two PduFramers, configured here
    from the negotiation; ``memo`` a dict shared by the connections of a pipeline (the
    negotiation memo). Violations are appended to the caller's ``out`` as events.
    """

    __slots__ = (
        "_framers",
        "_roles",
        "_memo",
        "_proposed",
        "_tracking",
        "_awaiting_ac",
        "_negotiation",
        "_open",
        "_collecting",
        "_software",
    )

    def __init__(self, framers: Sequence, roles: object, memo: dict) -> None:
        self._framers = framers
        self._roles = roles  # dicom.roles.Roles: sender names
        self._memo = memo
        self._proposed: tuple[PresentationContext, ...] | None = None  # RQ seen whole
        self._tracking = False  # DIMSE state followed from the association's start
        self._awaiting_ac = False
        self._negotiation = _NOTHING
        self._open: dict[tuple[str, int], int] = {}  # (invoker, message id) -> context
        self._collecting = [-1, -1]  # context of a command being collected, per direction
        # sender -> (Implementation Class UID, Version Name) from its RQ/AC
        self._software: dict[str, tuple[str, str]] = {}

    # -- association PDUs (conversation._on_associate_*) -------------------------------

    def on_rq(self, d: int, rq: object, partial: bool, ts: float, out: list) -> None:
        info: UserInformation = rq.user_info  # type: ignore[attr-defined]
        sender = self._roles.sender(d)
        self._software[sender] = (info.implementation_class_uid, info.implementation_version_name)
        if rq.violations:  # type: ignore[attr-defined]
            self._emit(rq.violations, sender, ts, out)  # type: ignore[attr-defined]
        framers = self._framers
        framers[1 - d].pdu_limit = info.max_pdu_length or UNLIMITED
        if partial:
            return
        self._proposed = rq.presentation_contexts  # type: ignore[attr-defined]
        self._awaiting_ac = self._tracking = True
        self._open.clear()
        for framer in framers:
            framer.contexts = NO_CONTEXT
            framer.pdata_allowed = False

    def on_ac(
        self,
        d: int,
        ac: object,
        merged: tuple[PresentationContext, ...],
        partial: bool,
        ts: float,
        out: list,
    ) -> None:
        sender = self._roles.sender(d)
        info: UserInformation = ac.user_info  # type: ignore[attr-defined]
        self._software[sender] = (info.implementation_class_uid, info.implementation_version_name)
        if ac.violations:  # type: ignore[attr-defined]
            self._emit(ac.violations, sender, ts, out)  # type: ignore[attr-defined]
        framers = self._framers
        framers[1 - d].pdu_limit = info.max_pdu_length or UNLIMITED
        self._awaiting_ac = False
        proposed = self._proposed
        if partial or proposed is None:  # an AC cut short, or its RQ not seen
            accepted = (
                ANY_CONTEXT
                if partial
                else frozenset(pc.context_id for pc in merged if pc.result == 0)
            )
            self._tracking = False
        else:
            found = self._negotiation = negotiation(self._memo, proposed, ac, merged, info)
            if found.answer_problems:
                self._emit(found.answer_problems, sender, ts, out)
            accepted = found.accepted
        for framer in framers:
            framer.contexts = accepted
            framer.pdata_allowed = True

    def on_closed_to_pdata(self) -> None:
        """A-ASSOCIATE-RJ or A-RELEASE-RP seen: no P-DATA from either side from now on
        (and what still comes is that one violation, not also a DIMSE one)."""
        self._awaiting_ac = self._tracking = False
        for framer in self._framers:
            framer.contexts = NO_CONTEXT
            framer.pdata_allowed = False

    def on_gap(self) -> None:
        """Bytes were never seen: what they held (an AC, a request) is unknown."""
        self._tracking = False
        self._collecting = [-1, -1]
        if self._awaiting_ac:  # the AC may be in the gap: believe any P-DATA
            self._awaiting_ac = False
            for framer in self._framers:
                framer.contexts = ANY_CONTEXT
                framer.pdata_allowed = True

    def on_lost(self, d: int) -> None:
        """PDVs of direction ``d`` were lost (gap or resync): its commands are unknown."""
        self._tracking = False
        self._collecting[d] = -1

    # -- DIMSE (conversation._handle, after each command PDV) ----------------------------

    def after_command(self, d: int, ctx: int, last: bool, out: list, first: int, ts: float) -> None:
        """The command PDV (``ctx``, ``last``) of direction ``d`` was handed to the
        transactions, which appended ``out[first:]``."""
        collecting = self._collecting[d]
        if collecting >= 0 and collecting != ctx:
            detail = f"command fragment on context {ctx} inside a message on context {collecting}"
            out.insert(first, self._event(ts, self._roles.sender(d), FRAGMENTS_INTERLEAVED, detail))  # fmt: skip
            first += 1
        self._collecting[d] = -1 if last else ctx
        if not self._tracking or len(out) == first:
            return
        for i in range(first, len(out)):
            event = out[i]
            cls = type(event)
            if cls is DimseRequestSeen:
                self._request(event, out)
            elif cls is DimseResponseSeen:
                self._response(event, out)
            elif cls is ProtocolError:  # a command not decoded: correlation is unsure
                self._tracking = False
                return

    def _request(self, ev: DimseRequestSeen, out: list) -> None:
        if ev.command == "C-CANCEL":
            return
        found = self._negotiation
        abstract = found.abstract.get(ev.context_id)
        if ev.command in _C_SERVICES and abstract and ev.sop_class_uid not in ("", abstract):
            detail = f"{ev.command} of {ev.sop_class_uid} on context {ev.context_id} ({abstract})"
            out.append(self._event(ev.ts, ev.sender, SOP_CLASS_CONTEXT_MISMATCH, detail))
        if (
            ev.sender == ACCEPTOR
            and abstract
            and ev.command != "N-EVENT-REPORT"
            and abstract not in found.scp_role
        ):
            detail = f"{ev.command} from the acceptor on context {ev.context_id} ({abstract})"
            out.append(self._event(ev.ts, ev.sender, ROLE_NOT_NEGOTIATED, detail))
        opened = self._open
        if len(opened) >= MAX_TRACKED_REQUESTS:
            self._tracking = False
            return
        opened[(ev.sender, ev.message_id)] = ev.context_id
        window = found.windows[ev.sender]
        # (no more open requests in all than the window: none to count, the usual case)
        if window and len(opened) > window:
            outstanding = sum(1 for invoker, _ in opened if invoker == ev.sender)
            if outstanding > window:
                detail = f"{outstanding} requests outstanding, window {window}"
                out.append(self._event(ev.ts, ev.sender, ASYNC_WINDOW_EXCEEDED, detail))

    def on_dataset_head(self, d: int, ctx: int, head: bytes, ts: float, out: list) -> None:
        """The first element header of a data set on ``ctx`` (pdu.DATASET_HEAD): is it
        encoded as the transfer syntax accepted for that context says (PS3.5 7.1)?"""
        known = self._negotiation.encoding.get(ctx)
        if known is None or not self._tracking:
            return
        explicit, uid = known
        has_vr = head[4:6] in _VRS
        if has_vr == explicit:
            return
        group, element = struct.unpack_from("<HH", head)
        seen = f"VR {head[4:6].decode('latin-1')!r}" if has_vr else "no VR"
        detail = f"first element ({group:04X},{element:04X}) with {seen} on context {ctx} ({uid})"
        out.append(self._event(ts, self._roles.sender(d), DATASET_ENCODING_MISMATCH, detail))

    def _response(self, ev: DimseResponseSeen, out: list) -> None:
        if ev.status and nonstandard_status(ev.command, ev.status):  # (0x0000 is standard)
            detail = f"{ev.command} status 0x{ev.status:04X}"
            out.append(self._event(ev.ts, ev.sender, NONSTANDARD_STATUS, detail))
        invoker = REQUESTOR if ev.sender == ACCEPTOR else ACCEPTOR
        key = (invoker, ev.message_id_being_responded_to)
        ctx = self._open.get(key)
        if ctx is None:
            detail = f"{ev.command} response to message id {key[1]}"
            out.append(self._event(ev.ts, ev.sender, RESPONSE_TO_UNKNOWN_REQUEST, detail))
            return
        if ctx != ev.context_id:
            detail = f"{ev.command} response on context {ev.context_id}, request on {ctx}"
            out.append(self._event(ev.ts, ev.sender, RESPONSE_ON_OTHER_CONTEXT, detail))
        if ev.status_class != "pending":
            del self._open[key]

    def event(self, ts: float, d: int, kind: str, detail: str) -> ProtocolViolation:
        """The event for a violation by direction ``d`` (the framer's VIOLATION items)."""
        return self._event(ts, self._roles.sender(d), kind, detail)

    def _event(self, ts: float, sender: str, kind: str, detail: str) -> ProtocolViolation:
        uid, version = self._software.get(sender, ("", ""))
        return ProtocolViolation(ts, sender, kind, detail, uid, version)

    def _emit(self, found: Sequence[tuple[str, str]], sender: str, ts: float, out: list) -> None:
        for kind, detail in found:
            out.append(self._event(ts, sender, kind, detail))

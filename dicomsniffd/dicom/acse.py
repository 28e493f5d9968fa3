"""Association PDUs (PS3.8 §9.3): A-ASSOCIATE-RQ/AC/RJ, A-RELEASE-RQ/RP, A-ABORT.

Functions take the PDU *body* (the bytes after the 6-byte PDU header) and return event
field values. Malformed input raises AcseError whose message describes the structure
problem only: it never quotes PDU bytes, so a User Identity passcode cannot leak into a
log line through an exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .conformance import associate_violations
from .events import PresentationContext, RoleSelection, UserInformation
from .pdu import FIXED_ASSOCIATE_LENGTH
from .problems import CONTEXT_ANSWER_MISMATCH, MALFORMED_CONTEXT_PROPOSAL

A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class AcseError(ValueError):
    """A malformed association PDU (the message never contains PDU content)."""


@dataclass(frozen=True, slots=True)
class Associate:
    """A decoded A-ASSOCIATE-RQ or -AC."""

    protocol_version: int
    called_ae: str
    calling_ae: str
    application_context: str
    presentation_contexts: tuple[PresentationContext, ...]
    user_info: UserInformation
    # Rules the PDU breaks though it parses (DESIGN §4b): (problems.py kind, detail), found
    # while decoding (conformance.associate_violations), so the memo holds them too.
    violations: tuple[tuple[str, str], ...] = ()


def _text(raw: bytes) -> str:
    return raw.decode("latin-1").strip(" \x00")


def _items(body: bytes, start: int, end: int) -> tuple[list[tuple[int, int, int]], str]:
    """The (type, value_start, value_end) TLV items in body[start:end] and an error.

    A list built in a loop rather than a generator (generator resumes were 6.7 % of the
    many-flows profile, docs/performance.md). The error ("" if none) describes the first
    malformed item header; the items before it are returned, and callers raise it *after*
    handling them, so a body with several faults reports the same one as the generator
    this replaces did.
    """
    items = []
    append = items.append
    unpack_u16 = _U16.unpack_from
    pos = start
    while pos < end:
        if end - pos < 4:
            return items, "truncated item header"
        item_type = body[pos]
        vstart = pos + 4
        vend = vstart + unpack_u16(body, pos + 2)[0]
        if vend > end:
            return items, f"item 0x{item_type:02X} overruns its container"
        append((item_type, vstart, vend))
        pos = vend
    return items, ""


def _u16_field(body: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    if pos + 2 > end:
        raise AcseError(f"truncated {what}")
    return _U16.unpack_from(body, pos)[0], pos + 2


def _presentation_context(
    body: bytes, item_type: int, vs: int, ve: int, problems: list[tuple[str, str]]
) -> PresentationContext:
    if ve - vs < 4:
        raise AcseError(f"presentation context item 0x{item_type:02X} too short")
    ctx_id = body[vs]
    result = body[vs + 2]
    abstract = ""
    abstracts = 0
    syntaxes: list[str] = []
    items, error = _items(body, vs + 4, ve)
    for sub, ss, se in items:
        if sub == 0x30:
            abstract = _text(body[ss:se])
            abstracts += 1
        elif sub == 0x40:
            syntaxes.append(_text(body[ss:se]))
        # any other sub-item is skipped (PS3.8 9.3: unknown items are ignored)
    if error:
        raise AcseError(error)
    if item_type == 0x20:
        if abstracts != 1 or not syntaxes:
            what = f"{abstracts} abstract syntaxes" if abstracts != 1 else "no transfer syntax"
            problems.append((MALFORMED_CONTEXT_PROPOSAL, f"context {ctx_id}: {what}"))
        return PresentationContext(ctx_id, abstract, tuple(syntaxes))
    # AC: the abstract syntax is not repeated, exactly one transfer syntax (ignored when
    # the context was not accepted: PS3.8 9.3.3.2 says it shall not be tested then)
    accepted = syntaxes[0] if syntaxes and result == 0 else ""
    if result == 0 and len(syntaxes) != 1:
        detail = f"context {ctx_id} accepted with {len(syntaxes)} transfer syntaxes"
        problems.append((CONTEXT_ANSWER_MISMATCH, detail))
    return PresentationContext(ctx_id, "", (), result, accepted)


def _user_information(body: bytes, vs: int, ve: int, partial: bool = False) -> UserInformation:
    fields: dict = {}
    roles: list[RoleSelection] = []
    ext_neg: list[str] = []
    items, error = _items(body, vs, ve)
    for sub, ss, se in items:
        n = se - ss
        if sub == 0x51:
            if n != 4:
                raise AcseError("maximum length sub-item is not 4 bytes")
            fields["max_pdu_length"] = _U32.unpack_from(body, ss)[0]
        elif sub == 0x52:
            fields["implementation_class_uid"] = _text(body[ss:se])
        elif sub == 0x53:
            if n != 4:
                raise AcseError("asynchronous operations window sub-item is not 4 bytes")
            fields["async_ops_invoked"] = _U16.unpack_from(body, ss)[0]
            fields["async_ops_performed"] = _U16.unpack_from(body, ss + 2)[0]
        elif sub == 0x54:
            uid_len, p = _u16_field(body, ss, se, "role selection")
            if p + uid_len + 2 != se:
                raise AcseError("role selection sub-item length mismatch")
            uid = _text(body[p : p + uid_len])
            roles.append(RoleSelection(uid, body[p + uid_len], body[p + uid_len + 1]))
        elif sub == 0x55:
            fields["implementation_version_name"] = _text(body[ss:se])
        elif sub == 0x56:
            uid_len, p = _u16_field(body, ss, se, "SOP class extended negotiation")
            if p + uid_len > se:
                raise AcseError("SOP class extended negotiation overruns its sub-item")
            ext_neg.append(_text(body[p : p + uid_len]))
        elif sub == 0x57:
            _check_common_extended(body, ss, se)
        elif sub == 0x58:
            # Only the type and the response flag are read. The primary field (username,
            # Kerberos ticket, SAML assertion, JWT) and the secondary field (passcode) are
            # length-checked but never copied out of the PDU buffer.
            if n < 4:
                raise AcseError("user identity sub-item too short")
            fields["user_identity_type"] = body[ss]
            fields["user_identity_positive_response_requested"] = body[ss + 1] == 1
            primary_len, p = _u16_field(body, ss + 2, se, "user identity")
            p += primary_len
            secondary_len, p = _u16_field(body, p, se, "user identity")
            if p + secondary_len != se:
                raise AcseError("user identity sub-item length mismatch")
        # 0x59 (user identity AC: server response) and unknown sub-items: skipped (PS3.8
        # 9.3: an item or sub-item of unknown type is ignored, not an error)
    if error and not partial:
        raise AcseError(error)
    return UserInformation(
        role_selections=tuple(roles), extended_negotiation_sop_classes=tuple(ext_neg), **fields
    )


def _check_common_extended(body: bytes, ss: int, se: int) -> None:
    # SOP class UID, service class UID, related general SOP class list: three u16-length
    # fields; validated only (nothing in it is a metric or log field today).
    p = ss
    for what in ("SOP class", "service class", "related SOP classes"):
        length, p = _u16_field(body, p, se, f"common extended negotiation {what}")
        p += length
        if p > se:
            raise AcseError("common extended negotiation overruns its sub-item")


def decode_associate(body: bytes, pdu_type: int) -> Associate:
    """Decode an A-ASSOCIATE-RQ (pdu_type 1) or -AC (2) body (AssociateDecoder memoises it)."""
    return _decode_associate(body, pdu_type)


def decode_associate_prefix(body: bytes, pdu_type: int) -> Associate:
    """Decode the start of an A-ASSOCIATE-RQ/AC cut short by the capture: the fixed
    fields and every item that ended before the cut (never memoised: rare)."""
    return _decode_associate(body, pdu_type, partial=True)


def _decode_associate(body: bytes, pdu_type: int, partial: bool = False) -> Associate:
    if len(body) < FIXED_ASSOCIATE_LENGTH:
        raise AcseError("A-ASSOCIATE body shorter than its fixed fields")
    version = _U16.unpack_from(body, 0)[0]
    called = _text(body[4:20])
    calling = _text(body[20:36])
    app_context = ""
    contexts: list[PresentationContext] = []
    user_info = UserInformation()
    user_info_seen = False
    problems: list[tuple[str, str]] = []
    pc_type = 0x20 if pdu_type == A_ASSOCIATE_RQ else 0x21
    items, error = _items(body, FIXED_ASSOCIATE_LENGTH, len(body))
    for item_type, vs, ve in items:
        if item_type == 0x10:
            app_context = _text(body[vs:ve])
        elif item_type == pc_type:
            contexts.append(_presentation_context(body, item_type, vs, ve, problems))
        elif item_type == 0x50:
            user_info = _user_information(body, vs, ve)
            user_info_seen = True
        # any other item is skipped (PS3.8 9.3: unknown items are ignored, not an error)
    if error and not partial:
        raise AcseError(error)
    if error:
        # Cut short (snaplen, a lost segment, an RQ over the buffering cap): the User
        # Information item is last, and its first sub-items (Maximum Length, Implementation
        # Class UID and Version Name) come before a large User Identity: keep what arrived.
        pos = items[-1][2] if items else FIXED_ASSOCIATE_LENGTH
        if body[pos] == 0x50 and len(body) >= pos + 4:
            user_info = _user_information(body, pos + 4, len(body), partial=True)
    elif not partial:  # a cut PDU lacks what the cut took: no verdict on the whole
        problems.extend(
            associate_violations(
                pdu_type == A_ASSOCIATE_RQ,
                body[4:20],
                body[20:36],
                contexts,
                user_info if user_info_seen else None,
            )
        )
    return Associate(
        version, called, calling, app_context, tuple(contexts), user_info, tuple(problems)
    )


def merge_contexts(
    proposed: tuple[PresentationContext, ...], answered: tuple[PresentationContext, ...]
) -> tuple[PresentationContext, ...]:
    """AC answers merged with the RQ proposal: abstract syntax + proposals from the RQ."""
    return _merge_contexts(proposed, answered)


def _merge_contexts(
    proposed: tuple[PresentationContext, ...], answered: tuple[PresentationContext, ...]
) -> tuple[PresentationContext, ...]:
    by_id = {}
    for pc in proposed:
        by_id[pc.context_id] = pc
    merged = []
    append = merged.append
    for ac in answered:
        rq = by_id.get(ac.context_id)
        if rq is None:
            append(
                PresentationContext(ac.context_id, "", (), ac.result, ac.accepted_transfer_syntax)
            )
        else:
            append(
                PresentationContext(
                    ac.context_id,
                    rq.abstract_syntax,
                    rq.transfer_syntaxes,
                    ac.result,
                    ac.accepted_transfer_syntax,
                )
            )
    return tuple(merged)


# A-ASSOCIATE-RJ (PS3.8 table 9-21)
REJECT_RESULTS = {1: "permanent", 2: "transient"}
REJECT_SOURCES = {
    1: "service-user",
    2: "service-provider-acse",
    3: "service-provider-presentation",
}
REJECT_REASONS = {
    1: {
        1: "no-reason-given",
        2: "application-context-name-not-supported",
        3: "calling-ae-not-recognized",
        7: "called-ae-not-recognized",
    },
    2: {1: "no-reason-given", 2: "protocol-version-not-supported"},
    3: {1: "temporary-congestion", 2: "local-limit-exceeded"},
}

# A-ABORT (PS3.8 table 9-26)
ABORT_SOURCES = {0: "service-user", 2: "service-provider"}
ABORT_REASONS = {
    0: "not-specified",
    1: "unrecognized-pdu",
    2: "unexpected-pdu",
    4: "unrecognized-pdu-parameter",
    5: "unexpected-pdu-parameter",
    6: "invalid-pdu-parameter-value",
}


def decode_reject(body: bytes) -> tuple[int, int, int, str, str, str]:
    """(result, source, reason codes, and their labels) of an A-ASSOCIATE-RJ body."""
    if len(body) != 4:
        raise AcseError("A-ASSOCIATE-RJ body is not 4 bytes")
    result, source, reason = body[1], body[2], body[3]
    return (
        result,
        source,
        reason,
        REJECT_RESULTS.get(result, "reserved"),
        REJECT_SOURCES.get(source, "reserved"),
        REJECT_REASONS.get(source, {}).get(reason, "reserved"),
    )


def decode_abort(body: bytes) -> tuple[int, int, str, str]:
    """(source, reason codes, and their labels) of an A-ABORT body."""
    if len(body) != 4:
        raise AcseError("A-ABORT body is not 4 bytes")
    source, reason = body[2], body[3]
    # With source 0 (service-user) the reason field "shall not be significant" (PS3.8
    # 9.3.8): report it as not-specified so odd fillers do not make new label values.
    label = "not-specified" if source == 0 else ABORT_REASONS.get(reason, "reserved")
    return source, reason, ABORT_SOURCES.get(source, "reserved"), label


def check_release(body: bytes) -> None:
    if len(body) != 4:
        raise AcseError("A-RELEASE body is not 4 bytes")


class AssociateDecoder:
    """``decode_associate`` and ``merge_contexts`` with a bounded memo, shared across
    connections (one per pipeline; each conversation makes its own if given none).

    A modality sends a byte-identical RQ on every association and the SCP answers with the
    same AC, so in a busy capture almost every association PDU is one already decoded. The
    results are frozen (tuples of frozen dataclasses), so handing the same object to many
    conversations is safe, and decoding is a pure function of (body, pdu_type): the memo
    changes no result, only the cost. It is bounded by entries and by the bytes of the keys
    it holds; when either bound is reached it is simply emptied. Malformed bodies raise and
    are never stored. An instance rather than module globals: the core keeps no global
    state (DESIGN §1), and a pipeline's memo dies with it. It also carries the pipeline's
    other shared memos: ``negotiations`` (conformance.py), ``commands`` and
    ``command_shapes`` (the decoded command sets, transactions.py).
    """

    __slots__ = (
        "_assoc_memo",
        "_assoc_memo_bytes",
        "_merge_memo",
        "negotiations",
        "commands",
        "command_shapes",
    )

    MAX_ENTRIES = 512
    MAX_BYTES = 4 * 1024 * 1024

    def __init__(self) -> None:
        self._assoc_memo: dict[tuple[int, bytes], Associate] = {}
        self._assoc_memo_bytes = 0
        # merge_contexts memo keyed by the identity of the two tuples: with decode memoised,
        # the RQ proposal and the AC answer of a repeated association are the very same
        # tuple objects, so an identity check finds them without hashing every context.
        # The entry keeps both tuples alive, so their ids cannot be reused while it exists.
        self._merge_memo: dict[tuple[int, int], tuple] = {}
        # conformance.negotiation's memo (what each distinct RQ/AC pair settled), kept
        # here so it is shared and dies with the decode memo it keys on
        self.negotiations: dict[tuple[int, int, int], tuple] = {}
        # DimseTransactions' memo of decoded command sets (transactions.py), shared the same way
        self.commands: dict[bytes, object] = {}
        self.command_shapes: dict[bytes, object] = {}  # ... and by their shape (dimse.py)

    def decode_associate(self, body: bytes, pdu_type: int) -> Associate:
        """``decode_associate(body, pdu_type)``, memoised."""
        if type(body) is not bytes:  # bytearray/memoryview: unhashable or mutable, no memo
            return _decode_associate(body, pdu_type)
        key = (pdu_type, body)
        memo = self._assoc_memo
        result = memo.get(key)
        if result is None:
            result = _decode_associate(body, pdu_type)
            if len(memo) >= self.MAX_ENTRIES or self._assoc_memo_bytes + len(body) > self.MAX_BYTES:
                memo.clear()
                self._assoc_memo_bytes = 0
            memo[key] = result
            self._assoc_memo_bytes += len(body)
        return result

    def merge_contexts(
        self, proposed: tuple[PresentationContext, ...], answered: tuple[PresentationContext, ...]
    ) -> tuple[PresentationContext, ...]:
        """``merge_contexts(proposed, answered)``, memoised."""
        key = (id(proposed), id(answered))
        memo = self._merge_memo
        entry = memo.get(key)
        if entry is not None and entry[0] is proposed and entry[1] is answered:
            return entry[2]
        merged = _merge_contexts(proposed, answered)
        if len(memo) >= self.MAX_ENTRIES:
            memo.clear()
        memo[key] = (proposed, answered, merged)
        return merged

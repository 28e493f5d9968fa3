"""The registered kinds of protocol problem: one table, the way Wireshark registers expert infos.

Every ``ProtocolError`` takes its ``kind`` from a constant registered here, whoever makes
it (the framer, the conversation, the stream glue; the sinks' ``resync`` for a
``Resynchronised`` event), so a kind is spelled once and documented once. The names are
the label values of ``dicom_protocol_errors_total{kind}``: part of the metric contract
(DESIGN §4), never renamed.

A registry is a table filled once, when this module is imported, and never changed after:
a constant, not the mutable global state DESIGN §1 rules out of the core.

The conformance registry (DESIGN §4b, at the end) is written the same way, with the two
fields protocol errors leave empty, e.g.::

    PROTOCOL_VIOLATIONS = ProblemRegistry("dicom_protocol_violations_total")
    EVEN_PRESENTATION_CONTEXT_ID = PROTOCOL_VIOLATIONS.register(
        "even-presentation-context-id", WARNING, "a presentation context ID that is even",
        reference="PS3.8 9.3.2.2", advice="presentation context IDs shall be odd (1-255)")
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

# Severities, as Wireshark's PI_ERROR / PI_WARN / PI_NOTE: error = bytes that cannot be
# parsed as DICOM; warning = parsed, but a record was given up or a bound was hit; note = a
# fact about the capture rather than about the peers.
ERROR = "error"
WARNING = "warning"
NOTE = "note"


@dataclass(frozen=True, slots=True)
class ProblemKind:
    """One registered kind of problem."""

    name: str  # the metric label value: dash-case, stable
    severity: str  # ERROR | WARNING | NOTE
    meaning: str  # one line, for the administrator
    reference: str = ""  # the PS3.7/PS3.8 rule broken ("" for bytes that do not parse)
    advice: str = ""  # what to tell the vendor ("" when there is nothing to tell)


class ProblemRegistry:
    """Kinds of one metric family, each registered once, in the order registered."""

    def __init__(self, metric: str) -> None:
        self.metric = metric  # the metric family whose ``kind`` label these are
        self._kinds: dict[str, ProblemKind] = {}

    def register(
        self, name: str, severity: str, meaning: str, *, reference: str = "", advice: str = ""
    ) -> str:
        """Add a kind; returns ``name``, so a module constant can hold it."""
        if name in self._kinds:
            raise ValueError(f"{self.metric}: kind {name!r} registered twice")
        if severity not in (ERROR, WARNING, NOTE):
            raise ValueError(f"{self.metric}: kind {name!r}: unknown severity {severity!r}")
        self._kinds[name] = ProblemKind(name, severity, meaning, reference, advice)
        return name

    def __getitem__(self, name: str) -> ProblemKind:
        return self._kinds[name]

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[ProblemKind]:
        return iter(self._kinds.values())

    def __len__(self) -> int:
        return len(self._kinds)


PROTOCOL_ERRORS = ProblemRegistry("dicom_protocol_errors_total")
_register = PROTOCOL_ERRORS.register

# -- framing (pdu.py) -----------------------------------------------------------------------
BAD_PDU_TYPE = _register(
    "bad-pdu-type", ERROR, "a PDU header whose type is not one of PS3.8's seven (0x01-0x07)"
)
BAD_PDU_LENGTH = _register(
    "bad-pdu-length",
    ERROR,
    "a PDU length that cannot be right: a P-DATA-TF too short for one PDV, or an "
    "association PDU longer than dicom.max_association_pdu_bytes",
)
BAD_PDV_LENGTH = _register(
    "bad-pdv-length", ERROR, "a PDV item length that does not fit in its P-DATA-TF"
)
COMMAND_TOO_LARGE = _register(
    "command-too-large",
    WARNING,
    "a command set longer than dicom.max_command_bytes: not decoded, its message is lost",
)

# -- association and DIMSE (conversation.py, messages.py) ---------------------------------
BAD_PDU = _register("bad-pdu", ERROR, "a malformed A-ASSOCIATE-RQ/AC/RJ, A-RELEASE or A-ABORT body")
BAD_COMMAND_SET = _register(
    "bad-command-set",
    ERROR,
    "a command set that cannot be decoded, or lacks the MessageID / Status a DIMSE message needs",
)
DUPLICATE_MESSAGE_ID = _register(
    "duplicate-message-id",
    WARNING,
    "a request reusing the Message ID of a request still open on the same context",
)
TOO_MANY_PENDING = _register(
    "too-many-pending",
    WARNING,
    "more open requests than transactions.max_pending_per_association: not tracked",
)
PARSER_EXCEPTION = _register(
    "parser-exception",
    ERROR,
    "input the parser did not foresee (a bug to report): that direction resynchronised",
)

# -- capture quality ------------------------------------------------------------------------
ONE_DIRECTION_ONLY = _register(
    "one-direction-only",
    NOTE,
    "only one direction of the connection was seen: the mirror port likely copies one way",
)
RESYNC = _register(
    "resync",
    NOTE,
    "PDU alignment was lost (a capture gap or a midstream start) and found again",
)

# -- conformance (DESIGN §4b): PDUs that parse but break a rule of PS3.8/PS3.7 --------------
# The label values of dicom_protocol_violations_total{kind,sender}; the checks are in
# pdu.py (every PDU/PDV header, O(1)) and conformance.py (association state, DIMSE).
PROTOCOL_VIOLATIONS = ProblemRegistry("dicom_protocol_violations_total")
_violation = PROTOCOL_VIOLATIONS.register

MAX_PDU_LENGTH_EXCEEDED = _violation(
    "max-pdu-length-exceeded",
    ERROR,
    "a P-DATA-TF longer than the Maximum Length the receiver announced",
    reference="PS3.8 D.1",
    advice="P-DATA-TF PDUs shall not exceed the Maximum Length the peer announced in its "
    "A-ASSOCIATE-RQ/AC (0 = unlimited); the receiver may abort the association",
)
PDV_ON_UNACCEPTED_CONTEXT = _violation(
    "pdv-on-unaccepted-context",
    ERROR,
    "a PDV on a presentation context that was not proposed or not accepted",
    reference="PS3.8 9.3.5.1",
    advice="PDVs shall only use presentation context IDs the A-ASSOCIATE-AC accepted",
)
EVEN_PRESENTATION_CONTEXT_ID = _violation(
    "even-presentation-context-id",
    ERROR,
    "a presentation context ID that is even",
    reference="PS3.8 9.3.2.2",
    advice="presentation context IDs shall be odd integers between 1 and 255",
)
ODD_PDV_LENGTH = _violation(
    "odd-pdv-length",
    WARNING,
    "a PDV item whose length is odd",
    reference="PS3.8 E.1",
    advice="a PDV's fragment shall have an even length (command and data set fragments are "
    "made of whole, even-length elements)",
)
PDV_RESERVED_BITS = _violation(
    "pdv-reserved-bits",
    WARNING,
    "a PDV message control header with bits 2-7 set",
    reference="PS3.8 E.2",
    advice="bits 2-7 of the message control header shall be sent as 0",
)
FRAGMENTS_INTERLEAVED = _violation(
    "fragments-interleaved",
    ERROR,
    "a command fragment of another message before the last fragment of the current one",
    reference="PS3.8 E.1",
    advice="the fragments of one message shall not be interleaved with those of another; "
    "the interrupted message is lost",
)
ASYNC_WINDOW_EXCEEDED = _violation(
    "async-window-exceeded",
    WARNING,
    "more outstanding requests than the negotiated Asynchronous Operations Window",
    reference="PS3.7 D.3.3.3",
    advice="without an Asynchronous Operations Window negotiated, only one request may be "
    "outstanding at a time",
)
SOP_CLASS_CONTEXT_MISMATCH = _violation(
    "sop-class-context-mismatch",
    WARNING,
    "a request whose Affected/Requested SOP Class UID differs from its context's abstract syntax",
    reference="PS3.7 9.1.1",
    advice="send each request on a presentation context negotiated for its SOP class",
)
RESPONSE_TO_UNKNOWN_REQUEST = _violation(
    "response-to-unknown-request",
    ERROR,
    "a response whose Message ID Being Responded To matches no open request",
    reference="PS3.7 9.3",
    advice="a response shall answer an outstanding request: its Message ID Being Responded "
    "To is that request's Message ID",
)
RESPONSE_ON_OTHER_CONTEXT = _violation(
    "response-on-other-context",
    ERROR,
    "a response on a different presentation context than its request",
    reference="PS3.7 9.3",
    advice="a response shall be sent on the presentation context of its request",
)
PDATA_OUTSIDE_ASSOCIATION = _violation(
    "pdata-outside-association",
    ERROR,
    "P-DATA before the A-ASSOCIATE-AC, after an A-ASSOCIATE-RJ or after the A-RELEASE-RP",
    reference="PS3.8 9.2 (state machine)",
    advice="P-DATA-TF PDUs may only be sent on an established association (after the "
    "A-ASSOCIATE-AC, before the A-RELEASE-RP)",
)
CONTEXT_ANSWER_MISMATCH = _violation(
    "context-answer-mismatch",
    ERROR,
    "the A-ASSOCIATE-AC answers a context that was not proposed, omits one, or accepts a "
    "transfer syntax that was not proposed",
    reference="PS3.8 9.3.3.2",
    advice="the A-ASSOCIATE-AC shall answer each proposed context once, accepting one of "
    "the transfer syntaxes proposed for it",
)
MALFORMED_CONTEXT_PROPOSAL = _violation(
    "malformed-context-proposal",
    ERROR,
    "a proposed context with zero or several abstract syntaxes, no transfer syntax, or a "
    "duplicate ID",
    reference="PS3.8 9.3.2.2",
    advice="each proposed presentation context has a unique odd ID, exactly one abstract "
    "syntax and at least one transfer syntax",
)
MISSING_USER_INFORMATION = _violation(
    "missing-user-information",
    ERROR,
    "an A-ASSOCIATE-RQ or -AC without Maximum Length or Implementation Class UID",
    reference="PS3.7 D.3.3.1, D.3.3.2",
    advice="the User Information item shall carry the Maximum Length and the "
    "Implementation Class UID sub-items",
)
INVALID_AE_TITLE = _violation(
    "invalid-ae-title",
    WARNING,
    "an AE title that is all spaces or has characters outside the default repertoire",
    reference="PS3.8 9.3.2, PS3.5 6.2 (AE)",
    advice="AE titles are 1-16 characters of the default character repertoire, not all "
    "spaces, without backslash or control characters",
)
ROLE_NOT_NEGOTIATED = _violation(
    "role-not-negotiated",
    ERROR,
    "an operation in a role the association did not negotiate",
    reference="PS3.7 D.3.3.4",
    advice="an acceptor may only invoke operations on the requestor (e.g. C-STORE for a "
    "C-GET) when SCU/SCP Role Selection gave it the SCP role for that SOP class",
)
NONSTANDARD_STATUS = _violation(
    "nonstandard-status",
    WARNING,
    "a status code outside PS3.7 Annex C for the service, or pending where there is none",
    reference="PS3.7 Annex C",
    advice="use the status codes PS3.7 Annex C and PS3.4 define for the service",
)
DATASET_ENCODING_MISMATCH = _violation(
    "dataset-encoding-mismatch",
    ERROR,
    "a data set whose first element header does not match the accepted transfer syntax",
    reference="PS3.5 7.1, PS3.8 9.3.3.2",
    advice="encode data sets in the transfer syntax accepted for their presentation context",
)

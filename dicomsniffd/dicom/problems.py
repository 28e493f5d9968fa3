"""The registered kinds of protocol problem: one table, the way Wireshark registers expert infos.

Every ``ProtocolError`` takes its ``kind`` from a constant registered here, whoever makes
it (the framer, the conversation, the stream glue; the sinks' ``resync`` for a
``Resynchronised`` event), so a kind is spelled once and documented once. The names are
the label values of ``dicom_protocol_errors_total{kind}``: part of the metric contract
(DESIGN §4), never renamed.

A registry is a table filled once, when this module is imported, and never changed after:
a constant, not the mutable global state DESIGN §1 rules out of the core.

The next registry (DESIGN §4b) is written the same way, with the two fields protocol
errors leave empty::

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

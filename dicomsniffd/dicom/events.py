"""Events emitted by the sans-IO DICOM core (one per protocol fact, never per packet).

Every timestamp is a capture timestamp in seconds (float, epoch); durations are seconds.
``sender`` is always ``"requestor"`` (association requestor, the SCU that sent
A-ASSOCIATE-RQ) or ``"acceptor"``. None of these events carries dataset content: the core
never decodes datasets, so nothing here can hold patient data.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields

REQUESTOR = "requestor"
ACCEPTOR = "acceptor"


@dataclass(frozen=True, slots=True)
class PresentationContext:
    """One presentation context as proposed (RQ) or answered (AC).

    In an AssociationAccepted event, ``transfer_syntaxes`` holds what the requestor proposed,
    ``result`` the acceptor's answer (0 acceptance, 1 user-rejection, 2 no-reason,
    3 abstract-syntax-not-supported, 4 transfer-syntaxes-not-supported) and
    ``accepted_transfer_syntax`` the one chosen ("" unless result == 0).
    """

    context_id: int
    abstract_syntax: str  # UID ("" when unknown, e.g. AC seen without its RQ)
    transfer_syntaxes: tuple[str, ...]
    result: int | None = None
    accepted_transfer_syntax: str = ""


@dataclass(frozen=True, slots=True)
class RoleSelection:
    sop_class_uid: str
    scu_role: int
    scp_role: int


@dataclass(frozen=True, slots=True)
class UserInformation:
    max_pdu_length: int | None = None
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    async_ops_invoked: int | None = None
    async_ops_performed: int | None = None
    role_selections: tuple[RoleSelection, ...] = ()
    extended_negotiation_sop_classes: tuple[str, ...] = ()
    # User Identity (sub-item 0x58): only the type and whether a response was requested.
    # The primary field (username) and the secondary field (passcode) are never kept.
    user_identity_type: int | None = None
    user_identity_positive_response_requested: bool = False


@dataclass(frozen=True, slots=True)
class AssociationRequested:
    ts: float
    calling_ae: str  # trimmed
    called_ae: str  # trimmed
    application_context: str
    presentation_contexts: tuple[PresentationContext, ...]
    user_info: UserInformation


@dataclass(frozen=True, slots=True)
class AssociationAccepted:
    ts: float
    setup_seconds: float | None  # A-ASSOCIATE-RQ -> AC; None when the RQ was not seen
    calling_ae: str
    called_ae: str
    presentation_contexts: tuple[PresentationContext, ...]  # merged RQ proposal + AC answer
    user_info: UserInformation  # the acceptor's


@dataclass(frozen=True, slots=True)
class AssociationRejected:
    ts: float
    setup_seconds: float | None
    result: str  # "permanent" | "transient"
    source: str  # "service-user" | "service-provider-acse" | "service-provider-presentation"
    reason: str  # e.g. "called-ae-not-recognized", "no-reason-given"
    result_code: int
    source_code: int
    reason_code: int


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    ts: float
    sender: str


@dataclass(frozen=True, slots=True)
class ReleaseReplied:
    ts: float
    sender: str


@dataclass(frozen=True, slots=True)
class Aborted:
    ts: float
    sender: str
    source: str  # "service-user" | "service-provider" | "reserved"
    reason: str  # e.g. "not-specified", "unexpected-pdu", "unrecognized-pdu-parameter"
    source_code: int
    reason_code: int


@dataclass(frozen=True, slots=True)
class AssociationEnded:
    """The association (or what was seen of it) is over.

    how: "released" | "aborted" | "reset" | "closed" | "timeout" | "capture-ended" (still
    open when the capture or the daemon stopped).
    """

    ts: float
    how: str
    duration_seconds: float | None  # A-ASSOCIATE-RQ -> end; None when RQ not seen
    # the association's stalls inside transfers: (sender, cause, count, seconds), sorted
    stalls: tuple[tuple[str, str, int, float], ...] = ()
    # messages whose command set and data set started in one P-DATA-TF, per sender
    # ((sender, count), only senders that did it): legal, an interoperability hint
    command_with_dataset: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class DimseRequestSeen:
    """A complete DIMSE request command set was decoded (counted when seen)."""

    ts: float  # first packet of the request command
    sender: str
    command: str  # "C-STORE", "C-FIND", ..., "N-DELETE", "C-CANCEL"
    sop_class_uid: str  # Affected/Requested SOP Class UID ("" if absent)
    context_id: int
    message_id: int


@dataclass(frozen=True, slots=True)
class DimseResponseSeen:
    """A DIMSE response command set was decoded (every response, pending ones included)."""

    ts: float
    sender: str
    command: str  # e.g. "C-STORE" (the service, not "C-STORE-RSP")
    status: int
    status_class: str  # "success" | "warning" | "failure" | "cancel" | "pending"
    context_id: int
    message_id_being_responded_to: int


@dataclass(frozen=True, slots=True)
class DimseTransaction:
    """A request and its final response, with the timings of DESIGN §3.

    Emitted when the final (non-pending) response completes, or when the request is given
    up (association ended / transaction timeout) with ``status=None`` and ``outcome`` telling
    why. Timings are None when a needed instant was not seen.
    """

    command: str
    sop_class_uid: str
    context_id: int
    message_id: int
    status: int | None
    status_class: str  # as DimseResponseSeen, or "unanswered", or "in-flight"
    # "answered" | "unanswered-ended" | "unanswered-timeout" | "in-flight-at-capture-end"
    # (still open when the capture or the daemon stopped: not answered yet, nobody's fault)
    outcome: str
    request_ts: float  # first packet of the request command
    request_complete_ts: float | None
    response_ts: float | None  # first packet of the (first) response
    response_complete_ts: float | None  # packet completing the final response
    request_transfer_seconds: float | None
    response_latency_seconds: float | None
    duration_seconds: float | None
    request_dataset_bytes: int  # bytes of dataset PDV data (never the data itself)
    response_dataset_bytes: int
    pending_responses: int
    complete: bool  # False if a capture gap hit this transaction's messages
    affected_sop_instance_uid: str = ""  # only filled when the core is told to keep UIDs
    error_comment: str = ""
    move_destination: str = ""  # AE title, C-MOVE only
    suboperations_remaining: int | None = None
    suboperations_completed: int | None = None
    suboperations_failed: int | None = None
    suboperations_warning: int | None = None
    # Stalls inside this transaction's request and response transfers (DESIGN §3):
    # (sender, cause, count, seconds), sorted; stall_seconds is their sum.
    stall_seconds: float = 0.0
    stalls: tuple[tuple[str, str, int, float], ...] = ()
    # DESIGN §3's fourth phase: first packet of the final response -> packet completing it
    # (a split response waiting for an ACK shows here). Single-response services:
    # duration = request_transfer + response_latency + response_transfer.
    final_response_ts: float | None = None
    response_transfer_seconds: float | None = None
    # who sent the request (DESIGN §3: roles follow the message): "acceptor" for the
    # sub-operation C-STOREs of a C-GET, whose transfer is a download
    request_sender: str = ""


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """Something that is not valid DICOM UL/DIMSE, or a capture fact of the same weight.

    ``kind`` is one of the names registered in problems.PROTOCOL_ERRORS (e.g.
    "bad-pdu-type", "bad-command-set", "one-direction-only"), where each is explained.
    """

    ts: float
    sender: str  # "" when no direction is to blame (an exception at close or expire)
    kind: str
    detail: str = ""  # never contains dataset bytes


@dataclass(frozen=True, slots=True)
class Resynchronised:
    """The framer lost PDU alignment (gap or midstream start) and found it again."""

    ts: float
    sender: str
    skipped_bytes: int


@dataclass(frozen=True, slots=True)
class Stalled:
    """A gap in one direction's data inside a request or response transfer (DESIGN §3),
    longer than max(10 ms, 3 × handshake RTT); ``ts`` is when the data resumed.

    cause: "delayed-ack" | "zero-window" | "loss-recovery" | "sender-idle".
    """

    ts: float
    sender: str  # the side whose data stalled
    cause: str
    seconds: float


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """A PDU or DIMSE message that parses but breaks a rule of PS3.8/PS3.7 (DESIGN §4b).

    ``kind`` is one of the names registered in problems.PROTOCOL_VIOLATIONS (its standard
    reference and the advice for the vendor are there); ``sender`` the side that broke it.
    """

    ts: float
    sender: str
    kind: str
    detail: str = ""  # what was seen (context id, lengths, UIDs); never dataset bytes
    # the sender's software, from its A-ASSOCIATE-RQ/AC ("" when that was not seen)
    implementation_class_uid: str = ""
    implementation_version_name: str = ""


Event = (
    AssociationRequested
    | AssociationAccepted
    | AssociationRejected
    | ReleaseRequested
    | ReleaseReplied
    | Aborted
    | AssociationEnded
    | DimseRequestSeen
    | DimseResponseSeen
    | DimseTransaction
    | ProtocolError
    | Resynchronised
    | Stalled
    | ProtocolViolation
)


def _slot_setting_init(cls: type) -> None:
    """Give the frozen dataclass ``cls`` an ``__init__`` with the same signature that sets
    each slot through the slot's own descriptor instead of ``object.__setattr__`` by name
    (what dataclasses generates for frozen classes): the same object, built ~40 % faster.
    Events are made per message and per association (a DimseTransaction has 31 fields):
    on short associations their construction was ~4 % of the packet loop (py-spy)."""
    params, body, namespace = [], [], {}
    for f in fields(cls):
        assert f.default_factory is MISSING  # none here: defaults are shared constants
        namespace[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is MISSING:
            params.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(source, namespace)  # noqa: S102 - generated from the field names, like dataclasses
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[misc]


# The events made for every association or message, with the most fields (each generated
# __init__ costs ~0.1 ms of start-up to compile; the rare events and the memoised
# negotiation records would not earn it back on a short capture).
for _cls in (
    AssociationRequested,
    AssociationAccepted,
    AssociationEnded,
    DimseRequestSeen,
    DimseResponseSeen,
    DimseTransaction,
):
    _slot_setting_init(_cls)

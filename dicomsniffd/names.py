"""Names shared by the sinks: UID keywords, status text, presentation context results.

Metric label keywords come from the core's ``dicomsniffd.dicom.uids.uid_name`` so the
labels follow one rule everywhere; human-readable names (event log, summary) come from
pydicom's UID dictionary, read without importing pydicom (``dicomsniffd.dicom.uid_dictionary``
says why), with the answers of pydicom's ``UID.keyword/.name/.type``. Lookups are cached
because the same handful of SOP classes and transfer syntaxes repeat on every association;
the caches are bounded because the UIDs come off the network and a hostile or broken peer
could send arbitrarily many.
"""

from __future__ import annotations

from functools import lru_cache

from dicomsniffd.dicom.uid_dictionary import UID_DICTIONARY
from dicomsniffd.dicom.uids import uid_name as _label_keyword

# PS3.8 Table 9-18: result/reason of a presentation context in an A-ASSOCIATE-AC.
CONTEXT_RESULTS = {
    0: "acceptance",
    1: "user-rejection",
    2: "no-reason",
    3: "abstract-syntax-not-supported",
    4: "transfer-syntaxes-not-supported",
}


@lru_cache(maxsize=4096)
def _uid_entry(uid: str) -> tuple[str, str, str]:
    """(keyword, human name, type) from the dictionary; ("", uid, "") when unknown.

    As ``pydicom.uid.UID(uid)``: surrounding whitespace stripped first, an unknown UID's
    name is the UID itself (tests/test_uid_dictionary.py compares every entry)."""
    uid = uid.strip()
    entry = UID_DICTIONARY.get(uid)
    if entry is None:
        return "", uid, ""
    return entry[4], entry[0], entry[1]


def uid_display_name(uid: str) -> str:
    """Human-readable name (``CT Image Storage``); the UID itself when unknown."""
    return _uid_entry(uid.strip(" \x00"))[1] if uid else ""


def sop_class_keyword(uid: str) -> str:
    """Label value of a SOP class: its keyword, ``private`` (vendor root) or ``unknown``
    (the rule of ``dicomsniffd.dicom.uids.uid_name``)."""
    return _label_keyword(uid)


def transfer_syntax_keyword(uid: str) -> str:
    """Label value of an accepted transfer syntax ("" for none). A dictionary UID that is
    not a transfer syntax maps to ``unknown``, so a broken peer cannot put SOP class
    keywords into this label."""
    if not uid:
        return ""
    kind = _uid_entry(uid.strip(" \x00"))[2]
    return _label_keyword(uid) if kind in ("", "Transfer Syntax") else "unknown"


def context_result(result: int | None) -> str:
    if result is None:
        return "unknown"
    return CONTEXT_RESULTS.get(result, "unknown")


# status -> its status_hex text: asked for every response by several sinks, and a network
# has a handful of statuses (16-bit values: at most 65,536 entries)
_STATUS_HEX: dict[int, str] = {}


def status_hex(status: int | None) -> str:
    """``0xA700`` style (upper-case, 4 digits); "" when there was no response."""
    if status is None:
        return ""
    text = _STATUS_HEX.get(status)
    if text is None:
        text = f"0x{status:04X}"
        if 0 <= status <= 0xFFFF:
            _STATUS_HEX[status] = text
    return text


def is_out_of_resources(status: int | None) -> bool:
    """0xA7xx: "Refused: Out of Resources" in every service class."""
    return status is not None and 0xA700 <= status <= 0xA7FF


# Plain-words meaning of the status codes a PACS administrator meets (PS3.7 Annex C and
# the service class annexes of PS3.4). Ranges are matched after exact codes.
_STATUS_TEXT = {
    0x0000: "Success",
    0x0001: "Warning: requested optional attributes not supported",
    0x0105: "Failure: no such attribute",
    0x0106: "Failure: invalid attribute value",
    0x0107: "Warning: attribute list error",
    0x0110: "Failure: processing failure",
    0x0111: "Failure: duplicate SOP instance",
    0x0112: "Failure: no such object instance",
    0x0113: "Failure: no such event type",
    0x0114: "Failure: no such argument",
    0x0115: "Failure: invalid argument value",
    0x0116: "Warning: attribute value out of range",
    0x0117: "Failure: invalid object instance",
    0x0118: "Failure: no such SOP class",
    0x0119: "Failure: class-instance conflict",
    0x0120: "Failure: missing attribute",
    0x0121: "Failure: missing attribute value",
    0x0122: "Failure: SOP class not supported",
    0x0123: "Failure: no such action",
    0x0124: "Failure: refused, not authorized",
    0x0210: "Failure: duplicate invocation",
    0x0211: "Failure: unrecognized operation",
    0x0212: "Failure: mistyped argument",
    0x0213: "Failure: resource limitation",
    0xA700: "Refused: out of resources",
    0xA701: "Refused: out of resources, unable to calculate number of matches",
    0xA702: "Refused: out of resources, unable to perform sub-operations",
    0xA801: "Refused: move destination unknown",
    0xA900: "Error: data set does not match SOP class",
    0xB000: "Warning: coercion of data elements / sub-operations completed with failures",
    0xB006: "Warning: elements discarded",
    0xB007: "Warning: data set does not match SOP class",
    0xC000: "Error: cannot understand",
    0xFE00: "Cancel",
    0xFF00: "Pending",
    0xFF01: "Pending: optional keys not supported",
}


def is_standard_status(status: int | None) -> bool:
    """A status of the tables below, or any 0xA7xx (out of resources, in every service)."""
    return status in _STATUS_TEXT or is_out_of_resources(status)


def status_text(status: int | None) -> str:
    if status is None:
        return "no response"
    text = _STATUS_TEXT.get(status)
    if text:
        return text
    if 0xA700 <= status <= 0xA7FF:
        return "Refused: out of resources"
    if 0xA900 <= status <= 0xA9FF:
        return "Error: data set does not match SOP class"
    if 0xC000 <= status <= 0xCFFF:
        return "Error: cannot understand (SCP-specific failure)"
    return "status not in the standard tables (vendor-specific)"


# Their first response comes after the first sub-operation (PS3.4 C.4.2/C.4.3), so the
# request -> first response latency is not the SCP's service time.
NO_SERVICE_TIME = frozenset({"C-MOVE", "C-GET"})

# Roles follow the message (DESIGN §3): a C-STORE the acceptor sends is a C-GET
# sub-operation, acceptor -> requestor. The summary keeps it apart from the uploads under
# this name: its transfer is a download, its service time the requestor's.
GET_SUBOPERATION_STORE = "C-STORE (get)"
REVERSED_ROLE = frozenset({GET_SUBOPERATION_STORE})  # requests sent by the acceptor


def command_by_role(command: str, request_from_acceptor: bool) -> str:
    """The summary's name of a DIMSE command: ``C-STORE (get)`` for a C-STORE the
    acceptor sent, else the command itself."""
    if request_from_acceptor and command == "C-STORE":
        return GET_SUBOPERATION_STORE
    return command

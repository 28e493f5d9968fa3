"""DIMSE command sets (PS3.7 §9-10, annex E): decoding, command names, status classes.

A command set is always Implicit VR Little Endian and only holds group 0000 elements:
tag group(2) element(2) length(4) value, little endian. Only the elements a monitor needs
are kept; everything else in group 0000 (event/action type ids, attribute lists, move
originator...) is skipped by length. Datasets are never decoded here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

NO_DATASET = 0x0101  # CommandDataSetType value meaning "no dataset follows" (PS3.7 E.1)

COMMAND_NAMES: dict[int, str] = {
    0x0001: "C-STORE",
    0x0010: "C-GET",
    0x0020: "C-FIND",
    0x0021: "C-MOVE",
    0x0030: "C-ECHO",
    0x0100: "N-EVENT-REPORT",
    0x0110: "N-GET",
    0x0120: "N-SET",
    0x0130: "N-ACTION",
    0x0140: "N-CREATE",
    0x0150: "N-DELETE",
    0x0FFF: "C-CANCEL",
}
RESPONSE_BIT = 0x8000
C_CANCEL = 0x0FFF

ERROR_COMMENT_MAX = 64  # ErrorComment is LO: 64 characters at most

_ELEMENT_HEADER = struct.Struct("<HHI")
_UL = struct.Struct("<I")


class CommandSetError(ValueError):
    """The bytes are not a decodable command set; the message says why, never the bytes."""


@dataclass(slots=True)
class Command:
    """The fields of one command set that the monitor uses (absent ones stay None/"").

    Never changed once decoded: one Command may stand for many identical command sets
    (the memo in transactions.py)."""

    command_field: int | None = None
    sop_class_uid: str = ""  # Affected or Requested SOP Class UID
    message_id: int | None = None
    message_id_being_responded_to: int | None = None
    move_destination: str = ""
    priority: int | None = None
    dataset_type: int | None = None
    status: int | None = None
    error_comment: str = ""
    affected_sop_instance_uid: str = ""
    requested_sop_instance_uid: str = ""
    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None

    # Derived from command_field / dataset_type once, by decode_command (the only maker):
    # read several times per message, and a property costs a Python call each time.
    is_response: bool = field(init=False, repr=False, compare=False)
    # service name ("C-STORE" for both -RQ and -RSP); "unknown" for undefined fields
    name: str = field(init=False, repr=False, compare=False)
    # Absent CommandDataSetType is invalid; it counts as no data set, so that the message
    # is not left waiting forever for a fragment that will not come.
    has_dataset: bool = field(init=False, repr=False, compare=False)


def _text(value: bytes) -> str:
    # UI values are NUL padded, AE/LO/ST values space padded. latin-1 never fails, and
    # the values only ever feed bounded labels or the event log.
    return value.decode("latin-1").strip(" \x00")


# element number -> Command attribute, for the US-valued elements
_US_FIELDS = {
    0x0100: "command_field",
    0x0110: "message_id",
    0x0120: "message_id_being_responded_to",
    0x0700: "priority",
    0x0800: "dataset_type",
    0x0900: "status",
    0x1020: "remaining",
    0x1021: "completed",
    0x1022: "failed",
    0x1023: "warning",
}
# ... and the slot setter of each (a descriptor call is cheaper than setattr by name:
# decode_command runs once per DIMSE message, ~6 elements each)
_US_SETTERS = {elem: getattr(Command, attr).__set__ for elem, attr in _US_FIELDS.items()}


# An element header with the US value that follows it when the element is a US one: one
# unpack for both (every US element has its 2 value bytes, so 10 bytes are there).
_ELEMENT_HEADER_US = struct.Struct("<HHIH")
# SOP Class UID value bytes -> text: a network has few SOP classes, each repeated in every
# command of its service (bounded: the values come off the network)
_SOP_CLASS_TEXT: dict[bytes, str] = {}
_SOP_CLASS_TEXT_ENTRIES = 1024
# (0000,0000) UL, length 4: the first element of a command set (PS3.7 E.1)
COMMAND_SET_START = b"\x00\x00\x00\x00\x04\x00\x00\x00"


_INSTANCE_ELEMENTS = {0x1000: 1, 0x1001: 2}  # Affected / Requested SOP Instance UID


def command_shape(data: bytes) -> bytes | None:
    """What ``decode_command(data)`` reads of a command set that names an instance, when
    instance UIDs are not kept: the bytes without the Affected and Requested SOP Instance
    UID elements and without the CommandGroupLength value (its length is still tested),
    none of which is read then. A C-STORE's command sets differ by little else, so they
    can share a memo entry (transactions.py), and no instance UID stays in a memo key.
    None when there is no such element, or the bytes do not walk as well-formed group
    0000 elements (decode_command then says why)."""
    end = len(data)
    if end < 12 or data[:8] != COMMAND_SET_START:
        return None
    unpack = _ELEMENT_HEADER.unpack_from
    pos = 12
    seen = 0
    cuts: list[tuple[int, int]] = []
    while pos < end:
        if end - pos < 8:
            return None
        group, elem, length = unpack(data, pos)
        after = pos + 8 + length
        if group or after > end:
            return None
        if elem == 0x1000 or elem == 0x1001:  # (compares: no call per element)
            bit = _INSTANCE_ELEMENTS[elem]
            if seen & bit:  # twice: no shape, the plain memo
                return None
            seen |= bit
            cuts.append((pos, after))
        pos = after
    if not cuts:
        return None
    if len(cuts) == 1:  # (the usual case: a C-STORE's Affected SOP Instance UID)
        cut, cut_end = cuts[0]
        return data[:8] + data[12:cut] + data[cut_end:]
    parts = [data[:8]]
    start = 12
    for cut, cut_end in cuts:
        parts.append(data[start:cut])
        start = cut_end
    parts.append(data[start:])
    return b"".join(parts)


def decode_command(data: bytes, keep_instance_uids: bool = False) -> Command:
    """Decode an Implicit VR LE group 0000 command set; raise CommandSetError if malformed."""
    cmd = Command()
    pos = 0
    end = len(data)
    unpack_header = _ELEMENT_HEADER.unpack_from
    unpack_header_us = _ELEMENT_HEADER_US.unpack_from
    us_setters = _US_SETTERS
    while pos < end:
        if end - pos >= 10:
            group, elem, length, us = unpack_header_us(data, pos)
        elif end - pos >= 8:
            group, elem, length = unpack_header(data, pos)
        else:
            raise CommandSetError("truncated element header")
        pos += 8
        if group or length > end - pos:  # one test for the two faults, told apart here
            if group:
                raise CommandSetError(f"element ({group:04X},{elem:04X}) outside group 0000")
            raise CommandSetError(f"element (0000,{elem:04X}) length exceeds command set")
        setter = us_setters.get(elem)
        if setter is not None:  # its value came with the header: no slice
            if length != 2:
                raise CommandSetError(f"element (0000,{elem:04X}) has length {length}, expected 2")
            setter(cmd, us)
        elif elem == 0x0000:  # CommandGroupLength, the first element of every command
            if length != 4:
                raise CommandSetError("CommandGroupLength is not 4 bytes")
        elif elem in (0x0002, 0x0003):  # Affected / Requested SOP Class UID
            if not cmd.sop_class_uid:
                value = data[pos : pos + length]
                uid = _SOP_CLASS_TEXT.get(value)
                if uid is None:
                    uid = _text(value)
                    if len(_SOP_CLASS_TEXT) < _SOP_CLASS_TEXT_ENTRIES:
                        _SOP_CLASS_TEXT[value] = uid
                cmd.sop_class_uid = uid
        elif elem == 0x0600:
            cmd.move_destination = _text(data[pos : pos + length])[:16]
        elif elem == 0x0902:
            cmd.error_comment = _text(data[pos : pos + length])[:ERROR_COMMENT_MAX]
        elif elem == 0x1000:
            if keep_instance_uids:
                cmd.affected_sop_instance_uid = _text(data[pos : pos + length])[:64]
        elif elem == 0x1001 and keep_instance_uids:
            cmd.requested_sop_instance_uid = _text(data[pos : pos + length])[:64]
        # anything else in group 0000 is not needed by the monitor: skipped by length
        pos += length
    command_field = cmd.command_field
    if command_field is None:
        raise CommandSetError("no CommandField")
    cmd.is_response = bool(command_field & RESPONSE_BIT)
    cmd.name = COMMAND_NAMES.get(command_field & ~RESPONSE_BIT, "unknown")
    dataset_type = cmd.dataset_type
    cmd.has_dataset = dataset_type is not None and dataset_type != NO_DATASET
    return cmd


# ---------------------------------------------------------------------------------------
# Status classification (PS3.7 annex C, service specific codes in PS3.4).
#
# code range          class     why
# 0x0000              success
# 0xFF00, 0xFF01      pending   only C-FIND, C-GET and C-MOVE have pending responses; for
#                               any other service an FFxx status is not a defined value and
#                               is classed failure (so the transaction still closes)
# 0xFE00              cancel    matching/sub-operations terminated by C-CANCEL
# 0x0001              warning   N-services: requested optional attributes not supported
# 0x0107, 0x0116      warning   attribute list error / attribute value out of range
# 0xB000-0xBFFF       warning   C-STORE: B000 coercion of data elements, B006 elements
#                               discarded, B007 dataset does not match SOP class;
#                               C-MOVE/C-GET: B000 sub-operations complete, one or more
#                               failures or warnings (the move itself completed)
# 0x0100-0x01FF       failure   general failures (0x0110 processing failure, 0x0122
#                               SOP class not supported, ...) except the warnings above
# 0x0200-0x02FF       failure   DIMSE-level: 0x0210 duplicate invocation, 0x0211
#                               unrecognized operation, 0x0212 mistyped argument, 0x0213
#                               resource limitation
# 0xA000-0xAFFF       failure   "refused"/"error" codes of the service classes: A700-A7FF
#                               out of resources, A801 move destination unknown,
#                               A900-A9FF dataset does not match SOP class
# 0xC000-0xCFFF       failure   "cannot understand" / unable to process
# anything else       failure   PS3.7 C.1: an unrecognised status is treated as a failure
# ---------------------------------------------------------------------------------------
_PENDING_CAPABLE = frozenset({0x0010, 0x0020, 0x0021})  # C-GET, C-FIND, C-MOVE


def status_class(command_field: int | None, status: int) -> str:
    """Class of ``status`` for the service of ``command_field`` (request or response)."""
    if status == 0x0000:
        return "success"
    service = (command_field or 0) & ~RESPONSE_BIT
    if status in (0xFF00, 0xFF01):
        return "pending" if service in _PENDING_CAPABLE else "failure"
    if status == 0xFE00:
        return "cancel"
    if status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF:
        return "warning"
    return "failure"

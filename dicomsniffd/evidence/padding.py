"""Each scrubbed data set written as one Data Set Trailing Padding element (FFFC,FFFC),
so that Wireshark's DICOM dissector sees a data set that ends where it ends.

A data set of zeros is not one: it parses as 8-byte empty elements, and when its length
is not a multiple of 8 the last element is left open, which Wireshark carries into the
next PDV of the conversation and so mis-dissects the next command set. One element
header (the tag, ``OB`` in explicit VR, and a length that covers the rest) at the start
of each data set fixes that; the value stays zeros. The transfer syntax of the data set's
presentation context (from the A-ASSOCIATE-AC) says which header encoding to write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dicomsniffd.evidence.walker import PDU_HEADER, DataSetMessage, KeepMap

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
_AC_FIXED = PDU_HEADER + 68
PRESENTATION_CONTEXT_AC, TRANSFER_SYNTAX = 0x21, 0x40


def accepted_syntaxes(associate_ac: bytes | None) -> dict[int, str]:
    """{presentation context id: transfer syntax UID} of the accepted contexts."""
    out: dict[int, str] = {}
    if not associate_ac:
        return out
    at, end = _AC_FIXED, len(associate_ac)
    while at + 4 <= end:
        item_type, length = associate_ac[at], int.from_bytes(associate_ac[at + 2 : at + 4], "big")
        body = associate_ac[at + 4 : at + 4 + length]
        accepted = len(body) >= 8 and body[2] == 0 and body[4] == TRANSFER_SYNTAX
        if item_type == PRESENTATION_CONTEXT_AC and accepted:
            size = int.from_bytes(body[6:8], "big")
            out[body[0]] = body[8 : 8 + size].decode("ascii", "replace").rstrip("\0 ")
        at += 4 + length
    return out


def element_header(syntax: str, length: int) -> bytes:
    """(FFFC,FFFC) with the value length that makes the element ``length`` bytes long;
    b"" when the data set is too short for a header."""
    if syntax == IMPLICIT_LE:
        return b"\xfc\xff\xfc\xff" + (length - 8).to_bytes(4, "little") if length >= 8 else b""
    if length < 12:
        return b""
    if syntax == EXPLICIT_BE:
        return b"\xff\xfc\xff\xfcOB\0\0" + (length - 12).to_bytes(4, "big")
    return b"\xfc\xff\xfc\xffOB\0\0" + (length - 12).to_bytes(4, "little")


def paddings(messages: Iterable[DataSetMessage], syntaxes: Mapping[int, str]) -> KeepMap:
    """The element headers to paint over the scrubbed data sets of one direction."""
    keep = KeepMap()
    for message in messages:
        syntax = syntaxes.get(message.context_id)
        if not message.complete or syntax is None or message.length > 0xFFFFFFFF:
            continue
        header = element_header(syntax, message.length)
        for offset, size in message.head:
            if not header:
                break
            keep.add(offset, header[:size])
            header = header[size:]
    return keep

"""The resync scan of the framer (pdu.PduFramer): where a plausible PDU header starts.

A part of PduFramer kept in its own room (pdu.py holds the framing): used only while the
framer is unsynchronised (a connection's first bytes, or after alignment was lost), to
find the next offset that a PDU header believably starts at. ``_skipped``, ``_at_start``,
``_scan`` and ``max_association_pdu_bytes`` are the framer's own attributes.
"""

from __future__ import annotations

import re
import struct

# The fixed fields of an A-ASSOCIATE-RQ/AC body (PS3.8 9.3.2, 9.3.3): protocol version(2)
# reserved(2) called AE(16) calling AE(16) reserved(32). A shorter body has no AE titles,
# and an RQ made of nothing else has no presentation context: neither is an association.
FIXED_ASSOCIATE_LENGTH = 68
MAX_RESYNC_PDATA_LENGTH = 16 * 1024 * 1024  # a P-DATA header claiming more is not believed
# The longest A-ASSOCIATE-RQ/AC the items allow (16-bit lengths: application context, 128
# presentation contexts, user information). Over max_association_pdu_bytes only that many
# bytes are decoded, the rest skipped: a large User Identity must not cost the association.
MAX_ASSOCIATE_PDU_LENGTH = FIXED_ASSOCIATE_LENGTH + 130 * (4 + 0xFFFF)

_U32 = struct.Struct(">I")
# A PDU type byte (1..7) followed by the reserved byte 0: where a resync scan looks closer.
# Scanning costs ~5 ns/byte (7.5 µs per 1448-byte chunk), but it only ever runs until the
# next PDU header, i.e. over at most one PDU (max PDU length: typically 16-64 KiB).
_CANDIDATE = re.compile(rb"[\x01-\x07]\x00")


class ResyncScan:
    """Mixin of PduFramer: the scan for the next plausible PDU header."""

    __slots__ = ()

    def _find_header(self, buf: bytes) -> int:
        """Offset of the first plausible PDU header in ``buf``, or -1 (tail kept)."""
        if (
            self._at_start
            and not self._skipped
            and len(buf) >= 10
            and 1 <= buf[0] <= 2
            and plausible_associate_header(buf, 0, MAX_ASSOCIATE_PDU_LENGTH, True)
        ):
            # A connection's first bytes are an A-ASSOCIATE-RQ/AC (nearly every one is):
            # what the scan below finds first (_plausible's first-bytes case), without it.
            return 0
        pos = 0
        search = _CANDIDATE.search
        while True:
            m = search(buf, pos)
            if m is None:
                # the last byte may be a type byte whose reserved byte comes next
                keep = 1 if buf and 1 <= buf[-1] <= 7 else 0
                break
            p = m.start()
            verdict = self._plausible(buf, p)
            if verdict:
                self._skipped += p
                return p
            if verdict is None:  # not enough look-ahead yet: decide when more arrives
                keep = len(buf) - p
                break
            pos = p + 1
        self._skipped += len(buf) - keep
        self._scan = bytes(buf[len(buf) - keep :]) if keep else b""
        return -1

    def _plausible(self, buf: bytes, p: int) -> bool | None:
        """Is there a believable PDU header at buf[p]? None: need more bytes to tell."""
        pdu_type = buf[p]
        avail = len(buf) - p
        if pdu_type == 0x04:
            if avail < 12:
                return None
            length = _U32.unpack_from(buf, p + 2)[0]
            pdv_len = _U32.unpack_from(buf, p + 6)[0]
            return (
                6 <= length <= MAX_RESYNC_PDATA_LENGTH
                and 2 <= pdv_len <= length - 4
                and buf[p + 10] & 1 == 1  # presentation context ids are odd
                and buf[p + 11] <= 3
            )
        if avail < 10:
            return None
        if pdu_type <= 2:  # A-ASSOCIATE-RQ/AC
            if p == 0 and self._at_start and not self._skipped:
                # The connection's first bytes: believed as stream detection believes
                # them (streams/detect.py), any legal length and protocol version.
                return plausible_associate_header(buf, 0, MAX_ASSOCIATE_PDU_LENGTH, True)
            # PS3.8 sends the reserved field after the version as 0 but says not to test
            # it; a scan through arbitrary bytes wants that extra evidence all the same.
            return (
                plausible_associate_header(buf, p, self.max_association_pdu_bytes)
                and buf[p + 8 : p + 10] == b"\x00\x00"
            )
        length = _U32.unpack_from(buf, p + 2)[0]
        if length != 4:
            return False
        if pdu_type == 0x03:
            return buf[p + 6] == 0 and buf[p + 7] in (1, 2) and buf[p + 8] in (1, 2, 3)
        if pdu_type == 0x07:
            return (
                buf[p + 6] == 0 and buf[p + 7] == 0 and buf[p + 8] in (0, 1, 2) and buf[p + 9] <= 6
            )
        return buf[p + 6 : p + 10] == b"\x00\x00\x00\x00"  # A-RELEASE-RQ/RP


def plausible_associate_header(
    buf: bytes, p: int, max_length: int, any_version: bool = False
) -> bool:
    """Is ``buf[p:p+10]`` (the caller checked there are 10 bytes) a believable start of an
    A-ASSOCIATE-RQ/AC? Reserved byte 0, a PDU length from the fixed fields up to
    ``max_length``, protocol version 1 (PS3.8 9.3.2). The PDU type is the caller's test.

    ``any_version``: any protocol version is believed (a connection's first bytes: an RQ
    of another version is still DICOM, and the acceptor answers it with an A-ASSOCIATE-RJ
    "protocol-version-not-supported"; a resync scan through arbitrary bytes wants the
    version as extra evidence). The framer's resync scan and stream detection
    (dicomsniffd/streams/detect.py) both ask this; each passes its own bounds (see there).
    """
    return (
        buf[p + 1] == 0
        and FIXED_ASSOCIATE_LENGTH <= _U32.unpack_from(buf, p + 2)[0] <= max_length
        and (any_version or buf[p + 6 : p + 8] == b"\x00\x01")
    )

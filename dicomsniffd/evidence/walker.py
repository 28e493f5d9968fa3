"""Which bytes of one direction's TCP stream may leave: a PDU/PDV walker (sans-IO).

The walker is fed the stream in order (``feed``) and told about bytes never seen
(``gap``). It knows, per stream offset, whether a byte is a PDU or PDV header, an
association PDU, a command fragment or a data-set fragment (PS3.8 9.3, the PDV's
message control header bit 0), and keeps a copy of exactly the bytes that may be shown:
every header, every command fragment, every association PDU with the values of the user
identity sub-items (0x58 in the A-ASSOCIATE-RQ, 0x59 in the AC; PS3.7 D.3.3.7) overwritten.
Everything it does not keep -- data sets, bytes after it lost its place, bytes never
walked -- is written as ``FILL`` by ``KeepMap.overlay``: the default is to scrub.

Data sets are never decoded: only the PDV header's flags are read.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

FILL = 0
P_DATA_TF = 4
ASSOCIATE_RQ, ASSOCIATE_AC = 1, 2
PDU_TYPES = frozenset(range(1, 8))
PDU_HEADER = 6
PDV_HEADER = 6  # item length (4), presentation context id (1), message control header (1)
FIXED_ASSOCIATE = 68  # protocol version .. reserved 32 bytes, after the PDU header
MAX_ASSOCIATION_PDU = 1 << 20  # larger: its body is scrubbed whole and the walk goes on
MAX_SHORT_PDU = 64  # A-ASSOCIATE-RJ, RELEASE, ABORT bodies are 4 bytes
MAX_COMMAND_FRAGMENT = 1 << 16  # a command fragment's bytes kept; the rest scrubbed
USER_INFORMATION = 0x50
USER_IDENTITY_RQ, USER_IDENTITY_AC = 0x58, 0x59

# States of the walker.
_PDU_HEAD, _PDU_BODY, _SKIP_PDU, _PDV_HEAD, _PDV_VALUE, _LOST = range(6)


@dataclass(slots=True)
class KeepMap:
    """The kept bytes of one direction: sorted, non-overlapping ``(offset, bytes)`` runs."""

    starts: list[int] = field(default_factory=list)
    runs: list[bytes] = field(default_factory=list)
    kept_bytes: int = 0

    def add(self, offset: int, data: bytes) -> None:
        if not data:
            return
        self.kept_bytes += len(data)
        if self.starts and offset == self.starts[-1] + len(self.runs[-1]):
            self.runs[-1] += data  # contiguous with the last run (e.g. header then command)
        else:
            self.starts.append(offset)
            self.runs.append(bytes(data))

    def drop_between(self, lo: int, hi: int) -> None:
        """Forget the runs lying wholly in ``[lo, hi)`` (no frame there will be written)."""
        i = j = bisect.bisect_left(self.starts, lo)
        while j < len(self.starts) and self.starts[j] + len(self.runs[j]) <= hi:
            self.kept_bytes -= len(self.runs[j])
            j += 1
        del self.starts[i:j], self.runs[i:j]

    def overlay(self, offset: int, length: int, *more: KeepMap) -> bytes:
        """The bytes to write for stream ``[offset, offset + length)``: kept bytes where
        the walker (or ``more``, painted after it) kept them, ``FILL`` everywhere else."""
        out = bytearray(length)  # FILL is 0
        self.paint(out, offset)
        for keep in more:
            keep.paint(out, offset)
        return bytes(out)

    def paint(self, out: bytearray, offset: int) -> None:
        """Write the kept bytes that fall in ``out`` (stream ``offset`` onwards) into it."""
        length = len(out)
        end = offset + length
        i = max(bisect.bisect_right(self.starts, offset) - 1, 0)
        while i < len(self.starts) and self.starts[i] < end:
            start, run = self.starts[i], self.runs[i]
            lo, hi = max(start, offset), min(start + len(run), end)
            if lo < hi:
                out[lo - offset : hi - offset] = run[lo - start : hi - start]
            i += 1


@dataclass(slots=True)
class DataSetMessage:
    """Where one data set's bytes are: its presentation context, total length, and the
    first fragments' values as (stream offset, length), enough to cover ``HEAD_BYTES``."""

    context_id: int
    length: int = 0
    head: list[tuple[int, int]] = field(default_factory=list)
    complete: bool = False


HEAD_BYTES = 16  # of a data set's value: room for one element header (12 bytes)
MAX_MESSAGES = 1 << 20  # data-set messages remembered per direction


@dataclass(slots=True)
class WalkStats:
    """What the walk met, for the evidence README."""

    pdus: int = 0
    command_fragments: int = 0
    dataset_fragments: int = 0
    dataset_bytes: int = 0  # data-set bytes scrubbed (seen or not)
    user_identity_fields: int = 0  # user identity values overwritten
    lost_at: int | None = None  # stream offset where the walker lost its place
    lost_reason: str = ""


class PduWalker:
    """One direction of a DICOM association's byte stream, walked from its first byte."""

    def __init__(self) -> None:
        self.keep = KeepMap()
        self.stats = WalkStats()
        self.pos = 0  # stream offset of the next byte
        self._state = _PDU_HEAD
        self._buf = bytearray()  # header or association-PDU bytes collected so far
        self._pdu_start = 0
        self._need = PDU_HEADER  # bytes still wanted in the current state
        self._pdu_left = 0  # P-DATA-TF: bytes of the PDU after the current item
        self._command = False
        self._kept_in_value = 0
        self.associate_ac: bytes | None = None  # the A-ASSOCIATE-AC, user identity scrubbed
        self.datasets: list[DataSetMessage] = []
        self._open: DataSetMessage | None = None

    @property
    def lost(self) -> bool:
        return self._state == _LOST

    def feed(self, data: bytes) -> None:
        """The next in-order bytes of the stream."""
        view = memoryview(data)
        i, n = 0, len(view)
        while i < n:
            state = self._state
            if state == _LOST:
                self.pos += n - i
                return
            take = min(self._need, n - i)
            if state in (_PDU_HEAD, _PDU_BODY, _PDV_HEAD):
                self._buf += view[i : i + take]
            elif state == _PDV_VALUE:
                self._value(view[i : i + take])
            self._need -= take
            self.pos += take
            i += take
            if self._need == 0:
                self._complete()

    def gap(self, nbytes: int) -> None:
        """``nbytes`` of the stream were never captured. Inside a data-set or skipped
        value the walk stays in step; anywhere else it has lost its place for good (all
        later bytes are scrubbed: safe, and the README says so)."""
        if nbytes <= 0:
            return
        state = self._state
        in_step = state == _SKIP_PDU or (state == _PDV_VALUE and not self._command)
        if in_step and nbytes <= self._need:
            if state == _PDV_VALUE:
                self.stats.dataset_bytes += nbytes
            self._need -= nbytes
            self.pos += nbytes
            if self._need == 0:
                self._complete()
            return
        if state != _LOST:
            self._lose(f"{nbytes} bytes missing from the capture")
        self.pos += nbytes

    def _lose(self, reason: str) -> None:
        self._state = _LOST
        self.stats.lost_at = self.pos
        self.stats.lost_reason = reason

    def _value(self, chunk: memoryview) -> None:
        if self._command:
            room = MAX_COMMAND_FRAGMENT - self._kept_in_value
            if room > 0:
                self.keep.add(self.pos, bytes(chunk[:room]))
                self._kept_in_value += min(room, len(chunk))
        else:
            self.stats.dataset_bytes += len(chunk)

    def _complete(self) -> None:
        """The current state has all its bytes: decide what comes next."""
        state = self._state
        if state == _PDU_HEAD:
            self._pdu_header()
        elif state == _PDU_BODY:
            self._association_body()
        elif state == _PDV_HEAD:
            self._pdv_header()
        else:  # a value or a skipped PDU body ended
            self._next_item()

    def _pdu_header(self) -> None:
        head = bytes(self._buf)
        self._buf.clear()
        pdu_type, length = head[0], int.from_bytes(head[2:6], "big")
        self._pdu_start = self.pos - PDU_HEADER
        if pdu_type not in PDU_TYPES:
            self._lose(f"not a PDU header (type 0x{pdu_type:02X})")
            self.stats.lost_at = self._pdu_start
            return
        self.stats.pdus += 1
        self.keep.add(self._pdu_start, head)
        if pdu_type == P_DATA_TF:
            self._pdu_left = length
            self._next_item()
        elif length <= (MAX_ASSOCIATION_PDU if pdu_type <= 2 else MAX_SHORT_PDU):
            self._buf += head
            self._enter(_PDU_BODY, length)
        else:
            self._enter(_SKIP_PDU, length)

    def _association_body(self) -> None:
        pdu = bytearray(self._buf)
        self._buf.clear()
        if pdu[0] in (ASSOCIATE_RQ, ASSOCIATE_AC):
            self.stats.user_identity_fields += scrub_user_identity(pdu)
        if pdu[0] == ASSOCIATE_AC and self.associate_ac is None:
            self.associate_ac = bytes(pdu)
        self.keep.add(self._pdu_start + PDU_HEADER, bytes(pdu[PDU_HEADER:]))
        self._enter(_PDU_HEAD, PDU_HEADER)

    def _next_item(self) -> None:
        """In a P-DATA-TF: the next PDV header, or the next PDU when this one is done."""
        if self._state in (_PDU_BODY, _SKIP_PDU) or self._pdu_left <= 0:
            self._pdu_left = 0
            self._enter(_PDU_HEAD, PDU_HEADER)
        elif self._pdu_left < PDV_HEADER:  # a PDU too short for its PDV: skip the rest
            self._enter(_SKIP_PDU, self._pdu_left)
            self._pdu_left = 0
        else:
            self._pdu_left -= PDV_HEADER
            self._enter(_PDV_HEAD, PDV_HEADER)

    def _pdv_header(self) -> None:
        head = bytes(self._buf)
        self._buf.clear()
        self.keep.add(self.pos - PDV_HEADER, head)
        length = int.from_bytes(head[0:4], "big")
        value = length - 2
        if value < 0 or value > self._pdu_left:  # a broken PDV: skip the rest of the PDU
            self._enter(_SKIP_PDU, self._pdu_left)
            self._pdu_left = 0
            return
        self._pdu_left -= value
        self._command = bool(head[5] & 0x01)
        self._kept_in_value = 0
        if self._command:
            self.stats.command_fragments += 1
        else:
            self.stats.dataset_fragments += 1
            self._data_fragment(head[4], head[5], value)
        self._enter(_PDV_VALUE, value)

    def _data_fragment(self, context_id: int, flags: int, value: int) -> None:
        """Remember where a data set lies, for ``padding.paddings``."""
        message = self._open
        if message is None or message.context_id != context_id:
            message = self._open = DataSetMessage(context_id)
        if message.length < HEAD_BYTES:
            message.head.append((self.pos, value))
        message.length += value
        if flags & 0x02:  # the last fragment
            message.complete = True
            self._open = None
            if len(self.datasets) < MAX_MESSAGES:
                self.datasets.append(message)

    def _enter(self, state: int, need: int) -> None:
        self._state, self._need = state, need
        if need == 0:
            self._complete()


def scrub_user_identity(pdu: bytearray) -> int:
    """Overwrite, in an A-ASSOCIATE-RQ/AC PDU (header included), the values of its user
    identity sub-items with ``FILL``, keeping every length. Returns how many values.

    The items are walked by their lengths; a length that runs past the PDU stops the walk
    and scrubs everything from there (nothing unwalked is kept)."""
    return _walk_items(pdu, PDU_HEADER + FIXED_ASSOCIATE, len(pdu), _user_information)


Visit = Callable[[bytearray, int, int, int], int]


def _walk_items(pdu: bytearray, at: int, end: int, visit: Visit) -> int:
    """Items (type, reserved, 2-byte length, body) from ``at`` to ``end``, each handed to
    ``visit(pdu, type, body, item end)``; what the lengths do not account for is scrubbed."""
    scrubbed = 0
    while at + 4 <= end:
        item_type, item_len = pdu[at], int.from_bytes(pdu[at + 2 : at + 4], "big")
        body, item_end = at + 4, at + 4 + item_len
        if item_end > end:
            pdu[at:end] = bytes(end - at)
            return scrubbed + 1
        scrubbed += visit(pdu, item_type, body, item_end)
        at = item_end
    if at < end:
        pdu[at:end] = bytes(end - at)
    return scrubbed


def _user_information(pdu: bytearray, item_type: int, body: int, end: int) -> int:
    if item_type != USER_INFORMATION:
        return 0
    return _walk_items(pdu, body, end, _user_identity)


def _user_identity(pdu: bytearray, sub_type: int, body: int, end: int) -> int:
    if sub_type == USER_IDENTITY_RQ:
        return _scrub_fields(pdu, body + 2, end, 2)  # after type and response-requested
    if sub_type == USER_IDENTITY_AC:
        return _scrub_fields(pdu, body, end, 1)
    return 0


def _scrub_fields(pdu: bytearray, at: int, end: int, fields: int) -> int:
    """``fields`` length-prefixed (2 bytes) values from ``at``: values overwritten, and
    anything the lengths do not account for too."""
    for _ in range(fields):
        if at + 2 > end:
            break
        length = int.from_bytes(pdu[at : at + 2], "big")
        value_end = min(at + 2 + length, end)
        pdu[at + 2 : value_end] = bytes(value_end - at - 2)
        at = value_end
    if at < end:
        pdu[at:end] = bytes(end - at)
    return 1

"""Per-direction DICOM Upper Layer PDU framer (PS3.8 §9.3): bytes in, framing items out.

PDU header: type(1) reserved(1) length(4, big endian). A P-DATA-TF (0x04) body is a list
of PDV items: length(4) presentation-context-id(1) message-control-header(1) + data,
where header bit 0 = command (1) / dataset (0) and bit 1 = last fragment.

The hot path (DESIGN §2): dataset PDV data is never copied, sliced or buffered. The framer
only keeps "bytes left to skip" and subtracts each chunk from it; a chunk that ends inside
the PDV costs one comparison and two subtractions/additions. Only PDU and PDV headers,
association PDUs (capped at max_association_pdu_bytes) and command PDVs (capped at
max_command_bytes) are buffered.

Measured cost (CPython 3.11, this container): feeding a 1448-byte chunk that ends inside a
dataset PDV through ``DicomConversation.feed`` is about 0.14 µs (``PduFramer.feed`` alone
about 0.12 µs), measured with timeit when this was written. No test times it:
tests/test_dicom_hotpath.py checks that such chunks produce nothing and are counted.

Items are plain tuples (one per PDU/PDV, never per chunk), first element the kind:
  (PDU, pdu_type, body, start_ts)               non-P-DATA PDU, complete body
  (CMD, ctx, last, data, start_ts)              one complete command PDV
  (DATA, ctx, last, nbytes, start_ts, missed)   one dataset PDV finished (missed: a gap hit it)
  (LOST, ctx)                                   a gap destroyed PDV(s) of ctx (-1: unknown ctx)
  (RESYNC, skipped_bytes)                       alignment found again after losing it
  (ERROR, kind, detail)                         protocol error (kind: a problems.py name)
  (PARTIAL, pdu_type, body_prefix, start_ts)    an A-ASSOCIATE-RQ/AC cut short or over the cap
  (VIOLATION, kind, detail)                     a header breaking a DESIGN §4b rule
  (DATASET_HEAD, ctx, head)                     a data set's first element header (8 bytes,
                                                the only data set bytes ever read, §4b)

DESIGN §4b rules are checked on every PDU/PDV header in O(1), against what
conformance.Conformance set from the negotiation (``pdu_limit``, ``contexts``,
``pdata_allowed``): one combined test per PDV header when legal (see conformance.py).

Determinism: every decision depends only on the stream bytes, never on where chunks
split, so any segmentation of the same stream yields the same items (the resync scanner
waits for the fixed look-ahead it needs at each candidate position instead of guessing at
a chunk end).
"""

from __future__ import annotations

import struct

from .headerchecks import ANY_CONTEXT, UNLIMITED, VIOLATION, HeaderChecks
from .pdvchain import DATA_STATE, HDR_STATE, ChainedPdvs
from .problems import BAD_PDU_LENGTH, BAD_PDU_TYPE, BAD_PDV_LENGTH, COMMAND_TOO_LARGE
from .resync import (  # noqa: F401 - FIXED_/MAX_ASSOCIATE_*, plausible_...: pdu's names
    FIXED_ASSOCIATE_LENGTH,
    MAX_ASSOCIATE_PDU_LENGTH,
    ResyncScan,
    plausible_associate_header,
)

PDU, CMD, DATA, LOST, RESYNC, ERROR, PARTIAL = range(VIOLATION)  # VIOLATION: headerchecks
DATASET_HEAD = VIOLATION + 1

# framer states; the three skipping states must stay contiguous (_DATA.._SKIPPDU)
_HDR, _BODY, _PDVH, _CMD, _DATA, _DISCARD, _SKIPPDU, _SKIPBODY, _UNSYNC, _DEAD = range(10)
DEAD = _DEAD  # for feed_chunk's callers
_DSHEAD = 10  # buffering the first bytes of a data set (its first element header)
assert (_HDR, _DATA) == (HDR_STATE, DATA_STATE)
DATASET_HEAD_BYTES = 8  # tag(4) + VR(2) or length(4): PS3.5 7.1.1/7.1.3


_NO_ITEMS: tuple = ()
_STATE_CHANGING = frozenset({0x01, 0x02, 0x03, 0x06})  # RQ, AC, RJ, RELEASE-RP
_HEADER = struct.Struct(">BBI")
_PDV_HEADER = struct.Struct(">IBB")
# A P-DATA-TF header directly followed by its first PDV header: one unpack for both.
_PDATA_PDV_HEADERS = struct.Struct(">BxIIBB")


class PduFramer(HeaderChecks, ChainedPdvs, ResyncScan):
    """Frames one direction of a DICOM UL connection. Not thread safe; no I/O, no clock."""

    __slots__ = (
        "skip",
        "pdata_bytes",
        "state",
        "max_command_bytes",
        "max_association_pdu_bytes",
        "_hdr",
        "_buf",
        "_need",
        "_pdu_type",
        "_pdu_left",
        "_pdu_ts",
        "_pdv_ts",
        "_first_pdv",
        "_ctx",
        "_last",
        "_pdv_len",
        "_pdv_missed",
        "_scan",
        "_skipped",
        "_at_start",
        "_oversize",
        "synced",
        "pdu_limit",
        "contexts",
        "pdata_allowed",
        "pending",
        "_ds_peek",
        "command_with_dataset",
    )

    def __init__(self, max_command_bytes: int = 65536, max_association_pdu_bytes: int = 65536):
        # (positional too: the conversation makes two per connection, and keyword calls
        # cost ~1 k instructions each)
        self.skip = 0  # bytes left in the current skipping state (hot path counter)
        self.pdata_bytes = 0  # P-DATA-TF bytes seen (headers included), gaps excluded
        self.max_command_bytes = max_command_bytes
        self.max_association_pdu_bytes = max_association_pdu_bytes
        self.synced = False  # a PDU header has been accepted at least once
        # A PDU/PDV header split over chunks (up to 5 bytes; immutable, so nothing is made
        # for the usual connection that never splits one: two objects less per framer)
        self._hdr = b""
        # Empty outside the buffering states (_CMD, _BODY, _DSHEAD): whoever leaves one
        # empties it (b"", made a bytearray when something is buffered: a PDV or PDU
        # that is all in one chunk never touches it, feed_chunk takes it as one slice).
        self._buf = b""
        self._need = 0
        self._pdu_type = 0
        self._pdu_left = 0  # P-DATA bytes after the current PDV (in _PDVH: incl. its header)
        self._pdu_ts = 0.0
        self._pdv_ts = 0.0
        self._first_pdv = False
        self._ctx = 0
        self._last = False
        self._pdv_len = 0
        self._pdv_missed = False
        # A connection starts unsynchronised; if its first bytes are a plausible PDU header
        # the scanner accepts them at offset 0 and no Resynchronised is reported.
        self.state = _UNSYNC
        self._scan = b""
        self._skipped = 0
        self._at_start = True
        self._oversize = 0  # bytes of an association PDU to skip after the buffered cap
        # set by conformance.Conformance from the negotiation (defaults: nothing known)
        self.pdu_limit = UNLIMITED  # the receiver's Maximum Length (PS3.8 D.1)
        self.contexts = ANY_CONTEXT  # the context ids a PDV may use
        self.pdata_allowed = True  # False before the AC, after an RJ or the RELEASE-RP
        # The rest of a chunk after an RQ/AC/RJ/RELEASE-RP, framed only after the conversation
        # handled that PDU (it changes what is checked): chunk splits change nothing.
        self.pending = b""
        self._ds_peek = False  # the next data set PDV starts a data set: read its head
        # messages whose command's last fragment and data set's first share a P-DATA-TF:
        # legal (PS3.8 E.1), but a known interoperability hint (findings/interop.py)
        self.command_with_dataset = 0

    # -- public API ---------------------------------------------------------------------

    def feed(self, data: bytes, ts: float) -> list | tuple:
        n = len(data)
        if self.skip > n:  # hot path: the chunk ends inside a PDV being skipped
            self.skip -= n
            self.pdata_bytes += n
            return _NO_ITEMS
        if self.state == DEAD or not n:
            return _NO_ITEMS
        return self.feed_chunk(data, ts)

    def gap(self, nbytes: int, ts: float) -> list | tuple:
        """``nbytes`` of the stream were never seen: stay aligned if the framing allows."""
        if nbytes <= 0 or self.state == _DEAD:
            return _NO_ITEMS
        out: list = []
        self._gap(nbytes, ts, out)
        return out

    def unsync(self) -> None:
        """Drop all partial state and scan for the next plausible PDU (after an error)."""
        self._lose_alignment()

    def in_pdata(self) -> bool:
        """Inside a P-DATA-TF PDU: its header begun and its last byte not seen yet."""
        st = self.state
        if st == _HDR:
            return bool(self._hdr) and self._hdr[0] == 0x04
        return _PDVH <= st <= _SKIPPDU  # PDV header, command, data, discard, skip-PDU

    def kill(self) -> None:
        """Ignore everything from now on (the direction was given up or the flow closed)."""
        self._lose_alignment()
        self.state = _DEAD

    # -- feeding ------------------------------------------------------------------------

    def feed_chunk(self, data: bytes, ts: float) -> list | tuple:
        """The framing loop of ``feed``, for a caller that made feed's tests itself (the
        chunk is not empty, does not end inside a PDV being skipped, the framer is not
        DEAD): the conversation, once per chunk, without a second call making them again."""
        if type(data) is not bytes:  # (bytearray, memoryview): then its slices are bytes too
            data = bytes(data)
        out: list = []
        pos = 0
        n = len(data)
        while pos < n:
            st = self.state
            if _DATA <= st <= _SKIPPDU:
                k = n - pos
                if k < self.skip:
                    self.skip -= k
                    self.pdata_bytes += k
                    break
                k = self.skip
                pos += k
                self.pdata_bytes += k
                self.skip = 0
                self._end_skip(out, ts)
            elif st == _HDR:
                hdr = self._hdr
                if not hdr and n - pos >= 6:
                    # The whole PDU header in this chunk (short associations: nearly every
                    # PDU starts a segment): no copy through _hdr. With 6 bytes more, one
                    # unpack reads it and what would be a first PDV header.
                    if n - pos < 12:
                        pdu_type, _reserved, length = _HEADER.unpack_from(data, pos)
                    else:
                        pdu_type, length, pdv_len, ctx, mch = _PDATA_PDV_HEADERS.unpack_from(
                            data, pos
                        )
                        dlen = pdv_len - 2
                        if (
                            pdu_type == 0x04
                            and 0 <= dlen <= length - 6
                            and (
                                not mch & 1
                                or dlen <= n - pos - 12
                                and dlen <= self.max_command_bytes
                            )
                        ):
                            # The common cases at a PDU boundary: a P-DATA-TF whose first
                            # PDV is a dataset fragment (a transfer), or a whole command PDV
                            # (short associations: nearly every command), both headers in
                            # this chunk. Exactly what _on_pdu_header + _on_pdv_header
                            # (+ _end_buffered) do for it (the paths below do the rest).
                            if length > self.pdu_limit or not self.pdata_allowed:
                                self._pdu_violations(out, length)
                            if ctx not in self.contexts or mch > 3 or pdv_len & 1:
                                self._pdv_violations(out, ctx, mch, pdv_len)
                            pos += 12
                            self.synced = True
                            self.pdata_bytes += 12
                            self._pdu_ts = self._pdv_ts = ts
                            self._first_pdv = False
                            self._pdu_left = left = length - 6 - dlen
                            self._ctx = ctx
                            self._last = last = bool(mch & 2)
                            self._pdv_len = dlen
                            if mch & 1:
                                end = pos + dlen
                                out.append((CMD, ctx, last, data[pos:end], ts))
                                pos = end
                                self.pdata_bytes += dlen
                                self._ds_peek = last  # a data set, if any, starts with the next PDV
                                if left:  # (else the PDU ends here: still _HDR, _next_pdv's case)
                                    self._next_pdv(out, ts)
                                continue
                            self._pdv_missed = False
                            if not self._ds_peek:
                                self._enter_skip(_DATA, dlen, out, ts)
                            elif dlen >= DATASET_HEAD_BYTES and pos + DATASET_HEAD_BYTES <= n:
                                # The first PDV of a data set, its first element header in
                                # this chunk too (a command's data set PDU usually follows
                                # it in one segment): what _start_head, the buffering step
                                # and _end_buffered do for it, without the three.
                                self._ds_peek = False
                                end = pos + DATASET_HEAD_BYTES
                                out.append((DATASET_HEAD, ctx, data[pos:end]))
                                pos = end
                                self.pdata_bytes += DATASET_HEAD_BYTES
                                self._enter_skip(_DATA, dlen - DATASET_HEAD_BYTES, out, ts)
                            else:
                                self._start_head(dlen, out, ts)
                            continue
                    pos += 6
                    self._pdu_ts = ts
                    if (
                        pdu_type != 0x04
                        and 0 < length <= n - pos
                        and length <= self.max_association_pdu_bytes
                        and 1 <= pdu_type <= 7
                    ):
                        # ... and the whole association PDU too: what _on_pdu_header and
                        # the buffered step below do for it, in one step
                        self.synced = True
                        self._pdu_type = pdu_type
                        end = pos + length
                        out.append((PDU, pdu_type, data[pos:end], ts))
                        pos = end
                        if pdu_type in _STATE_CHANGING:  # the rest after the conversation
                            if pos < n:
                                self.pending = bytes(data[pos:])
                            break
                        continue
                    self._on_pdu_header(out, ts, pdu_type, length)
                    continue
                if not hdr:
                    self._pdu_ts = ts
                k = min(6 - len(hdr), n - pos)
                self._hdr = hdr = hdr + data[pos : pos + k]
                pos += k
                if len(hdr) == 6:
                    pdu_type, _reserved, length = _HEADER.unpack(hdr)
                    self._hdr = b""
                    self._on_pdu_header(out, ts, pdu_type, length)
            elif st == _PDVH:
                hdr = self._hdr
                if not hdr:
                    self._pdv_ts = self._pdu_ts if self._first_pdv else ts
                    if n - pos >= 6:  # the whole PDV header here: no copy through _hdr
                        pdv_len, ctx, mch = _PDV_HEADER.unpack_from(data, pos)
                        pos += 6
                        self.pdata_bytes += 6
                        self._on_pdv_header(out, ts, pdv_len, ctx, mch)
                        continue
                k = min(6 - len(hdr), n - pos)
                self._hdr = hdr = hdr + data[pos : pos + k]
                pos += k
                self.pdata_bytes += k
                if len(hdr) == 6:
                    pdv_len, ctx, mch = _PDV_HEADER.unpack(hdr)
                    self._hdr = b""
                    self._on_pdv_header(out, ts, pdv_len, ctx, mch)
            elif st in (_CMD, _BODY, _DSHEAD):
                need = self._need
                if need <= n - pos and not self._buf:
                    # All of it in this chunk (a whole command PDV or association PDU,
                    # the usual case): taken as one slice, never copied into _buf.
                    end = pos + need
                    whole = data[pos:end]
                    pos = end
                    self._need = 0
                else:
                    k = min(need, n - pos)
                    if not self._buf:
                        self._buf = bytearray()
                    self._buf += data[pos : pos + k]
                    pos += k
                    self._need = need - k
                    if self._need:
                        if st != _BODY:
                            self.pdata_bytes += k
                        continue
                    whole = bytes(self._buf)
                    self._buf = b""
                    need = k
                if st != _BODY:
                    self.pdata_bytes += need
                self._end_buffered(out, ts, whole)
                if st == _BODY and self._pdu_type in _STATE_CHANGING and self.state == _HDR:
                    if pos < n:
                        self.pending = bytes(data[pos:])
                    break
            elif st == _SKIPBODY:
                k = min(self._need, n - pos)
                pos += k
                self._need -= k
                if not self._need:
                    self.state = _HDR
            elif st == _UNSYNC:
                buf = self._scan + data[pos:] if self._scan else (data[pos:] if pos else data)
                p = self._find_header(buf)
                if p < 0:
                    break
                if self._skipped or not self._at_start:
                    out.append((RESYNC, self._skipped))
                self._at_start = False
                self._skipped = 0
                self._scan = b""
                self._hdr = b""
                self.state = _HDR
                data, n, pos = buf, len(buf), p  # continue framing from the found header
            else:  # _DEAD
                break
        return out or _NO_ITEMS

    def _on_pdu_header(self, out: list, ts: float, pdu_type: int, length: int) -> None:
        self._pdu_type = pdu_type
        if pdu_type == 0x04:
            self.synced = True
            self.pdata_bytes += 6
            if length < 6:  # not even one PDV header fits
                out.append((ERROR, BAD_PDU_LENGTH, f"P-DATA-TF length {length}"))
                self._pdu_left = 0
                self._enter_skip(_SKIPPDU, length, out, ts)
                return
            if length > self.pdu_limit or not self.pdata_allowed:
                self._pdu_violations(out, length)
            self._pdu_left = length
            self._first_pdv = True
            self.state = _PDVH
        elif 1 <= pdu_type <= 7:
            cap = self.max_association_pdu_bytes
            if pdu_type <= 2 and cap < length <= MAX_ASSOCIATE_PDU_LENGTH and cap >= 68:
                # Legal, but larger than the buffer: decode the first ``cap`` bytes, skip
                # the rest (see MAX_ASSOCIATE_PDU_LENGTH).
                self.synced = True
                self._need = cap
                self._oversize = length - cap
                self.state = _BODY
                return
            if length > cap:
                # Never a 4 GB buffer: the length is not believed, alignment is lost.
                out.append((ERROR, BAD_PDU_LENGTH, f"PDU type 0x{pdu_type:02X} length {length}"))
                self._lose_alignment()
                return
            self.synced = True
            self._need = length
            self.state = _BODY
            if not length:
                self._end_buffered(out, ts, b"")
        else:
            out.append((ERROR, BAD_PDU_TYPE, f"PDU type 0x{pdu_type:02X}"))
            self._lose_alignment()

    def _on_pdv_header(self, out: list, ts: float, pdv_len: int, ctx: int, mch: int) -> None:
        first = self._first_pdv
        self._first_pdv = False
        self._pdu_left -= 6
        if pdv_len < 2 or pdv_len - 2 > self._pdu_left:
            out.append((ERROR, BAD_PDV_LENGTH, f"PDV length {pdv_len}"))
            out.append((LOST, -1))
            left, self._pdu_left = self._pdu_left, 0
            self._enter_skip(_SKIPPDU, left, out, ts)
            return
        if ctx not in self.contexts or mch > 3 or pdv_len & 1:
            self._pdv_violations(out, ctx, mch, pdv_len)
        dlen = pdv_len - 2
        self._pdu_left -= dlen
        self._ctx = ctx
        self._last = bool(mch & 2)
        self._pdv_len = dlen
        if mch & 1:  # command fragment: buffered (bounded)
            if dlen > self.max_command_bytes:
                out.append((ERROR, COMMAND_TOO_LARGE, f"command PDV of {dlen} bytes"))
                out.append((LOST, ctx))
                self._enter_skip(_DISCARD, dlen, out, ts)
                return
            self._need = dlen
            self.state = _CMD
            if not dlen:
                self._end_buffered(out, ts, b"")
        else:  # dataset fragment: skipped, only its length is reported
            self._pdv_missed = False
            if self._ds_peek:
                # once per data set: did it start in its command's P-DATA-TF?
                self.command_with_dataset += not first
                self._start_head(dlen, out, ts)
            else:
                self._enter_skip(_DATA, dlen, out, ts)

    def _start_head(self, dlen: int, out: list, ts: float) -> None:
        """The first PDV of a data set: buffer its first bytes, then skip the rest."""
        self._ds_peek = False
        if dlen < DATASET_HEAD_BYTES:  # too short to tell: nothing to read
            self._enter_skip(_DATA, dlen, out, ts)
            return
        self._need = DATASET_HEAD_BYTES
        self.state = _DSHEAD

    def _enter_skip(self, state: int, nbytes: int, out: list, ts: float) -> None:
        self.state = state
        self.skip = nbytes
        if not nbytes:
            self._end_skip(out, ts)

    def _end_skip(self, out: list, ts: float) -> None:
        st = self.state
        if st == _DATA:
            out.append((DATA, self._ctx, self._last, self._pdv_len, self._pdv_ts, self._pdv_missed))
            self._next_pdv(out, ts)
        elif st == _DISCARD:
            self._next_pdv(out, ts)
        else:  # _SKIPPDU
            self.state = _HDR

    def _end_buffered(self, out: list, ts: float, data: bytes) -> None:
        """The buffered state's bytes are all here (``data``; ``_buf`` is empty again)."""
        if self.state == _CMD:
            out.append((CMD, self._ctx, self._last, data, self._pdv_ts))
            self._ds_peek = self._last  # a data set, if any, starts with the next PDV
            self._next_pdv(out, ts)
        elif self.state == _DSHEAD:
            out.append((DATASET_HEAD, self._ctx, data))
            self._enter_skip(_DATA, self._pdv_len - len(data), out, ts)
        elif self._oversize:  # the buffered start of a PDU over the cap: skip the rest
            out.append((PARTIAL, self._pdu_type, data, self._pdu_ts))
            self._need, self._oversize = self._oversize, 0
            self.state = _SKIPBODY
        else:
            out.append((PDU, self._pdu_type, data, self._pdu_ts))
            self.state = _HDR

    def _next_pdv(self, out: list, ts: float) -> None:
        left = self._pdu_left
        if not left:
            self.state = _HDR
        elif left < 6:
            out.append((ERROR, BAD_PDV_LENGTH, f"{left} bytes left in P-DATA-TF"))
            self._pdu_left = 0
            self._enter_skip(_SKIPPDU, left, out, ts)
        else:
            self.state = _PDVH

    # -- gaps -----------------------------------------------------------------------------

    def _gap(self, n: int, ts: float, out: list) -> None:
        st = self.state
        if st == _DSHEAD:  # the head is not whole: give it up, the PDV is skipped as usual
            st = self.state = _DATA
            self.skip = self._pdv_len - len(self._buf)
            self._buf = b""
        if st in (_DATA, _DISCARD):
            if n <= self.skip:  # inside the PDV: still aligned
                self.skip -= n
                if st == _DATA:
                    self._pdv_missed = True
                if not self.skip:
                    self._end_skip(out, ts)
                return
            rest = self.skip + self._pdu_left
            if n <= rest:  # the PDV's end is known even if its successors are not
                if st == _DATA:
                    out.append((DATA, self._ctx, self._last, self._pdv_len, self._pdv_ts, True))
                self._skip_rest_of_pdu(rest - n, out, ts)
                return
        elif st == _SKIPPDU:
            if n <= self.skip:
                self.skip -= n
                if not self.skip:
                    self.state = _HDR
                return
        elif st == _CMD:
            if n <= self._need:  # the fragment is lost but the PDV boundary is known
                out.append((LOST, self._ctx))
                self._buf = b""
                self._enter_skip(_DISCARD, self._need - n, out, ts)
                return
            rest = self._need + self._pdu_left
            if n <= rest:
                out.append((LOST, self._ctx))
                self._buf = b""
                self._skip_rest_of_pdu(rest - n, out, ts)
                return
        elif st == _PDVH:
            rest = self._pdu_left - len(self._hdr)
            if n <= rest:
                self._hdr = b""
                self._skip_rest_of_pdu(rest - n, out, ts)
                return
        elif st in (_BODY, _SKIPBODY):
            self._need += self._oversize  # what is left of the whole PDU
            self._oversize = 0
            if (
                st == _BODY
                and self._pdu_type in (1, 2)
                and len(self._buf) >= FIXED_ASSOCIATE_LENGTH
            ):
                # A snaplen or a lost segment cut the A-ASSOCIATE-RQ/AC: its fixed part
                # (AE titles) and the items before the cut are still worth decoding.
                out.append((PARTIAL, self._pdu_type, bytes(self._buf), self._pdu_ts))
            if n <= self._need:  # an association PDU is lost, its end is known
                self._buf = b""
                self._need -= n
                self.state = _SKIPBODY if self._need else _HDR
                return
        elif st == _UNSYNC:
            # look-ahead bytes kept before the gap are not contiguous with what follows
            self._skipped += len(self._scan)
            self._scan = b""
            return
        out.append((LOST, -1))
        self._lose_alignment()

    def _skip_rest_of_pdu(self, nbytes: int, out: list, ts: float) -> None:
        out.append((LOST, -1))
        self._pdu_left = 0
        self._enter_skip(_SKIPPDU, nbytes, out, ts)

    def _lose_alignment(self) -> None:
        self.state = _UNSYNC
        self.skip = 0
        self._need = 0
        self._hdr = b""
        self._buf = b""
        self._scan = b""
        self._skipped = 0
        self._at_start = False
        self._oversize = 0
        self.pending = b""
        self._ds_peek = False

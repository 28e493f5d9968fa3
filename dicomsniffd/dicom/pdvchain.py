"""The framer's side of the compiled lease's chained PDVs (``_fastpath.c``, chain_walk).

A part of PduFramer (pdu.py) kept in its own room, as headerchecks.py is. During a large
data set every P-DATA-TF is one dataset PDV of the same presentation context (storescp's
16 KB PDUs: 50 of them per 800 KB image); without this each PDU's end would leave the
compiled path for the framer's 12-byte header path below (``PduFramer.feed_chunk``) and come
back with a new lease. ``chain_spec`` says when the lease may walk those headers itself:
exactly when every header it accepts would take that path, break no DESIGN §4b rule
and make no item but the DATA item of the PDV it ends (which the conversation folds into
one, ``DicomConversation.skip_chained``). ``chained`` then leaves the framer as the
framer's own feeding would have.
"""

from __future__ import annotations

# pdu.py's framer states (pdu.py asserts they agree): at a PDU boundary, in a dataset PDV
HDR_STATE, DATA_STATE = 0, 4


class ChainedPdvs:
    """Mixin of PduFramer: what the compiled lease may walk, and its write-back."""

    __slots__ = ()
    state: int
    skip: int
    pdata_bytes: int
    pdu_limit: int
    contexts: frozenset[int]
    pdata_allowed: bool
    _ctx: int
    _last: bool
    _pdu_left: int
    _pdv_len: int
    _pdu_ts: float
    _pdv_ts: float
    _first_pdv: bool
    _pdv_missed: bool
    _ds_peek: bool

    def chain_spec(self) -> tuple[int, int, int, float] | None:
        """``(ctx, pdu_limit, pdv_len, header_ts)`` when the bytes after the PDV being skipped may be
        further PDUs of one dataset PDV each of the same context, else None: the PDV is
        a data set's, not its last fragment, the last of its PDU, on an accepted context,
        and P-DATA is allowed (so a PDU of at most ``pdu_limit`` bytes of ``ctx`` whose PDV
        is not the last fragment breaks no header rule)."""
        if (
            self.state != DATA_STATE
            or self._last
            or self._pdu_left
            or self._pdv_missed
            or self._ds_peek
            or not self.pdata_allowed
            or self._ctx not in self.contexts
        ):
            return None
        return (self._ctx, self.pdu_limit, self._pdv_len, self._pdu_ts)

    def chained(self, nbytes: int, skip_left: int, pdv_len: int, header_ts: float) -> None:
        """``nbytes`` were fed elsewhere, ending inside a PDV of ``pdv_len`` data bytes of
        which ``skip_left`` are still to come (0: at its end, the PDU's end), whose PDU
        header came at ``header_ts``: what feeding them would have left (the DATA items
        are the conversation's)."""
        self.pdata_bytes += nbytes
        self.state = DATA_STATE if skip_left else HDR_STATE
        self.skip = skip_left
        self._pdv_len = pdv_len
        self._pdu_ts = self._pdv_ts = header_ts
        self._first_pdv = False

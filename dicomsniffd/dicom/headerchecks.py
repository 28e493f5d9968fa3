"""The DESIGN §4b checks of one PDU or PDV header, for the framer (pdu.PduFramer).

A part of PduFramer kept in its own room (pdu.py holds the framing): the framer calls
these only when its one combined test per header says a rule may be broken, so the legal
case never gets here. ``pdu_limit``, ``contexts`` and ``pdata_allowed`` are the framer's
own attributes, set by conformance.Conformance from the negotiation.
"""

from __future__ import annotations

from .problems import (
    EVEN_PRESENTATION_CONTEXT_ID,
    MAX_PDU_LENGTH_EXCEEDED,
    ODD_PDV_LENGTH,
    PDATA_OUTSIDE_ASSOCIATION,
    PDV_ON_UNACCEPTED_CONTEXT,
    PDV_RESERVED_BITS,
)

VIOLATION = 7  # pdu.VIOLATION: the item kind these checks append

# What a framer believes before (or without) a negotiation: any odd context, any length.
ANY_CONTEXT = frozenset(range(1, 256, 2))
NO_CONTEXT: frozenset[int] = frozenset()
UNLIMITED = 1 << 62


class HeaderChecks:
    """Mixin of PduFramer: the header checks and the state they read."""

    __slots__ = ()
    pdu_limit: int
    contexts: frozenset[int]
    pdata_allowed: bool

    def _pdu_violations(self, out: list, length: int) -> None:
        """A P-DATA-TF header that breaks a rule (the caller tested that one might)."""
        if not self.pdata_allowed:
            out.append((VIOLATION, PDATA_OUTSIDE_ASSOCIATION, f"P-DATA-TF of {length} bytes"))
        if length > self.pdu_limit:
            detail = f"P-DATA-TF length {length}, receiver's maximum {self.pdu_limit}"
            out.append((VIOLATION, MAX_PDU_LENGTH_EXCEEDED, detail))

    def _pdv_violations(self, out: list, ctx: int, mch: int, pdv_len: int) -> None:
        """A PDV header that breaks a rule (the caller tested that one might)."""
        if not ctx & 1:
            out.append((VIOLATION, EVEN_PRESENTATION_CONTEXT_ID, f"PDV on context {ctx}"))
        elif ctx not in self.contexts and self.pdata_allowed:
            out.append((VIOLATION, PDV_ON_UNACCEPTED_CONTEXT, f"PDV on context {ctx}"))
        if mch > 3:
            out.append((VIOLATION, PDV_RESERVED_BITS, f"message control header 0x{mch:02X}"))
        if pdv_len & 1:
            out.append((VIOLATION, ODD_PDV_LENGTH, f"PDV length {pdv_len}"))

"""Which direction of a connection is the association requestor (PS3.8 7.1), and how sure.

The A-ASSOCIATE-RQ/AC/RJ settle it; midstream (no association PDU seen) the DIMSE
commands give evidence; before either, the flow table's guess stands. One small record
shared by the two halves of a conversation (conversation.py decodes the association
PDUs, transactions.py the DIMSE messages), so both name senders the same way.
"""

from __future__ import annotations

from .dimse import Command
from .events import ACCEPTOR, REQUESTOR

GUESS, WEAK, CERTAIN = 0, 1, 2  # evidence for requestor_direction

# Services whose requests only ever flow requestor -> acceptor (the SCU role). C-STORE is
# not one: C-GET sub-operations are C-STORE requests flowing acceptor -> requestor.
_SCU_ONLY = frozenset({0x0010, 0x0020, 0x0021, 0x0030})  # C-GET, C-FIND, C-MOVE, C-ECHO
_C_STORE = 0x0001


class Roles:
    """``requestor_direction`` (0 or 1) and the evidence it rests on."""

    __slots__ = ("requestor_direction", "evidence")

    def __init__(self, requestor_direction: int) -> None:
        self.requestor_direction = requestor_direction
        self.evidence = GUESS

    def sender(self, direction: int) -> str:
        return REQUESTOR if direction == self.requestor_direction else ACCEPTOR

    def set_requestor(self, direction: int) -> None:
        """An association PDU says so: certain, whatever was guessed."""
        self.requestor_direction = direction
        self.evidence = CERTAIN

    def answered_from(self, direction: int) -> None:
        """An A-ASSOCIATE-AC/RJ came from ``direction``: the other side requested, unless
        the RQ itself was seen (then it stays the authority)."""
        if self.evidence < CERTAIN:
            self.set_requestor(1 - direction)

    def learn_from_command(self, direction: int, cmd: Command) -> None:
        """Midstream (no A-ASSOCIATE seen): correct the requestor guess from DIMSE."""
        if self.evidence == CERTAIN or cmd.command_field is None:
            return
        service = cmd.command_field & 0x7FFF
        if service in _SCU_ONLY:
            self.requestor_direction = (1 - direction) if cmd.is_response else direction
            self.evidence = CERTAIN
        elif service == _C_STORE and not cmd.is_response and self.evidence == GUESS:
            # Weak: a C-GET's sub-operation C-STOREs flow the other way. Any later C-GET,
            # C-MOVE, C-FIND or C-ECHO message overrides this.
            self.requestor_direction = direction
            self.evidence = WEAK

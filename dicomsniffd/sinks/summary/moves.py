"""C-MOVEs linked to their sub-associations: for each C-MOVE, the Move Destination, the
association the SCP opened to it in the same capture, the time from the C-MOVE-RQ to the
first sub-operation C-STORE, and the sub-operation counts (``Summary.to_dict()["moves"]``).

Users ask for exactly this ("the C-MOVE response is stuck at pending for two minutes before
my storage SCP receives the first store request"): the two associations are separate TCP
connections, so only their AE titles and times tie them together. The link: the first
association that starts at or after the C-MOVE-RQ and no later than its final response,
called by the Move Destination AE, calling from the C-MOVE's SCP (its called AE) when one
such exists, else from any AE (an SCP may open sub-associations under another title).
"""

from __future__ import annotations

from typing import Any

from dicomsniffd.findings.facts import Association

MAX_MOVES = 1_000  # C-MOVEs kept (a query/retrieve gateway makes many): the rest counted


class MoveLinks:
    """Filled by the ``Summary`` sink while the capture replays; ``link`` at the end."""

    __slots__ = ("moves", "dropped")

    def __init__(self) -> None:
        self.moves: list[dict[str, Any]] = []
        self.dropped = 0

    def move(self, assoc: Association, event: Any) -> None:
        """A C-MOVE transaction (a ``DimseTransaction``) on ``assoc``."""
        if len(self.moves) >= MAX_MOVES:
            self.dropped += 1
            return
        self.moves.append(
            {
                "flow_id": assoc.flow_id,
                "calling_ae": assoc.calling_ae,
                "called_ae": assoc.called_ae,
                "move_destination": event.move_destination,
                "request_ts": event.request_ts,
                "response_complete_ts": event.response_complete_ts,
                "status": event.status,
                "outcome": event.outcome,
                "pending_responses": event.pending_responses,
                "completed": event.suboperations_completed,
                "failed": event.suboperations_failed,
                "warning": event.suboperations_warning,
                "remaining": event.suboperations_remaining,
            }
        )

    def link(self, associations: list[Association]) -> list[dict[str, Any]]:
        """The C-MOVEs in time order, each with its ``sub_association`` (or None)."""
        out = []
        for move in sorted(self.moves, key=lambda m: m["request_ts"]):
            sub = self._sub_association(move, associations)
            row = dict(move)
            row["sub_association"] = None
            if sub is not None:
                row["sub_association"] = {
                    "flow_id": sub.flow_id,
                    "calling_ae": sub.calling_ae,
                    "called_ae": sub.called_ae,
                    "server": sub.server,
                    "opened_after_s": _after(move["request_ts"], sub.start_ts),
                    "first_store_after_s": _after(move["request_ts"], sub.first_store_ts),
                }
            out.append(row)
        return out

    @staticmethod
    def _sub_association(
        move: dict[str, Any], associations: list[Association]
    ) -> Association | None:
        dest = move["move_destination"]
        if not dest:
            return None
        start, end = move["request_ts"], move["response_complete_ts"]
        candidates = [
            a
            for a in associations
            if a.called_ae == dest
            and a.flow_id != move["flow_id"]
            and a.start_ts is not None
            and a.start_ts >= start
            and (end is None or a.start_ts <= end)
        ]
        from_scp = [a for a in candidates if a.calling_ae == move["called_ae"]]
        chosen = from_scp or candidates
        return min(chosen, key=lambda a: a.start_ts or 0.0) if chosen else None


def _after(t0: float, t1: float | None) -> float | None:
    return None if t1 is None else round(t1 - t0, 6)

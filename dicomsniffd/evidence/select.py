"""Which associations of an analysed capture get an evidence file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dicomsniffd.evidence.folder import EvidenceError
from dicomsniffd.formatting import problem_score


def choose(
    associations: Sequence[Mapping[str, Any]],
    protocol_errors_by_flow: Mapping[str, int],
    *,
    every: bool = False,
    numbers: Sequence[int] = (),
) -> list[Mapping[str, Any]]:
    """The associations (``Association.to_dict``) to write, in time order: every one with
    ``every``; those numbered ``numbers`` (the summary's flow column) when given; else
    those the summary lists under "With problems" (a reject, abort or reset, a failure or
    warning status, an unanswered request, a protocol error, retransmissions, zero
    windows or bytes missing from the capture). An unknown number is a user error."""
    if every:
        return list(associations)
    if numbers:
        by_number = {a["flow_id"]: a for a in associations}
        unknown = [n for n in numbers if n not in by_number]
        if unknown:
            known = ", ".join(str(n) for n in sorted(by_number)[:20]) or "none"
            raise EvidenceError(
                f"--evidence-association {unknown[0]}: no association numbered so in the "
                f"capture (the summary's flow column; numbers seen: {known})"
            )
        return [by_number[n] for n in sorted(set(numbers))]
    return [
        a
        for a in associations
        if problem_score(a, protocol_errors_by_flow.get(str(a["flow_id"]), 0))
    ]

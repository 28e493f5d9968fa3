"""The one rule that turns two rollups into verdicts, stated in numbers (printed in every
output and in README "Compare before and after"), never decided by eye.

- A command is *failing* on a side when any transaction of it ended with a failure status
  (PS3.7 C.1 class "failure", which includes 0xA7xx "out of resources") or had no answer.
  An AE pair is failing when one of its commands is, or one of its associations was
  rejected or aborted.
- A timing phase is *regressed* when its p95 rose by more than ``P95_RATIO`` (20 %) *and*
  by more than ``P95_MIN_MS`` (10 ms), with at least ``MIN_SAMPLES`` (20) samples on each
  side; *improved* when it fell by as much. With fewer samples it is not judged (shown).
- A TCP health count (retransmissions, zero windows, resets) is regressed when it more
  than doubled *and* rose by more than ``TCP_MIN_RISE`` (10); improved the other way.
- Throughput and the findings are shown, not judged (the phases already time the upload).

Verdicts, the worst first (a pair takes the worst of its commands, the whole comparison
the worst of its pairs): regressed (failing after but not before, or nothing failing and a
phase or TCP count regressed), still-failing (failing before and after), fixed (failing
before, not after), improved (nothing failing, a phase or TCP count improved, none
regressed), unchanged (nothing failing, nothing beyond the rule). When a side fails, the
failures decide; the phases that moved are still listed.
not-comparable: the command or pair is on one side only (or, overall, no AE pair is on
both sides).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dicomsniffd.dicom.dimse import status_class

REGRESSED, STILL_FAILING, FIXED, IMPROVED, UNCHANGED, NOT_COMPARABLE = (
    "regressed",
    "still-failing",
    "fixed",
    "improved",
    "unchanged",
    "not-comparable",
)
VERDICTS = (REGRESSED, STILL_FAILING, FIXED, IMPROVED, UNCHANGED, NOT_COMPARABLE)
_WORST_FIRST = (REGRESSED, STILL_FAILING, FIXED, IMPROVED, UNCHANGED)

MIN_SAMPLES = 20
P95_RATIO = 1.20
P95_MIN_MS = 10.0
TCP_RATIO = 2.0
TCP_MIN_RISE = 10

# the judgement of one measure
UP, DOWN, SAME, TOO_FEW = "regressed", "improved", "within the rule", "too few samples"

RULE_TEXT = (
    f"a phase regresses when its p95 rises by more than {P95_RATIO - 1:.0%} and by more "
    f"than {P95_MIN_MS:g} ms with at least {MIN_SAMPLES} samples on each side (improves: "
    f"the same downwards); a TCP count (retransmissions, zero windows, resets) regresses "
    f"when it more than doubles and rises by more than {TCP_MIN_RISE}; failing = a failure "
    "status (0xA7xx included) or no answer, a rejected or aborted association"
)


def rule_dict() -> dict[str, Any]:
    """The rule's numbers, as ``compare --json`` states them."""
    return {
        "text": RULE_TEXT,
        "p95_ratio": P95_RATIO,
        "p95_min_ms": P95_MIN_MS,
        "min_samples": MIN_SAMPLES,
        "tcp_ratio": TCP_RATIO,
        "tcp_min_rise": TCP_MIN_RISE,
    }


def is_failure_status(status: str) -> bool:
    """A final status (``0xA700``) of class failure; an unreadable one counts as failure."""
    try:
        code = int(status, 16)
    except ValueError:
        return True
    return status_class(None, code) == "failure"


def failures_of(statuses: Mapping[str, int], unanswered: int) -> int:
    """Transactions that failed: failure statuses plus requests left unanswered."""
    return unanswered + sum(n for s, n in statuses.items() if is_failure_status(s))


def judge_p95(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """UP / DOWN / SAME / TOO_FEW for one phase's percentiles ({count, p50, p95, …})."""
    low, high = before.get("p95"), after.get("p95")
    if (
        low is None
        or high is None
        or (before.get("count") or 0) < MIN_SAMPLES
        or (after.get("count") or 0) < MIN_SAMPLES
    ):
        return TOO_FEW
    if high > low * P95_RATIO and high - low > P95_MIN_MS:
        return UP
    if low > high * P95_RATIO and low - high > P95_MIN_MS:
        return DOWN
    return SAME


def judge_count(before: int, after: int) -> str:
    """UP / DOWN / SAME for a TCP health count (more is worse)."""
    if after > before * TCP_RATIO and after - before > TCP_MIN_RISE:
        return UP
    if before > after * TCP_RATIO and before - after > TCP_MIN_RISE:
        return DOWN
    return SAME


def verdict(failing_before: bool, failing_after: bool, judgements: Iterable[str]) -> str:
    """The verdict of one command or pair from its failing state and measure judgements."""
    seen = set(judgements)
    if failing_after and not failing_before:
        return REGRESSED
    if failing_before and failing_after:
        return STILL_FAILING
    if failing_before:
        return FIXED
    if UP in seen:
        return REGRESSED
    return IMPROVED if DOWN in seen else UNCHANGED


def worst(verdicts: Iterable[str]) -> str:
    """The worst of comparable verdicts; NOT_COMPARABLE when there is none."""
    present = set(verdicts) - {NOT_COMPARABLE}
    return next((v for v in _WORST_FIRST if v in present), NOT_COMPARABLE)

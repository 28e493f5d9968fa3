"""The registry's vocabulary: what a finding is, what a rule reads, how a rule is declared.

Like Wireshark's expert-info registrations (``ei_register_info``: field, group, severity,
summary), every finding a rule can emit is declared once as a ``FindingKind``: its code
(the ``code`` key of the finding, stable across releases: users grep and alert on it), its
default severity, title and advice. A rule is a plain function decorated with
``@rule(KIND, ...)``; it reads the collected state (``Collected``, read-only) and the
capture info, and returns ``(finding, weight)`` pairs made by ``KIND.found(...)``. The
weight ranks findings of the same severity (most frequent first).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the summary imports the findings, not the other way round
    from dicomsniffd.findings.facts import Association, AssociationTotals, Command, StallTime

SEVERITIES = ("critical", "warning", "info")  # most severe first: the output order
MAX_EVIDENCE = 8  # evidence lines per finding; the rest are counted in one more line

Found = tuple[dict[str, Any], int]  # (finding, weight for ranking)


@dataclass(frozen=True, slots=True)
class FindingKind:
    """One finding code a rule can emit, with the words shown for it.

    ``severity``, ``title`` and ``advice`` are the defaults; a rule that grades by a
    measure (retransmission ratio) or names what it saw (the command, the reject reason)
    passes its own to ``found``.
    """

    code: str
    severity: str
    title: str
    advice: str

    def found(
        self,
        detail: str,
        evidence: list[str],
        weight: int,
        *,
        severity: str | None = None,
        title: str | None = None,
        advice: str | None = None,
        of: int | None = None,
    ) -> Found:
        """The finding dict (as ``--json`` prints it) and its ranking weight.

        ``of``: how many evidence lines there would be over all associations, when
        ``evidence`` comes from the kept records only (``Collected.associations``): the
        "… and N more" line counts from it."""
        total = max(of or 0, len(evidence))
        if total > len(evidence[:MAX_EVIDENCE]):
            shown = evidence[:MAX_EVIDENCE]
            evidence = [*shown, f"… and {total - len(shown)} more"]
        finding = {
            "severity": severity or self.severity,
            "code": self.code,
            "title": title or self.title,
            "detail": detail,
            "evidence": evidence,
            "advice": advice or self.advice,
        }
        return finding, weight


@dataclass(frozen=True, slots=True)
class Collected:
    """What the summary collected, as the rules see it (they must not change it).

    Keys of the counters: ``failures`` (command, status, calling AE, called AE);
    ``error_comments`` (command, status) -> up to three distinct comments;
    ``unanswered_by`` (command, outcome, calling AE, called AE); ``connection_failures``
    and ``tls`` (server "ip:port", reason/outcome); ``tcp`` field -> sender -> count.
    """

    # The kept association records (a bounded set: every problem up to a cap, a sample of
    # the rest), in start time order: evidence lines cite flows from these; counts over
    # all associations come from ``totals``.
    associations: Sequence[Association]
    totals: AssociationTotals
    commands: Mapping[str, Command]
    tcp: Mapping[str, Mapping[str, int]]
    connection_failures: Mapping[tuple[str, str], int]
    tls: Mapping[tuple[str, str], int]
    protocol_errors: Mapping[str, int]
    missed_total: int
    failures: Mapping[tuple[str, int, str, str], int]
    error_comments: Mapping[tuple[str, int], Sequence[str]]
    unanswered_by: Mapping[tuple[str, str, str, str], int]
    # (server "ip:port", outcome, how, refused_by) -> TLS connections (streams/tls.py)
    tls_handshakes: Mapping[tuple[str, str, str, str], int] = field(default_factory=dict)
    stalls: StallTime | None = None  # stalls inside DIMSE transfers (DESIGN §3)
    # (kind, sender, calling AE, called AE, sender's Implementation Class UID, its
    # Version Name) -> count of ProtocolViolation events (DESIGN §4b)
    protocol_violations: Mapping[tuple[str, str, str, str, str, str], int] = field(
        default_factory=dict
    )


Check = Callable[[Collected, Mapping[str, Any]], list[Found]]


@dataclass(frozen=True, slots=True)
class Rule:
    """A check and the finding kinds it emits (one, except where a single pass decides
    between two, e.g. slow SCP vs slow network for the same command)."""

    check: Check
    kinds: tuple[FindingKind, ...]

    @property
    def name(self) -> str:
        return f"{self.check.__module__}.{self.check.__name__}"

    def __call__(self, collected: Collected, info: Mapping[str, Any]) -> list[Found]:
        return self.check(collected, info)


def rule(*kinds: FindingKind) -> Callable[[Check], Rule]:
    """Declare a check as a rule emitting ``kinds``; list it in ``findings.RULES``."""

    def register(check: Check) -> Rule:
        return Rule(check, kinds)

    return register

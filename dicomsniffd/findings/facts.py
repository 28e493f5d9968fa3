"""What the summary keeps while a capture is replayed: one record per association (a bounded
set of them: ``sinks/summary/kept.py``), exact totals over all associations, one record
per DIMSE command, and the percentiles of their timings.

Timings are ``quantiles.Distribution``s: exact up to 20,000 samples each, then a DDSketch
with 1 % relative error, so memory stays flat for a capture of a million transactions.
The findings (``dicomsniffd.findings``) read these records; only the ``Summary`` sink
writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from dicomsniffd.dicom.events import ACCEPTOR, REQUESTOR, PresentationContext, UserInformation
from dicomsniffd.dicom.implementations import implementation_dict
from dicomsniffd.findings.quantiles import EXACT_LIMIT, Distribution, percentiles
from dicomsniffd.names import context_result, uid_display_name

# DESIGN §3's phases; for a single-response service the first three add up to the fourth
TIMINGS = ("request_transfer_ms", "response_latency_ms", "response_transfer_ms", "duration_ms")


def sender_counts() -> dict[str, int]:
    """A fresh ``{requestor: 0, acceptor: 0}`` counter."""
    return {REQUESTOR: 0, ACCEPTOR: 0}


# The TCP event counts of an association that had none (read only: see Association)
NO_TCP_EVENTS: Mapping[str, int] = MappingProxyType({REQUESTOR: 0, ACCEPTOR: 0})


class Association:
    """Everything the summary keeps about one connection."""

    # One per association (10,000 live in the many-flows benchmark): slots make it
    # smaller and its attribute stores cheaper.
    __slots__ = (
        "flow_id", "client", "server", "calling_ae", "called_ae", "start_ts", "end_ts",
        "requested", "accepted", "dicom_seen", "reject", "abort", "end", "duration",
        "contexts", "implementation_class_uid", "implementation_version_name", "dimse",
        "requests", "unanswered", "pdata", "missed", "retransmissions", "zero_windows",
        "resets", "protocol_errors", "requestor_info", "acceptor_info", "setup_seconds", "stores",
        "busy_seconds", "first_error", "command_with_dataset", "in_flight", "first_store_ts",
        "titles", "problem_score",
    )  # fmt: skip

    def __init__(self, flow: Any) -> None:
        self.flow_id: int = flow.flow_id
        self.client: str = flow.client
        self.server: str = flow.server
        self.calling_ae: str = flow.calling_ae
        self.called_ae: str = flow.called_ae
        self.start_ts: float | None = None
        self.end_ts: float | None = None
        self.requested = False
        self.accepted = False
        self.dicom_seen = False
        self.reject: dict[str, str] | None = None
        self.abort: dict[str, str] | None = None
        self.end: str | None = None
        self.duration: float | None = None
        # the event's tuple itself (memoised by the core, shared by the associations that
        # negotiated the same): read only
        self.contexts: tuple[PresentationContext, ...] = ()
        self.implementation_class_uid = ""
        self.implementation_version_name = ""
        self.dimse: dict[str, dict[str, int]] = {}
        self.requests = 0
        self.unanswered = 0
        # sender_counts(), written out: four calls less per association
        self.pdata = {REQUESTOR: 0, ACCEPTOR: 0}
        self.missed = 0
        # TCP events per sender: most associations have none, so they share one read-only
        # zero count until the first (Summary.tcp_event gives them their own dict)
        self.retransmissions: Mapping[str, int] = NO_TCP_EVENTS
        self.zero_windows: Mapping[str, int] = NO_TCP_EVENTS
        self.resets: Mapping[str, int] = NO_TCP_EVENTS
        self.protocol_errors = 0  # ProtocolError and Resynchronised events on this flow
        # the RQ's and the AC's user information: the decoded (frozen, memoised) object
        # itself, shared by every association that sent the same PDU; turned into
        # implementation_dict only when the summary is written
        self.requestor_info: UserInformation | None = None
        self.acceptor_info: UserInformation | None = None
        # for the interoperability findings (findings/interop.py)
        self.setup_seconds: float | None = None  # A-ASSOCIATE-RQ -> AC
        self.stores = 0  # C-STORE requests
        self.busy_seconds = 0.0  # sum of the DIMSE transactions' durations
        self.first_error: tuple[str, str, str] | None = None  # (sender, kind, detail)
        # AssociationEnded.command_with_dataset: ((sender, messages), ...)
        self.command_with_dataset: tuple[tuple[str, int], ...] = ()
        self.in_flight = 0  # requests still open when the capture (or the daemon) stopped
        # the first C-STORE-RQ seen: a C-MOVE sub-association's first store (moves.py)
        self.first_store_ts: float | None = None
        # the flow's (calling, called) titles the two fields above were last set from (the
        # Summary may fold them, see sinks/summary/sink.py MAX_AE_PAIRS); none yet
        self.titles: tuple[str | None, str | None] = (None, None)
        # formatting.problem_score of the ended association, once KeptAssociations.add has
        # counted it (the text summary ranks the kept records by it: not computed twice)
        self.problem_score: int | None = None

    @property
    def outcome(self) -> str:
        if self.accepted:
            return "accepted"
        if self.reject is not None:
            return "rejected"
        if self.requested and (self.abort is not None or self.end in ("aborted", "reset")):
            return "aborted-before-accept"
        return "unknown"

    @property
    def pair(self) -> str:
        return f"{self.calling_ae} → {self.called_ae}"

    @property
    def cut_short(self) -> bool:
        """Ended by A-ABORT or a TCP reset rather than a release."""
        return self.abort is not None or self.end in ("aborted", "reset")

    @property
    def reset_seen(self) -> bool:
        """Ended by a TCP reset, or a reset was seen on it."""
        return self.end == "reset" or any(self.resets.values())

    def problem_fields(self) -> dict[str, Any]:
        """The keys of ``to_dict`` that ``formatting.problem_score`` reads, without the
        cost of the whole dict (presentation contexts, UID names): asked once per
        association when the summary decides whether to keep its record."""
        return {
            "outcome": self.outcome,
            "abort": self.abort,
            "end": self.end,
            "dimse": self.dimse,
            "unanswered": self.unanswered,
            "resets": _total(self.resets),
            "retransmissions": _total(self.retransmissions),
            "zero_windows": _total(self.zero_windows),
            "missed_bytes": self.missed,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow_id": self.flow_id,
            "client": self.client,
            "server": self.server,
            "calling_ae": self.calling_ae,
            "called_ae": self.called_ae,
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "outcome": self.outcome,
            "end": self.end,
            "reject": self.reject,
            "abort": self.abort,
            "presentation_contexts": _context_dicts(self.contexts),
            "implementation_class_uid": self.implementation_class_uid,
            "implementation_version_name": self.implementation_version_name,
            "dimse": {cmd: dict(statuses) for cmd, statuses in self.dimse.items()},
            "unanswered": self.unanswered,
            "in_flight": self.in_flight,
            "pdata_bytes": dict(self.pdata),
            "missed_bytes": self.missed,
            "retransmissions": sum(self.retransmissions.values()),
            "zero_windows": sum(self.zero_windows.values()),
            "resets": sum(self.resets.values()),
            "requestor_implementation": _implementation(self.requestor_info),
            "acceptor_implementation": _implementation(self.acceptor_info),
        }


def _total(counts: Mapping[str, int]) -> int:
    """Both senders' count of one kind of TCP event; the shared zero count (most
    associations) without summing a mapping proxy's values."""
    return 0 if counts is NO_TCP_EVENTS else sum(counts.values())


# Answers computed once per negotiation. The core hands the same (frozen) contexts tuple to
# every association that negotiated byte-identical PDUs, and the UID names were most of
# Association.to_dict on a capture of many short associations. Keyed by the tuple's id,
# the tuple kept beside its answer so the id cannot be reused; bounded (cleared when
# full). The answers are shared by those associations: read only (outputs, the report).
# The same holds for the decoded user information of an RQ or AC (a frozen object the
# core shares the same way): its implementation_dict is asked twice per association.
_MEMO_ENTRIES = 1024
_REFUSED: dict[int, tuple[tuple, Any]] = {}  # refused_contexts, asked once per association
_CONTEXT_DICTS: dict[int, tuple[tuple, Any]] = {}  # to_dict's presentation_contexts
_IMPLEMENTATIONS: dict[int, tuple[UserInformation, Any]] = {}  # to_dict's *_implementation


def _per_negotiation(memo: dict, contexts: Any, answer: Any) -> Any:
    """``answer(contexts)``, memoised in ``memo`` for the core's contexts tuples (and
    its user information objects)."""
    if type(contexts) is list:  # (tests): may change, not memoised
        return answer(contexts)
    hit = memo.get(id(contexts))
    if hit is None or hit[0] is not contexts:
        if len(memo) >= _MEMO_ENTRIES:
            memo.clear()
        hit = memo[id(contexts)] = (contexts, answer(contexts))
    return hit[1]


def refused_contexts(a: Association) -> tuple[bool, dict[str, tuple[set[str], str]]]:
    """(no context accepted at all, {abstract syntax: (proposed transfer syntax names,
    result)} of the SOP classes the SCP refused on every context proposing them), for an
    accepted association whose answer was seen; ``(False, {})`` otherwise."""
    if not a.accepted or not a.contexts:
        return False, {}
    return _per_negotiation(_REFUSED, a.contexts, _refused)


def _refused(contexts: Sequence[PresentationContext]) -> tuple[bool, dict[str, Any]]:
    """refused_contexts of an accepted association's (non-empty) ``contexts``."""
    accepted_syntaxes = {pc.abstract_syntax for pc in contexts if pc.result == 0}
    refused: dict[str, tuple[set[str], str]] = {}
    for pc in contexts:
        if pc.result in (3, 4) and pc.abstract_syntax not in accepted_syntaxes:
            names, _ = refused.get(pc.abstract_syntax, (set(), ""))
            names.update(uid_display_name(ts) for ts in pc.transfer_syntaxes)
            refused[pc.abstract_syntax] = (names, context_result(pc.result))
    return not accepted_syntaxes, refused


class AssociationTotals:
    """Exact counts over every association seen, whether its record was kept or not: what
    the findings count, and the M of "showing N of M" (``Summary`` keeps a bounded set of
    records, ``sinks/summary/kept.py``)."""

    # per AE pair: associations rejected / aborted, and the TCP health of its connections
    HEALTH = ("rejected", "aborted", "retransmissions", "zero_windows", "resets")

    def __init__(self) -> None:
        self.associations = 0
        self.problems = 0  # formatting.problem_score > 0
        self.outcomes: dict[str, int] = {}  # Association.outcome -> count
        self.aborted = 0  # an A-ABORT was seen
        self.reset = 0  # Association.reset_seen
        self.cut_short = 0  # Association.cut_short
        self.with_gaps = 0  # bytes never captured
        # (calling AE, called AE, result, source, reason) -> A-ASSOCIATE-RJ count
        self.rejects: dict[tuple[str, str, str, str, str], int] = {}
        self.refused_contexts = 0  # (association, SOP class refused) pairs
        self.none_accepted = 0  # associations on which no context was accepted
        self.by_pair: dict[tuple[str, str], int] = {}  # (calling, called) -> associations
        # (calling, called) -> its associations' HEALTH counts (compare reads them)
        self.health: dict[tuple[str, str], dict[str, int]] = {}

    def add(
        self,
        a: Association,
        problem: bool,
        refused: tuple[bool, dict[str, Any]],
        fields: dict[str, Any] | None = None,
    ) -> None:
        """Count one association (``problem``: its ``formatting.problem_score`` > 0;
        ``refused``: its ``refused_contexts``; ``fields``: its ``problem_fields``, when the
        caller has them: their sums are not done again)."""
        if fields is None:
            fields = a.problem_fields()
        self.associations += 1
        outcome = fields["outcome"]
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.refused_contexts += len(refused[1])
        self.none_accepted += refused[0]
        pair = (a.calling_ae, a.called_ae)
        self.by_pair[pair] = self.by_pair.get(pair, 0) + 1
        health = self.health.get(pair)
        if health is None:
            health = self.health[pair] = dict.fromkeys(self.HEALTH, 0)
        if not problem and a.reject is None:
            # problem_score 0: an abort, a reset, a gap and every TCP event score (a
            # reject too, but for an odd RJ after an AC), so each count below would add
            # 0 (most associations stop here)
            return
        self.problems += problem  # (an RJ after an AC reaches here without a problem)
        self.aborted += a.abort is not None
        self.reset += a.reset_seen
        self.cut_short += a.cut_short
        self.with_gaps += a.missed > 0
        if a.reject is not None:
            r = a.reject
            key = (a.calling_ae, a.called_ae, r["result"], r["source"], r["reason"])
            self.rejects[key] = self.rejects.get(key, 0) + 1
        health["rejected"] += a.reject is not None
        health["aborted"] += a.abort is not None
        health["retransmissions"] += fields["retransmissions"]
        health["zero_windows"] += fields["zero_windows"]
        health["resets"] += fields["resets"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "associations": self.associations,
            "with_problems": self.problems,
            "outcomes": dict(sorted(self.outcomes.items())),
            "aborted": self.aborted,
            "reset": self.reset,
            "cut_short": self.cut_short,
            "with_gaps": self.with_gaps,
        }


def _implementation(info: UserInformation | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return _per_negotiation(_IMPLEMENTATIONS, info, implementation_dict)


def _context_dicts(contexts: Sequence[PresentationContext]) -> list[dict[str, Any]]:
    return _per_negotiation(_CONTEXT_DICTS, contexts, _context_dict_list)


def _context_dict_list(contexts: Sequence[PresentationContext]) -> list[dict[str, Any]]:
    return [_context_dict(pc) for pc in contexts]


def _context_dict(pc: PresentationContext) -> dict[str, Any]:
    return {
        "context_id": pc.context_id,
        "abstract_syntax": pc.abstract_syntax,
        "abstract_syntax_name": uid_display_name(pc.abstract_syntax),
        "transfer_syntaxes_proposed": [uid_display_name(ts) for ts in pc.transfer_syntaxes],
        "result": context_result(pc.result) if pc.result is not None else None,
        "accepted_transfer_syntax_name": uid_display_name(pc.accepted_transfer_syntax),
    }


class Command:
    """Global statistics of one DIMSE command (``C-STORE``…)."""

    def __init__(self, exact_limit: int = EXACT_LIMIT) -> None:
        self.requests = 0
        self.responses: dict[str, int] = {}
        self.unanswered = 0
        self.in_flight = 0  # open when the capture stopped: not answered yet, not unanswered
        self.samples = {name: Distribution(exact_limit) for name in TIMINGS}
        # each Distribution's buffer, for the sink's appends (Summary.compact bounds them)
        self.buffers = {name: d.buffer for name, d in self.samples.items()}
        self.dataset_bytes = 0
        self.throughput_bytes = 0
        self.throughput_seconds = 0.0
        self.incomplete = 0

    def timing(self, name: str) -> dict[str, Any]:
        """Percentiles of one of ``TIMINGS``."""
        return percentiles(self.samples[name])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.requests,
            "responses": dict(sorted(self.responses.items())),
            "unanswered": self.unanswered,
            "in_flight": self.in_flight,
        }
        for name in TIMINGS:
            out[name] = self.timing(name)
        out["dataset_bytes"] = self.dataset_bytes
        out["throughput_mbps"] = self.throughput_mbps
        return out

    @property
    def throughput_mbps(self) -> float | None:
        """Megabits per second over the requests whose upload took measurable time
        (a one-packet object has zero transfer time and would make this infinite)."""
        if self.throughput_seconds <= 0:
            return None
        return round(self.throughput_bytes * 8 / self.throughput_seconds / 1e6, 3)


class StallTime:
    """Stalls inside DIMSE transfers (DESIGN §3), per AE pair and command: how much of the
    transactions' time they took, by the side whose data stalled and the cause."""

    def __init__(self) -> None:
        # (calling, called, command) -> [transactions, their summed duration (s)]
        self.time: dict[tuple[str, str, str], list[float]] = {}
        # (calling, called, command, sender, cause) -> [stalls, seconds, transactions hit]
        self.stalls: dict[tuple[str, str, str, str, str], list[float]] = {}

    def add(self, pair: tuple[str, str], command: str, duration: float | None, stalls) -> None:
        """One answered transaction: its duration and ``DimseTransaction.stalls``."""
        if duration is None:
            return
        key = (*pair, command)
        time = self.time.get(key)
        if time is None:  # (not setdefault: it would build the list every time)
            time = self.time[key] = [0, 0.0]
        time[0] += 1
        time[1] += duration
        for sender, cause, count, seconds in stalls:
            total = self.stalls.setdefault((*pair, command, sender, cause), [0, 0.0, 0])
            total[0] += count
            total[1] += seconds
            total[2] += 1

    def to_dict(self) -> list[dict[str, Any]]:
        return [
            {
                "calling_ae": calling,
                "called_ae": called,
                "command": command,
                "sender": sender,
                "cause": cause,
                "stalls": int(n),
                "seconds": round(seconds, 6),
                "transactions": int(hit),
                "share": round(seconds / self.time[(calling, called, command)][1], 4)
                if self.time[(calling, called, command)][1] > 0
                else None,
            }
            for (calling, called, command, sender, cause), (n, seconds, hit) in sorted(
                self.stalls.items()
            )
        ]


__all__ = ("TIMINGS", "Association", "AssociationTotals", "Command", "StallTime", "percentiles")

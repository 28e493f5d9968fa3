"""Did the operations succeed? DIMSE failure statuses (PS3.7 Annex C), the SCP out of
resources (0xA7xx), and requests that never got a final response."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dicomsniffd.findings.rule import Collected, FindingKind, Found, rule
from dicomsniffd.formatting import plural
from dicomsniffd.names import is_out_of_resources, status_hex, status_text

# Likely cause and what to check, per failure status (PS3.4 service class statuses).
_FAILURE_ADVICE = {
    0xA801: "C-MOVE destination unknown: configure the destination AE (title, IP, port) on "
    "the C-MOVE SCP.",
    0x0122: "The SCP does not support this SOP class: enable it on the SCP or send a "
    "supported object type.",
    0x0118: "The SCP does not know this SOP class: enable it on the SCP.",
    0x0111: "The SCP already has an object with this SOP Instance UID (duplicate); check "
    "whether it is a resend or a UID clash.",
    0x0124: "The SCP refused the operation for this calling AE: check its access rules.",
    0x0110: "Processing failure inside the SCP: its log has the cause.",
    0x0213: "Resource limitation on the SCP (disk, memory, licence).",
}
# Advice by command where the status table's advice would not fit: C-ECHO moves no object
# (0x0122 on a C-ECHO is "Verification not supported", not "send another object type").
_COMMAND_FAILURE_ADVICE = {
    "C-ECHO": "C-ECHO only asks whether the SCP's DICOM service answers, and the association "
    "was accepted, so the network path and the AE titles work. A failure status means the "
    "SCP refuses Verification (0x0122: it does not offer the Verification SOP class as SCP; "
    "others: refused for this calling AE or an internal error): enable Verification (C-ECHO "
    "SCP) on it, or check its log; test with the service you really need (e.g. a C-STORE).",
}
_FAILURE_DEFAULT = (
    "Look up the status in the SCP's DICOM conformance statement and its log at the times "
    "of the failures; 0xA9xx and 0xCxxx failures usually mean the SCP rejected the content "
    "of the object."
)

OUT_OF_RESOURCES = FindingKind(
    "out-of-resources",
    "critical",
    "The SCP is out of resources (0xA700)",
    "The SCP ran out of something: free disk space on the archive/cache, database "
    "space or table limits, memory, or a licence limit (studies, storage, connections). "
    "For C-FIND/C-MOVE (0xA701/0xA702) it may be a limit on the number of matches or "
    "sub-operations. Check the PACS storage and licence first.",
)
DIMSE_FAILURES = FindingKind(
    "dimse-failures", "critical", "DIMSE operations failed", _FAILURE_DEFAULT
)
UNANSWERED = FindingKind(
    "unanswered",
    "warning",
    "Requests without a response",
    "The SCP did not answer in time: it hung, was overloaded, or the SCU gave up (its "
    "DIMSE timeout is shorter than the SCP's processing time). Compare the SCU's timeout "
    "with the response latency below and look at the SCP's log at those times. If the "
    "capture is incomplete, some responses may simply not have been captured.",
)


def _failure_rows(
    c: Collected, predicate: Callable[[int], bool]
) -> list[tuple[str, int, str, int]]:
    """(command, status, "calling → called", count) for failure responses matching."""
    return sorted(
        (
            (command, status, f"{calling} → {called}", n)
            for (command, status, calling, called), n in c.failures.items()
            if predicate(status)
        ),
        key=lambda row: -row[3],
    )


def _evidence_line(c: Collected, command: str, status: int, pair: str, n: int) -> str:
    line = f"{command} {status_hex(status)} ({status_text(status)}) {pair}: {plural(n, 'time')}"
    comments = c.error_comments.get((command, status))
    if comments:
        line += f"; error comment: {' | '.join(comments)}"
    return line


@rule(OUT_OF_RESOURCES)
def out_of_resources(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    rows = _failure_rows(c, is_out_of_resources)
    if not rows:
        return []
    total = sum(row[3] for row in rows)
    detail = (
        f"The SCP answered {plural(total, 'request')} with 0xA7xx 'Refused: out of "
        "resources'. Those objects or queries were not processed."
    )
    evidence = [_evidence_line(c, *row) for row in rows]
    return [OUT_OF_RESOURCES.found(detail, evidence, total)]


@rule(DIMSE_FAILURES)
def dimse_failures(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    rows = _failure_rows(c, lambda s: not is_out_of_resources(s))
    if not rows:
        return []
    total = sum(row[3] for row in rows)
    statuses = sorted({row[1] for row in rows})
    detail = (
        f"{plural(total, 'DIMSE request')} failed: "
        + ", ".join(f"{status_hex(s)} {status_text(s)}" for s in statuses)
        + "."
    )
    advice = _advice_per_failure(rows)
    evidence = [_evidence_line(c, *row) for row in rows]
    return [DIMSE_FAILURES.found(detail, evidence, total, advice=advice)]


def _failure_advice(command: str, status: int) -> str:
    return _COMMAND_FAILURE_ADVICE.get(command) or _FAILURE_ADVICE.get(status, _FAILURE_DEFAULT)


def _advice_per_failure(rows: list[tuple[str, int, str, int]]) -> str:
    """The advice for each (command, status) failed; when they differ, each led by the
    failure it is about, so an administrator knows which applies to what."""
    advice: dict[str, list[str]] = {}
    for command, status, _pair, _n in rows:
        label = f"{command} {status_hex(status)}"
        labels = advice.setdefault(_failure_advice(command, status), [])
        if label not in labels:
            labels.append(label)
    if len(advice) == 1:
        return next(iter(advice))
    return " ".join(f"{', '.join(labels)}: {text}" for text, labels in advice.items())


@rule(UNANSWERED)
def unanswered(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    if not c.unanswered_by:
        return []
    total = sum(c.unanswered_by.values())
    evidence = [
        f"{command} {calling} → {called}: {plural(n, 'request')} "
        + ("open when the association ended" if outcome == "unanswered-ended" else "timed out")
        for (command, outcome, calling, called), n in sorted(
            c.unanswered_by.items(), key=lambda kv: -kv[1]
        )
    ]
    detail = (
        f"{plural(total, 'request')} never got a final response: the association ended "
        "(release, abort or reset) or the transaction timed out with the request still open."
    )
    return [UNANSWERED.found(detail, evidence, total)]

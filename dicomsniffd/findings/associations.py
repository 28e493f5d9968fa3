"""Why was the association refused, or cut short? A-ASSOCIATE-RJ, presentation contexts
the SCP refused (PS3.8 Table 9-18), and A-ABORT."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomsniffd.dicom.events import REQUESTOR
from dicomsniffd.findings.facts import refused_contexts
from dicomsniffd.findings.interop import gave_up_for_transfer_syntax
from dicomsniffd.findings.rule import Collected, FindingKind, Found, rule
from dicomsniffd.formatting import plural
from dicomsniffd.names import uid_display_name

# Likely cause and what to check, per A-ASSOCIATE-RJ reason (matched by substring).
_REJECT_ADVICE = (
    (
        "called-ae",
        "The SCP does not know the called AE title the SCU asked for. Check the AE title "
        "configured on the SCP and the called AE configured on the sending device: they must "
        "match exactly (case and spaces count, at most 16 characters).",
    ),
    (
        "calling-ae",
        "The SCP does not accept this calling AE title. Add the sending device (AE title, IP "
        "address and port) to the SCP's list of known/allowed nodes, or fix the AE title the "
        "device sends.",
    ),
    (
        "application-context",
        "The SCP refused the application context name: the SCU is not speaking standard "
        "DICOM (1.2.840.10008.3.1.1.1). Check the SCU's DICOM configuration.",
    ),
    (
        "protocol-version",
        "The SCP refused the protocol version. Check both ends' DICOM stacks are up to date.",
    ),
    (
        "congestion",
        "The SCP is temporarily overloaded (transient reject). Check its load and its limit "
        "on simultaneous associations; the SCU should retry.",
    ),
    (
        "local-limit",
        "The SCP reached its limit of simultaneous associations (transient reject). Raise the "
        "limit on the SCP or reduce parallel sends from the SCUs.",
    ),
)
_REJECT_DEFAULT = (
    "The SCP refused the association without a specific reason. Its own log says why: "
    "usually an unknown calling AE, an IP address not allowed, or a licence/connection limit."
)

ASSOCIATION_REJECTED = FindingKind(
    "association-rejected", "critical", "Associations rejected", _REJECT_DEFAULT
)
NO_ACCEPTED_CONTEXT = FindingKind(
    "no-accepted-context",
    "critical",
    "Associations with no accepted presentation context",
    "'abstract-syntax-not-supported': enable that SOP class (object type) on the SCP. "
    "'transfer-syntaxes-not-supported': the SCP accepts none of the proposed encodings; "
    "enable one of them on the SCP (e.g. Explicit/Implicit VR Little Endian or the "
    "compression in use), or configure the SCU to also propose Implicit VR Little Endian.",
)
# no-accepted-context when at least one context was accepted on every association
_SOME_REFUSED_TITLE = "SOP classes refused by the SCP"
ABORTS = FindingKind(
    "aborts",
    "warning",
    "Associations aborted",
    "An abort from the service user means an application gave up: typically a timeout "
    "on the SCU while waiting for the SCP, a cancelled job, or an internal error. An "
    "abort from the service provider means a DICOM stack saw a protocol problem "
    "(unexpected PDU, bad parameter). Check the log of the side that sent the abort at "
    "the time shown.",
)


@rule(ASSOCIATION_REJECTED)
def association_rejected(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    groups = c.totals.rejects  # exact: every association, kept or not
    if not groups:
        return []
    total = sum(groups.values())
    evidence = [
        f"{calling} → {called}: {reason} ({result}, from {source}), {plural(n, 'time')}"
        for (calling, called, result, source, reason), n in sorted(
            groups.items(), key=lambda kv: -kv[1]
        )
    ]
    reasons = sorted({key[4] for key in groups})
    # each reason's advice next to that reason (several reasons: which applies to which)
    texts = [
        next((text for needle, text in _REJECT_ADVICE if needle in reason), _REJECT_DEFAULT)
        for reason in reasons
    ]
    advice = (
        texts[0]
        if len(reasons) == 1
        else " ".join(f"{reason}: {text}" for reason, text in zip(reasons, texts, strict=True))
    )
    detail = (
        f"{plural(total, 'association')} {'was' if total == 1 else 'were'} refused by "
        "the SCP (A-ASSOCIATE-RJ), "
        f"reason: {', '.join(reasons)}. Nothing was transferred on them."
    )
    title = ASSOCIATION_REJECTED.title + (
        ": called AE title not recognised" if reasons == ["called-ae-not-recognized"] else ""
    )
    return [ASSOCIATION_REJECTED.found(detail, evidence, total, title=title, advice=advice)]


@rule(NO_ACCEPTED_CONTEXT)
def no_accepted_context(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    evidence: list[str] = []
    # counts over all associations; the evidence lines from the kept records
    none_accepted = c.totals.none_accepted
    weight = c.totals.refused_contexts
    for a in c.associations:
        for uid, (ts_names, why) in refused_contexts(a)[1].items():
            evidence.append(
                f"flow {a.flow_id} {a.pair}: {uid_display_name(uid) or 'unknown'} "
                f"refused ({why}); proposed transfer syntaxes: {', '.join(sorted(ts_names))}"
            )
    if not evidence:
        return []
    detail = (
        "The SCP refused some SOP classes the SCU proposed: those objects cannot be sent "
        "to it on these associations."
    )
    if not none_accepted:
        return [
            NO_ACCEPTED_CONTEXT.found(
                detail, evidence, weight, severity="warning", title=_SOME_REFUSED_TITLE, of=weight
            )
        ]
    detail = (
        f"On {plural(none_accepted, 'association')} the SCP accepted none of the "
        "proposed presentation contexts, so nothing could be sent. " + detail
    )
    return [NO_ACCEPTED_CONTEXT.found(detail, evidence, weight, of=weight)]


@rule(ABORTS)
def aborts(c: Collected, info: Mapping[str, Any]) -> list[Found]:
    # an SCU that gave up for want of a context for its transfer syntax is said, with the
    # cause, by interop.no_context_for_transfer_syntax instead
    aborted, gave_up = [], 0
    for a in c.associations:
        if a.abort is not None:
            if gave_up_for_transfer_syntax(a):
                gave_up += 1
            else:
                aborted.append(a)
    # exact: aborted associations are problem records, all kept up to the summary's cap
    total = c.totals.aborted - gave_up
    if total <= 0:
        return []
    evidence = []
    for a in aborted:
        who = "SCU (requestor)" if a.abort["sender"] == REQUESTOR else "SCP (acceptor)"
        line = (
            f"flow {a.flow_id} {a.pair}: A-ABORT from the {who}, "
            f"{a.abort['source']}, {a.abort['reason']}"
        )
        if a.duration is not None:
            line += f", after {a.duration:.1f} s"
        if a.unanswered:
            line += f", {plural(a.unanswered, 'request')} unanswered"
        evidence.append(line)
    detail = (
        f"{plural(total, 'association')} ended with A-ABORT instead of an orderly "
        "release; whatever was in transit was lost."
    )
    return [ABORTS.found(detail, evidence, total, of=total)]

"""Findings: what the offline summary tells a PACS administrator, one module per question.

  connections   can the SCU reach the SCP? (refused/unanswered connections, TLS)
  associations  why was the association refused or cut short? (RJ, contexts, A-ABORT)
  dimse         did the operations succeed? (failure statuses, 0xA7xx, unanswered)
  timing        is the PACS slow, or the network?
  tcp           is the TCP path healthy? (resets, retransmissions, zero windows)
  capture       can the capture be trusted? (gaps, snaplen, offloads, no DICOM at all)
  protocol      does every peer speak the Upper Layer protocol?
  interop       do the two sides work together? (association per object, partial
                service, no context for the file's transfer syntax, TLS vs plain)
  stalls        where does the time inside a transfer go? (stalls by cause)

A new finding is one ``FindingKind`` and one ``@rule`` function in the module of its
question, plus its line in ``RULES`` below. Rules only read the collected state
(``Collected``, built by the ``Summary`` sink) and the capture info.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomsniffd.findings import (
    associations,
    capture,
    conformance,
    connections,
    dimse,
    interop,
    protocol,
    stalls,
    tcp,
    timing,
)
from dicomsniffd.findings.rule import SEVERITIES, Collected, FindingKind, Found, Rule, rule

# Evaluation order. Findings are then ranked by severity and weight; the sort is stable,
# so among equal ones this order is the output order: new rules go at the end.
RULES: tuple[Rule, ...] = (
    connections.connection_refused,
    connections.connection_unanswered,
    associations.association_rejected,
    associations.no_accepted_context,
    dimse.out_of_resources,
    dimse.dimse_failures,
    dimse.unanswered,
    associations.aborts,
    tcp.resets,
    timing.slow,
    tcp.retransmissions,
    tcp.zero_window,
    capture.capture_incomplete,
    capture.capture_offloads,
    protocol.protocol_errors,
    connections.tls,
    capture.no_dicom,
    interop.one_association_per_object,
    interop.partial_service,
    interop.no_context_for_transfer_syntax,
    interop.tls_to_plain_port,
    interop.plain_to_tls_port,
    interop.tls_refused,
    interop.command_with_dataset,
    stalls.delayed_ack,
    stalls.zero_window,
    stalls.loss_recovery,
    stalls.sender_idle,
    conformance.protocol_violations,
    capture.capture_ended,
)

# Every finding code, with its default severity, title and advice.
KINDS: dict[str, FindingKind] = {kind.code: kind for r in RULES for kind in r.kinds}


def evaluate(collected: Collected, capture_info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """All findings, most severe first; within a severity, the most frequent first."""
    found: list[Found] = []
    for r in RULES:
        found.extend(r.check(collected, capture_info))
    found.sort(key=lambda item: (SEVERITIES.index(item[0]["severity"]), -item[1]))
    return [finding for finding, _weight in found]


__all__ = ("KINDS", "RULES", "SEVERITIES", "Collected", "FindingKind", "Rule", "evaluate", "rule")

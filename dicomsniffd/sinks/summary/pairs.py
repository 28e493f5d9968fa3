"""The per-AE-pair rollup of the ``analyze`` summary: for each calling → called AE pair,
its associations, objects (C-STORE requests), failed responses and the p95 of each DIMSE
timing phase (``Summary.to_dict()["pairs"]``, the "By AE pair" table of the text), and
per DIMSE command of the pair its transactions, final statuses, phases and bytes (what
``dicomsniffd compare`` reads back from a saved ``analyze --json``).

The timings are ``Distribution``s with a smaller exact limit than the global per-command
ones (a site may have hundreds of pairs): beyond it, a DDSketch with 1 % relative error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomsniffd.dicom.transactions import IN_FLIGHT
from dicomsniffd.findings.facts import TIMINGS, AssociationTotals, Command, percentiles
from dicomsniffd.findings.quantiles import Distribution
from dicomsniffd.names import status_hex

Pair = tuple[str, str]
PAIR_EXACT_LIMIT = 1_000  # samples per pair (and per pair and command) and phase kept exactly


class PairTimings:
    """Objects and timing samples (ms) of one AE pair, filled while the capture replays."""

    __slots__ = ("objects", "samples", "buffers", "commands")

    def __init__(self) -> None:
        self.objects = 0
        self.samples = {name: Distribution(PAIR_EXACT_LIMIT) for name in TIMINGS}
        self.buffers = {name: d.buffer for name, d in self.samples.items()}  # see Command
        # per DIMSE command, counted from its transactions (final statuses, no pendings)
        self.commands: dict[str, Command] = {}


def record_transaction(pair: PairTimings, event: Any, command: str) -> dict[str, Any]:
    """Count one ``DimseTransaction`` in the row of ``command`` (its name by role, e.g.
    "C-STORE (get)") of the pair, once per transaction; returns the row's timing buffers,
    which ``Summary._on_transaction`` fills with the samples it appends anyway (and
    compacts with the others)."""
    stats = pair.commands.get(command)
    if stats is None:
        stats = pair.commands[command] = Command(PAIR_EXACT_LIMIT)
    stats.requests += 1
    if event.outcome == IN_FLIGHT:
        stats.in_flight += 1  # open when the capture stopped: not unanswered
    elif event.status is None:
        stats.unanswered += 1
    else:
        status = status_hex(event.status)
        stats.responses[status] = stats.responses.get(status, 0) + 1
    stats.dataset_bytes += event.request_dataset_bytes
    if event.request_dataset_bytes and event.request_transfer_seconds:
        stats.throughput_bytes += event.request_dataset_bytes
        stats.throughput_seconds += event.request_transfer_seconds
    return stats.buffers


def _command_row(stats: Command) -> dict[str, Any]:
    """The global command row's shape, but its statuses are final ones (no pendings)."""
    for distribution in stats.samples.values():
        distribution.compact()  # appended to directly: over its limit, it is a sketch
    row = stats.to_dict()
    row["statuses"] = row.pop("responses")
    row["bytes"] = row.pop("dataset_bytes")
    return row


def rollup(
    totals: AssociationTotals,
    timings: Mapping[Pair, PairTimings],
    failures: Mapping[tuple[str, int, str, str], int],
) -> list[dict[str, Any]]:
    """One dict per AE pair (``totals``: exact counts over every association, its record
    kept or not), the pairs with failures first, then the busiest."""
    assocs, health = totals.by_pair, totals.health
    no_health = dict.fromkeys(AssociationTotals.HEALTH, 0)
    failed: dict[Pair, int] = {}
    for (_command, _status, calling, called), n in failures.items():
        failed[(calling, called)] = failed.get((calling, called), 0) + n
    rows = []
    for key in set(assocs) | set(timings) | set(failed):
        pair = timings.get(key)
        row: dict[str, Any] = {
            "calling_ae": key[0],
            "called_ae": key[1],
            "associations": assocs.get(key, 0),
            "objects": pair.objects if pair is not None else 0,
            "failures": failed.get(key, 0),
        }
        for name in TIMINGS:
            row[name] = percentiles(pair.samples[name] if pair is not None else ())
        row.update(health.get(key) or no_health)
        commands = pair.commands if pair is not None else {}
        row["commands"] = {cmd: _command_row(s) for cmd, s in sorted(commands.items())}
        rows.append(row)
    rows.sort(key=lambda r: (-r["failures"], -r["associations"], r["calling_ae"], r["called_ae"]))
    return rows

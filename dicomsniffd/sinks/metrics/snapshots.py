"""Snapshots: a store's whole state as plain data, and the parent's merge of its workers'.

Workers send a snapshot to the parent process, which serves its own (empty) state plus
the latest snapshot of every worker (DESIGN §6: prometheus-client's multiprocess mode
cannot run custom collectors). Because the state is plain dicts, a snapshot is a copy and
merging is an addition.

A snapshot: ``{"format": 1, "bounds": {histogram: upper bounds}, "values": {family:
{label tuple: number}}, "hists": {family: {label tuple: [count per bucket..., count above
the last bound, sum]}}, "self_stats": [SelfStats...]}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dicomsniffd.sinks.metrics.catalogue import Key, SelfStats

Snapshot = dict[str, Any]

SNAPSHOT_FORMAT = 1


def take(
    values: dict[str, dict[Key, float]],
    hists: dict[str, dict[Key, list[float]]],
    bounds: Mapping[str, tuple[float, ...]],
    self_stats: list[SelfStats],
) -> Snapshot:
    """A copy of a store's state, safe to pickle and to send to a parent process.

    Copies are taken with ``list(dict.items())`` and list slicing, which run in C
    without releasing the GIL: the capture thread may keep counting meanwhile without
    breaking the iteration ("dictionary changed size").
    """
    return {
        "format": SNAPSHOT_FORMAT,
        "bounds": dict(bounds),
        "values": {name: dict(list(rows.items())) for name, rows in values.items()},
        "hists": {
            name: {key: row[:] for key, row in list(rows.items())} for name, rows in hists.items()
        },
        "self_stats": self_stats,
    }


def check(worker: str, snap: Snapshot, bounds: Mapping[str, tuple[float, ...]]) -> None:
    """Raise ValueError unless ``snap`` can be merged into a store with ``bounds``
    (workers must run with the parent's metrics config)."""
    if snap.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"snapshot format {snap.get('format')!r} not supported")
    for name, theirs in snap["bounds"].items():
        if name in bounds and tuple(theirs) != bounds[name]:
            raise ValueError(f"worker {worker}: buckets of {name} differ from the parent's")


def merge(own: Snapshot, workers: Iterable[Snapshot]) -> Snapshot:
    """``own`` (a fresh snapshot, updated in place and returned) plus every worker's.

    Worker snapshots are never modified (a newer one replaces them whole), and neither
    are the merged rows: a family that only one source has is taken over by a C-level
    dict copy, sharing the worker's histogram rows.
    """
    # The values and histogram loops stay two: one shared loop would cost a call per
    # series per scrape (tens of thousands), for adding a number or a row.
    for snap in workers:
        for name, rows in snap["values"].items():
            target = own["values"].get(name)
            if not target:
                own["values"][name] = dict(rows)
                continue
            for key, value in rows.items():
                target[key] = target.get(key, 0) + value
        for name, rows in snap["hists"].items():
            target = own["hists"].get(name)
            if not target:
                own["hists"][name] = dict(rows)
                continue
            for key, row in rows.items():
                mine = target.get(key)
                target[key] = (
                    row[:] if mine is None else [a + b for a, b in zip(mine, row, strict=True)]
                )
    return own


def all_self_stats(merged: Snapshot, workers: Mapping[str, Snapshot]) -> list[SelfStats]:
    """The own self statistics, then each worker's under its worker name."""
    self_stats = list(merged["self_stats"])
    for worker, snap in list(workers.items()):
        for stats in snap.get("self_stats", ()):
            self_stats.append({**stats, "worker": worker})
    return self_stats

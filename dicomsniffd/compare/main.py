"""``dicomsniffd compare``'s run: which files are which side, the outputs checked before
anything is read, both sides loaded, compared, printed and the exit code of the verdict."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from dicomsniffd import outputs
from dicomsniffd.compare import rule
from dicomsniffd.compare.diff import compare_sides, pair_name
from dicomsniffd.compare.render import render_json, render_text
from dicomsniffd.compare.sides import CompareError, load_side

EXIT_OK, EXIT_WORSE, EXIT_BAD_INPUT = 0, 1, 2
_WORSE = (rule.REGRESSED, rule.STILL_FAILING)


def sides_of(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(before files, after files) from ``BEFORE AFTER`` or ``--before … --after …``."""
    if args.before is not None or args.after is not None:
        if args.sides:
            raise CompareError(
                "give the sides either as BEFORE AFTER or with --before/--after, not both"
            )
        if args.before is None or args.after is None:
            missing = "--after" if args.after is None else "--before"
            raise CompareError(f"{missing} is missing: both sides are needed")
        return list(args.before), list(args.after)
    if len(args.sides) != 2:
        raise CompareError(
            f"compare needs two sides, BEFORE and AFTER (got {len(args.sides)}); several "
            "files on a side: --before A.pcap B.pcap --after C.pcap"
        )
    return [args.sides[0]], [args.sides[1]]


def run_compare(
    args: argparse.Namespace, load_config: Callable[[str | None], Any], print_error: Callable
) -> int:
    """The whole command; returns its exit code (OutputError is left to the caller)."""
    from dicomsniffd.config import ConfigError

    if args.report is not None and args.json and outputs.check(args.report) == outputs.TO_STDOUT:
        raise outputs.OutputError("--report - and --json would both write to standard output")
    if args.report is not None:
        outputs.check(args.report)  # refused before minutes of reading captures
    try:
        before_files, after_files = sides_of(args)
        config = load_config(args.config)
        before = load_side("before", before_files, config)
        after = load_side("after", after_files, config)
    except (CompareError, ConfigError) as exc:
        return print_error(str(exc))
    doc = compare_sides(before, after)
    if args.report is not None:
        from dicomsniffd.compare.report import write_report

        write_report(args.report, doc)
    if args.json:
        sys.stdout.write(render_json(doc))
    elif args.report != outputs.STDOUT:
        sys.stdout.write(render_text(doc))
    sys.stdout.flush()
    broken = [f"{side.label}: {note}" for side in (before, after) for note in side.notes]
    if broken:  # as analyze: the results are printed, and the cut is an error for scripts
        return print_error("capture file broken: " + "; ".join(broken))
    if doc["verdict"] == rule.NOT_COMPARABLE:
        return print_error(
            "not comparable: no AE pair on both sides (before: "
            f"{_pair_list(doc, 'before')}; after: {_pair_list(doc, 'after')})"
        )
    return EXIT_WORSE if doc["verdict"] in _WORSE else EXIT_OK


def _pair_list(doc: dict[str, Any], side: str) -> str:
    names = [pair_name(row) for row in doc["pairs"] if row[side] is not None]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return shown or "none"

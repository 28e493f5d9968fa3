"""``dicomsniffd correlate NEAR FAR``: the command's flow, errors and outputs (cli.py
holds only its parser): every user error is one line and exit status 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from dicomsniffd import outputs
from dicomsniffd.capture import CaptureError
from dicomsniffd.config import ConfigError
from dicomsniffd.formatting import BREAK_COVERAGE


def correlate_command(
    args: argparse.Namespace, load: Callable[[str | None], Any], fail: Callable[[str], int]
) -> int:
    from dicomsniffd.correlate.run import NothingInCommon, correlate_files

    try:
        config = load(args.config)
    except ConfigError as exc:
        return fail(str(exc))
    try:
        _check_outputs(args)
        result = correlate_files(args.near, args.far, config)
    except (CaptureError, NothingInCommon, outputs.OutputError) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{exc.filename or ''}: {exc.strerror or exc}")
    try:
        if args.report is not None:
            from dicomsniffd.correlate.html import render_html

            outputs.write(args.report, render_html(result).encode("utf-8"), atomic=True)
    except outputs.OutputError as exc:
        return fail(str(exc))
    if args.json:
        outputs.write_json(sys.stdout, result)
    elif args.report != outputs.STDOUT:
        from dicomsniffd.correlate.text import render_text

        sys.stdout.write(render_text(result))
    sys.stdout.flush()
    broken = [result[p]["broken"] for p in ("near", "far") if result[p]["broken"]]
    if broken:
        # As analyze: the complete packets were compared and reported; the break is still
        # an error for scripts.
        return fail(f"capture file broken: {'; '.join(broken)}; {BREAK_COVERAGE}")
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Before reading: the report can be written, is not an input, and shares standard
    output with nothing."""
    if args.report is None:
        return
    outputs.check(args.report)
    if args.report == outputs.STDOUT:
        if args.json:
            raise outputs.OutputError(
                "--report - and --json would both write to standard output; send one to a file"
            )
        return
    target = os.path.realpath(args.report)
    for given in (args.near, args.far):
        if os.path.realpath(given) == target:
            raise outputs.OutputError(f"refusing to write the report over the capture {given}")

"""``dicomsniffd compare BEFORE AFTER``: seed step 7, "re-run the same transactions and
compare". Each side is one or more captures or a saved ``analyze --json`` (sides.py);
the per-AE-pair, per-command rollups of both are set side by side (diff.py) and judged by
one stated rule (rule.py); text and JSON (render.py) and the HTML report (report.py)."""

from __future__ import annotations

from dicomsniffd.compare.diff import compare_sides
from dicomsniffd.compare.rule import VERDICTS
from dicomsniffd.compare.sides import CompareError, Side, load_side

__all__ = ("VERDICTS", "CompareError", "Side", "compare_sides", "load_side")

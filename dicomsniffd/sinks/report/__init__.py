"""The HTML report of ``dicomsniffd analyze --report``.

html    the page: header, capture completeness, findings, charts; ``render_report``,
        ``write_report``
tables  associations, DIMSE statistics, TCP health, the transaction trace
svg     the inline SVG charts
trace   ``TransactionLog``: the bounded per-transaction sample the ``Summary`` keeps
escape  wire text made safe for HTML
"""

from typing import Any

__all__ = ("esc", "render_report", "write_report")


def __getattr__(name: str) -> Any:
    """The page's modules on first use, not with the package: the Summary imports
    ``trace`` from here on every `analyze`, and only ``--report`` needs the rest."""
    if name == "esc":
        from dicomsniffd.sinks.report.escape import esc

        return esc
    if name in ("render_report", "write_report"):
        from dicomsniffd.sinks.report import html

        return getattr(html, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The HTML report of ``dicomsniffd analyze --report``.

html    the page: header, capture completeness, findings, charts; ``render_report``,
        ``write_report``
tables  associations, DIMSE statistics, TCP health, the transaction trace
svg     the inline SVG charts
trace   ``TransactionLog``: the bounded per-transaction sample the ``Summary`` keeps
escape  wire text made safe for HTML
"""

from dicomsniffd.sinks.report.escape import esc
from dicomsniffd.sinks.report.html import render_report, write_report

__all__ = ("esc", "render_report", "write_report")

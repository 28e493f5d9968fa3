"""The offline troubleshooting summary of ``dicomsniffd analyze``.

  sink   ``Summary``: the sink that collects while the capture is replayed, ``to_dict``
  pairs  the per-AE-pair rollup (``to_dict()["pairs"]``)
  text   the text rendering

What it keeps (per-association and per-command records) is ``dicomsniffd.findings.facts``,
the facts the findings' rules read; the summary sits above the findings, not beside them.
"""

from dicomsniffd.findings.facts import percentiles
from dicomsniffd.sinks.summary.sink import Summary

__all__ = ("Summary", "percentiles")

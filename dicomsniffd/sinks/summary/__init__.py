"""The offline troubleshooting summary of ``dicomsniffd analyze``.

  sink   ``Summary``: the sink that collects while the capture is replayed, ``to_dict``
  state  what it keeps: per-association and per-command records, ``percentiles``
  text   the text rendering

The findings it reports are rules in ``dicomsniffd.findings``.
"""

from dicomsniffd.sinks.summary.sink import Summary
from dicomsniffd.sinks.summary.state import percentiles

__all__ = ("Summary", "percentiles")

"""Old import path of the live capture, kept so modules outside the capture layer that
still import ``dicomsniffd.live`` work unchanged; new code imports ``dicomsniffd.capture``
(the code is in ``dicomsniffd/capture/live.py``)."""

from dicomsniffd.capture.errors import BpfError, CaptureError, LiveCaptureError
from dicomsniffd.capture.live import LiveSource, default_fanout_group

__all__ = ["BpfError", "CaptureError", "LiveCaptureError", "LiveSource", "default_fanout_group"]

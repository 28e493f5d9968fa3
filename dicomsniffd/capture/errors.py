"""Capture errors: each message is one user-facing line that says what is wrong.

``CaptureError`` is what every capture source raises (and what the decoder's
``UnsupportedLinkType`` derives from); the live ones add what to do about it.
"""

from __future__ import annotations


class CaptureError(Exception):
    """A capture source cannot be opened or read; the message is one user-facing line."""


class LiveCaptureError(CaptureError):
    """A live capture cannot be opened or read; the message is one user-facing line."""


class BpfError(LiveCaptureError):
    """The BPF filter does not compile (a configuration error, not a capture failure)."""

"""The compiled hot path (``dicomsniffd._fastpath``): whether it is in use, and why not.

The C piece is optional at build time (a machine without a compiler still installs the
pure-Python package) and optional at run time: ``DICOMSNIFFD_PURE_PYTHON=1`` turns it
off, to compare or to rule it out when something looks wrong. Both paths give identical
results; tests/test_fastpath.py holds them to that on real and damaged captures.
"""

from __future__ import annotations

import os
from types import ModuleType

ENV_OFF = "DICOMSNIFFD_PURE_PYTHON"


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get(ENV_OFF, "") not in ("", "0"):
        return None, f"turned off by {ENV_OFF}"
    try:
        from dicomsniffd import _fastpath
    except ImportError as exc:  # not built: no compiler when the package was installed
        return None, f"not built ({exc})"
    return _fastpath, "compiled"


fastpath, status = _load()


def use(accelerate: bool | None) -> bool:
    """Whether a component asked with ``accelerate`` (None: if built) runs compiled."""
    return fastpath is not None and accelerate is not False


def describe() -> str:
    """One line for logs and ``--version``: which hot path this process runs."""
    if fastpath is not None:
        return "fast path: compiled (dicomsniffd._fastpath)"
    return f"fast path: pure Python ({status})"

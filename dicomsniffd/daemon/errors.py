"""Exit codes of `dicomsniffd run` and the one error that ends start-up.

README "Exit codes": 0 clean stop, 2 configuration error (restarting will not help), 1 else.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


class StartupError(Exception):
    """Start-up cannot go on; ``str()`` is the one line for the user, ``code`` the exit."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code

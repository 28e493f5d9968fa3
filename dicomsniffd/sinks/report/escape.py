"""How text that came off the wire (AE titles, UIDs, error comments) becomes safe HTML."""

from __future__ import annotations

import html
from typing import Any


def esc(value: Any) -> str:
    """HTML-escape anything (quotes too); control characters become visible ``\\xNN``."""
    text = "" if value is None else str(value)
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or 0xD800 <= ord(ch) < 0xE000 for ch in text):
        text = "".join(
            ch
            if not (ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or 0xD800 <= ord(ch) < 0xE000)
            or ch in "\t\n"
            else f"\\x{ord(ch):02x}"
            for ch in text
        )
    return html.escape(text, quote=True)

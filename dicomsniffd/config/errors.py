"""ConfigError: every config error is one line naming the key path, the bad value and what
is allowed; the bad value is shown the way the user wrote it in YAML."""

from __future__ import annotations

import itertools
import json
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(text: str) -> str:
    """Escape control characters: a ConfigError message is always exactly one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class ConfigError(Exception):
    """An invalid configuration. ``str(err)`` is one line: where, key path, bad value, allowed.

    ``key`` is the key path as shown (``flows.capacity``, ``dicom.ports[2]``, ``--workers``),
    ``source`` the file (or other origin) and ``line`` the 1-based line in it, when known.
    """

    def __init__(
        self,
        detail: str,
        *,
        key: str = "",
        source: str = "",
        line: int | None = None,
        parts: tuple[str | int, ...] = (),
    ) -> None:
        self.detail = detail
        self.key = key
        self.source = source
        self.line = line
        self.parts = parts  # raw key path, used to find the line in the YAML text
        where = source if line is None else f"{source}:{line}"
        super().__init__(_one_line(f"{where}: {detail}" if where else detail))

    def located(self, source: str, line: int | None) -> ConfigError:
        return ConfigError(self.detail, key=self.key, source=source, line=line, parts=self.parts)


def _render(value: object, depth: int = 0) -> str:
    """Show a bad value the way the user wrote it in YAML, bounded in size.

    Bounded because YAML aliases can build huge (even self-referencing) structures.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # str() of an int with more than 4300 digits raises ValueError
        return str(value) if value.bit_length() <= 128 else "<a huge integer>"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value[:60]) + ("…" if len(value) > 60 else "")
    if isinstance(value, list | tuple | dict):
        return _render_container(value, depth)
    return _one_line(str(value))[:60]


def _render_container(value: list | tuple | dict, depth: int) -> str:
    opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
    if depth >= 2 and value:
        return f"{opening}…{closing}"
    if isinstance(value, dict):
        pairs = itertools.islice(value.items(), 7)
        items = [f"{_render(k, depth + 1)}: {_render(v, depth + 1)}" for k, v in pairs]
    else:
        items = [_render(v, depth + 1) for v in value[:7]]
    shown = items[:6] + (["…"] if len(items) > 6 else [])
    return opening + ", ".join(shown) + closing


def _key_text(parts: tuple[str | int, ...]) -> str:
    """``("dicom", "ports", 2)`` -> ``dicom.ports[2]`` (ints are list indexes)."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _invalid(
    parts: tuple[str | int, ...], value: object, allowed: str, label: str = ""
) -> ConfigError:
    key = label or _key_text(parts)
    detail = f"{key}: {_render(value)} is not allowed: expected {allowed}"
    return ConfigError(detail, key=key, parts=parts)

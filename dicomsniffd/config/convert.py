"""The generic walk over the config dataclasses, driven by the field type hints.

Type-checks and converts every value, applies ``rules`` and names unknown keys (with a
suggestion: a near miss, or the same key in another section).
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import functools
import math
import typing
from dataclasses import fields
from typing import Any

from dicomsniffd.config.errors import ConfigError, _invalid, _key_text, _render
from dicomsniffd.config.rules import _SECTION_CHECKS, _SPECS, _Spec
from dicomsniffd.config.sections import Config

_TYPE_NAMES: dict[type, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved type hint, in declaration order."""
    resolved = typing.get_type_hints(cls)
    return {f.name: resolved[f.name] for f in fields(cls)}


def _allowed(hint: Any, spec: _Spec | None, item: bool = False) -> str:
    """What "expected ..." says for a type error (``item``: for one item of a tuple field)."""
    described = (spec.item_allowed if item else spec.allowed) if spec is not None else ""
    if described:
        return described
    if typing.get_origin(hint) is tuple:
        return "a list of " + _TYPE_NAMES[typing.get_args(hint)[0]].removeprefix("a ") + "s"
    return _TYPE_NAMES.get(hint, str(hint))


def _scalar(hint: type, value: Any) -> Any:
    """Type-check one scalar; returns the converted value or raises TypeError."""
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):  # bool is an int subclass
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)  # may overflow for huge integers
            except OverflowError:
                number = math.inf
            if math.isfinite(number):
                return number
    elif hint is str and isinstance(value, str):
        return value
    raise TypeError


def _quote_hint(hint: Any, value: Any) -> str:
    # YAML 1.1 reads unquoted yes/no/on/off as booleans, 10:30 as an integer, [::] as a list
    if hint is str and isinstance(value, bool | int | float | list | datetime.date):
        return " (quote the value in YAML)"
    return ""


def _convert(hint: Any, value: Any, parts: tuple[str | int, ...], label: str = "") -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, parts)
    spec = _SPECS.get(_key_text(parts))
    if typing.get_origin(hint) is tuple:
        return _convert_tuple(hint, value, parts, spec)
    try:
        converted = _scalar(hint, value)
    except TypeError:
        allowed = _allowed(hint, spec) + _quote_hint(hint, value)
        raise _invalid(parts, value, allowed, label) from None
    if spec is not None and not spec.ok(converted):
        raise _invalid(parts, value, spec.allowed_for(converted), label)
    return converted


def _convert_tuple(
    hint: Any, value: Any, parts: tuple[str | int, ...], spec: _Spec | None
) -> tuple:
    if not isinstance(value, list | tuple):
        raise _invalid(parts, value, _allowed(hint, spec))
    item_hint = typing.get_args(hint)[0]
    items = []
    for index, item in enumerate(value):
        item_parts = (*parts, index)
        try:
            converted = _scalar(item_hint, item)
        except TypeError:
            raise _invalid(item_parts, item, _allowed(item_hint, spec, item=True)) from None
        if spec is not None and not spec.item_ok(converted):
            raise _invalid(item_parts, item, spec.item_allowed)
        items.append(converted)
    result = tuple(items)
    if spec is not None and not spec.ok(result):
        raise _invalid(parts, value, spec.allowed)
    return result


def _build(cls: type, data: Any, parts: tuple[str | int, ...]) -> Any:
    """One section: a mapping (or null, e.g. every key commented out) -> dataclass."""
    hints = _hints(cls)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        allowed = "a mapping with the keys " + ", ".join(hints)
        raise _invalid(parts, data, allowed, "" if parts else "top level")
    for key in data:
        if key not in hints:
            raise _unknown_key(cls, key, parts)
    values = {
        name: _convert(hint, data[name], (*parts, name))
        for name, hint in hints.items()
        if name in data
    }
    obj = cls(**values)
    check = _SECTION_CHECKS.get(cls)
    if check is not None:
        check(obj, parts)
    return obj


def _leaf_paths(cls: type, parts: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Field name -> every key path that has it (to find keys put in the wrong section)."""
    found: dict[str, list[str]] = {}
    for name, hint in _hints(cls).items():
        found.setdefault(name, []).append(_key_text((*parts, name)))
        if dataclasses.is_dataclass(hint):
            for leaf, paths in _leaf_paths(hint, (*parts, name)).items():
                found.setdefault(leaf, []).extend(paths)
    return found


def _unknown_key(cls: type, key: object, parts: tuple[str | int, ...]) -> ConfigError:
    allowed = list(_hints(cls))
    shown = key if isinstance(key, str) else _render(key)
    key_parts = (*parts, shown)
    detail = f"unknown key {_key_text(key_parts)}"
    suggestion = _suggest(key, allowed, parts)
    if suggestion:
        detail += f" (did you mean {suggestion}?)"
    detail += "; allowed: " + ", ".join(allowed)
    return ConfigError(detail, key=_key_text(key_parts), parts=key_parts)


def _suggest(key: object, allowed: list[str], parts: tuple[str | int, ...]) -> str:
    if not isinstance(key, str):
        return ""
    lowered = {name.lower(): name for name in allowed}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    if close:
        return _key_text((*parts, lowered[close[0]]))
    elsewhere = _leaf_paths(Config).get(key.lower(), [])  # right key, wrong section
    return " or ".join(elsewhere[:3])

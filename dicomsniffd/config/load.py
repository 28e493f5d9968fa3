"""From a YAML file (or the command-line flags) to a validated Config, and back to YAML."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from dicomsniffd.config.convert import _build, _convert, _hints
from dicomsniffd.config.errors import ConfigError
from dicomsniffd.config.rules import _SECTION_CHECKS
from dicomsniffd.config.sections import Config


def config_from_mapping(data: dict, source: str) -> Config:
    """Validate a parsed YAML document (``None`` or ``{}``: the defaults).

    ``source`` names the origin in error messages (usually the file path).
    """
    try:
        return _build(Config, data, ())
    except ConfigError as err:
        raise err.located(source, err.line) from None


def load_config(path: str | None) -> Config:
    """Load and validate a YAML config file; ``None``: the embedded defaults."""
    if path is None:
        return Config()
    # PyYAML (~15 ms to import) only when there is a file: not on `analyze FILE`.
    from dicomsniffd.config import yaml_text

    text = _read_text(path)
    data = yaml_text.parse(text, path)
    try:
        return config_from_mapping(data, path)
    except ConfigError as err:
        raise err.located(path, yaml_text.line_of(text, err.parts)) from None


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as err:
        raise ConfigError(f"cannot read config file: {err.strerror or err}", source=path) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError("not UTF-8 text", source=path, line=line) from None


# argparse name of a `dicomsniffd run` flag -> (section, key, the flag as error messages show
# it); the daemon reads exactly these from its arguments, at start and on every reload.
OVERRIDES: dict[str, tuple[str, str, str]] = {
    "interface": ("capture", "interface", "--interface"),
    "bpf": ("capture", "bpf", "--bpf"),
    "listen": ("metrics", "listen", "--listen"),
    "workers": ("capture", "workers", "--workers"),
}


def apply_overrides(config: Config, /, **overrides: object) -> Config:
    """Apply command-line flags (None = flag not given), validated like the file.

    Errors name the flag (``--workers: 0 is not allowed: expected an integer from 1 to 64``).
    """
    for name, value in overrides.items():
        if name not in OVERRIDES:
            raise TypeError(f"apply_overrides() got an unknown override {name!r}")
        if value is None:
            continue
        section_name, key, flag = OVERRIDES[name]
        section = getattr(config, section_name)
        hint = _hints(type(section))[key]
        if (
            hint is int
            and isinstance(value, str)
            and re.fullmatch(r"[+-]?[0-9]{1,18}", value.strip())
        ):
            value = int(value)  # command-line values arrive as text unless argparse converted
        converted = _convert(hint, value, (section_name, key), label=flag)
        section = dataclasses.replace(section, **{key: converted})
        check = _SECTION_CHECKS.get(type(section))
        if check is not None:
            check(section, (section_name,))
        config = dataclasses.replace(config, **{section_name: section})
    return config


def to_mapping(obj: Any) -> dict[str, Any]:
    """A config dataclass as plain dicts/lists/scalars (what the YAML file holds)."""
    result: dict[str, Any] = {}
    for name in _hints(type(obj)):
        value = getattr(obj, name)
        if dataclasses.is_dataclass(value):
            value = to_mapping(value)
        elif isinstance(value, tuple):
            value = list(value)
        result[name] = value
    return result


def dump_config(config: Config) -> str:
    """The effective configuration as YAML; loading it gives back an equal Config."""
    from dicomsniffd.config import yaml_text  # PyYAML only when YAML is written

    return yaml_text.dump(to_mapping(config))

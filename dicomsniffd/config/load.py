"""From a YAML file (or the command-line flags) to a validated Config, and back to YAML."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import yaml

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


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys: PyYAML silently keeps the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            ident = (key_node.tag, key_node.value)
            if ident in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                )
            seen.add(ident)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | None) -> Config:
    """Load and validate a YAML config file; ``None``: the embedded defaults."""
    if path is None:
        return Config()
    text = _read_text(path)
    data = _parse_yaml(text, path)
    try:
        return config_from_mapping(data, path)
    except ConfigError as err:
        raise err.located(path, _line_of(text, err.parts)) from None


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


def _parse_yaml(text: str, path: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no Python objects
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = " ".join(filter(None, [err.context, err.problem]))
        line = mark.line + 1 if mark else None
        column = f"column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{column}YAML syntax error: {problem}", source=path, line=line) from None
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        raise ConfigError(f"YAML syntax error: {err.reason}", source=path, line=line) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"YAML syntax error: {err}", source=path) from None
    except RecursionError:
        raise ConfigError("YAML syntax error: nesting too deep", source=path) from None


def _line_of(text: str, parts: tuple[str | int, ...]) -> int | None:
    """1-based line of the deepest key (or list item) of ``parts`` present in the YAML text."""
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
    except (yaml.YAMLError, RecursionError):
        return None
    line = None
    for part in parts:
        found = _child(node, part)
        if found is None:
            break
        marker, node = found
        line = marker.start_mark.line + 1
    return line


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(node whose line to report, node to descend into) for one step of a key path."""
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        return (node.value[part], node.value[part]) if part < len(node.value) else None
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                return key_node, value_node
    return None


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


class _Dumper(yaml.SafeDumper):
    """Block style for sections, flow style for lists (buckets read best on one line)."""


_Dumper.add_representer(
    list,
    lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True),
)


def dump_config(config: Config) -> str:
    """The effective configuration as YAML; loading it gives back an equal Config."""
    return yaml.dump(
        to_mapping(config), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120
    )

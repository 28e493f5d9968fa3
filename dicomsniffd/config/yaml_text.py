"""The YAML side of the config: parsing a file's text strictly, lines of keys, dumping.

Apart from ``load.py`` so that PyYAML is imported only when a file is read or YAML written
(``load_config``, ``dump_config`` import this module in their bodies): ``analyze FILE``
without ``--config`` runs on the defaults and need not pay for it at start-up.
"""

from __future__ import annotations

from typing import Any

import yaml

from dicomsniffd.config.errors import ConfigError


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


def parse(text: str, path: str) -> Any:
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


def line_of(text: str, parts: tuple[str | int, ...]) -> int | None:
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


class _Dumper(yaml.SafeDumper):
    """Block style for sections, flow style for lists (buckets read best on one line)."""


_Dumper.add_representer(
    list,
    lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True),
)


def dump(mapping: dict[str, Any]) -> str:
    """``mapping`` (a Config as plain data, ``load.to_mapping``) as the YAML file shows it."""
    return yaml.dump(mapping, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)

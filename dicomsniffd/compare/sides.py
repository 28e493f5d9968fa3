"""The two sides of ``dicomsniffd compare``: each one or more capture files (analysed here
as ``analyze`` would, read as one capture), a directory of them, or one saved
``analyze --json`` of schema ``dicomsniffd-analyze/2`` or later (the one that carries the
per-command rows of each AE pair). Everything wrong with an input is a ``CompareError``
whose text is the one line the command line prints."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp")
SCHEMA_NAME = "dicomsniffd-analyze"
MIN_SCHEMA_VERSION = 2  # 1 (no "schema" key) had no per-command rows per pair

Pair = tuple[str, str]


class CompareError(Exception):
    """Bad input to compare; ``str()`` is the one-line message (the command exits 2)."""


@dataclass
class Side:
    """One side, as the analyze JSON it is (made here from captures, or read back)."""

    label: str  # "before" / "after"
    files: list[str]
    source: str  # "captures" or "analyze-json"
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # e.g. a capture cut short

    @property
    def pairs(self) -> dict[Pair, dict[str, Any]]:
        return {(p["calling_ae"], p["called_ae"]): p for p in self.data["pairs"]}

    def describe(self) -> dict[str, Any]:
        capture = self.data.get("capture") or {}
        return {
            "files": self.files,
            "source": self.source,
            "associations": len(self.data.get("associations") or ()),
            "first_ts": capture.get("first_ts"),
            "last_ts": capture.get("last_ts"),
            "notes": self.notes,
        }


def expand(paths: Sequence[str], label: str) -> list[str]:
    """The files of one side: a directory stands for the capture files directly in it."""
    if not paths:
        raise CompareError(f"{label}: no file given")
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            inside = sorted(
                os.path.join(path, name)
                for name in os.listdir(path)
                if name.lower().endswith(CAPTURE_SUFFIXES)
                and os.path.isfile(os.path.join(path, name))
            )
            if not inside:
                wanted = ", ".join(CAPTURE_SUFFIXES)
                raise CompareError(f"{label}: directory {path} holds no capture file ({wanted})")
            files += inside
        else:
            files.append(path)
    return files


def _is_json(path: str) -> bool:
    """Whether ``path`` holds JSON (text opening with ``{`` or ``[``) rather than a capture
    (no capture format starts with either: pcap and pcapng open with binary magic)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise CompareError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise CompareError(f"{path}: empty file (neither a capture nor an analyze --json)")
    return head.lstrip()[:1] in (b"{", b"[")


def load_side(label: str, paths: Sequence[str], config: Any) -> Side:
    """Read one side (``config``: the analyze config used for captures)."""
    files = expand(paths, label)
    kinds = [_is_json(p) for p in files]
    if any(kinds):
        if len(files) > 1:
            raise CompareError(
                f"{label}: a saved analyze --json stands alone on its side "
                f"(got {len(files)} files: {' '.join(files)})"
            )
        side = Side(label, files, "analyze-json", read_json(files[0]))
    else:
        side = _analyse(label, files, config)
    if not side.data["pairs"]:
        raise CompareError(f"{label} ({' '.join(files)}): no DICOM association found")
    return side


def _analyse(label: str, files: list[str], config: Any) -> Side:
    from dicomsniffd.analyze import analyze_files
    from dicomsniffd.capture import CaptureError
    from dicomsniffd.formatting import format_break
    from dicomsniffd.sinks.summary import Summary

    summary = Summary()
    try:
        info = analyze_files(files, config, [summary])
    except CaptureError as exc:
        raise CompareError(str(exc)) from None
    except OSError as exc:
        raise CompareError(f"{exc.filename or label}: {exc.strerror or exc}") from None
    info.pop("_pipeline", None)
    notes = [
        f"{format_break(b)}: compared the packets before the break"
        for b in info.get("broken_files") or ()
    ]
    return Side(label, files, "captures", summary.to_dict(info), notes)


def read_json(path: str) -> dict[str, Any]:
    """A saved ``analyze --json``, checked to carry what compare reads."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise CompareError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompareError(f"{path}: not valid JSON ({exc})") from None
    check_analyze_json(data, path)
    return data


def check_analyze_json(data: Any, path: str) -> None:
    """Raise CompareError unless ``data`` has the analyze --json shape compare reads."""
    not_ours = f"{path}: not a dicomsniffd analyze --json"
    if not isinstance(data, dict) or "pairs" not in data or "capture" not in data:
        raise CompareError(f'{not_ours} (no "capture" and "pairs")')
    schema = data.get("schema")
    if schema is None:
        raise CompareError(
            f'{path}: saved by an older dicomsniffd (no "schema", no per-command rows '
            "per AE pair): run analyze --json again, or compare the captures"
        )
    name, _, version = str(schema).partition("/")
    if name != SCHEMA_NAME or not version.isdigit():
        raise CompareError(f"{not_ours} (schema {schema!r})")
    if int(version) < MIN_SCHEMA_VERSION:
        raise CompareError(f"{path}: schema {schema} is too old, {MIN_SCHEMA_VERSION} needed")
    try:
        _check_pairs(data["pairs"])
        _check_findings(data.get("findings", []))
    except _Shape as exc:
        raise CompareError(f"{not_ours} ({exc})") from None


class _Shape(Exception):
    """Where the shape differs (a path like ``pairs[0].commands.C-STORE.requests``)."""


def _need(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise _Shape(f"{where}: expected {names}")
    return value


def _check_pairs(pairs: Any) -> None:
    for i, row in enumerate(_need(pairs, list, "pairs")):
        where = f"pairs[{i}]"
        _need(row, dict, where)
        for key in ("calling_ae", "called_ae"):
            _need(row.get(key), str, f"{where}.{key}")
        for key in ("associations", "failures", "rejected", "aborted", *_TCP_KEYS):
            _need(row.get(key), int, f"{where}.{key}")
        commands = _need(row.get("commands"), dict, f"{where}.commands")
        for command, stats in commands.items():
            _check_command(stats, f"{where}.commands.{command}")


_TCP_KEYS = ("retransmissions", "zero_windows", "resets")


def _check_command(stats: Any, where: str) -> None:
    _need(stats, dict, where)
    for key in ("requests", "unanswered", "bytes"):
        _need(stats.get(key), int, f"{where}.{key}")
    statuses = _need(stats.get("statuses"), dict, f"{where}.statuses")
    for status, n in statuses.items():
        _need(n, int, f"{where}.statuses.{status}")
    _need(stats.get("throughput_mbps"), (int, float, type(None)), f"{where}.throughput_mbps")
    for name in phase_names(stats):
        timing = stats[name]
        for key in ("count", "p50", "p95"):
            _need(timing.get(key), (int, float, type(None)), f"{where}.{name}.{key}")


def _check_findings(findings: Any) -> None:
    for i, f in enumerate(_need(findings, list, "findings")):
        _need(f, dict, f"findings[{i}]")
        for key in ("code", "severity", "title"):
            _need(f.get(key), str, f"findings[{i}].{key}")


def phase_names(stats: Mapping[str, Any]) -> list[str]:
    """The timing phases of a command row (``…_ms`` keys holding percentiles), in order."""
    return [k for k, v in stats.items() if k.endswith("_ms") and isinstance(v, dict)]

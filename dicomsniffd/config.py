"""Configuration: validated, frozen dataclasses with the embedded defaults.

The YAML file (config/dicomsniffd.yaml) mirrors these sections key for key. Loading and
validation of a file live in ``load_config``; every error names the key path, the bad value
and what is allowed.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import functools
import ipaddress
import itertools
import json
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

DEFAULT_DICOM_PORTS = (104, 11112, 2761, 2762, 4242)
# A plain "tcp" misses 802.1Q and QinQ tagged frames: it reads the EtherType at the
# untagged offset. Each "vlan" keyword shifts the offsets of every primitive compiled after
# it by one tag, for the rest of the expression, so the tagged cases must be nested; the
# flat "tcp or (vlan and tcp) or (vlan and vlan and tcp)" looks for QinQ three tags deep
# and misses it (checked with tcpdump 4.99 / libpcap 1.10 on 802.1Q, 0x8100 and 0x88a8 QinQ).
DEFAULT_BPF = "tcp or (vlan and (tcp or (vlan and tcp)))"

DEFAULT_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
DEFAULT_DURATION_BUCKETS = (
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
)  # fmt: skip
DEFAULT_SIZE_BUCKETS = (
    1024, 16384, 65536, 262144, 524288, 1048576, 4194304, 16777216, 67108864, 268435456,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    interface: str = "any"
    bpf: str = DEFAULT_BPF
    snaplen: int = 65535
    promiscuous: bool = True
    buffer_size_mb: int = 64
    timeout_ms: int = 100
    immediate: bool = False
    batch_size: int = 512
    workers: int = 1


@dataclass(frozen=True, slots=True)
class DicomConfig:
    ports: tuple[int, ...] = DEFAULT_DICOM_PORTS
    detect_any_port: bool = True
    max_command_bytes: int = 65536  # a command set larger than this is a protocol error
    max_association_pdu_bytes: int = 65536  # A-ASSOCIATE-RQ/AC/RJ larger than this: error
    keep_instance_uids: bool = False  # SOP Instance UIDs in the event log only when true


@dataclass(frozen=True, slots=True)
class FlowsConfig:
    capacity: int = 100_000
    idle_timeout_s: float = 600.0
    closed_timeout_s: float = 10.0
    syn_timeout_s: float = 10.0  # SYN without SYN/ACK for this long: "unanswered"
    max_out_of_order_segments: int = 256  # per direction
    max_out_of_order_bytes: int = 1_048_576  # per direction
    memcap_bytes: int = 256 * 1_048_576  # all reassembly buffers together
    duplicate_window_s: float = 0.002  # same IP ID + seq + len within this = capture duplicate


@dataclass(frozen=True, slots=True)
class TransactionsConfig:
    timeout_s: float = 300.0
    max_pending_per_association: int = 1024


@dataclass(frozen=True, slots=True)
class TlsServerConfig:
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: str = "0.0.0.0:9104"
    latency_buckets: tuple[float, ...] = DEFAULT_LATENCY_BUCKETS
    duration_buckets: tuple[float, ...] = DEFAULT_DURATION_BUCKETS
    size_buckets: tuple[float, ...] = DEFAULT_SIZE_BUCKETS
    max_ae_titles: int = 200  # distinct calling/called AE label values; the rest -> "other"
    max_servers: int = 100  # distinct server="ip:port" label values; the rest -> "other"
    max_sop_classes: int = 200
    # Optional labels: off, the label stays (names and label sets are a stable contract)
    # but carries the value "all", for sites where per-modality series are too many.
    ae_title_labels: bool = True
    sop_class_label: bool = True
    tls: TlsServerConfig = field(default_factory=TlsServerConfig)


@dataclass(frozen=True, slots=True)
class EventLogConfig:
    path: str = ""  # empty: no event log
    max_bytes: int = 100 * 1_048_576
    backups: int = 5


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"
    format: str = "text"  # text | json


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    user: str = ""  # empty: "dicomsniffd" if that account exists, else "nobody"
    stall_after_s: float = 30.0  # /healthz fails when the capture loop is silent this long


@dataclass(frozen=True, slots=True)
class Config:
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    dicom: DicomConfig = field(default_factory=DicomConfig)
    flows: FlowsConfig = field(default_factory=FlowsConfig)
    transactions: TransactionsConfig = field(default_factory=TransactionsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    event_log: EventLogConfig = field(default_factory=EventLogConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# Constraints: one table, keyed by key path
# --------------------------------------------------------------------------------------


def _always(_value: Any) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class _Spec:
    """What a field allows. ``allowed`` completes "expected ..." for every error on it."""

    allowed: str
    ok: Callable[[Any], bool] = _always
    item_allowed: str = ""  # tuple fields: the same for each item
    item_ok: Callable[[Any], bool] = _always


def _int(lo: int, hi: int | None = None, unit: str = "") -> _Spec:
    allowed = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
    return _Spec(allowed + unit, lambda v: v >= lo and (hi is None or v <= hi))


def _seconds() -> _Spec:
    return _Spec("a number of seconds > 0", lambda v: v > 0)


def _choice(*options: str) -> _Spec:
    return _Spec("one of " + ", ".join(options), lambda v: v in options)


def _strictly_increasing(values: tuple[float, ...]) -> bool:
    return len(values) > 0 and all(a < b for a, b in zip(values, values[1:], strict=False))


def _buckets() -> _Spec:
    return _Spec(
        "a non-empty list of numbers > 0 in strictly increasing order",
        _strictly_increasing,
        item_allowed="a number > 0",
        item_ok=lambda v: v > 0,
    )


def _path() -> _Spec:
    # the file itself is opened by the daemon: check-config may run on another machine
    return _Spec("a file path (empty: none)", lambda v: "\x00" not in v)


# Linux IFNAMSIZ is 16 including the terminating NUL
_IFNAME = re.compile(r"[^\s/]{1,15}")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_PORT = re.compile(r"[0-9]{1,5}")


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (IPv6 as ``[::]:9104``) into (host, port); ValueError if invalid."""
    if listen.startswith("["):
        host, sep, port = listen[1:].partition("]:")
        if not sep:
            raise ValueError("missing ]:PORT")
        ipaddress.IPv6Address(host)  # raises ValueError (also accepts a %zone)
    else:
        host, sep, port = listen.rpartition(":")
        if not sep or ":" in host:
            raise ValueError("expected HOST:PORT; IPv6 addresses need brackets")
        _check_host(host)
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise ValueError("bad port")
    return host, int(port)


def _check_host(host: str) -> None:
    if host.replace(".", "").isdigit():
        ipaddress.IPv4Address(host)  # all-numeric: must be a real IPv4 address
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError("bad host name")


def _is_listen(value: str) -> bool:
    try:
        parse_listen(value)
    except ValueError:
        return False
    return True


def _distinct(values: tuple[Any, ...]) -> bool:
    return len(set(values)) == len(values)


_SPECS: dict[str, _Spec] = {
    "daemon.user": _Spec(
        "a user name (letters, digits, '.', '_', '-'), or empty for the default",
        lambda v: v == "" or re.fullmatch(r"[A-Za-z_][A-Za-z0-9._-]{0,31}", v) is not None,
    ),
    "daemon.stall_after_s": _Spec(
        "a number of seconds from 1 to 3600", lambda v: 1.0 <= v <= 3600.0
    ),
    "capture.interface": _Spec(
        "a network interface name (1 to 15 characters, no spaces or '/'), or any",
        lambda v: _IFNAME.fullmatch(v) is not None,
    ),
    # An empty filter would hand every frame on a busy mirror port to Python.
    "capture.bpf": _Spec("a non-empty BPF filter expression", lambda v: v.strip() != ""),
    "capture.snaplen": _int(64, 262_144),
    # pcap_set_buffer_size() takes the size in bytes as a C int: at most 2047 MiB
    "capture.buffer_size_mb": _int(1, 2047),
    # 0 means "block forever" on some platforms: a worker could then never see shutdown
    "capture.timeout_ms": _int(1, 60_000),
    "capture.batch_size": _int(1, 65_536),
    "capture.workers": _int(1, 64),
    "dicom.ports": _Spec(
        "a list of distinct TCP ports (1 to 65535)",
        _distinct,
        item_allowed="a TCP port from 1 to 65535",
        item_ok=lambda v: 1 <= v <= 65535,
    ),
    "dicom.max_command_bytes": _int(1),
    "dicom.max_association_pdu_bytes": _int(1),
    "flows.capacity": _int(1),
    "flows.idle_timeout_s": _seconds(),
    "flows.closed_timeout_s": _seconds(),
    "flows.syn_timeout_s": _seconds(),
    "flows.max_out_of_order_segments": _int(1),
    "flows.max_out_of_order_bytes": _int(1),
    "flows.memcap_bytes": _int(1),
    # TCP never retransmits within a second of the original (minimum RTO is 200 ms on Linux
    # and 1 s per RFC 6298), so a longer window could hide real retransmissions.
    "flows.duplicate_window_s": _Spec("a number of seconds from 0 to 1", lambda v: 0 <= v <= 1),
    "transactions.timeout_s": _seconds(),
    "transactions.max_pending_per_association": _int(1),
    "metrics.listen": _Spec(
        "HOST:PORT with a port from 1 to 65535, e.g. 0.0.0.0:9104 or [::]:9104", _is_listen
    ),
    "metrics.latency_buckets": _buckets(),
    "metrics.duration_buckets": _buckets(),
    "metrics.size_buckets": _buckets(),
    "metrics.max_ae_titles": _int(1),
    "metrics.max_servers": _int(1),
    "metrics.max_sop_classes": _int(1),
    "metrics.tls.cert_file": _path(),
    "metrics.tls.key_file": _path(),
    "metrics.tls.client_ca_file": _path(),
    "event_log.path": _path(),
    "event_log.max_bytes": _int(1_048_576, unit=" (1 MiB)"),
    "event_log.backups": _int(0, 100),
    "logging.level": _choice("debug", "info", "warning", "error"),
    "logging.format": _choice("text", "json"),
}


# Rules that involve several keys of one section; each raises ConfigError naming one key.


def _check_tls(tls: TlsServerConfig, parts: tuple[str | int, ...]) -> None:
    if tls.cert_file and not tls.key_file:
        raise _invalid((*parts, "key_file"), "", "a key file when cert_file is set")
    if tls.key_file and not tls.cert_file:
        raise _invalid((*parts, "cert_file"), "", "a certificate file when key_file is set")
    if tls.client_ca_file and not tls.cert_file:
        raise _invalid((*parts, "cert_file"), "", "a certificate file when client_ca_file is set")


def _check_dicom(dicom: DicomConfig, parts: tuple[str | int, ...]) -> None:
    if not dicom.ports and not dicom.detect_any_port:
        allowed = "at least one port when detect_any_port is false (nothing would be monitored)"
        raise _invalid((*parts, "ports"), [], allowed)


_SECTION_CHECKS: dict[type, Callable[[Any, tuple[str | int, ...]], None]] = {
    TlsServerConfig: _check_tls,
    DicomConfig: _check_dicom,
}


# --------------------------------------------------------------------------------------
# Generic walk over the dataclasses, driven by the field type hints
# --------------------------------------------------------------------------------------

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
        raise _invalid(parts, value, spec.allowed, label)
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


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


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


# command-line flag -> (section, key); the flag name is what error messages show
_OVERRIDES: dict[str, tuple[str, str, str]] = {
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
        if name not in _OVERRIDES:
            raise TypeError(f"apply_overrides() got an unknown override {name!r}")
        if value is None:
            continue
        section_name, key, flag = _OVERRIDES[name]
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

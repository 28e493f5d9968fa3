"""What each key allows: one table keyed by key path, plus the rules across keys of a section.

A new key's constraint goes into ``_SPECS``; ``allowed`` completes "expected ..." in the
error message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dicomsniffd.config.errors import _invalid
from dicomsniffd.config.sections import (
    EVIDENCE_TRIGGERS,
    DicomConfig,
    EvidenceConfig,
    TlsServerConfig,
)


def _always(_value: Any) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class _Spec:
    """What a field allows. ``allowed`` completes "expected ..." for every error on it."""

    allowed: str
    ok: Callable[[Any], bool] = _always
    item_allowed: str = ""  # tuple fields: the same for each item
    item_ok: Callable[[Any], bool] = _always
    # a refused value: "expected ..." said about the part of it that is wrong (else allowed)
    explain: Callable[[Any], str] | None = None

    def allowed_for(self, value: Any) -> str:
        return (self.explain(value) if self.explain is not None else "") or self.allowed


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


class _HostError(ValueError):
    """The host part of HOST:PORT is wrong (the port may be fine)."""


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (IPv6 as ``[::]:9104``) into (host, port); ValueError if invalid
    (``_HostError`` when it is the host that is wrong)."""
    if listen.startswith("["):
        host, sep, port = listen[1:].partition("]:")
        if not sep:
            raise ValueError("missing ]:PORT")
        try:
            ipaddress.IPv6Address(host)  # also accepts a %zone
        except ValueError:
            raise _HostError(f"{host!r} in brackets is not an IPv6 address") from None
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
        try:
            ipaddress.IPv4Address(host)  # all-numeric: must be a real IPv4 address
        except ValueError:
            raise _HostError(f"{host!r} is not an IPv4 address") from None
    elif host == "":
        raise _HostError("the host is empty (0.0.0.0 is every IPv4 address)")
    elif not _HOSTNAME.fullmatch(host):
        raise _HostError(f"{host!r} is not a host name (letters, digits, '-' and '.'; no '_')")


def _is_listen(value: str) -> bool:
    try:
        parse_listen(value)
    except ValueError:
        return False
    return True


def _listen_problem(value: str) -> str:
    """A bad host gets a message about the host, whatever the port."""
    try:
        parse_listen(value)
    except _HostError as exc:
        return (
            f"HOST:PORT with a valid host: {exc}; use an IPv4 address, a host name or "
            "[IPv6], e.g. 0.0.0.0:9104 or [::]:9104"
        )
    except ValueError:
        return ""
    return ""


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
        "HOST:PORT with a port from 1 to 65535, e.g. 0.0.0.0:9104 or [::]:9104",
        _is_listen,
        explain=_listen_problem,
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
    "evidence.directory": _Spec(
        "a directory path (empty: no flight recorder)", lambda v: "\x00" not in v
    ),
    "evidence.triggers": _Spec(
        "a list of distinct triggers: " + ", ".join(EVIDENCE_TRIGGERS),
        _distinct,
        item_allowed="one of " + ", ".join(EVIDENCE_TRIGGERS),
        item_ok=lambda v: v in EVIDENCE_TRIGGERS,
    ),
    "evidence.max_bytes_per_association": _int(65_536, unit=" (64 KiB)"),
    "evidence.max_memory_bytes": _int(65_536, unit=" (64 KiB)"),
    "evidence.max_files": _int(1, 1_000_000),
    "evidence.max_directory_bytes": _int(65_536, unit=" (64 KiB)"),
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


def _check_evidence(evidence: EvidenceConfig, parts: tuple[str | int, ...]) -> None:
    if evidence.max_bytes_per_association > evidence.max_memory_bytes:
        raise _invalid(
            (*parts, "max_bytes_per_association"),
            evidence.max_bytes_per_association,
            f"at most max_memory_bytes ({evidence.max_memory_bytes})",
        )


_SECTION_CHECKS: dict[type, Callable[[Any, tuple[str | int, ...]], None]] = {
    TlsServerConfig: _check_tls,
    DicomConfig: _check_dicom,
    EvidenceConfig: _check_evidence,
}

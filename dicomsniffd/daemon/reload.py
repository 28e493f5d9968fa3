"""SIGHUP: read the config again, refuse a bad one, apply what a running daemon can change.

``RELOADABLE`` is the one list of reloadable settings; every other key needs a restart.
``HOT_KEYS``, the merge of a new config into the running one and the three ``apply_to_*``
functions are all derived from it, so a new reloadable key is one line in that table
(with an ``install`` function when the capture handle itself must be told).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pcapy
from prometheus_client.core import Metric

from dicomsniffd.capture import BpfError
from dicomsniffd.capture.live import LiveSource, filter_for_link
from dicomsniffd.config import OVERRIDES, Config, ConfigError, apply_overrides, load_config
from dicomsniffd.daemon.errors import EXIT_CONFIG, StartupError
from dicomsniffd.daemon.logs import setup_logging
from dicomsniffd.sinks.metrics import CONFIG_RELOAD_FAILURES, metric_family

if TYPE_CHECKING:
    from dicomsniffd.sinks.metrics import MetricsStore

log = logging.getLogger("dicomsniffd.daemon")

RELOAD_FAILURES_METRIC = CONFIG_RELOAD_FAILURES.name


class Target(enum.Enum):
    """What in a running daemon reads a reloadable key, and so how a new value reaches it."""

    LOGGING = "logging"  # the root logger: setup_logging() with the new section, per process
    CAPTURE = "capture"  # a capture loop: reads its config every batch; `install` tells the handle
    METRICS = "metrics"  # a MetricsStore: reads its MetricsConfig at call time (label caps)


@dataclasses.dataclass(frozen=True, slots=True)
class Reloadable:
    key: str  # dotted key path, as in the YAML file and the reload log line
    target: Target
    # For a value the capture handle holds itself: install(source, value); a BpfError
    # leaves that worker on its old value.
    install: Callable[[LiveSource, Any], None] | None = None


def _install_filter(source: LiveSource, bpf: str) -> None:
    source.set_filter(bpf)


RELOADABLE: tuple[Reloadable, ...] = (
    Reloadable("logging.level", Target.LOGGING),
    Reloadable("logging.format", Target.LOGGING),
    Reloadable("capture.bpf", Target.CAPTURE, install=_install_filter),
    Reloadable("capture.batch_size", Target.CAPTURE),
    Reloadable("metrics.max_ae_titles", Target.METRICS),
    Reloadable("metrics.max_servers", Target.METRICS),
    Reloadable("metrics.max_sop_classes", Target.METRICS),
)

# What SIGHUP can change in a running daemon; every other key needs a restart.
HOT_KEYS = frozenset(entry.key for entry in RELOADABLE)


# ---------------------------------------------------------------------------------------
# Key paths over the frozen config dataclasses
# ---------------------------------------------------------------------------------------

_C = TypeVar("_C")


def _get(obj: Any, key: str) -> Any:
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _replace(obj: _C, key: str, value: Any) -> _C:
    """``obj`` with the leaf at the dotted ``key`` set to ``value`` (frozen: rebuilt)."""
    head, _, rest = key.partition(".")
    if rest:
        value = _replace(getattr(obj, head), rest, value)
    return dataclasses.replace(obj, **{head: value})  # type: ignore[type-var]


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf that differs between two config dataclasses."""
    keys: list[str] = []
    for f in dataclasses.fields(old):
        a, b = getattr(old, f.name), getattr(new, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            keys.extend(changed_keys(a, b, path + "."))
        elif a != b:
            keys.append(path)
    return keys


def merge_hot(running: Config, new: Config) -> Config:
    """``running`` with every reloadable key taken from ``new``; the rest stays as running."""
    for entry in RELOADABLE:
        running = _replace(running, entry.key, _get(new, entry.key))
    return running


# ---------------------------------------------------------------------------------------
# Applying an accepted config (each process applies it to what it runs)
# ---------------------------------------------------------------------------------------


def apply_to_logging(new: Config) -> None:
    setup_logging(new.logging)


def apply_to_metrics(store: MetricsStore, new: Config) -> None:
    """Label caps are read by the store at call time: swapping them in is enough."""
    updates = {
        entry.key.removeprefix("metrics."): _get(new, entry.key)
        for entry in RELOADABLE
        if entry.target is Target.METRICS
    }
    store.config = dataclasses.replace(store.config, **updates)


def apply_to_capture(worker: str, source: LiveSource, running: Config, new: Config) -> Config:
    """Install what the handle holds itself; returns the capture loop's new config.

    A value the handle refuses stays as it was, for that worker only (the parent checked
    it already, so this is rare).
    """
    for entry in RELOADABLE:
        old_value, value = _get(running, entry.key), _get(new, entry.key)
        if entry.install is None or value == old_value:
            continue
        try:
            entry.install(source, value)
        except BpfError as exc:  # the only install today is the BPF filter's
            log.error("worker %s kept its old BPF filter: %s", worker, exc)
            new = _replace(new, entry.key, old_value)
    return merge_hot(running, new)


# ---------------------------------------------------------------------------------------
# The config the daemon runs on: the file plus the command-line flags
# ---------------------------------------------------------------------------------------


def load_effective_config(args: Any) -> Config:
    """The config file (or the embedded defaults) with the command-line flags applied."""
    flags = {name: getattr(args, name, None) for name in OVERRIDES}
    try:
        return apply_overrides(load_config(getattr(args, "config", None)), **flags)
    except ConfigError as exc:
        raise StartupError(str(exc), EXIT_CONFIG) from None


def check_bpf(bpf: str, linktype: int, snaplen: int) -> None:
    """Compile without installing, so a bad filter is refused before anything changes.

    Compiled as the handle would install it (the default filter is plain ``tcp`` on the
    Linux cooked link types of ``any``), so a good default is not refused on reload.
    """
    bpf = filter_for_link(bpf, linktype)
    try:
        pcapy.compile(linktype, snaplen, bpf, 1, 0)
    except pcapy.PcapError as exc:
        raise BpfError(f"invalid BPF filter {bpf!r}: {exc}") from None


class ReloadCounter:
    """A prometheus-client collector for the daemon's own counter (name and help from the
    metrics catalogue, like every other family)."""

    def __init__(self) -> None:
        self.failures = 0

    def collect(self) -> Iterator[Metric]:
        family = metric_family(CONFIG_RELOAD_FAILURES)
        family.add_metric((), self.failures)
        yield family


class Reloader:
    """The process that got SIGHUP: validates the new config and keeps what really runs."""

    def __init__(self, args: Any, config: Config, linktype: int, reloads: ReloadCounter) -> None:
        self.args = args
        self.config = config
        self.linktype = linktype
        self.reloads = reloads

    def reload(self) -> Config | None:
        """The new config when it is good (already applied to logging), else None."""
        path = getattr(self.args, "config", None)
        try:
            new = load_effective_config(self.args)
            check_bpf(new.capture.bpf, self.linktype, new.capture.snaplen)
        except (StartupError, BpfError) as exc:
            self.reloads.failures += 1
            log.error("config reload refused, old config kept: %s", exc)
            return None
        changed = changed_keys(self.config, new)
        hot = [k for k in changed if k in HOT_KEYS]
        cold = [k for k in changed if k not in HOT_KEYS]
        apply_to_logging(new)
        log.info(
            "config reloaded from %s: applied %s; needs a restart: %s",
            path or "defaults",
            ", ".join(hot) or "nothing",
            ", ".join(cold) or "nothing",
        )
        # Keep the cold part as running, so the next diff is against what really runs.
        self.config = merge_hot(self.config, new)
        return self.config

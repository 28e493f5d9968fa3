"""The direct text exposition: Prometheus text format 0.0.4 without Metric objects.

Byte for byte what prometheus-client's ``generate_latest`` writes for the same families
(tests/test_sinks_metrics_exposition.py holds it to that), about twenty times cheaper: each
series' line up to its value (name, escaped and sorted labels) is cached per label key
and each value's text per value, both as UTF-8 bytes, so a scrape is mostly dict lookups
and C-level joins (docs/performance.md, "Scrape cost").
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from itertools import accumulate, chain
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

from dicomsniffd.sinks.metrics.catalogue import STORE_FAMILIES, Key

_RENDER_CACHE_SLACK = 1024  # cached label keys beyond the live ones before a cache reset
_VALUE_CACHE_MAX = 65536


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels_text(labels: dict[str, str]) -> str:
    """``{a="x",b="y"}`` with names sorted, as generate_latest writes them; '' if none."""
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(labels.items())) + "}"


def _header(name: str, kind: str, help_text: str) -> bytes:
    doc = help_text.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n".encode()


class _CountText(dict):
    """Value -> b"text\\n" for values that are never -0.0 (cumulative bucket counts,
    which start from int 0). Bounded: cleared when full."""

    def __missing__(self, value: float) -> bytes:
        text = floatToGoString(value).encode() + b"\n"
        if len(self) >= _VALUE_CACHE_MAX:
            self.clear()
        self[value] = text
        return text


class _ValueText(dict):
    """Value -> b"text\\n" for any value. Zero is never stored: 0 and -0.0 are one dict
    key but print differently ("0.0" / "-0.0")."""

    def __missing__(self, value: float) -> bytes:
        text = floatToGoString(value).encode() + b"\n"
        if value != 0:
            if len(self) >= _VALUE_CACHE_MAX:
                self.clear()
            self[value] = text
        return text


# Shared by every store: a value's text does not depend on the family it appears in.
_COUNTS = _CountText()
_VALUES = _ValueText()


class FamilyText:
    """The text exposition of one catalogue family, with its per-key line prefixes."""

    __slots__ = ("kind", "header", "labels", "sample", "les", "with_sum", "prefixes")

    def __init__(
        self, name: str, kind: str, labels: tuple[str, ...], help_text: str,
        bounds: tuple[float, ...],
    ) -> None:  # fmt: skip
        self.kind = kind
        self.labels = labels
        if kind == "counter":
            # CounterMetricFamily drops a "_total" suffix; generate_latest adds it back.
            base = name[:-6] if name.endswith("_total") else name
            name = self.sample = base + "_total"
        else:
            self.sample = name
        self.header = _header(name, kind, help_text)
        self.les = (*(floatToGoString(b) for b in bounds), "+Inf")
        # HistogramMetricFamily leaves out _count and _sum when the first bucket is < 0.
        self.with_sum = float(self.les[0]) >= 0
        self.prefixes: dict[Key, Any] = {}

    def _prefix(self, key: Key) -> bytes:
        return f"{self.sample}{_labels_text(dict(zip(self.labels, key, strict=False)))} ".encode()

    def _hist_prefixes(self, key: Key) -> tuple[bytes, ...]:
        pairs = list(zip(self.labels, key, strict=False))  # as add_metric
        names = sorted(dict(pairs))
        if "le" in names:  # not in the catalogue; the general (slow) form
            out = [f"{self.sample}_bucket{_labels_text(dict([*pairs, ('le', le)]))} "
                   for le in self.les]  # fmt: skip
        else:
            # Escape and sort the labels once; "le" goes where sorting would put it.
            parts = [
                f'{name}="{_escape_value(value)}"' for name, value in sorted(dict(pairs).items())
            ]
            cut = bisect_left(names, "le")
            head = "".join(part + "," for part in parts[:cut])
            tail = "".join("," + part for part in parts[cut:])
            out = [f'{self.sample}_bucket{{{head}le="{le}"{tail}}} ' for le in self.les]
        if self.with_sum:
            plain = _labels_text(dict(pairs))
            out += (f"{self.sample}_count{plain} ", f"{self.sample}_sum{plain} ")
        return tuple(line.encode() for line in out)

    def _cache(self, n_live: int) -> dict[Key, Any]:
        prefixes = self.prefixes
        if len(prefixes) > n_live + _RENDER_CACHE_SLACK:
            prefixes.clear()  # label keys that no longer exist (merged workers changed)
        return prefixes

    def values(self, out: list[bytes], rows: dict[Key, float]) -> None:
        out.append(self.header)
        if not rows:
            return
        prefixes = self._cache(len(rows))
        keys = sorted(rows)
        heads = [prefixes.get(key) or prefixes.setdefault(key, self._prefix(key)) for key in keys]
        texts = map(_VALUES.__getitem__, map(rows.__getitem__, keys))
        out.extend(chain.from_iterable(zip(heads, texts, strict=True)))

    def histogram(self, out: list[bytes], rows: dict[Key, list[float]]) -> None:
        out.append(self.header)
        if not rows:
            return
        prefixes = self._cache(len(rows))
        counts = _COUNTS.__getitem__
        with_sum = self.with_sum
        extend = out.extend
        for key in sorted(rows):
            heads = prefixes.get(key)
            if heads is None:
                heads = prefixes[key] = self._hist_prefixes(key)
            row = rows[key]
            # As collectors.histogram_family: cumulative from int 0 over every bucket and
            # +Inf; the last one is the count. row[-1] is the sum.
            cumulative = list(accumulate(row[:-1], initial=0))
            del cumulative[0]
            # zip stops at the buckets: heads ends with the _count and _sum prefixes.
            extend(chain.from_iterable(zip(heads, map(counts, cumulative), strict=False)))
            if with_sum:
                extend((heads[-2], counts(cumulative[-1]), heads[-1], _VALUES[row[-1]]))


def family_text(out: list[bytes], family: Metric) -> None:
    """generate_latest's text for one prometheus-client family (counter, gauge,
    histogram; no timestamps, no _created/_gsum samples)."""
    name = family.name + "_total" if family.type == "counter" else family.name
    out.append(_header(name, family.type, family.documentation))
    for sample in family.samples:
        line = f"{sample.name}{_labels_text(sample.labels)} {floatToGoString(sample.value)}\n"
        out.append(line.encode())


class TextExposition:
    """The text of one store's state: a renderer (and its caches) per store family."""

    def __init__(self, bounds: Mapping[str, tuple[float, ...]]) -> None:
        self._renderers = {
            family.name: FamilyText(
                family.name, family.kind, family.labels, family.help, bounds.get(family.name, ())
            )
            for family in STORE_FAMILIES
        }

    def render(self, merged: dict[str, Any], extra: Iterable[Metric]) -> bytes:
        """The store families of a merged snapshot, then the ``extra`` prometheus-client
        families (self statistics, build info: a few samples, rendered through
        prometheus-client's own objects so their layout cannot drift from collect())."""
        out: list[bytes] = []
        for name, renderer in self._renderers.items():
            if renderer.kind == "histogram":
                renderer.histogram(out, merged["hists"][name])
            else:
                renderer.values(out, merged["values"].get(name, {}))
        for family in extra:
            family_text(out, family)
        return b"".join(out)

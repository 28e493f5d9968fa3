"""Inline SVG charts of the HTML report, drawn in Python (no JavaScript, no libraries).

Every chart is one ``<svg>`` element with an ``id``, a fixed ``viewBox`` and matching
``width``/``height`` attributes. Inputs are downsampled to a bounded number of marks so a
huge capture still gives a report of a few megabytes. Text from the wire is escaped.
"""

from __future__ import annotations

import html
import math
import time
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

WIDTH = 1100
MAX_BARS = 2_500
MAX_POINTS = 3_000

STATUS_COLORS = {
    "success": "#2e7d32",
    "warning": "#f9a825",
    "failure": "#c62828",
    "cancel": "#8e24aa",
    "unanswered": "#757575",
    "pending": "#1e88e5",
}
_TRANSFER_COLOR = "#1e88e5"
_RESPONSE_TRANSFER_COLOR = "#8e24aa"  # the final response's own transfer (DESIGN §3)
THROUGHPUT_COLOR = "#5c9bd6"  # opaque fills: the screenshot test looks for these exact colours
HISTOGRAM_COLOR = "#4c9a52"
_OUTCOME_COLORS = {
    "accepted": "#90a4ae",
    "rejected": "#c62828",
    "aborted-before-accept": "#c62828",
    "unknown": "#bdbdbd",
}


def _e(value: Any) -> str:
    # Not escape.esc: chart text shows a control character as "?", the page spells it out
    # as "\\xNN"; two behaviours kept so the report stays byte-identical.
    text = "" if value is None else str(value)
    text = "".join(ch if ord(ch) >= 0x20 and ord(ch) != 0x7F else "?" for ch in text)
    return html.escape(text, quote=True)


def _f(x: float) -> str:
    """Compact coordinate."""
    return f"{x:.1f}".rstrip("0").rstrip(".") if abs(x) < 1e7 else "0"


def _svg(chart_id: str, height: int, label: str, body: list[str]) -> str:
    return (
        f"<svg id='{chart_id}' class='chart' role='img' aria-label='{_e(label)}' "
        f"viewBox='0 0 {WIDTH} {height}' width='{WIDTH}' height='{height}' "
        f"preserveAspectRatio='xMinYMin meet'>"
        f"<rect class='bg' x='0' y='0' width='{WIDTH}' height='{height}' fill='#fff'></rect>"
        + "".join(body)
        + "</svg>"
    )


def _empty(chart_id: str, height: int, message: str) -> str:
    return _svg(
        chart_id,
        height,
        message,
        [
            f"<text x='{WIDTH / 2}' y='{height / 2}' text-anchor='middle'>{_e(message)}</text>",
        ],
    )


def spread(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items taken evenly from ``items`` (all of them if it has no more than n)."""
    if n <= 0:
        return []
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _priority_sample(records: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """At most n records: non-success ones first, successful ones spread over time."""
    if len(records) <= n:
        return list(records)
    notable = [r for r in records if r["status_class"] != "success"][:n]
    ok = [r for r in records if r["status_class"] == "success"]
    return notable + spread(ok, n - len(notable))


def _nice_step(span: float, target: int) -> float:
    if span <= 0:
        return 1.0
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        if mult * mag >= raw:
            return mult * mag
    return 10 * mag


_TIME_STEPS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120,
    300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip


def _time_ticks(t0: float, t1: float, target: int = 8) -> list[tuple[float, str]]:
    span = t1 - t0
    if span <= 0:
        return [(t0, _clock(t0, 1))]
    raw = span / target
    step = next((s for s in _TIME_STEPS if s >= raw), _TIME_STEPS[-1] * math.ceil(raw / 86400))
    first = math.ceil(t0 / step) * step
    decimals = 3 if step < 0.01 else 2 if step < 0.1 else 1 if step < 1 else 0
    ticks = []
    t = first
    while t <= t1 + 1e-9 and len(ticks) < 50:
        ticks.append((t, _clock(t, decimals, with_date=step >= 86400)))
        t += step
    return ticks


def _clock(ts: float, decimals: int, with_date: bool = False) -> str:
    text = time.strftime("%m-%d %H:%M" if with_date else "%H:%M:%S", time.gmtime(ts))
    if decimals:
        text += f"{ts % 1:.{decimals}f}"[1:]
    return text


class _TimeAxis:
    def __init__(self, t0: float, t1: float, left: float, right: float) -> None:
        if t1 - t0 < 1e-3:
            t0, t1 = t0 - 0.0005, t1 + 0.0005
        self.t0, self.t1, self.left, self.right = t0, t1, left, right
        self.scale = (right - left) / (t1 - t0)

    def x(self, ts: float) -> float:
        return self.left + (min(max(ts, self.t0), self.t1) - self.t0) * self.scale

    def draw(self, top: float, bottom: float) -> list[str]:
        out = [
            f"<line class='axis' x1='{_f(self.left)}' y1='{_f(bottom)}' "
            f"x2='{_f(self.right)}' y2='{_f(bottom)}'></line>"
        ]
        for t, label in _time_ticks(self.t0, self.t1):
            x = _f(self.x(t))
            out.append(
                f"<line class='grid-line' x1='{x}' y1='{_f(top)}' x2='{x}' y2='{_f(bottom)}'></line>"
                f"<text x='{x}' y='{_f(bottom + 14)}' text-anchor='middle'>{_e(label)}</text>"
            )
        out.append(
            f"<text x='{_f(self.right)}' y='{_f(bottom + 28)}' text-anchor='end'>time (UTC)</text>"
        )
        return out


class _ValueAxis:
    """Vertical axis, linear from 0 or logarithmic when values span many decades."""

    def __init__(self, values: Sequence[float], top: float, bottom: float) -> None:
        self.top, self.bottom = top, bottom
        positive = [v for v in values if v > 0]
        vmax = max(values) if values else 1.0
        self.log = bool(positive) and vmax / max(min(positive), 1e-6) > 200
        if self.log:
            self.lo = 10 ** math.floor(math.log10(max(min(positive), 1e-3)))
            self.hi = 10 ** math.ceil(math.log10(max(vmax, self.lo * 10)))
        else:
            step = _nice_step(vmax if vmax > 0 else 1.0, 5)
            self.lo = 0.0
            self.hi = step * math.ceil((vmax if vmax > 0 else 1.0) / step)

    def y(self, v: float) -> float:
        h = self.bottom - self.top
        if self.log:
            v = min(max(v, self.lo), self.hi)
            frac = (math.log10(v) - math.log10(self.lo)) / (
                math.log10(self.hi) - math.log10(self.lo)
            )
        else:
            frac = (min(max(v, 0.0), self.hi) - self.lo) / (self.hi - self.lo)
        return self.bottom - frac * h

    def ticks(self) -> list[float]:
        if self.log:
            out, v = [], self.lo
            while v <= self.hi * 1.0001:
                out.append(v)
                v *= 10
            return out
        step = _nice_step(self.hi, 5)
        return [i * step for i in range(int(round(self.hi / step)) + 1)]

    def draw(self, left: float, right: float, fmt) -> list[str]:
        out = [
            f"<line class='axis' x1='{_f(left)}' y1='{_f(self.top)}' x2='{_f(left)}' "
            f"y2='{_f(self.bottom)}'></line>"
        ]
        for v in self.ticks():
            y = _f(self.y(v))
            out.append(
                f"<line class='grid-line' x1='{_f(left)}' y1='{y}' x2='{_f(right)}' y2='{y}'></line>"
                f"<text x='{_f(left - 6)}' y='{y}' dy='4' text-anchor='end'>{_e(fmt(v))}</text>"
            )
        return out


def _fmt_ms(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:g} s"
    return f"{v:g} ms"


# -- timeline ---------------------------------------------------------------------------------


def timeline_chart(
    t0: float,
    t1: float,
    lanes: list[dict[str, Any]],
    records: list[dict[str, Any]],
    n_assocs: int,
) -> str:
    lane_h = 28 if len(lanes) <= 8 else 18
    top, left, right = 26, 230, WIDTH - 16
    height = int(top + max(len(lanes), 1) * lane_h + 40)
    if not lanes:
        return _empty("chart-timeline", 120, "No DICOM association in this capture")
    axis = _TimeAxis(t0, t1, left, right)
    bottom = top + len(lanes) * lane_h
    body = axis.draw(top, bottom)
    if len(lanes) < n_assocs:
        body.append(
            f"<text x='{left}' y='16'>showing {len(lanes)} of {n_assocs} associations "
            "(those with problems first)</text>"
        )
    else:
        body.append(
            f"<text x='{left}' y='16'>{len(lanes)} association{'' if len(lanes) == 1 else 's'}</text>"
        )
    lane_of: dict[int, int] = {}
    end_of: dict[int, float] = {}
    for i, a in enumerate(lanes):
        y = top + i * lane_h
        lane_of[a["flow_id"]] = i
        start = a.get("start_ts") if a.get("start_ts") is not None else axis.t0
        end = a.get("end_ts") if a.get("end_ts") is not None else axis.t1
        end_of[a["flow_id"]] = end
        x0, x1 = axis.x(start), axis.x(end)
        label = f"{a['flow_id']} {a.get('calling_ae') or '?'} → {a.get('called_ae') or '?'}"
        if len(label) > 34:
            label = label[:33] + "…"
        color = _OUTCOME_COLORS.get(a["outcome"], "#bdbdbd")
        if i % 2:
            body.append(
                f"<rect x='{left}' y='{y}' width='{_f(right - left)}' height='{lane_h}' "
                "fill='#fafbfc'></rect>"
            )
        body.append(
            f"<text x='{left - 8}' y='{_f(y + lane_h / 2)}' dy='4' text-anchor='end'>"
            f"{_e(label)}</text>"
            f"<g><title>{_e(a['outcome'])}"
            f"{_e(', ended: ' + a['end']) if a.get('end') else ''}</title>"
            f"<rect x='{_f(x0)}' y='{_f(y + lane_h / 2 - 1.5)}' width='{_f(max(x1 - x0, 3))}' "
            f"height='3' fill='{color}'></rect></g>"
        )
    mine = [r for r in records if r["flow_id"] in lane_of]
    bar_h = 14 if lane_h > 20 else 10
    for r in _priority_sample(mine, MAX_BARS):
        y = top + lane_of[r["flow_id"]] * lane_h + (lane_h - bar_h) / 2
        cls = r["status_class"] or "unanswered"
        color = STATUS_COLORS.get(cls, "#757575")
        start = r["request_ts"]
        done = r["request_complete_ts"]
        resp = r["response_ts"]
        tip = _tip(r, cls)
        parts = [f"<g><title>{_e(tip)}</title>"]
        if done is not None and done > start:
            xa, xb = axis.x(start), axis.x(done)
            parts.append(
                f"<rect x='{_f(xa)}' y='{_f(y)}' width='{_f(max(xb - xa, 0.6))}' "
                f"height='{bar_h}' fill='{color}' fill-opacity='0.35'></rect>"
            )
        service_start = done if done is not None else start
        if resp is not None:
            service_end = resp
        elif cls == "unanswered":
            service_end = end_of.get(r["flow_id"], axis.t1)
        else:
            service_end = service_start
        xa, xb = axis.x(service_start), axis.x(service_end)
        parts.append(
            f"<rect x='{_f(xa)}' y='{_f(y)}' width='{_f(max(xb - xa, 1.2))}' "
            f"height='{bar_h}' fill='{color}'"
            + (" fill-opacity='0.5'" if cls == "unanswered" else "")
            + "></rect></g>"
        )
        body.append("".join(parts))
    if len(mine) > MAX_BARS:
        body.append(
            f"<text x='{right}' y='16' text-anchor='end'>{MAX_BARS} of {len(mine)} "
            "operations drawn</text>"
        )
    return _svg("chart-timeline", height, "Timeline of associations and DIMSE operations", body)


def _tip(r: dict[str, Any], cls: str) -> str:
    status = "" if r["status"] is None else f" 0x{r['status']:04X}"
    parts = [f"flow {r['flow_id']} {r['command']} msg {r['message_id']}: {cls}{status}"]
    download = r.get("request_sender") == "acceptor"  # a C-GET's C-STORE, SCP -> SCU
    if r["request_transfer_seconds"] is not None:
        way = "download" if download else "transfer"
        parts.append(f"{way} {r['request_transfer_seconds'] * 1000:.1f} ms")
    if r["response_latency_seconds"] is not None:
        who = "SCU time" if download else "service"
        parts.append(f"{who} {r['response_latency_seconds'] * 1000:.1f} ms")
    if r.get("response_transfer_seconds") is not None:
        parts.append(f"response {r['response_transfer_seconds'] * 1000:.1f} ms")
    return ", ".join(parts)


# -- latency over time ------------------------------------------------------------------------


_LATENCY_PHASES = (
    "response_latency_seconds",
    "request_transfer_seconds",
    "response_transfer_seconds",
)


def latency_chart(t0: float, t1: float, records: list[dict[str, Any]]) -> str:
    height = 320
    points = [r for r in records if any(r.get(k) is not None for k in _LATENCY_PHASES)]
    if not points:
        return _empty("chart-latency", height, "No request with a measured latency")
    points = _priority_sample(points, MAX_POINTS)
    top, bottom, left, right = 20, height - 40, 70, WIDTH - 16
    values = [
        v * 1000.0 for r in points for v in (r.get(k) for k in _LATENCY_PHASES) if v is not None
    ]
    axis = _TimeAxis(t0, t1, left, right)
    yaxis = _ValueAxis(values, top, bottom)
    body = axis.draw(top, bottom) + yaxis.draw(left, right, _fmt_ms)
    body.append(
        f"<text x='14' y='{_f((top + bottom) / 2)}' transform='rotate(-90 14 "
        f"{_f((top + bottom) / 2)})' text-anchor='middle'>"
        f"milliseconds{' (log scale)' if yaxis.log else ''}</text>"
    )
    transfer, service, response = [], [], []
    for r in points:
        x = _f(axis.x(r["request_ts"]))
        if r["request_transfer_seconds"] is not None:
            y = _f(yaxis.y(r["request_transfer_seconds"] * 1000.0))
            transfer.append(f"<circle cx='{x}' cy='{y}' r='2'></circle>")
        if r.get("response_transfer_seconds") is not None:
            y = _f(yaxis.y(r["response_transfer_seconds"] * 1000.0))
            response.append(f"<rect x='{x}' y='{y}' width='3' height='3'></rect>")
        if r["response_latency_seconds"] is not None:
            color = STATUS_COLORS.get(r["status_class"], "#757575")
            y = _f(yaxis.y(r["response_latency_seconds"] * 1000.0))
            service.append(f"<circle cx='{x}' cy='{y}' r='2.6' fill='{color}'></circle>")
    body.append(f"<g fill='{_TRANSFER_COLOR}' fill-opacity='0.55'>{''.join(transfer)}</g>")
    body.append(f"<g fill-opacity='0.85'>{''.join(service)}</g>")
    body.append(f"<g fill='{_RESPONSE_TRANSFER_COLOR}' fill-opacity='0.7'>{''.join(response)}</g>")
    body.append(
        f"<g><rect x='{right - 410}' y='8' width='8' height='8' "
        f"fill='{_RESPONSE_TRANSFER_COLOR}'></rect>"
        f"<text x='{right - 398}' y='16'>response transfer</text>"
        f"<circle cx='{right - 230}' cy='12' r='4' fill='{STATUS_COLORS['success']}'></circle>"
        f"<text x='{right - 222}' y='16'>service time (SCP)</text>"
        f"<circle cx='{right - 100}' cy='12' r='4' fill='{_TRANSFER_COLOR}'></circle>"
        f"<text x='{right - 92}' y='16'>transfer time</text></g>"
    )
    return _svg("chart-latency", height, "Latency over time", body)


# -- throughput over time ---------------------------------------------------------------------


def throughput_chart(t0: float, t1: float, series: dict[str, Any]) -> str:
    height = 260
    width_s = float(series.get("bucket_seconds") or 0.0)
    points = series.get("points") or []
    if not points or width_s <= 0:
        return _empty("chart-throughput", height, "No DIMSE data transfer seen")
    t0 = min(t0, points[0][0])
    t1 = max(t1, points[-1][0] + width_s)
    top, bottom, left, right = 20, height - 40, 70, WIDTH - 60
    axis = _TimeAxis(t0, t1, left, right)
    mbps = [nbytes * 8 / width_s / 1e6 for _ts, nbytes, _n, _f_ in points]
    yaxis = _ValueAxis([*mbps, 0.0] if any(mbps) else [1.0], top, bottom)
    yaxis.log = False
    if yaxis.hi <= 0:
        yaxis.hi = 1.0
    body = axis.draw(top, bottom) + yaxis.draw(left, right, lambda v: f"{v:g}")
    body.append(
        f"<text x='14' y='{_f((top + bottom) / 2)}' transform='rotate(-90 14 "
        f"{_f((top + bottom) / 2)})' text-anchor='middle'>Mbit/s</text>"
    )
    bars = []
    for (ts, _nbytes, _n, failures), rate in zip(points, mbps, strict=True):
        if rate <= 0:
            continue
        x0, x1 = axis.x(ts), axis.x(ts + width_s)
        y = yaxis.y(rate)
        fill = " fill='#c62828'" if failures else ""
        bars.append(
            f"<rect x='{_f(x0)}' y='{_f(y)}' width='{_f(max(x1 - x0 - 0.3, 0.8))}' "
            f"height='{_f(max(bottom - y, 0.5))}'{fill}></rect>"
        )
    body.append(f"<g fill='{THROUGHPUT_COLOR}'>{''.join(bars)}</g>")
    counts = [n for _ts, _b, n, _f_ in points]
    cmax = max(counts) or 1
    path = []
    prev_ts = None
    for ts, _b, n, _fail in points:
        x = axis.x(ts + width_s / 2)
        y = bottom - (n / cmax) * (bottom - top)
        # an absent bucket means nothing happened: drop to zero instead of interpolating
        if prev_ts is not None and ts - prev_ts > width_s * 1.5:
            path.append(f"L{_f(axis.x(prev_ts + width_s * 1.5))} {_f(bottom)}")
            path.append(f"L{_f(axis.x(ts - width_s / 2))} {_f(bottom)}")
        path.append(f"{'M' if prev_ts is None else 'L'}{_f(x)} {_f(y)}")
        prev_ts = ts
    body.append(
        f"<path d='{' '.join(path)}' fill='none' stroke='#37474f' stroke-width='1.2'></path>"
    )
    body.append(
        f"<text x='{right + 6}' y='{top + 4}'>{cmax}</text>"
        f"<text x='{right + 6}' y='{bottom}'>0</text>"
        f"<text x='{right + 6}' y='{top + 18}'>ops/</text>"
        f"<text x='{right + 6}' y='{top + 30}'>bucket</text>"
        f"<text x='{left}' y='14'>bucket = {width_s:g} s; red bars: a bucket with failures"
        "</text>"
    )
    return _svg("chart-throughput", height, "Throughput over time", body)


# -- histogram of service times ---------------------------------------------------------------


def histogram_chart(samples_ms: Sequence[float]) -> str:
    height = 260
    values = [v for v in samples_ms if v is not None and v >= 0]
    if not values:
        return _empty("chart-service-hist", height, "No service time measured")
    per_decade = 5
    vmin = max(min(values), 0.01)
    vmax = max(max(values), vmin * 1.0001)
    lo_exp = math.floor(math.log10(vmin))
    hi_exp = math.ceil(math.log10(vmax))
    if hi_exp <= lo_exp:
        hi_exp = lo_exp + 1
    n_bins = (hi_exp - lo_exp) * per_decade
    edges = [10 ** (lo_exp + i / per_decade) for i in range(n_bins + 1)]
    counts = [0] * n_bins
    for v in values:
        i = bisect_right(edges, v) - 1
        counts[min(max(i, 0), n_bins - 1)] += 1
    top, bottom, left, right = 20, height - 40, 70, WIDTH - 16
    yaxis = _ValueAxis([float(max(counts))], top, bottom)
    yaxis.log = False
    body = yaxis.draw(left, right, lambda v: f"{v:g}")
    span = right - left
    bw = span / n_bins

    def xpos(v: float) -> float:
        return left + (math.log10(v) - lo_exp) / (hi_exp - lo_exp) * span

    for e in range(lo_exp, hi_exp + 1):
        x = _f(xpos(10.0**e))
        body.append(
            f"<line class='grid-line' x1='{x}' y1='{top}' x2='{x}' y2='{bottom}'></line>"
            f"<text x='{x}' y='{bottom + 14}' text-anchor='middle'>{_e(_fmt_ms(10.0**e))}</text>"
        )
    body.append(
        f"<line class='axis' x1='{left}' y1='{bottom}' x2='{right}' y2='{bottom}'></line>"
        f"<text x='{right}' y='{bottom + 28}' text-anchor='end'>service time (log scale)</text>"
        f"<text x='14' y='{_f((top + bottom) / 2)}' transform='rotate(-90 14 "
        f"{_f((top + bottom) / 2)})' text-anchor='middle'>requests</text>"
    )
    bars = []
    for i, n in enumerate(counts):
        if not n:
            continue
        y = yaxis.y(n)
        bars.append(
            f"<g><title>{edges[i]:.3g}–{edges[i + 1]:.3g} ms: {n}</title>"
            f"<rect x='{_f(left + i * bw + 1)}' y='{_f(y)}' width='{_f(max(bw - 2, 1))}' "
            f"height='{_f(max(bottom - y, 0.5))}'></rect></g>"
        )
    body.append(f"<g fill='{HISTOGRAM_COLOR}'>{''.join(bars)}</g>")
    ordered = sorted(values)
    for q, label, dy in ((0.5, "p50", -6), (0.95, "p95", 8)):
        v = ordered[min(int(q * (len(ordered) - 1) + 0.5), len(ordered) - 1)]
        x = _f(xpos(min(max(v, edges[0]), edges[-1])))
        body.append(
            f"<line x1='{x}' y1='{top}' x2='{x}' y2='{bottom}' stroke='#37474f' "
            f"stroke-dasharray='4 3'></line>"
            f"<text x='{x}' y='{top + dy}' dx='4'>{label} {_e(_fmt_ms(round(v, 1)))}</text>"
        )
    body.append(f"<text x='{right}' y='14' text-anchor='end'>{len(values)} requests</text>")
    return _svg("chart-service-hist", height, "Histogram of service times", body)

"""Server-rendered SVG charts: difficulty and block time over the latest blocks.

A chart is computed here as numbers (points in pixels, ticks with labels) and drawn by the
template as `<polyline>`, `<line>` and `<text>`; nothing is marked safe and no script runs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from pybtc.pow import bits_to_target
from services.common.i18n import gettext as _
from services.common.i18n import ngettext

WIDTH, HEIGHT = 560, 200
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 28  # room for the tick labels, phones included


@dataclass
class Chart:
    """One line chart in SVG pixel space."""

    title: str
    unit: str
    points: str = ""
    ticks_y: list[tuple[float, str]] = field(default_factory=list)
    ticks_x: list[tuple[float, str]] = field(default_factory=list)
    reference: tuple[float, str] | None = None
    summary: str = ""
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    top: int = TOP
    bottom_edge: int = HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return not self.points


def _nice_step(span: float, count: int = 4) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about `count` ticks over `span`."""
    if span <= 0:
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return float(factor * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _label(value: float) -> str:
    if value == int(value) and abs(value) < 1e6:
        return f"{int(value)}"
    if abs(value) >= 1e6 or (value and abs(value) < 1e-2):
        return f"{value:.2g}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _draw(
    chart: Chart, heights: list[int], values: list[float], floor: float | None = None
) -> Chart:
    """Scale (height, value) pairs into the plot area and choose the axis ticks."""
    if not values:
        return chart
    low = min(values) if floor is None else min(floor, *values)
    high = max(values)
    if chart.reference is not None:
        high = max(high, chart.reference[0])
    step = _nice_step(high - low)
    low = math.floor(low / step) * step
    high = max(low + step, math.ceil(high / step) * step)
    x0, x1 = chart.left, chart.right_edge
    y0, y1 = chart.bottom_edge, chart.top
    first, last = heights[0], heights[-1]

    def x(h: int) -> float:
        return x0 + (x1 - x0) * ((h - first) / (last - first) if last > first else 0.5)

    def y(v: float) -> float:
        return y0 - (y0 - y1) * (v - low) / (high - low)

    chart.points = " ".join(f"{x(h):.1f},{y(v):.1f}" for h, v in zip(heights, values, strict=True))
    chart.ticks_y = [
        (round(y(low + i * step), 1), _label(low + i * step))
        for i in range(round((high - low) / step) + 1)
    ]
    x_step = max(1, int(_nice_step(last - first, 5)))
    chart.ticks_x = [
        (round(x(h), 1), str(h)) for h in range(first + (-first % x_step), last + 1, x_step)
    ]
    if chart.reference is not None:
        chart.reference = (round(y(chart.reference[0]), 1), chart.reference[1])
    return chart


def difficulty_chart(blocks: list[dict[str, Any]], pow_limit: int) -> Chart:
    """Difficulty (the network's easiest target over the block's) at each height, oldest first."""
    chart = Chart(_("Difficulty"), _("× easiest target"))
    if not blocks:
        return chart
    heights = [int(b["index"]) for b in blocks]
    values = [pow_limit / bits_to_target(int(b["bits"])) for b in blocks]
    changes = sum(1 for a, b in itertools.pairwise(values) if a != b)
    chart.summary = ngettext(
        "now %(value)s; %(num)s change over blocks %(low)s–%(high)s",
        "now %(value)s; %(num)s changes over blocks %(low)s–%(high)s",
        changes,
    ) % {"value": _label(values[-1]), "num": changes, "low": heights[0], "high": heights[-1]}
    return _draw(chart, heights, values, floor=0)


def block_time_chart(blocks: list[dict[str, Any]], target_spacing: int) -> Chart:
    """Seconds between each block's timestamp and its parent's (may be negative: miners'
    clocks differ, and only median-time-past bounds a timestamp from below). The gap after
    genesis (a fixed, old timestamp) is left out; gaps far above the rest (a night with no
    miner) are drawn at a ceiling and counted, so they do not flatten every other point."""
    chart = Chart(_("Block time"), _("seconds"), reference=(float(target_spacing), _("target")))
    pairs = [(a, b) for a, b in itertools.pairwise(blocks) if int(a["index"]) > 1]
    heights = [int(b["index"]) for _, b in pairs]
    values = [float(int(b["timestamp"]) - int(a["timestamp"])) for a, b in pairs]
    if not values:
        return chart
    ordered = sorted(values)
    median = ordered[len(ordered) // 2]
    ceiling = max(4.0 * target_spacing, 6.0 * median, 1.0)  # exponential gaps: ~2% above
    clipped = sum(1 for v in values if v > ceiling)
    chart.summary = _(
        "median %(median)s s, mean %(mean)s s (target %(target)s s) over %(count)s blocks"
    ) % {
        "median": _label(median),
        "mean": _label(sum(values) / len(values)),
        "target": target_spacing,
        "count": len(values),
    }
    if clipped:
        chart.summary += ngettext(
            "; %(num)s gap over %(ceiling)s s drawn at that line",
            "; %(num)s gaps over %(ceiling)s s drawn at that line",
            clipped,
        ) % {"num": clipped, "ceiling": _label(ceiling)}
    return _draw(chart, heights, [min(v, ceiling) for v in values], floor=0)

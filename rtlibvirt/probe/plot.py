"""``--plot FILE.svg``: the latency histograms of every configuration in one SVG picture.

As OSADL's latency plots show them: latency (µs) along x, the number of
samples on a log y axis, one line per configuration, so the tail, which
decides real-time behaviour, is as visible as the bulk. Written by hand
(a few dozen SVG elements): no plotting library is needed for that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from rtlibvirt.probe.results import RunResult

WIDTH, HEIGHT = 900, 500
LEFT, RIGHT, TOP, BOTTOM = 80, 30, 60, 60
MAX_BINS = 300
FLOOR = math.log10(2)  # decades below 1 sample at the bottom of the y axis
COLORS = {"bare metal": "#2ca02c", "rtlibvirt": "#1f77b4", "untuned": "#d62728"}
OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2")


def _nice(value: float) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value``."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return int(step * power)
    return int(10 * power)  # pragma: no cover


def svg(runs: Sequence[RunResult], title: str) -> str:
    """The picture as SVG text."""
    series = [(run, run.histogram) for run in runs]
    top_us = max([r.summary.max_us for r in runs] + [1]) + 1
    x_step = _nice(top_us / 10)
    x_max = math.ceil(top_us / x_step) * x_step
    bin_us = _nice(x_max / MAX_BINS)
    bins = max(1, math.ceil(x_max / bin_us))
    binned = []
    for run, counts in series:
        values = [0] * bins
        for bucket, count in counts.items():
            values[min(bins - 1, bucket // bin_us)] += count
        binned.append((run, values))
    y_top = max([max(v, default=0) for _, v in binned] + [1])
    decades = max(1, math.ceil(math.log10(y_top)) if y_top > 1 else 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(us: float) -> float:
        return LEFT + plot_w * us / (bins * bin_us)

    def y(count: float) -> float:
        """Log scale from 10^-0.3 (0.5) at the bottom, so that a single sample shows."""
        if count < 1:
            return TOP + plot_h
        return TOP + plot_h - plot_h * (math.log10(count) + FLOOR) / (decades + FLOOR)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]
    # axes, decade grid and ticks
    out.append('<g class="axes" stroke="#999" stroke-width="1">')
    for d in range(decades + 1):
        gy = y(10**d)
        out.append(
            f'<line x1="{LEFT}" y1="{gy:.1f}" x2="{LEFT + plot_w}" y2="{gy:.1f}" stroke="#eee"/>'
        )
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none"/>')
    out.append("</g>")
    out.append('<g class="labels" fill="#333">')
    for d in range(decades + 1):
        out.append(
            f'<text x="{LEFT - 8}" y="{y(10**d) + 4:.1f}" text-anchor="end">10<tspan '
            f'dy="-5" font-size="9">{d}</tspan></text>'
        )
    step = x_step
    tick = 0
    while tick <= bins * bin_us:
        out.append(
            f'<text x="{x(tick):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{tick}</text>'
        )
        tick += step
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 16}" text-anchor="middle">'
        f"latency (µs), bins of {bin_us} µs</text>"
    )
    out.append(
        f'<text x="18" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {TOP + plot_h / 2})">samples (log scale)</text>'
    )
    out.append("</g>")
    # one step line per configuration, and its maximum marked; the legend on a white box
    legend = (
        f'<rect class="legend" x="{LEFT + plot_w - 338}" y="{TOP + 4}" width="334" '
        f'height="{18 * len(binned) + 6}" fill="white" fill-opacity="0.85" stroke="#ccc"/>'
    )
    lines: list[str] = []
    for index, (run, values) in enumerate(binned):
        color = COLORS.get(run.label, OTHER_COLORS[index % len(OTHER_COLORS)])
        points = [f"M{x(0):.1f},{y(0):.1f}"]
        for i, value in enumerate(values):
            points.append(f"L{x(i * bin_us):.1f},{y(value):.1f}")
            points.append(f"L{x((i + 1) * bin_us):.1f},{y(value):.1f}")
        s = run.summary
        worst = x(min(s.max_us, bins * bin_us))
        out.append(
            f'<g class="series" data-configuration={quoteattr(run.label)} '
            f'data-max-us="{s.max_us}" data-samples="{s.samples}">'
        )
        out.append(
            f'<path d="{" ".join(points)}" fill="none" stroke="{color}" stroke-width="1.5"/>'
        )
        out.append(
            f'<line x1="{worst:.1f}" y1="{TOP}" x2="{worst:.1f}" y2="{TOP + plot_h}" '
            f'stroke="{color}" stroke-dasharray="4 3"/>'
        )
        out.append("</g>")
        ly = TOP + 20 + 18 * index
        label = f"{run.label}: worst case {s.max_us} µs, p99.9 "
        label += f"{s.p999_us} µs" if s.p999_us is not None else "refused (past the histogram)"
        lines.append(
            f'<line x1="{LEFT + plot_w - 330}" y1="{ly - 4}" x2="{LEFT + plot_w - 310}" '
            f'y2="{ly - 4}" stroke="{color}" stroke-width="3"/>'
        )
        lines.append(f'<text x="{LEFT + plot_w - 304}" y="{ly}">{escape(label)}</text>')
    out += [legend, *lines, "</svg>"]
    return "\n".join(out) + "\n"

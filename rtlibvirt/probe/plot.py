"""``--plot FILE.svg``: the latency histograms of every configuration in one SVG picture.

Latency (µs) along a log x axis, the number of samples on a log y axis, one
line per configuration, each configuration's worst case as a dashed line (the
legend says so). Log on both axes: a real-time guest's bulk sits at a few µs
and its worst case may be a thousand times further (TCG's at tens of ms), so
a linear axis wide enough for the worst case crushes every other sample
into its leftmost pixels; on a log axis each decade gets the same width, and
the tail, which decides real-time behaviour, is as visible as the bulk. The
bins are 1/20 of a decade, never narrower than cyclictest's 1 µs buckets.

With the host's noise traced beside each configuration, a panel under the
plot gives, per configuration, the disturbances and µs lost per second on
its host CPUs and the sources that cost the most. Written by hand (a few
dozen SVG elements): no plotting library is needed for that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from rtlibvirt.probe.results import RunResult

WIDTH, HEIGHT = 900, 500
LEFT, RIGHT, TOP, BOTTOM = 80, 30, 60, 60
BINS_PER_DECADE = 20
FLOOR = math.log10(2)  # decades below 1 sample at the bottom of the y axis
COLORS = {"bare metal": "#2ca02c", "rtlibvirt": "#1f77b4", "untuned": "#d62728"}
OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2")
NOISE_LINE = 16  # px per line of the noise panel
NOISE_SOURCES = 2  # sources named per CPU in the panel
NOISE_CHARS = 120  # a panel line is cut there (the text report and --json have it all)


def edges(top_us: int) -> list[int]:
    """Bin edges in µs: 0, 2, 3, ... about 1/20 decade apart, at least 1 µs, past ``top_us``.

    The first bin [0, 2) is drawn from 1 µs (a log axis has no 0): it also
    holds the samples under 1 µs.
    """
    found = [0, 2]
    k = 0
    while found[-1] <= top_us:
        k += 1
        edge = math.ceil(10 ** (k / BINS_PER_DECADE))
        if edge > found[-1]:
            found.append(edge)
    return found


def svg(runs: Sequence[RunResult], title: str) -> str:
    """The picture as SVG text."""
    top_us = max([r.summary.max_us for r in runs] + [1])
    x_end = max(100, _nice(top_us + 1))  # the first 1, 2 or 5 x 10^k past the worst case
    decades_x = math.log10(x_end)  # the axis runs from 1 µs to x_end
    bounds = edges(top_us)
    binned = []
    for run in runs:
        values = [0] * (len(bounds) - 1)
        index = 0
        for bucket, count in sorted(run.histogram.items()):
            while bucket >= bounds[index + 1]:
                index += 1
            values[index] += count
        binned.append((run, values))
    y_top = max([max(v, default=0) for _, v in binned] + [1])
    decades = max(1, math.ceil(math.log10(y_top)) if y_top > 1 else 1)
    noise_lines = _noise_lines(runs)
    rows = sum(len(lines) for _, lines in noise_lines)
    panel = NOISE_LINE * (rows + 1) + 10 if noise_lines else 0
    height = HEIGHT + panel
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(us: float) -> float:
        """Log scale from 1 µs at the left to x_end at the right."""
        return LEFT + plot_w * math.log10(max(us, 1)) / decades_x

    def y(count: float) -> float:
        """Log scale from 10^-0.3 (0.5) at the bottom, so that a single sample shows."""
        if count < 1:
            return TOP + plot_h
        return TOP + plot_h - plot_h * (math.log10(count) + FLOOR) / (decades + FLOOR)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]
    # axes, decade grids (and 2, 5 within each decade of x) and ticks
    out.append('<g class="axes" stroke="#999" stroke-width="1">')
    for d in range(decades + 1):
        gy = y(10**d)
        out.append(
            f'<line x1="{LEFT}" y1="{gy:.1f}" x2="{LEFT + plot_w}" y2="{gy:.1f}" stroke="#eee"/>'
        )
    for d in range(math.ceil(decades_x)):
        for step in (1, 2, 5):
            if step * 10**d >= x_end:
                break
            gx = x(step * 10**d)
            shade = "#ddd" if step == 1 else "#f3f3f3"
            out.append(
                f'<line class="x-grid" x1="{gx:.1f}" y1="{TOP}" x2="{gx:.1f}" '
                f'y2="{TOP + plot_h}" stroke="{shade}"/>'
            )
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none"/>')
    out.append("</g>")
    out.append('<g class="labels" fill="#333">')
    for d in range(decades + 1):
        out.append(
            f'<text x="{LEFT - 8}" y="{y(10**d) + 4:.1f}" text-anchor="end">10<tspan '
            f'dy="-5" font-size="9">{d}</tspan></text>'
        )
    ticks = [10**d for d in range(math.floor(decades_x) + 1)]
    if ticks[-1] != x_end:
        ticks.append(x_end)
    for tick in ticks:
        out.append(
            f'<text class="x-tick" x="{x(tick):.1f}" y="{TOP + plot_h + 18}" '
            f'text-anchor="middle">{tick:,}</text>'.replace(",", " ")
        )
    under_1 = any(r.histogram.get(0, 0) for r in runs)
    axis = "latency (µs, log scale), 20 bins per decade"
    if under_1:
        axis += "; the first bin, 1-2 µs, also holds the samples under 1 µs"
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 16}" text-anchor="middle">{axis}</text>'
    )
    out.append(
        f'<text x="18" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {TOP + plot_h / 2})">samples per bin (log scale)</text>'
    )
    out.append("</g>")
    # one step line per configuration, and its worst case dashed; the legend on a white box
    legend_x = LEFT + plot_w - 338
    legend = (
        f'<rect class="legend" x="{legend_x}" y="{TOP + 4}" width="334" '
        f'height="{18 * (len(binned) + 1) + 6}" fill="white" fill-opacity="0.85" stroke="#ccc"/>'
    )
    lines: list[str] = []
    for index, (run, values) in enumerate(binned):
        color = COLORS.get(run.label, OTHER_COLORS[index % len(OTHER_COLORS)])
        points = [f"M{x(1):.1f},{y(0):.1f}"]
        for i, value in enumerate(values):
            points.append(f"L{x(bounds[i]):.1f},{y(value):.1f}")
            points.append(f"L{x(bounds[i + 1]):.1f},{y(value):.1f}")
        points.append(f"L{x(bounds[-1]):.1f},{y(0):.1f}")
        s = run.summary
        worst = x(s.max_us)
        out.append(
            f'<g class="series" data-configuration={quoteattr(run.label)} '
            f'data-max-us="{s.max_us}" data-samples="{s.samples}">'
        )
        out.append(
            f'<path d="{" ".join(points)}" fill="none" stroke="{color}" stroke-width="1.5"/>'
        )
        out.append(
            f'<line class="worst-case" x1="{worst:.1f}" y1="{TOP}" x2="{worst:.1f}" '
            f'y2="{TOP + plot_h}" stroke="{color}" stroke-dasharray="4 3"/>'
        )
        out.append("</g>")
        ly = TOP + 20 + 18 * index
        label = f"{run.label}: worst case {s.max_us} µs, p99.9 "
        label += f"{s.p999_us} µs" if s.p999_us is not None else "refused (past the histogram)"
        lines.append(
            f'<line x1="{legend_x + 8}" y1="{ly - 4}" x2="{legend_x + 28}" '
            f'y2="{ly - 4}" stroke="{color}" stroke-width="3"/>'
        )
        lines.append(f'<text x="{legend_x + 34}" y="{ly}">{escape(label)}</text>')
    ly = TOP + 20 + 18 * len(binned)
    lines.append(
        f'<line class="legend-dashed" x1="{legend_x + 8}" y1="{ly - 4}" x2="{legend_x + 28}" '
        f'y2="{ly - 4}" stroke="#555" stroke-width="1.5" stroke-dasharray="4 3"/>'
    )
    lines.append(
        f'<text x="{legend_x + 34}" y="{ly}">'
        "dashed: the worst case of each (largest latency)</text>"
    )
    out += [legend, *lines]
    if noise_lines:
        out += _noise_panel(runs, noise_lines, HEIGHT + 4)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _nice(value: float) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value``."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return int(step * power)
    return int(10 * power)  # pragma: no cover


def _noise_lines(runs: Sequence[RunResult]) -> list[tuple[RunResult, list[str]]]:
    """Per traced configuration: its worst case and noise per second; the costliest sources."""
    found = []
    for run in runs:
        if run.noise is None:
            continue
        lines = [f"{run.label} (worst case {run.summary.max_us} µs): {run.noise.headline()}"]
        for cpu in run.noise.cpus:
            top = ", ".join(
                f"{s.kind} {s.name} {s.time_us:.0f} µs" for s in cpu.sources[:NOISE_SOURCES]
            )
            if top:
                lines.append(f"costliest on host CPU {cpu.cpu}: {top}")
        found.append((run, [_cut(line) for line in lines]))
    return found


def _cut(text: str) -> str:
    return text if len(text) <= NOISE_CHARS else text[: NOISE_CHARS - 1] + "…"


def _noise_panel(
    runs: Sequence[RunResult], groups: list[tuple[RunResult, list[str]]], top: int
) -> list[str]:
    out = [
        '<g class="noise-panel" font-size="11">',
        f'<text x="{LEFT}" y="{top}" font-weight="bold">host noise on the measured CPUs '
        "while each configuration ran (rtlibvirt noise; the text report has the fixes)</text>",
    ]
    row = 0
    for run, lines in groups:
        color = COLORS.get(run.label, OTHER_COLORS[runs.index(run) % len(OTHER_COLORS)])
        out.append(f'<g class="noise" data-configuration={quoteattr(run.label)}>')
        for index, text in enumerate(lines):
            row += 1
            ly = top + NOISE_LINE * row
            if index == 0:
                out.append(f'<rect x="{LEFT}" y="{ly - 9}" width="10" height="10" fill="{color}"/>')
            indent = 16 if index == 0 else 32
            out.append(f'<text x="{LEFT + indent}" y="{ly}">{escape(text)}</text>')
        out.append("</g>")
    out.append("</g>")
    return out

"""``rtlibvirt noise`` as text (a table per CPU) and as an SVG timeline (``--plot``).

The SVG is drawn by hand in the probe's plot style (rtlibvirt.probe.plot):
white background, one coloured line per CPU, disturbances per second over
the measurement's time; µs lost per second are in the legend.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape, quoteattr

from rtlibvirt.noise.measure import Measurement

MAX_ROWS = 20
WIDTH, HEIGHT = 900, 420
LEFT, RIGHT, TOP, BOTTOM = 80, 30, 60, 60
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")


def text(m: Measurement) -> str:
    out = []
    how = f"{m.duration_s:.1f} s, {m.method}"
    if m.interrupted:
        how += f", stopped early (asked for {m.requested_s:g} s)"
    for c in m.cpus:
        owner = (
            f"{c.domain} vCPU {c.vcpu}" if c.domain is not None else "no VM: every thread counts"
        )
        out.append(
            f"CPU {c.cpu} ({owner}): {c.disturbances_per_s:.0f} disturbances/s, "
            f"{c.us_lost_per_s:.0f} µs lost/s ({c.us_lost_per_s / 1e4:.2f} %) [{how}]"
        )
        if c.lost_events:
            out.append(f"  warning: the trace lost {c.lost_events} events on CPU {c.cpu}")
        if not c.sources:
            out.append("  nothing disturbed this CPU")
        else:
            out.append(f"  {'kind':<9} {'count':>7} {'µs total':>10} {'µs max':>8}  source")
            for s in c.sources[:MAX_ROWS]:
                out.append(
                    f"  {s.kind:<9} {s.count:>7} {s.time_us:>10.0f} {s.max_us:>8.0f}  {s.name}"
                )
                out.append(f"  {'':<9} {'':>7} {'':>10} {'':>8}    fix: {s.hint}")
            if len(c.sources) > MAX_ROWS:
                rest = c.sources[MAX_ROWS:]
                total = sum(s.time_us for s in rest)
                out.append(f"  ... {len(rest)} more sources, {total:.0f} µs (see --json)")
        out.append("")
    if m.missing_events:
        out.append("note: this kernel lacks the tracepoints " + ", ".join(m.missing_events))
    return "\n".join(out).rstrip("\n") + "\n"


def _round_up(value: float) -> float:
    """``value`` (over 0) rounded up to 1, 2 or 5 times a power of ten: an axis' step or top."""
    decade = 10.0 ** math.floor(math.log10(value))
    return next(k * decade for k in (1, 2, 5, 10) if k * decade >= value * (1 - 1e-9))


def svg(m: Measurement, title: str) -> str:
    """Disturbances per second over the measurement's time, one step line per CPU.

    As the probe's plot draws its histograms: a white picture, a framed plot
    with a light grid, one coloured step line per CPU (here each bin's
    disturbances per second), a dashed line at the CPU's mean, and a legend on
    a white box with the per-second figures. Each CPU's ``<g class="series">``
    carries its figures and the count of every bin as data attributes, for
    tools that read the picture.
    """
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bin_s = m.bin_s if m.bin_s > 0 else max(m.duration_s, 0.001)
    lengths = [len(c.timeline_count) for c in m.cpus if c.timeline_count]
    bins = max(1, min([*lengths, max(1, round(m.duration_s / bin_s))]))
    counts = [(list(c.timeline_count[:bins]) + [0] * bins)[:bins] for c in m.cpus]
    rates = [[n / bin_s for n in row] for row in counts]
    peak = max([max(row, default=0.0) for row in rates] + [c.disturbances_per_s for c in m.cpus])
    top = _round_up(max(peak, 1.0))
    span = bins * bin_s
    x_step = _round_up(span / 8)  # 4 to 8 ticks along the time

    def x(t: float) -> float:
        return LEFT + plot_w * t / span

    def y(v: float) -> float:
        return TOP + plot_h - plot_h * v / top

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="15">{escape(title)}</text>',
        '<g class="axes" stroke="#999" stroke-width="1">',
    ]
    for i in range(5):
        gy = y(top * i / 4)
        out.append(
            f'<line x1="{LEFT}" y1="{gy:.1f}" x2="{LEFT + plot_w}" y2="{gy:.1f}" stroke="#eee"/>'
        )
    out.append(
        f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none"/>'
    )
    out.append("</g>")
    out.append('<g class="labels" fill="#333">')
    for i in range(5):
        v = top * i / 4
        out.append(
            f'<text class="y-tick" x="{LEFT - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>'
        )
    tick = 0.0
    while tick <= span * (1 + 1e-9):
        out.append(
            f'<text class="x-tick" x="{x(tick):.1f}" y="{TOP + plot_h + 18}" '
            f'text-anchor="middle">{round(tick, 6):g}</text>'
        )
        tick += x_step
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 16}" text-anchor="middle">'
        f"time (s), bins of {_ms(bin_s)}</text>"
    )
    out.append(
        f'<text x="18" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {TOP + plot_h / 2})">disturbances per second</text>'
    )
    out.append("</g>")
    labels = [f"CPU {c.cpu}" + (f" ({c.domain} vCPU {c.vcpu})" if c.domain else "") for c in m.cpus]
    texts = [
        f"{label}: {c.disturbances_per_s:.0f} disturbances/s, {c.us_lost_per_s:.0f} µs lost/s"
        for label, c in zip(labels, m.cpus, strict=True)
    ]
    # about 7 px a character at 12 px sans-serif, at most the plot's width
    legend_w = min(plot_w - 8, 40 + 7 * max((len(t) for t in texts), default=0))
    legend = (
        f'<rect class="legend" x="{LEFT + plot_w - legend_w - 4}" y="{TOP + 4}" '
        f'width="{legend_w}" height="{18 * len(m.cpus) + 6}" fill="white" '
        'fill-opacity="0.85" stroke="#ccc"/>'
    )
    lines: list[str] = []
    for index, (c, row, values) in enumerate(zip(m.cpus, counts, rates, strict=True)):
        color = COLORS[index % len(COLORS)]
        points = [f"M{x(0):.1f},{y(values[0] if values else 0):.1f}"]
        for i, v in enumerate(values):
            points.append(f"L{x(i * bin_s):.1f},{y(v):.1f}")
            points.append(f"L{x((i + 1) * bin_s):.1f},{y(v):.1f}")
        label = labels[index]
        mean = y(c.disturbances_per_s)
        out.append(
            f'<g class="series" data-cpu="{c.cpu}" data-label={quoteattr(label)} '
            f'data-disturbances-per-s="{c.disturbances_per_s:.1f}" '
            f'data-us-lost-per-s="{c.us_lost_per_s:.1f}" data-bin-s="{bin_s:g}" '
            f'data-counts="{" ".join(str(n) for n in row)}">'
        )
        out.append(
            f'<path d="{" ".join(points)}" fill="none" stroke="{color}" stroke-width="1.5"/>'
        )
        out.append(
            f'<line class="mean" x1="{LEFT}" y1="{mean:.1f}" x2="{LEFT + plot_w}" '
            f'y2="{mean:.1f}" stroke="{color}" stroke-dasharray="4 3"/>'
        )
        out.append("</g>")
        ly = TOP + 20 + 18 * index
        lx = LEFT + plot_w - legend_w
        lines.append(
            f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 20}" y2="{ly - 4}" '
            f'stroke="{color}" stroke-width="3"/>'
        )
        lines.append(f'<text x="{lx + 26}" y="{ly}">{escape(texts[index])}</text>')
    out += [legend, *lines, "</svg>"]
    return "\n".join(out) + "\n"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:g} s"

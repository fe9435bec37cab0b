"""``rtlibvirt noise`` as text (a table per CPU) and as an SVG timeline (``--plot``).

The SVG is drawn by hand in the probe's plot style (rtlibvirt.probe.plot):
white background, one coloured line per CPU, disturbances per second over
the measurement's time; µs lost per second are in the legend.
"""

from __future__ import annotations

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


def svg(m: Measurement, title: str) -> str:
    """Disturbances per second over time, one line per CPU."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bin_s = m.bin_s or 1.0
    used = max(1, min(len(c.timeline_count) for c in m.cpus) if m.cpus else 1)
    shown_bins = max(1, min(used, round(m.duration_s / bin_s) or 1))
    rates = [[n / bin_s for n in c.timeline_count[:shown_bins]] for c in m.cpus]
    top = max([max(r, default=0) for r in rates] + [1.0])
    span = shown_bins * bin_s

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
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" '
        'fill="none" stroke="#999"/>',
    ]
    for i in range(5):
        v = top * i / 4
        out.append(
            f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{LEFT + plot_w}" y2="{y(v):.1f}" '
            'stroke="#eee"/>'
        )
        out.append(f'<text x="{LEFT - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    for i in range(6):
        t = span * i / 5
        out.append(
            f'<text x="{x(t):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{t:.1f}</text>'
        )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 16}" text-anchor="middle">'
        f"time (s), bins of {bin_s * 1000:.0f} ms</text>"
    )
    out.append(
        f'<text x="18" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {TOP + plot_h / 2})">disturbances per second</text>'
    )
    for index, (c, values) in enumerate(zip(m.cpus, rates, strict=True)):
        color = COLORS[index % len(COLORS)]
        points = [f"M{x(0):.1f},{y(values[0] if values else 0):.1f}"]
        for i, v in enumerate(values):
            points.append(f"L{x(i * bin_s):.1f},{y(v):.1f}")
            points.append(f"L{x((i + 1) * bin_s):.1f},{y(v):.1f}")
        label = f"CPU {c.cpu}" + (f" ({c.domain} vCPU {c.vcpu})" if c.domain else "")
        out.append(
            f'<g class="series" data-cpu="{c.cpu}" data-label={quoteattr(label)}>'
            f'<path d="{" ".join(points)}" fill="none" stroke="{color}" stroke-width="1.5"/></g>'
        )
        ly = TOP + 20 + 18 * index
        out.append(
            f'<line x1="{LEFT + 10}" y1="{ly - 4}" x2="{LEFT + 30}" y2="{ly - 4}" '
            f'stroke="{color}" stroke-width="3"/>'
        )
        legend = (
            f"{label}: {c.disturbances_per_s:.0f} disturbances/s, {c.us_lost_per_s:.0f} µs lost/s"
        )
        out.append(f'<text x="{LEFT + 36}" y="{ly}">{escape(legend)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"

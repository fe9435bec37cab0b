"""The probe's results for people (a table and a log-scale histogram) and for machines (JSON)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rtlibvirt.probe.hostnoise import TOP_SOURCES
from rtlibvirt.probe.results import RunResult, Summary, summarize

# Latency ranges of the text histogram (µs): 1-2-5 steps, as a log axis.
EDGES = (0, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)
BAR_STEPS_PER_DECADE = 2  # one '#' per factor of about 3.2
BAR_MAX = 14
TCG_NO_VERDICT = "meaningless under TCG (software emulation, not the tuning, sets the worst case)"


@dataclass(frozen=True)
class Report:
    source: str  # what was probed
    virt_type: str
    duration_s: int
    image: str
    guest_cmdline: str  # the isolation arguments the guest ran with
    runs: tuple[RunResult, ...]
    notes: tuple[str, ...] = ()
    max_latency_us: int | None = None

    def run(self, label: str) -> RunResult | None:
        return next((r for r in self.runs if r.label == label), None)

    @property
    def ratio(self) -> float | None:
        """Worst case of the tuned guest over that of bare metal: the headline."""
        tuned, bare = self.run("rtlibvirt"), self.run("bare metal")
        if tuned is None or bare is None or bare.summary.max_us <= 0:
            return None
        return round(tuned.summary.max_us / bare.summary.max_us, 2)

    @property
    def gate_failed(self) -> bool:
        tuned = self.run("rtlibvirt")
        return (
            self.max_latency_us is not None
            and tuned is not None
            and tuned.summary.max_us > self.max_latency_us
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.source,
            "virt_type": self.virt_type,
            "real_time_figures": self.virt_type == "kvm",
            "duration_s": self.duration_s,
            "image": self.image,
            "guest_isolation": self.guest_cmdline,
            "configurations": [r.to_json() for r in self.runs],
            "worst_case_ratio_guest_to_bare_metal": self.ratio,
            "max_latency_us": self.max_latency_us,
            "gate": None
            if self.max_latency_us is None
            else ("fail" if self.gate_failed else "pass"),
            "notes": list(self.notes),
        }


def _us(value: int | float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def table(runs: Sequence[RunResult]) -> list[str]:
    """configuration | where | worst case | p99.9 | p99 | avg | min | samples | overflows."""
    head: tuple[str, ...] = ("configuration", "where", "worst case", "p99.9", "p99", "avg", "min")
    head += ("samples", "overflows")
    rows = [head]
    for run in runs:
        s = run.summary
        rows.append(_row(run.label, run.where, s))
        if len(run.threads) > 1:
            for thread in run.threads:
                rows.append(_row("", f"  CPU {thread.cpu}", summarize([thread])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _row(label: str, where: str, s: Summary) -> tuple[str, ...]:
    return (
        label,
        where,
        str(s.max_us),
        _us(s.p999_us),
        _us(s.p99_us),
        _us(s.avg_us),
        _us(s.min_us),
        str(s.samples),
        str(s.overflows),
    )


def _bar(count: int) -> str:
    if count <= 0:
        return ""
    return "#" * min(BAR_MAX, 1 + math.floor(BAR_STEPS_PER_DECADE * math.log10(count)))


def histogram(runs: Sequence[RunResult]) -> list[str]:
    """Samples per latency range, one column per configuration, bars on a log scale."""
    if not runs:
        return []
    merged = [(run.histogram, run.summary.overflows) for run in runs]
    top = max(max(c, default=0) for c, _ in merged)
    edges = [e for e in EDGES if e <= top] + [next((e for e in EDGES if e > top), top + 1)]
    column = BAR_MAX + 9
    header = "latency µs".rjust(14) + "  " + "".join(r.label.ljust(column) for r in runs)
    lines = [header.rstrip()]
    for low, high in itertools.pairwise(edges):
        label = f"{low}-{high - 1}".rjust(14)
        cells = []
        for counts, _ in merged:
            n = sum(c for b, c in counts.items() if low <= b < high)
            cells.append(f"{_bar(n)} {n}".ljust(column) if n else "".ljust(column))
        lines.append((label + "  " + "".join(cells)).rstrip())
    if any(over for _, over in merged):
        cells = [(f"{_bar(over)} {over}" if over else "").ljust(column) for _, over in merged]
        lines.append(("past histogram".rjust(14) + "  " + "".join(cells)).rstrip())
    lines.append(
        f"{'':14}  (bars on a log scale: each # is a factor of "
        f"{10 ** (1 / BAR_STEPS_PER_DECADE):.1f} in samples)"
    )
    return lines


def noise(runs: Sequence[RunResult]) -> list[str]:
    """Beside each worst case, what disturbed its host CPUs meanwhile: the top sources, fixes."""
    traced = [run for run in runs if run.noise is not None]
    if not traced:
        return []
    out = ["", "host noise on the measured CPUs while each configuration ran (rtlibvirt noise):"]
    for run in traced:
        assert run.noise is not None
        head = f"{run.label}: worst case {run.summary.max_us} µs; {run.noise.headline()}"
        out.append(head)
        for cpu in run.noise.cpus:
            if not cpu.sources:
                out.append(f"  host CPU {cpu.cpu}: nothing disturbed it")
                continue
            for source in cpu.sources[:TOP_SOURCES]:
                out.append(
                    f"  host CPU {cpu.cpu}: {source.kind} {source.name}: {source.count}x, "
                    f"{source.time_us:.0f} µs in all, longest {source.max_us:.0f} µs"
                )
                out.append(f"    fix: {source.hint}")
            if len(cpu.sources) > TOP_SOURCES:
                rest = cpu.sources[TOP_SOURCES:]
                total = sum(s.time_us for s in rest)
                out.append(
                    f"  host CPU {cpu.cpu}: {len(rest)} more sources, {total:.0f} µs (--json)"
                )
            if cpu.lost_events:
                out.append(f"  host CPU {cpu.cpu}: the trace lost {cpu.lost_events} events")
    return out


def text(report: Report) -> list[str]:
    """The whole report for a terminal."""
    out = [
        f"rtlibvirt probe of {report.source}: {report.duration_s} s per configuration, "
        f"{'TCG' if report.virt_type == 'qemu' else 'KVM'}",
        f"  image: {report.image}",
    ]
    if report.guest_cmdline:
        out.append(f"  guest isolation: {report.guest_cmdline}")
    out += ["", "latency in µs:"]
    out += table(report.runs)
    # Under TCG the emulator, not the tuning, makes the worst case: a ratio is no verdict,
    # and it says so on the same line (a reader of one line must not take it for one).
    caveat = f", {TCG_NO_VERDICT}" if report.virt_type == "qemu" else ""
    ratio = report.ratio
    if ratio is not None:
        out += ["", f"worst case, guest / bare metal: {ratio:g}x{caveat}"]
    untuned, tuned = report.run("untuned"), report.run("rtlibvirt")
    if untuned is not None and tuned is not None and tuned.summary.max_us > 0:
        factor = untuned.summary.max_us / tuned.summary.max_us
        if ratio is None:
            out.append("")
        out.append(f"worst case, untuned / rtlibvirt: {factor:.2g}x{caveat}")
    out += noise(report.runs)
    out += ["", *histogram(report.runs)]
    refused = [r.label for r in report.runs if r.summary.past_histogram]
    if refused:
        out += [
            "",
            f"percentiles refused for {', '.join(refused)}: the maximum lies past the "
            "histogram, which then no longer says where the tail is (as rteval does)",
        ]
    notes = list(report.notes)
    for run in report.runs:
        notes += [f"{run.label}: {note}" for note in run.notes]
    if notes:
        out.append("")
        out += [f"note: {n}" for n in notes]
    return out

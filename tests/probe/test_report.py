"""The report: the table, the log-scale text histogram, the JSON, the gate, and the SVG plot."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import pytest
from lxml import etree

from rtlibvirt.probe import plot, report, results
from rtlibvirt.probe.results import RunResult
from tests.probe.conftest import DATA

SVG = "{http://www.w3.org/2000/svg}"


def runs() -> tuple[RunResult, ...]:
    guest = results.parse_serial((DATA / "guest-tcg-serial.txt").read_text())
    _, tuned = results.parse_json(guest.json)
    _, host = results.parse_json((DATA / "host-2threads.json").read_text())
    untuned = [results.ThreadResult(1, 1000, 10, 30.0, 9000, {10: 700, 50: 299, 9000: 1}, 100000)]
    common = {"kernel": "k", "cyclictest": "2.40", "cmdline": "cyclictest", "duration_s": 5}
    return (
        RunResult("bare metal", "host CPU 0-1", tuple(host), **common),  # type: ignore[arg-type]
        RunResult("rtlibvirt", "vCPU 1 on host CPU 1, TCG", tuple(tuned), notes=("n",), **common),  # type: ignore[arg-type]
        RunResult("untuned", "vCPU 1, unpinned, TCG", tuple(untuned), **common),  # type: ignore[arg-type]
    )


def make(max_latency: int | None = None) -> report.Report:
    return report.Report(
        source="examples/small.yaml",
        virt_type="qemu",
        duration_s=5,
        image="Debian linux-image-rt-amd64",
        guest_cmdline="isolcpus=1 nohz_full=1 rcu_nocbs=1",
        runs=runs(),
        notes=("TCG note",),
        max_latency_us=max_latency,
    )


def test_the_table_has_a_row_per_configuration_and_per_thread() -> None:
    lines = report.table(runs())
    assert lines[0].split()[:4] == ["configuration", "where", "worst", "case"]
    bare = next(line for line in lines if line.startswith("bare metal"))
    assert " 23723 " in bare and bare.split()[-1] == "318"  # overflows
    assert " - " in bare  # percentiles refused: past the histogram
    assert any(line.strip().startswith("CPU 0") for line in lines)  # the two host threads
    tuned = next(line for line in lines if line.startswith("rtlibvirt"))
    assert " 4024 " in tuned and "24591" in tuned


def test_the_text_histogram_is_on_a_log_scale() -> None:
    lines = report.histogram(runs())
    assert lines[0].split()[:2] == ["latency", "µs"]
    row = next(line for line in lines if line.strip().startswith("50-99"))
    # 10 µs buckets 50-99 of the tuned guest hold thousands: 1 + 2*log10(n) marks
    tuned = sum(c for b, c in runs()[1].threads[0].histogram.items() if 50 <= b < 100)
    assert f"{'#' * (1 + math.floor(2 * math.log10(tuned)))} {tuned}" in row
    past = next(line for line in lines if "past histogram" in line)
    assert "318" in past
    assert "log scale" in lines[-1]


def test_the_report_text_says_tcg_and_the_ratios() -> None:
    text = "\n".join(report.text(make()))
    assert "TCG" in text.splitlines()[0]
    assert "guest isolation: isolcpus=1 nohz_full=1 rcu_nocbs=1" in text
    # under TCG a ratio is no verdict, and the same line says so
    ratios = [line for line in text.splitlines() if line.startswith("worst case, ")]
    assert len(ratios) == 2
    assert ratios[0].startswith(f"worst case, guest / bare metal: {round(4024 / 23723, 2):g}x")
    assert ratios[1].startswith("worst case, untuned / rtlibvirt: 2.2x")
    assert all("meaningless under TCG" in line for line in ratios)
    assert "percentiles refused for bare metal" in text
    assert "note: TCG note" in text and "note: rtlibvirt: n" in text


def test_under_kvm_the_ratios_stand_as_verdicts() -> None:
    kvm = dataclasses.replace(make(), virt_type="kvm")
    ratios = [line for line in report.text(kvm) if line.startswith("worst case, ")]
    assert ratios == [
        f"worst case, guest / bare metal: {round(4024 / 23723, 2):g}x",
        "worst case, untuned / rtlibvirt: 2.2x",
    ]


def test_the_json_is_complete_and_the_gate_fails_above_the_limit() -> None:
    data = json.loads(json.dumps(make(max_latency=1000).to_json()))
    assert data["real_time_figures"] is False and data["virt_type"] == "qemu"
    assert [c["configuration"] for c in data["configurations"]] == [
        "bare metal",
        "rtlibvirt",
        "untuned",
    ]
    bare = data["configurations"][0]
    assert bare["summary"]["overflows"] == 318 and bare["summary"]["p99.9_us"] is None
    assert [t["cpu"] for t in bare["threads"]] == [0, 1]
    assert sum(bare["threads"][1]["histogram"].values()) + 302 == bare["threads"][1]["samples"]
    assert data["gate"] == "fail" and make(max_latency=1000).gate_failed
    assert make(max_latency=5000).to_json()["gate"] == "pass"
    assert make().to_json()["gate"] is None


def test_the_plot_is_a_valid_svg_with_log_axes_and_every_configuration() -> None:
    text = plot.svg(runs(), "rtlibvirt probe of small-rt (TCG, not real-time figures)")
    root = etree.fromstring(text.encode())
    assert root.tag == f"{SVG}svg"
    assert "TCG" in root.findtext(f"{SVG}title")
    series = root.findall(f".//{SVG}g[@class='series']")
    assert [g.get("data-configuration") for g in series] == ["bare metal", "rtlibvirt", "untuned"]
    assert [g.get("data-max-us") for g in series] == ["23723", "4024", "9000"]
    for group in series:
        path = group.find(f"{SVG}path").get("d")
        assert path.startswith("M") and path.count("L") > 10
    labels = "".join(root.itertext())
    assert "samples per bin (log scale)" in labels and "latency (µs, log scale)" in labels
    # decade labels 10^0 .. 10^k of the y axis
    decades = [t for t in root.iter(f"{SVG}text") if t.text == "10"]
    assert len(decades) >= 5
    assert "refused (past the histogram)" in labels  # the bare-metal legend


def test_the_x_axis_is_logarithmic_so_the_bulk_is_not_crushed_left_of_the_worst_case() -> None:
    root = etree.fromstring(plot.svg(runs(), "t").encode())
    ticks = root.findall(f".//{SVG}text[@class='x-tick']")
    # the worst case is 23723 µs: decades from 1 µs, equally wide, to 50 000 µs
    assert [t.text for t in ticks] == ["1", "10", "100", "1 000", "10 000", "50 000"]
    xs = [float(t.get("x")) for t in ticks[:-1]]
    widths = [b - a for a, b in itertools.pairwise(xs)]
    assert max(widths) - min(widths) < 0.2  # equal, to the 0.1 px the SVG is written in
    left, right = xs[0], float(ticks[-1].get("x"))

    def at(us: float) -> float:
        return left + (right - left) * math.log10(us) / math.log10(50_000)

    # each dashed line stands at its configuration's worst case on that log axis
    for group in root.findall(f".//{SVG}g[@class='series']"):
        line = group.find(f"{SVG}line[@class='worst-case']")
        assert line.get("stroke-dasharray")
        assert float(line.get("x1")) == pytest.approx(at(int(group.get("data-max-us"))), abs=0.2)
    # the tuned guest's bulk (50-99 µs here) lies mid-plot, not in the leftmost 5 %
    tuned = root.find(f".//{SVG}g[@data-configuration='rtlibvirt']/{SVG}path").get("d")
    points = [tuple(map(float, p[1:].split(","))) for p in tuned.split()]
    peak_x = min(points, key=lambda p: p[1])[0]  # the highest bin (smallest y)
    assert at(40) < peak_x < at(110)
    assert (xs[1] - left) == pytest.approx((right - left) / math.log10(50_000), abs=0.2)
    assert (peak_x - left) / (right - left) > 0.3


def test_the_legend_explains_the_dashed_lines() -> None:
    root = etree.fromstring(plot.svg(runs(), "t").encode())
    swatch = root.find(f".//{SVG}line[@class='legend-dashed']")
    worst = root.find(f".//{SVG}line[@class='worst-case']")
    assert swatch.get("stroke-dasharray") == worst.get("stroke-dasharray")
    explained = [t.text for t in root.iter(f"{SVG}text") if t.text and "dashed" in t.text]
    assert explained == ["dashed: the worst case of each (largest latency)"]
    box = root.find(f".//{SVG}rect[@class='legend']")
    assert float(box.get("y")) + float(box.get("height")) > float(swatch.get("y1"))  # inside


def test_samples_under_one_microsecond_are_said_to_be_in_the_first_bin() -> None:
    base = runs()[2]
    fast = results.ThreadResult(1, 10, 0, 1.0, 3, {0: 4, 1: 5, 3: 1}, 10000)
    root = etree.fromstring(
        plot.svg([base, dataclasses.replace(base, threads=(fast,))], "t").encode()
    )
    assert "also holds the samples under 1 µs" in "".join(root.itertext())
    assert plot.edges(25)[:4] == [0, 2, 3, 4] and plot.edges(25)[-1] > 25

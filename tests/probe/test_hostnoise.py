"""The probe reports the host's noise on its CPUs beside each configuration's latency.

Text, JSON and the reasons for no figure on fake measurements; the tracer on
this machine's real tracefs (under the live-host lock): a task pinned to the
probe's CPU is named as noise, the CPU's owner is not, and the host's tracing
state is the same afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtlibvirt.kernel.fs import HostFS
from rtlibvirt.noise import tracefs
from rtlibvirt.noise.measure import CpuResult, Measurement, SourceResult
from rtlibvirt.probe import hostnoise, report
from tests.noise.test_noise_live import TICKER
from tests.probe.test_report import make


def measurement() -> Measurement:
    sources = [
        SourceResult("thread", "rtl-ticker (pid 4242)", 5000, 9000.0, 40.0, "taskset it", 4242),
        SourceResult("timer", "local timer: tick_sched_timer", 1000, 3000.0, 9.0, "nohz_full"),
        SourceResult("irq", "irq 24 virtio0-input", 300, 900.0, 30.0, "managed_irq", irq=24),
        SourceResult("softirq", "TIMER", 100, 200.0, 4.0, "the tick's softirq"),
    ]
    cpu = CpuResult(1, "small-rt-probe", 1, 1280.0, 2620.0, sources)
    return Measurement(5.0, "tracepoints", [cpu], 5.0)


def with_noise() -> report.Report:
    base = make()
    bare, tuned, untuned = base.runs
    return dataclasses.replace(
        base,
        runs=(
            dataclasses.replace(bare, noise=hostnoise.HostNoise(None, hostnoise.NOT_ROOT)),
            dataclasses.replace(tuned, noise=hostnoise.HostNoise(measurement())),
            untuned,  # not traced (an older result): no line
        ),
    )


def test_the_text_shows_each_worst_case_beside_the_top_sources_and_their_fixes() -> None:
    lines = report.text(with_noise())
    start = lines.index(
        "host noise on the measured CPUs while each configuration ran (rtlibvirt noise):"
    )
    section = lines[start + 1 : lines.index("", start + 1)]
    assert (
        section[0]
        == "bare metal: worst case 23723 µs; no noise figure: tracing the host needs root"
    )
    assert section[1] == (
        "rtlibvirt: worst case 4024 µs; host CPU 1: 1280 disturbances/s, 2620 µs lost/s"
    )
    assert section[2] == (
        "  host CPU 1: thread rtl-ticker (pid 4242): 5000x, 9000 µs in all, longest 40 µs"
    )
    assert section[3] == "    fix: taskset it"
    assert "irq irq 24 virtio0-input" in section[6] and section[7] == "    fix: managed_irq"
    assert section[8] == "  host CPU 1: 1 more sources, 200 µs (--json)"  # the top 3 only
    assert not any(line.startswith("untuned:") for line in section)


def test_the_json_noise_has_the_shape_of_rtlibvirt_noise_json() -> None:
    data = json.loads(json.dumps(with_noise().to_json()))
    bare, tuned, untuned = data["configurations"]
    assert tuned["noise"] == {**measurement().to_json(), "unavailable": None}
    [cpu] = tuned["noise"]["cpus"]
    assert {"cpu", "disturbances_per_s", "us_lost_per_s", "sources"} <= set(cpu)
    for source in cpu["sources"]:
        assert {"kind", "name", "count", "time_us", "max_us", "hint"} <= set(source)
    assert bare["noise"] == {"unavailable": "tracing the host needs root", "cpus": []}
    assert untuned["noise"] is None
    # the fields the Cockpit page reads are all still there
    for configuration in data["configurations"]:
        assert {"configuration", "where", "summary", "threads", "notes"} <= set(configuration)


def test_without_a_trace_the_probe_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unpinned = hostnoise.Tracer(None, 5)
    unpinned.begin({})
    assert unpinned.end().unavailable == hostnoise.NOT_PINNED

    tree = hostnoise.Tracer((1,), 5, HostFS(tmp_path))
    tree.begin({1: frozenset()})
    assert "cannot trace a tree" in (tree.end().unavailable or "")

    never = hostnoise.Tracer((1,), 5)
    assert "never began" in (never.end().unavailable or "")

    monkeypatch.setattr(hostnoise.os, "geteuid", lambda: 1000)
    user = hostnoise.Tracer((1,), 5)
    user.begin({1: frozenset()})
    assert user.end().unavailable == hostnoise.NOT_ROOT


@pytest.fixture
def tickers() -> Iterator[tuple[int, int]]:
    procs = [subprocess.Popen([sys.executable, "-c", TICKER]) for _ in range(2)]
    time.sleep(0.5)
    yield procs[0].pid, procs[1].pid
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/sys/devices/system/cpu/cpu1"),
    reason="needs root and a CPU 1",
)
def test_the_tracer_names_a_task_on_the_probes_cpu_and_not_the_cpus_owner(
    live_host: None, tickers: tuple[int, int]
) -> None:
    noisy, owner = tickers  # both wake every millisecond on CPU 1
    before = tracefs.state(HostFS("/"))
    tracer = hostnoise.Tracer((1,), 2.0)
    try:
        tracer.begin({1: frozenset({owner})}, "rtl-probe", {1: 1})
        assert tracer.tracing
        while tracer.tracing:  # the probe's loop: poll until the duration is over
            time.sleep(tracefs.READ_EVERY_S)
            tracer.poll()
        result = tracer.end()
    finally:
        tracer.close()
    assert tracefs.state(HostFS("/")) == before  # the host's tracing as it was
    assert result.unavailable is None and result.measurement is not None
    [cpu] = result.cpus
    assert (cpu.cpu, cpu.domain, cpu.vcpu) == (1, "rtl-probe", 1)
    assert 1.9 <= result.measurement.duration_s <= 2.2
    pids = {s.pid: s for s in cpu.sources if s.kind == "thread"}
    assert noisy in pids and pids[noisy].name == f"rtl-ticker (pid {noisy})"
    assert pids[noisy].count >= 1000  # ~1,000 wake-ups a second for 2 s
    assert pids[noisy].hint
    assert owner not in pids  # the CPU's owner is not noise


def test_the_plot_has_a_noise_panel_beside_the_histograms() -> None:
    from lxml import etree

    from rtlibvirt.probe import plot

    svg = "{http://www.w3.org/2000/svg}"
    runs = with_noise().runs
    root = etree.fromstring(plot.svg(runs, "t").encode())
    assert float(root.get("height")) > plot.HEIGHT  # the panel is below the plot
    panel = root.find(f".//{svg}g[@class='noise-panel']")
    rows = panel.findall(f"{svg}g[@class='noise']")
    assert [g.get("data-configuration") for g in rows] == ["bare metal", "rtlibvirt"]
    bare, tuned = ([t.text for t in g.iter(f"{svg}text")] for g in rows)
    assert bare == [
        "bare metal (worst case 23723 µs): no noise figure: tracing the host needs root"
    ]
    assert tuned[0] == (
        "rtlibvirt (worst case 4024 µs): host CPU 1: 1280 disturbances/s, 2620 µs lost/s"
    )
    assert tuned[1] == (
        "costliest on host CPU 1: thread rtl-ticker (pid 4242) 9000 µs, "
        "timer local timer: tick_sched_timer 3000 µs"
    )
    assert all(len(t) <= plot.NOISE_CHARS for t in bare + tuned)
    # without any trace (older results), no panel and the usual height
    plain = etree.fromstring(plot.svg(make().runs, "t").encode())
    assert plain.find(f".//{svg}g[@class='noise-panel']") is None
    assert float(plain.get("height")) == plot.HEIGHT

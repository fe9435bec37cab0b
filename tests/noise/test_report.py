"""noise's input rules and its SVG, without tracing: the plot parsed back with lxml,
which CPUs a domain gives (its live XML, not a pending definition), bad input.

The traced runs are in test_noise_live.py (this machine's real tracefs).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from rtlibvirt.errors import HostError, InputError
from rtlibvirt.kernel.fs import HostFS
from rtlibvirt.noise import measure, tracefs
from rtlibvirt.noise.attribute import BINS
from rtlibvirt.noise.measure import CpuResult, Measurement, SourceResult
from rtlibvirt.noise.report import svg, text
from tests.fakes.sysfs import FakeSys

SVG = "{http://www.w3.org/2000/svg}"


def _measurement(
    timelines: dict[int, list[int]], duration: float = 10.0, *, requested: float = 10.0
) -> Measurement:
    cpus = []
    for cpu, timeline in timelines.items():
        total = sum(timeline)
        cpus.append(
            CpuResult(
                cpu=cpu,
                domain="plc" if cpu == 1 else None,
                vcpu=0 if cpu == 1 else None,
                disturbances_per_s=total / duration,
                us_lost_per_s=total * 3 / duration,
                sources=[SourceResult("irq", "IRQ 36 virtio1-req.0", total, total * 3.0, 9, "x")],
                timeline_count=timeline,
            )
        )
    return Measurement(
        duration_s=duration,
        method="tracepoints",
        cpus=cpus,
        requested_s=requested,
        interrupted=duration < requested,
        bin_s=requested / BINS,
    )


def _parse(picture: str) -> etree._Element:
    root = etree.fromstring(picture.encode())
    assert root.tag == f"{SVG}svg"
    return root


def _steps(path_d: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"[ML]([\d.]+),([\d.]+)", path_d)]


def test_the_plot_draws_each_cpus_disturbances_per_second_over_time() -> None:
    ramp = [i % 10 for i in range(BINS)]  # 0..9 disturbances in each 100 ms bin
    burst = [0] * BINS
    burst[42] = 50
    root = _parse(svg(_measurement({1: ramp, 2: burst}), "rtlibvirt noise: CPU 1 (plc), CPU 2"))
    assert root.findtext(f"{SVG}title") == "rtlibvirt noise: CPU 1 (plc), CPU 2"
    frame = root.find(f".//{SVG}rect[@class='frame']")
    assert frame is not None
    top_y, height = float(frame.get("y")), float(frame.get("height"))
    left, width = float(frame.get("x")), float(frame.get("width"))
    ticks = [float(t.text) for t in root.iterfind(f".//{SVG}text[@class='y-tick']")]
    assert ticks[0] == 0 and ticks == sorted(ticks)
    y_max = ticks[-1]
    assert y_max >= 500  # the burst: 50 in 100 ms is 500 per second
    x_ticks = [float(t.text) for t in root.iterfind(f".//{SVG}text[@class='x-tick']")]
    assert x_ticks[0] == 0 and x_ticks[-1] == 10 and 4 <= len(x_ticks) <= 11
    series = root.findall(f".//{SVG}g[@class='series']")
    assert [s.get("data-cpu") for s in series] == ["1", "2"]
    assert series[0].get("data-label") == "CPU 1 (plc vCPU 0)"
    assert series[1].get("data-label") == "CPU 2"
    for s, timeline in zip(series, (ramp, burst), strict=True):
        assert [int(n) for n in s.get("data-counts").split()] == timeline
        assert float(s.get("data-disturbances-per-s")) == pytest.approx(sum(timeline) / 10, 0.01)
        assert float(s.get("data-bin-s")) == pytest.approx(0.1)
        points = _steps(s.find(f"{SVG}path").get("d"))
        assert len(points) == 1 + 2 * BINS
        for i, count in enumerate(timeline):
            (x0, y0), (x1, y1) = points[1 + 2 * i], points[2 + 2 * i]
            assert y0 == y1 == pytest.approx(top_y + height - height * count * 10 / y_max, abs=0.1)
            assert x0 == pytest.approx(left + width * i / BINS, abs=0.1)
            assert x1 == pytest.approx(left + width * (i + 1) / BINS, abs=0.1)
        mean = s.find(f"{SVG}line[@class='mean']")
        rate = sum(timeline) / 10
        assert float(mean.get("y1")) == pytest.approx(top_y + height - height * rate / y_max, 0.01)
    legend = [t.text for t in root.iterfind(f"{SVG}text") if t.text and "µs lost/s" in t.text]
    assert legend == [
        "CPU 1 (plc vCPU 0): 45 disturbances/s, 135 µs lost/s",
        "CPU 2: 5 disturbances/s, 15 µs lost/s",
    ]
    assert root.find(f"{SVG}rect[@class='legend']") is not None


def test_a_quiet_cpu_is_a_flat_line_on_the_floor() -> None:
    root = _parse(svg(_measurement({1: [0] * BINS}), "quiet"))
    frame = root.find(f".//{SVG}rect[@class='frame']")
    floor = float(frame.get("y")) + float(frame.get("height"))
    points = _steps(root.find(f".//{SVG}g[@class='series']/{SVG}path").get("d"))
    assert all(y == pytest.approx(floor, abs=0.1) for _, y in points)
    ticks = [t.text for t in root.iterfind(f".//{SVG}text[@class='y-tick']")]
    assert ticks == ["0", "0.25", "0.5", "0.75", "1"]


def test_a_run_stopped_early_plots_only_the_time_it_traced() -> None:
    timeline = [3] * 30 + [0] * (BINS - 30)  # Ctrl-C after 3 of 10 s
    root = _parse(svg(_measurement({1: timeline}, duration=3.0), "stopped"))
    series = root.find(f".//{SVG}g[@class='series']")
    assert series.get("data-counts").split() == ["3"] * 30
    assert len(_steps(series.find(f"{SVG}path").get("d"))) == 1 + 2 * 30
    x_ticks = [float(t.text) for t in root.iterfind(f".//{SVG}text[@class='x-tick']")]
    assert x_ticks[-1] == 3


def test_names_from_the_host_cannot_break_the_picture() -> None:
    m = _measurement({1: [1] * BINS})
    m.cpus[0].domain = "a<b>&\"c'"
    title = "rtlibvirt noise: CPU 1 (</title><script>alert(1)</script>)"
    root = _parse(svg(m, title))
    assert root.findtext(f"{SVG}title") == title
    assert not root.findall(f".//{SVG}script")
    assert root.find(f".//{SVG}g[@class='series']").get("data-label") == (
        "CPU 1 (a<b>&\"c' vCPU 0)"
    )


def test_the_text_report_names_each_source_and_its_fix() -> None:
    out = text(_measurement({1: [2] * BINS}))
    assert out.splitlines()[0].startswith("CPU 1 (plc vCPU 0): 20 disturbances/s, 60 µs lost/s")
    assert "IRQ 36 virtio1-req.0" in out and "fix: x" in out


# ---- which CPUs: the live XML of a running domain ----------------------------------


def _xml(pins: dict[int, str], fifo: tuple[int, ...] = (1,), name: str = "plc") -> str:
    pin = "".join(f"<vcpupin vcpu='{v}' cpuset='{c}'/>" for v, c in pins.items())
    sched = "".join(f"<vcpusched vcpus='{v}' scheduler='fifo' priority='1'/>" for v in fifo)
    return (
        f"<domain type='kvm'><name>{name}</name><memory>131072</memory>"
        f"<vcpu placement='static'>{len(pins)}</vcpu><cputune>{pin}{sched}</cputune>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )


def test_a_running_domain_is_read_from_its_live_xml_not_its_pending_definition() -> None:
    # running with vCPU 1 on CPU 3 (virsh vcpupin --live), a new definition says CPU 5
    running = _xml({0: "0", 1: "3"})
    pending = _xml({0: "0", 1: "5"}, fifo=(0, 1))
    stopped = _xml({0: "2", 1: "4"}, name="spare")
    found, unreadable = measure.live_domains(
        [("plc", pending, running), ("spare", stopped, None), ("bad", "<domain", None)]
    )
    by_name = {d.name: d for d in found}
    assert by_name["plc"].active and by_name["plc"].vcpu_cpus(1) == {3}
    assert by_name["plc"].realtime_vcpus == (1,)  # the pending FIFO vCPU 0 is not real-time yet
    assert not by_name["spare"].active and by_name["spare"].vcpu_cpus(1) == {4}
    assert set(unreadable) == {"bad"}


def test_a_domain_that_is_not_running_or_has_no_realtime_vcpus_is_refused(
    tmp_path: Path,
) -> None:
    fs = FakeSys(tmp_path).cpus("0-7").fs
    found, _ = measure.live_domains(
        [
            ("down", _xml({0: "2"}, fifo=(0,), name="down"), None),
            ("plain", _xml({0: "2"}, fifo=(), name="plain"), _xml({0: "2"}, (), "plain")),
        ]
    )
    with pytest.raises(InputError, match=r"domain 'down' is not running") as exc:
        measure.targets_of_domains(fs, found, ["down"], "qemu:///system")
    assert "virsh start down" in exc.value.hint
    with pytest.raises(InputError, match=r"'plain' has no real-time vCPUs") as exc:
        measure.targets_of_domains(fs, found, ["plain"], "qemu:///system")
    assert "--cpus" in exc.value.hint
    with pytest.raises(InputError, match=r"no real-time VM runs on qemu:///system"):
        measure.targets_of_domains(fs, found, [], "qemu:///system")


def test_cpus_that_do_not_exist_or_are_offline_are_refused(tmp_path: Path) -> None:
    fake = FakeSys(tmp_path).cpus("0-3")
    fake.write("/sys/devices/system/cpu/online", "0-1,3")
    with pytest.raises(InputError, match=r"^CPUs 4-5 do not exist on this host$") as exc:
        measure.check_cpus(fake.fs, [1, 4, 5])
    assert exc.value.hint == "this host has CPUs 0-3"
    with pytest.raises(InputError, match=r"^CPU 2 is offline$") as exc:
        measure.check_cpus(fake.fs, [1, 2])
    assert "cpu2/online" in exc.value.hint and "0-1,3" in exc.value.hint
    assert measure.check_cpus(fake.fs, [1, 3]) == {1, 3}


@pytest.mark.parametrize("value", ["0", "0s", "5ms", "86401s", "25h", "1e3", "-1s", "10 x"])
def test_a_duration_of_zero_or_over_a_day_is_refused(value: str) -> None:
    with pytest.raises(InputError, match="--duration"):
        measure.parse_duration(value)


def test_a_day_is_the_longest_duration() -> None:
    assert measure.parse_duration("24h") == measure.parse_duration("86400") == 86400


def test_a_kernel_without_tracefs_is_a_host_error_and_nothing_is_made(tmp_path: Path) -> None:
    fake = FakeSys(tmp_path).cpus("0-1")
    fake.write("/proc/mounts", "proc /proc proc rw 0 0\nsysfs /sys sysfs rw 0 0")
    fake.write("/proc/filesystems", "nodev\tsysfs\nnodev\tproc\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    session = tracefs.Session({1}, [("irq", "irq_handler_entry")], HostFS(tmp_path))
    with pytest.raises(HostError, match=r"^this kernel has no tracefs \(CONFIG_TRACING\)$"):
        session.__enter__()
    assert session.path is None and not session.mounted
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before

"""``rtlibvirt noise`` on this machine's real kernel and tracefs (under the live-host lock).

A task pinned to CPU 1 that wakes every millisecond shows up by name at about
1,000 wake-ups per second; the IRQs that fire on CPU 1 while the disk is
written with O_DIRECT show up by number and name; and the host's tracing
state (tracefs mounted or not, tracing_on, current_tracer, set_event,
buffer_size_kb, trace_clock, the instances) is the same after a run, after
SIGINT and SIGTERM mid-run, and after a SIGKILL of the command (its watchdog
removes what it left). Bad input exits 2 and leaves nothing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtlibvirt.kernel.fs import HostFS
from rtlibvirt.noise import tracefs

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/sys/devices/system/cpu/cpu1"),
    reason="needs root and a CPU 1",
)
CLI = [sys.executable, "-m", "rtlibvirt"]
TICKER = """
import os, time
with open("/proc/self/comm", "w") as f:
    f.write("rtl-ticker")
os.sched_setaffinity(0, {1})
deadline = time.monotonic()
while True:
    deadline += 0.001
    left = deadline - time.monotonic()
    if left > 0:
        time.sleep(left)
"""


def _state() -> dict[str, str]:
    return tracefs.state(HostFS("/"))


@pytest.fixture
def ticker() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", TICKER])
    time.sleep(0.5)
    yield proc.pid
    proc.kill()
    proc.wait()


def _noise(*args: str, timeout: float = 120) -> dict:
    done = subprocess.run(
        [*CLI, "noise", *args, "--json"], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _cpu1_irqs() -> dict[int, tuple[int, str]]:
    found = {}
    for line in Path("/proc/interrupts").read_text().splitlines()[1:]:
        m = re.fullmatch(r" *(\d+): +(\d+) +(\d+) +(.*)", line)
        if m:
            found[int(m[1])] = (int(m[3]), m[4].split()[-1])
    return found


def test_a_task_waking_every_millisecond_shows_by_name(live_host: None, ticker: int) -> None:
    before = _state()
    result = _noise("--cpus", "1", "--duration", "3s")
    assert _state() == before
    assert result["method"] == "tracepoints"
    (cpu,) = result["cpus"]
    assert cpu["cpu"] == 1 and cpu["domain"] is None and cpu["vcpu"] is None
    mine = [s for s in cpu["sources"] if s.get("pid") == ticker]
    assert len(mine) == 1, [s["name"] for s in cpu["sources"]][:20]
    (source,) = mine
    assert source["kind"] == "thread" and source["name"] == f"rtl-ticker (pid {ticker})"
    rate = source["count"] / result["duration_s"]
    assert 700 <= rate <= 1100, rate
    assert "taskset" in source["hint"] or "hook" in source["hint"]
    assert cpu["disturbances_per_s"] > 0 and cpu["us_lost_per_s"] >= source["time_us"] / 3
    for s in cpu["sources"]:
        assert set(s) >= {"kind", "name", "count", "time_us", "max_us", "hint"}
        assert s["kind"] in {"irq", "softirq", "timer", "ipi", "workqueue", "thread"}


def test_an_irq_that_fires_on_cpu1_shows_by_number_and_name(
    live_host: None, tmp_path: Path
) -> None:
    target = Path("/var/tmp") / f"rtl-noise-{os.getpid()}"
    writer = subprocess.Popen(
        [
            "sh",
            "-c",
            f"while :; do dd if=/dev/zero of={target} bs=4k count=100 "
            "oflag=direct,dsync 2>/dev/null; done",
        ]
    )
    try:
        time.sleep(0.3)
        before = _cpu1_irqs()
        result = _noise("--cpus", "1", "--duration", "2s")
        after = _cpu1_irqs()
    finally:
        writer.kill()
        writer.wait()
        target.unlink(missing_ok=True)
    fired = {n: after[n][1] for n in after if n in before and after[n][0] - before[n][0] >= 100}
    assert fired, "no IRQ fired 100 times on CPU 1 while the disk was written"
    names = {s["name"]: s for s in result["cpus"][0]["sources"] if s["kind"] == "irq"}
    for n, name in fired.items():
        source = names.get(f"IRQ {n} {name}")
        assert source is not None, (n, name, list(names))
        assert source["irq"] == n and source["count"] >= 50
        assert "CPU 1" in source["hint"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_tracing_state_survives_a_signal_mid_run(live_host: None, sig: int) -> None:
    before = _state()
    proc = subprocess.Popen(
        [*CLI, "noise", "--cpus", "1", "--duration", "60s", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    instance = _wait_for_instance(proc.pid)
    assert instance is not None
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["interrupted"] is True and 0 < result["duration_s"] < 60
    assert _state() == before


def test_the_watchdog_cleans_up_after_a_sigkill(live_host: None) -> None:
    before = _state()
    proc = subprocess.Popen(
        [*CLI, "noise", "--cpus", "1", "--duration", "60s"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert _wait_for_instance(proc.pid) is not None
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while _state() != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _state() == before


def _wait_for_instance(pid: int) -> str | None:
    name = f"{tracefs.INSTANCE_PREFIX}{pid}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = _state()
        if name in state.get("instances", "").split():
            time.sleep(0.3)  # let it enable its events and start tracing
            return name
        time.sleep(0.05)
    return None


@pytest.mark.parametrize(
    "args, words",
    [
        (["--cpus", "999"], "does not exist"),
        (["--cpus", "1", "--duration", "0"], "--duration"),
        (["--cpus", "1", "--duration", "25h"], "24 h"),
        (["--cpus", "x"], "--cpus"),
        (["rtl-no-such-domain"], "no domain"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(
    live_host: None, args: list[str], words: str
) -> None:
    before = _state()
    done = subprocess.run([*CLI, "noise", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and words in done.stderr.splitlines()[0]
    assert "Traceback" not in done.stderr
    assert _state() == before


def test_plot_writes_the_svg_of_the_run(live_host: None, ticker: int, tmp_path: Path) -> None:
    from lxml import etree

    picture = tmp_path / "noise.svg"
    result = _noise("--cpus", "1", "--duration", "2s", "--plot", str(picture))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.svg"]  # no temporary file left
    assert picture.stat().st_mode & 0o777 == 0o644
    root = etree.parse(str(picture)).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg" and root.findtext(f"{ns}title") == "rtlibvirt noise: CPU 1"
    (series,) = root.findall(f".//{ns}g[@class='series']")
    (cpu,) = result["cpus"]
    assert series.get("data-cpu") == "1" and series.get("data-label") == "CPU 1"
    assert float(series.get("data-disturbances-per-s")) == pytest.approx(
        cpu["disturbances_per_s"], abs=0.1
    )
    assert float(series.get("data-us-lost-per-s")) == pytest.approx(cpu["us_lost_per_s"], abs=0.1)
    counts = [int(n) for n in series.get("data-counts").split()]
    bin_s = float(series.get("data-bin-s"))
    assert len(counts) == round(result["duration_s"] / bin_s)
    # the timeline holds every disturbance of the run, spread over it: the ticker wakes
    # every millisecond, so (nearly) every bin of 20 ms has some, and none holds the bulk
    assert sum(counts) == pytest.approx(cpu["disturbances_per_s"] * result["duration_s"], abs=2)
    assert sum(1 for n in counts if n) >= len(counts) * 9 // 10, counts
    assert max(counts) < sum(counts) / 10, counts
    assert len(series.find(f"{ns}path").get("d").split()) == 1 + 2 * len(counts)


def test_bad_plot_files_exit_2_before_tracing_and_leave_nothing(
    live_host: None, tmp_path: Path
) -> None:
    (tmp_path / "folder.svg").mkdir()
    (tmp_path / "link.svg").symlink_to(tmp_path / "elsewhere.svg")
    cases = {
        str(tmp_path / "noise.png"): "the picture is written as SVG",
        str(tmp_path / "missing" / "noise.svg"): "does not exist",
        str(tmp_path / "folder.svg"): "is not a regular file",
        str(tmp_path / "link.svg"): "symbolic link",
        "/proc/noise.svg": "cannot create a file in /proc",
    }
    listing = sorted(p.name for p in tmp_path.iterdir())
    before = _state()
    for plot, words in cases.items():
        done = subprocess.run(
            [*CLI, "noise", "--cpus", "1", "--duration", "30s", "--plot", plot],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (plot, done.stderr)
        first, *rest = done.stderr.splitlines()
        assert first.startswith(f"error: --plot {plot}: ") and words in first, first
        assert [line for line in rest if not line.startswith("  hint: ")] == []
        assert done.stdout == "" and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == listing
    assert not Path("/proc/noise.svg").exists()
    assert _state() == before


NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def test_not_root_is_a_host_error_in_one_line() -> None:
    done = subprocess.run(
        [*NOBODY, *CLI, "noise", "--cpus", "1", "--duration", "1s"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    if "No module named" in done.stderr or "Permission denied" in done.stderr:
        pytest.skip("user nobody cannot read this checkout")
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "error: rtlibvirt noise traces the kernel: it needs root",
        "  hint: run it with sudo",
    ]
    assert done.stdout == ""

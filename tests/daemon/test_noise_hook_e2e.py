"""End to end: `rtlibvirt noise` on a real-time VM that the installed hook isolates.

The hook is installed and libvirtd restarted as in test_hook_e2e.py; the VM
`rtl-noise-e2e` has one FIFO vCPU pinned to CPU 1 (TCG). Before it starts,
`noise --cpus 1` sees a task that wakes every millisecond and ttyS0's IRQ
(its affinity set to CPU 1, and made to fire by writing to the port), and
`noise rtl-noise-e2e` refuses the defined VM that is not running. While the
VM runs (its definition changed to pin the vCPU to CPU 0 at the next start),
`noise rtl-noise-e2e` measures CPU 1 alone, as the VM's: the task and
every IRQ the hook may move are gone from it, the vCPU thread is not counted,
and an IRQ the kernel would not let the hook move is reported with the fix
(isolcpus=managed_irq). Everything is undone afterwards, even on failure.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtlibvirt import hook
from rtlibvirt.hook import threads as vcputhreads
from rtlibvirt.kernel.fs import HostFS
from rtlibvirt.noise import tracefs
from tests.conftest import require_rt_host
from tests.daemon.test_hook_e2e import SPEC as HOOK_SPEC
from tests.daemon.test_hook_e2e import claims, run, writable_irqs
from tests.noise.test_noise_live import TICKER

pytestmark = pytest.mark.libvirtd

REPO = Path(__file__).resolve().parents[2]
NAME = "rtl-noise-e2e"
SPEC = HOOK_SPEC.replace("name: rtl-hook-e2e", f"name: {NAME}")
TTY_IRQ = "/proc/irq/{n}/smp_affinity"


def _tty_irq() -> int | None:
    for line in Path("/proc/interrupts").read_text().splitlines()[1:]:
        head, _, rest = line.partition(":")
        if head.strip().isdigit() and rest.split()[-1:] == ["ttyS0"]:
            return int(head)
    return None


def _noise(rtlibvirt: str, *args: str, poke: bool) -> dict:
    proc = subprocess.Popen(
        [rtlibvirt, "noise", *args, "--duration", "3s", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if poke:  # make ttyS0 raise interrupts: one write of 64 NULs every 100 ms
        for _ in range(25):
            time.sleep(0.1)
            with open("/dev/ttyS0", "wb") as port:
                port.write(b"\0" * 64)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out)


def test_noise_sees_the_hook_isolate_cpu1(system_uri: str, tmp_path: Path) -> None:
    require_rt_host("installs a libvirt hook")
    tty = _tty_irq()
    if tty is None:
        pytest.skip("no ttyS0 IRQ to make fire")
    fs = HostFS("/")
    rtlibvirt = str(Path(sys.executable).with_name("rtlibvirt"))
    virsh = ("virsh", "-q", "-c", system_uri)
    spec = tmp_path / "vm.yaml"
    spec.write_text(SPEC)
    hook_was_installed = Path("/etc/libvirt/hooks/qemu.d/50-rtlibvirt").exists()
    tty_path = TTY_IRQ.format(n=tty)
    tty_was = fs.read(tty_path)
    tracing_before = tracefs.state(fs)
    ticker = subprocess.Popen([sys.executable, "-c", TICKER])
    try:
        fs.write(tty_path, "2")  # CPU 1 only: the hook must move it to the housekeeping CPU
        time.sleep(0.5)
        before = _noise(rtlibvirt, "--cpus", "1", poke=True)["cpus"][0]
        names = {s["name"] for s in before["sources"]}
        assert any(s.get("pid") == ticker.pid for s in before["sources"]), names
        assert f"IRQ {tty} ttyS0" in names, names

        # the hook moves tasks allowed elsewhere: let the ticker run on CPU 0 too
        os.sched_setaffinity(ticker.pid, {0, 1})
        run(rtlibvirt, "hook", "install")
        run(str(REPO / "scripts/libvirtd-up"))
        run(rtlibvirt, "define", str(spec), "-c", system_uri)
        down = subprocess.run(
            [rtlibvirt, "noise", NAME, "--duration", "1s"], capture_output=True, text=True
        )
        assert down.returncode == 2 and down.stdout == "", down.stderr
        assert down.stderr.splitlines()[0] == f"error: domain {NAME!r} is not running"
        run(*virsh, "start", NAME)
        # a pending new definition pins the vCPU to CPU 0: noise measures where it runs now
        run(*virsh, "vcpupin", NAME, "0", "0", "--config")
        pid = vcputhreads.qemu_pid(fs, NAME)
        assert pid is not None
        vcpu_tid = vcputhreads.vcpu_threads(fs, pid)[0]
        assert NAME in claims()
        movable = {int(p.split("/")[3]) for p in writable_irqs({tty_path: fs.read(tty_path)})}
        assert movable == {tty}

        during = _noise(rtlibvirt, NAME, poke=True)
        (cpu,) = during["cpus"]
        assert (cpu["cpu"], cpu["domain"], cpu["vcpu"]) == (1, NAME, 0)
        pids = {s.get("pid") for s in cpu["sources"]}
        assert ticker.pid not in pids and vcpu_tid not in pids
        names = {s["name"] for s in cpu["sources"]}
        assert f"IRQ {tty} ttyS0" not in names, names
        for source in cpu["sources"]:
            if source["kind"] == "irq" and "irq" in source:
                # only IRQs the kernel refused to move are left, and the hint says so
                assert "refused" in source["hint"] and "managed_irq" in source["hint"], source
        assert tracefs.state(fs) == tracing_before
    finally:
        ticker.kill()
        ticker.wait()
        for cmd in ("destroy", "undefine"):
            subprocess.run([*virsh, cmd, NAME], capture_output=True, check=False)
        if NAME in claims():
            hook.main([NAME, "release", "end", "-"], io.StringIO(""))
        if not hook_was_installed:
            subprocess.run([rtlibvirt, "hook", "uninstall"], capture_output=True, check=False)
        fs.write(tty_path, tty_was)
    assert fs.read(tty_path) == tty_was

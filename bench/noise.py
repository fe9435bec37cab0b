#!/usr/bin/env python3
"""Host noise on CPU 1: an untuned VM, rtlibvirt's VM (the hook isolating), the limit; and the cost.

    flock /run/lock/rtlibvirt-tests.lock .venv/bin/python bench/noise.py [--seconds 10]

As root on a host with libvirtd (scripts/libvirtd-up). The same host load runs
through every configuration: a task allowed on CPUs 0-1 that wakes every
millisecond, and a loop of O_DIRECT writes to a file in /var/tmp (the disk's
IRQs). Each configuration runs a one-vCPU KVM domain pinned to CPU 1, without a
disk (QEMU and its vCPU thread run the firmware; no guest kernel boots here):

- **untuned**: the VM without real-time vCPUs and without the hook (its vCPU
  thread is the owner of CPU 1, everything else is noise);
- **rtlibvirt**: the same VM with a FIFO vCPU, the rtlibvirt hook installed
  and isolating CPU 1 while it runs (``rtlibvirt noise NAME``);
- the **limit**: nothing but the vCPU on CPU 1, zero disturbances.

The cost of the measurement: a busy loop pinned to CPU 1 counts iterations for
the same time without and with ``noise --cpus 1`` tracing it (the host load
running in both). Not a test: nothing asserts on these figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rtlibvirt import hook  # noqa: E402
from rtlibvirt.hook import threads  # noqa: E402
from rtlibvirt.hook.state import peek  # noqa: E402
from rtlibvirt.kernel.fs import HostFS  # noqa: E402
from rtlibvirt.noise import measure  # noqa: E402

NAME = "rtl-noise-bench"
URI = "qemu:///system"
RT = """\
name: {name}
memory: 128MiB
vcpus: 1
cpu:
  pinning: [1]
  emulator: "0"
{realtime}  features:
    arch-capabilities: disable
memory_backing:
  hugepages: none
  locked: false
"""
REALTIME = "  realtime:\n    vcpus: [0]\n    priority: 1\n"
TICKER = (
    "import time\nd=time.monotonic()\nwhile True:\n d+=0.001\n"
    " l=d-time.monotonic()\n if l>0: time.sleep(l)\n"
)
SPIN = (
    "import os,sys,time\nos.sched_setaffinity(0,{1})\nend=time.monotonic()+float(sys.argv[1])\n"
    "n=0\nwhile time.monotonic()<end:\n n+=1\nprint(n)\n"
)
RTL = str(Path(sys.executable).with_name("rtlibvirt"))
VIRSH = ("virsh", "-q", "-c", URI)


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def load() -> list[subprocess.Popen[bytes]]:
    ticker = subprocess.Popen([sys.executable, "-c", TICKER])
    os.sched_setaffinity(ticker.pid, {0, 1})
    target = f"/var/tmp/rtl-noise-bench-{os.getpid()}"
    disk = subprocess.Popen(
        [
            "sh",
            "-c",
            f"while :; do dd if=/dev/zero of={target} bs=4k count=50 "
            f"oflag=direct,dsync 2>/dev/null; done; rm -f {target}",
        ]
    )
    return [ticker, disk]


def vm(realtime: bool, tmp: Path) -> int:
    spec = tmp / "vm.yaml"
    spec.write_text(RT.format(name=NAME, realtime=REALTIME if realtime else ""))
    sh(RTL, "define", str(spec), "-c", URI, "--no-host-check")
    sh(*VIRSH, "start", NAME)
    fs = HostFS("/")
    pid = threads.qemu_pid(fs, NAME)
    assert pid is not None
    return threads.vcpu_threads(fs, pid)[0]


def gone() -> None:
    for cmd in ("destroy", "undefine"):
        subprocess.run([*VIRSH, cmd, NAME], capture_output=True, check=False)


def measured(tid: int, seconds: float, domain: str) -> dict:
    result = measure.run([measure.Target(1, domain, 0, frozenset({tid}))], seconds)
    return result.cpus[0].to_json() | {"duration_s": result.duration_s}


def spin(seconds: float) -> int:
    return int(sh(sys.executable, "-c", SPIN, str(seconds)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pairs", type=int, default=6, help="untraced/traced busy-loop pairs")
    parser.add_argument("--cost-seconds", type=float, default=5.0, help="each busy loop's time")
    args = parser.parse_args()
    hooked = Path("/etc/libvirt/hooks/qemu.d/50-rtlibvirt").exists()
    # run under `flock /run/lock/rtlibvirt-tests.lock`: scripts/libvirtd-up must not wait for it
    os.environ["RTLIBVIRT_HOST_LOCK_HELD"] = "1"
    procs = load()
    rows = []
    plain: list[int] = []
    under: list[int] = []
    seen: list[dict] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if hooked:
                sh(RTL, "hook", "uninstall")
            sh(str(REPO / "scripts/libvirtd-up"))
            tid = vm(False, Path(tmp))
            rows.append(("untuned VM, no hook", measured(tid, args.seconds, NAME)))
            gone()
            sh(RTL, "hook", "install")
            sh(str(REPO / "scripts/libvirtd-up"))
            tid = vm(True, Path(tmp))
            rows.append(("rtlibvirt VM, hook isolating", measured(tid, args.seconds, NAME)))
            gone()
        # the measurement's cost: pairs of (untraced, traced) busy loops, interleaved so that
        # the host's other load falls on both alike; the medians are compared
        for _ in range(args.pairs):
            plain.append(spin(args.cost_seconds))
            traced = subprocess.Popen(
                [RTL, "noise", "--cpus", "1", "--duration", f"{args.cost_seconds + 2}s", "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
            under.append(spin(args.cost_seconds))
            seen.append(json.loads(traced.communicate()[0])["cpus"][0])
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        gone()
        if NAME in peek(HostFS("/")).claims:
            hook.main([NAME, "release", "end", "-"], io.StringIO(""))
        if not hooked:
            subprocess.run([RTL, "hook", "uninstall"], capture_output=True, check=False)
    print(
        f"| CPU 1 ({args.seconds:g} s each) | disturbances/s | µs lost/s | share of the CPU "
        "| top sources (count) |"
    )
    print("|---|---:|---:|---:|---|")
    for label, cpu in rows:
        top = "; ".join(f"{s['name']} ({s['count']})" for s in cpu["sources"][:3])
        print(
            f"| {label} | {cpu['disturbances_per_s']:.0f} | {cpu['us_lost_per_s']:.0f} "
            f"| {cpu['us_lost_per_s'] / 1e4:.2f} % | {top} |"
        )
    print("| the limit | 0 | 0 | 0 % | |")
    for label, cpu in rows:
        print(f"\n{label}: its top sources (count, µs total, µs max) and their hints")
        for src in cpu["sources"][:12]:
            print(
                f"  {src['kind']:<9} {src['count']:>7} {src['time_us']:>9.0f} {src['max_us']:>7.0f}"
                f"  {src['name']}: {src['hint']}"
            )
    # each pair's loss, traced against its untraced neighbour: the drift of the shared
    # host's load falls on both halves of a pair alike
    losses = sorted(100 * (p - u) / p for p, u in zip(plain, under, strict=True))
    rate = statistics.median(c["disturbances_per_s"] for c in seen)
    print(
        f"\nbusy loop on CPU 1, {args.pairs} interleaved pairs of {args.cost_seconds:g} s: "
        f"traced it made a median {statistics.median(losses):.1f} % fewer iterations than "
        f"untraced (pairs: {', '.join(f'{x:.1f}' for x in losses)} %); the trace saw a median "
        f"{rate:.0f} disturbances/s; iterations untraced {plain}, traced {under}"
    )


if __name__ == "__main__":
    main()

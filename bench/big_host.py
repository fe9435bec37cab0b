#!/usr/bin/env python3
"""Big hosts: the hook and `rtlibvirt status` with 512 CPUs, 8 NUMA nodes, 2,000 IRQs, 32 VMs.

    .venv/bin/python bench/big_host.py [--runs N] [--irqs 100,500,2000] [--vms 0,8,32]

A fake host in the kernel's formats (tests/fakes/host.py: /proc/irq/N/
smp_affinity and friends, the workqueue cpumasks, machine-check intervals,
plus /sys/devices/system/node/nodeN: cpulist and free hugepages), 512 CPUs
numbered as Linux numbers a 2-thread Intel host (node n: cores 32n..32n+31 and
their siblings +256), with IRQS IRQs, and VMS real-time VMs already running:
each has 4 vCPUs, vCPUs 1-3 SCHED_FIFO on CPUs of their own, vCPU 0 and the
emulator on the first CPU of their node; the hook has isolated all of them
(its state holds their claims and every IRQ's original).

- **hook**: one more such VM starts and stops, the installed hook run as
  libvirt runs it (a process per call, the domain XML on stdin,
  RTLIBVIRT_HOST_ROOT at the fake tree): ``prepare begin`` (the hook isolates
  before QEMU exists: every IRQ's mask loses the VM's 3 CPUs), ``started begin``
  (what appeared since prepare, the vCPU threads checked), ``stopped end`` (the
  CPUs come back) and ``release end`` (after stopped: nothing left to do), in
  libvirt's order.
- **status**: ``rtlibvirt status`` as a whole process, against libvirt's test
  driver loaded with the same host (8 nodes x 32 cores x 2 threads) and the VMs
  as running domains, RTLIBVIRT_HOST_ROOT at the fake tree (isolated CPUs,
  hugepages, the hook's state).

Medians of N runs (min beside them), wall time from fork to exit. The fake tree
lives in /dev/shm (--dir), in memory like /proc, /sys and /run. Targets (issue
12): the isolating call (prepare begin, which took over started begin's work)
and release end at most 100 ms each, status at most 0.5 s for 2,000 IRQs and
32 VMs; started begin is held to the same 100 ms. Not a test: nothing asserts on these times.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rtlibvirt import hook as hookentry  # noqa: E402
from rtlibvirt.config.vm import validate_data  # noqa: E402
from rtlibvirt.domain.render import render  # noqa: E402
from rtlibvirt.hook import install as hookinstall  # noqa: E402
from rtlibvirt.kernel.cpuset import format_cpulist, parse_mask  # noqa: E402
from rtlibvirt.kernel.fs import HostFS  # noqa: E402
from tests.fakes.host import add_vm, build_host, remove_vm  # noqa: E402
from tests.fakes.libvirt_hosts import host_file  # noqa: E402

NODES, CORES, THREADS = 8, 32, 2  # per node: 1 socket of 32 cores
CPUS = NODES * CORES * THREADS
RTLIBVIRT = Path(sys.executable).with_name("rtlibvirt")
TARGETS = {
    "prepare begin": 100.0,
    "started begin": 100.0,
    "stopped end": None,
    "release end": 100.0,
    "status": 500.0,
}


def node_cpus(node: int) -> list[int]:
    first = [node * CORES + c for c in range(CORES)]
    return first + [c + NODES * CORES for c in first]


def vm_spec(index: int) -> dict[str, Any]:
    """VM ``index``: on node index % 8, 3 realtime vCPUs on CPUs of its own."""
    node, slot = index % NODES, index // NODES
    base = node * CORES
    rt = [base + 1 + 3 * slot + k for k in range(3)]
    if rt[-1] >= base + CORES:
        raise SystemExit(f"too many VMs for {CORES} cores per node")
    return {
        "name": f"rtl-big-{index:02d}",
        "memory": "1GiB",
        "vcpus": 4,
        "cpu": {"pinning": [base, *rt], "emulator": str(base), "realtime": {"vcpus": [1, 2, 3]}},
        "memory_backing": {"hugepages": "none", "locked": False},
    }


def add_qemu(root: Path, index: int, spec: dict[str, Any]) -> int:
    pid = 10_000 + 10 * index
    pins = spec["cpu"]["pinning"]
    threads = {
        v: (pid + 1 + v, frozenset({cpu}), "fifo" if v else "other", 1 if v else 0)
        for v, cpu in enumerate(pins)
    }
    add_vm(root, spec["name"], pid, threads)
    return pid


def build(root: Path, irqs: int, vms: int) -> None:
    """The fake host with ``vms`` real-time VMs running and isolated by the hook."""
    build_host(root, cpus=CPUS, irqs=range(irqs))
    for node in range(NODES):
        base = root / f"sys/devices/system/node/node{node}"
        base.mkdir(parents=True)
        (base / "cpulist").write_text(format_cpulist(node_cpus(node)) + "\n")
        for size, free in (("2048kB", "512"), ("1048576kB", "16")):
            pages = base / "hugepages" / f"hugepages-{size}"
            pages.mkdir(parents=True)
            (pages / "free_hugepages").write_text(free + "\n")
    fs = HostFS(root)
    for index in range(vms):
        spec = vm_spec(index)
        xml = render(validate_data(spec))
        name = spec["name"]
        assert hookentry.main([name, "prepare", "begin", "-"], io.StringIO(xml), fs=fs) == 0
        add_qemu(root, index, spec)
        assert hookentry.main([name, "started", "begin", "-"], io.StringIO(xml), fs=fs) == 0


def timed(argv: list[str], root: Path, stdin: str = "") -> float:
    env = {"PATH": "/usr/bin:/bin", "RTLIBVIRT_HOST_ROOT": str(root)}
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin.encode(), env=env, capture_output=True)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed: {done.stderr.decode()[-2000:]}")
    return elapsed


def time_hook(hook: Path, root: Path, vms: int, runs: int) -> dict[str, list[float]]:
    spec = vm_spec(vms)
    name = spec["name"]
    xml = render(validate_data(spec))
    rt_cpus = set(spec["cpu"]["pinning"][1:])
    probe = root / "proc/irq/0/smp_affinity"
    before = probe.read_text()
    times: dict[str, list[float]] = {
        "prepare begin": [],
        "started begin": [],
        "stopped end": [],
        "release end": [],
    }
    for _ in range(runs + 1):  # the first round warms the page cache and bytecode
        prepared = timed([str(hook), name, "prepare", "begin", "-"], root, xml)
        if rt_cpus & parse_mask(probe.read_text()):
            raise SystemExit("prepare begin did not take the VM's CPUs out of IRQ 0's mask")
        pid = add_qemu(root, vms, spec)
        started = timed([str(hook), name, "started", "begin", "-"], root, xml)
        remove_vm(root, name, pid)
        stopped = timed([str(hook), name, "stopped", "end", "-"], root, xml)
        released = timed([str(hook), name, "release", "end", "-"], root, xml)
        if probe.read_text() != before:
            raise SystemExit("stopped end did not restore IRQ 0's mask")
        if _:
            times["prepare begin"].append(prepared)
            times["started begin"].append(started)
            times["stopped end"].append(stopped)
            times["release end"].append(released)
    return times


def time_status(root: Path, workdir: Path, vms: int, runs: int) -> list[float]:
    domains = [render(validate_data(vm_spec(i))) for i in range(vms)]
    uri = host_file(
        workdir, nodes=NODES, cores=CORES, threads=THREADS, domains=domains, name="big.xml"
    )
    argv = [str(RTLIBVIRT), "status", "-c", uri]
    env = {"PATH": "/usr/bin:/bin", "RTLIBVIRT_HOST_ROOT": str(root)}
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"rtlibvirt status failed: {out.stderr}")
    if vms and f"rtl-big-{vms - 1:02d}" not in out.stdout:
        raise SystemExit("rtlibvirt status does not show the VMs")
    if vms and "hook isolates for rtl-big-00" not in out.stdout:
        raise SystemExit("rtlibvirt status does not show the hook's isolation")
    return [timed(argv, root) for _ in range(runs)]


def row(values: list[float]) -> str:
    return f"{statistics.median(values):>7.1f}ms ({min(values):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--irqs", default="100,500,2000", help="IRQ counts (comma-separated)")
    parser.add_argument("--vms", default="0,8,32", help="running VM counts (comma-separated)")
    parser.add_argument("--no-status", action="store_true", help="time the hook only")
    parser.add_argument(
        "--dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None, help="fake tree here"
    )
    options = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached
    irq_counts = [int(x) for x in options.irqs.split(",")]
    vm_counts = [int(x) for x in options.vms.split(",")]
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    results: dict[tuple[int, int], dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(dir=options.dir, prefix="rtl-big-") as tmp:
        base = Path(tmp)
        hook = hookinstall.install(base / "hooks").path
        for irqs in irq_counts:
            for vms in vm_counts:
                root = base / f"host-{irqs}-{vms}"
                began = time.monotonic()
                build(root, irqs, vms)
                results[(irqs, vms)] = time_hook(hook, root, vms, options.runs)
                if not options.no_status:
                    results[(irqs, vms)]["status"] = time_status(root, base, vms, options.runs)
                print(
                    f"  {irqs} IRQs, {vms} VMs: done in {time.monotonic() - began:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    print(
        f"fake host: {CPUS} CPUs, {NODES} NUMA nodes; {options.runs} runs each, median (min), "
        f"in {options.dir or '/tmp'}; load average {load} at the start"
    )
    columns = ["prepare begin", "started begin", "stopped end", "release end"]
    if not options.no_status:
        columns.append("status")
    print(f"{'IRQs':>6} {'VMs':>4} " + "".join(f"{c:>18}" for c in columns))
    for (irqs, vms), times in results.items():
        print(f"{irqs:>6} {vms:>4} " + "".join(f"{row(times[c]):>18}" for c in columns))
    targets = ", ".join(f"{c} {TARGETS[c]:.0f} ms" for c in columns if TARGETS[c])
    print(f"targets at 2000 IRQs and 32 VMs: {targets}")


if __name__ == "__main__":
    main()

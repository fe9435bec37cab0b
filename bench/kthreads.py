#!/usr/bin/env python3
"""What the kernel_threads step adds to a hook call on this machine: its plan, with the
tasks step's scan of /proc reused (as the hook does) and with a scan of its own.

    .venv/bin/python bench/kthreads.py [--runs N]

Reads the live /proc only (the plan of a claim on CPU 1, as for a VM whose
FIFO-1 vCPU is pinned there); writes nothing, so it needs no lock. Side by
side: the tasks step's scan (every thread's affinity, and the stat of the
threads on CPU 1, which it reads anyway to tell per-CPU kernel threads), the
step's plan reusing that scan, and the step's plan scanning on its own (when
no VM moves host tasks). Not a test: nothing asserts on these times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rtlibvirt.hook.isolation import Host, kthreads, tasks  # noqa: E402
from rtlibvirt.hook.log import HookLog  # noqa: E402
from rtlibvirt.hook.state import PHASE_RUNNING, Claim, Settings, State, StateStore  # noqa: E402
from rtlibvirt.kernel.fs import HostFS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    fs = HostFS("/")
    folder = tempfile.mkdtemp(prefix="rtl-kthreads-bench-")
    claim = Claim(
        "bench",
        frozenset({1}),
        Settings({}),
        phase=PHASE_RUNNING,
        kthreads={"ksoftirqd": 2, "ktimers": 3, "rcu": 4},
    )

    def host() -> Host:
        state = State()
        state.claims[claim.name] = claim
        return Host(fs, state, HookLog(HostFS(folder), "bench"), StateStore(HostFS(folder)))

    timings: dict[str, list[float]] = {"scan": [], "reused": [], "own": []}
    wanted: dict[str, str | None] = {}
    threads = 0
    for _ in range(args.runs):
        first = host()
        start = time.perf_counter()
        scan = tasks.Scan(first)
        for thread in scan.threads.values():
            if thread.cpus & claim.cpus:
                scan.stat(thread)
        scanned = time.perf_counter()
        first.scan = scan
        wanted = kthreads.plan(first, [claim]).wanted
        planned = time.perf_counter()
        second = host()
        alone = time.perf_counter()
        kthreads.plan(second, [claim])
        done = time.perf_counter()
        threads = len(scan.threads)
        timings["scan"].append(scanned - start)
        timings["reused"].append(planned - scanned)
        timings["own"].append(done - alone)
    print(f"{threads} host threads; the step would set {wanted}; {args.runs} runs")
    print(f"{'':44s} {'median':>8s} {'p90':>8s}")
    rows = (
        ("tasks step's scan (+ stat of CPU 1's threads)", "scan"),
        ("kernel_threads plan, the scan reused", "reused"),
        ("kernel_threads plan, a scan of its own", "own"),
    )
    for label, key in rows:
        values = sorted(timings[key])
        median = statistics.median(values) * 1000
        p90 = values[int(len(values) * 0.9)] * 1000
        print(f"{label:44s} {median:6.2f}ms {p90:6.2f}ms")


if __name__ == "__main__":
    main()

"""Time the libvirt hook as a whole process, the way libvirt runs it.

    .venv/bin/python bench/hook.py [--runs N]

The hook is installed into a temporary folder exactly as `rtlibvirt hook
install` does it (the shell entry, which starts Python with -I -S only for the
calls that need it), and run against a fake host with 100 IRQs
(RTLIBVIRT_HOST_ROOT), with the domain XML on stdin:

- a call for a domain without rtlibvirt metadata (no Python; target: under 30 ms);
- ``prepare begin`` of a real-time VM: the hook isolates before QEMU exists:
  100 IRQ affinities, the default affinity and two workqueue masks change
  (target: under 60 ms);
- ``started begin`` of that VM: what appeared since prepare, the vCPU threads
  checked (target: under 60 ms);
- ``release end`` of that VM: all of them restored (target: under 60 ms).

Each figure is the median of N runs (min and 90th percentile beside it), wall
time from fork to exit. Not a test: nothing asserts on these times.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rtlibvirt.hook import install as hookinstall  # noqa: E402
from tests.fakes.hook import PLAIN_XML, domain_xml  # noqa: E402
from tests.fakes.host import add_vm, build_host  # noqa: E402

TARGETS = {"no metadata": 30.0, "prepare begin": 60.0, "started begin": 60.0, "release end": 60.0}


def timed(hook: Path, root: Path, args: list[str], xml: str) -> float:
    env = {"PATH": "/usr/bin:/bin", "RTLIBVIRT_HOST_ROOT": str(root)}
    start = time.perf_counter()
    done = subprocess.run([str(hook), *args], input=xml.encode(), env=env, capture_output=True)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"hook {' '.join(args)} failed: {done.stderr.decode()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--dir",
        default="/dev/shm" if Path("/dev/shm").is_dir() else None,
        help="where to build the fake host (default /dev/shm: in memory, like /proc, /sys "
        "and /run on a real host)",
    )
    options = parser.parse_args()
    runs = options.runs
    with tempfile.TemporaryDirectory(dir=options.dir) as tmp:
        base = Path(tmp)
        hook = hookinstall.install(base / "hooks").path
        root = base / "host"
        build_host(root, cpus=4, irqs=range(100))
        add_vm(root, "bench", 900, {1: (901, frozenset({1}), "fifo", 1)})
        xml = domain_xml("bench", [0, 1], [1])
        times: dict[str, list[float]] = {name: [] for name in TARGETS}
        for _ in range(3):  # warm the page cache
            timed(hook, root, ["plain", "prepare", "begin", "-"], PLAIN_XML)
        for _ in range(runs):
            times["no metadata"].append(
                timed(hook, root, ["plain", "prepare", "begin", "-"], PLAIN_XML)
            )
            times["prepare begin"].append(
                timed(hook, root, ["bench", "prepare", "begin", "-"], xml)
            )
            if (root / "proc/irq/99/smp_affinity").read_text().strip() != "d":
                raise SystemExit("prepare begin did not isolate CPU 1")
            times["started begin"].append(
                timed(hook, root, ["bench", "started", "begin", "-"], xml)
            )
            times["release end"].append(timed(hook, root, ["bench", "release", "end", "-"], xml))
            if (root / "proc/irq/99/smp_affinity").read_text().strip() != "f":
                raise SystemExit("release end did not restore the IRQs")
    print(f"rtlibvirt hook, {runs} runs each, fake host with 100 IRQs in {options.dir or '/tmp'}")
    print(f"{'call':<16}{'median':>9}{'min':>9}{'p90':>9}{'target':>9}")
    for name, values in times.items():
        values.sort()
        p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
        print(
            f"{name:<16}{statistics.median(values):>7.1f}ms{values[0]:>7.1f}ms"
            f"{p90:>7.1f}ms{TARGETS[name]:>7.0f}ms"
        )


if __name__ == "__main__":
    main()

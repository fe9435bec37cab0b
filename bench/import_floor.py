#!/usr/bin/env python3
"""`rtlibvirt render`, `check` and `define --dry-run` against the import floor of their libraries.

    .venv/bin/python bench/import_floor.py [--runs N]

The floor is what no rtlibvirt command that reads a vm.yaml can go below: the
same Python starting and importing the libraries it is built on,

- ``python -c "import click, jinja2, ruamel.yaml, lxml.etree"`` for ``render``;
- the same plus ``import libvirt`` and opening ``test:///default`` for ``check``
  and ``define --dry-run``, which read the host through libvirt (on the test
  driver, which runs in the process: nothing waits for a daemon).

Every command runs as a whole process (the ``rtlibvirt`` console script of this
venv, the same interpreter as the floor), each example in examples/ once per
round, all commands of a round in rotated order so that the drift of a shared
machine falls on every command alike. Prints the medians, rtlibvirt's own part
(median minus floor) and the ratio to the floor; the target (issue 12) is
``render`` within 1.2x. Bytecode is cached as after an install (a warm-up run
writes it; PYTHONDONTWRITEBYTECODE is dropped). Not a test: nothing asserts on
these times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RTLIBVIRT = str(Path(PYTHON).with_name("rtlibvirt"))
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
FLOOR = "import click, jinja2, ruamel.yaml, lxml.etree"
FLOOR_LIBVIRT = FLOOR + "; import libvirt; libvirt.open('test:///default').close()"


# rtlibvirt from another checkout, as its console script would run it
OTHER = "import sys; sys.path.insert(0, sys.argv.pop(1)); from rtlibvirt.cli import main; main()"


def commands(other: Path | None, label: str) -> dict[str, tuple[list[str], str]]:
    """label -> (argv, the floor it is compared with)."""
    found: dict[str, tuple[list[str], str]] = {
        "floor": ([PYTHON, "-c", FLOOR], ""),
        "floor + libvirt": ([PYTHON, "-c", FLOOR_LIBVIRT], ""),
    }
    plc = str(REPO / "examples/plc.yaml")
    runs: list[tuple[str, list[str], str]] = [
        (f"render {spec.name}", ["render", str(spec)], "floor") for spec in EXAMPLES
    ]
    runs.append(("check plc.yaml", ["check", plc, "-c", "test:///default"], "floor + libvirt"))
    runs.append(
        (
            "define --dry-run plc.yaml",
            ["define", plc, "-c", "test:///default", "--dry-run"],
            "floor + libvirt",
        )
    )
    for name, args, floor in runs:
        found[name] = ([RTLIBVIRT, *args], floor)
        if other is not None:
            found[f"{name} ({label})"] = ([PYTHON, "-c", OTHER, str(other), *args], floor)
    return found


def run(argv: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one process, in ms."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = (time.perf_counter() - start) * 1000
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    stderr = proc.stderr.read() if proc.stderr else b""
    if proc.stderr:
        proc.stderr.close()
    if code not in (0, 3):  # check exits 3 when it has findings
        raise SystemExit(f"{' '.join(argv)} failed ({code}): {stderr.decode()}")
    return elapsed, (usage.ru_utime + usage.ru_stime) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--compare",
        metavar="DIR",
        type=Path,
        help="also time rtlibvirt from this checkout (e.g. `git worktree add DIR main`)",
    )
    parser.add_argument("--compare-label", default="other", help="its name in the table")
    options = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    table = commands(options.compare, options.compare_label)
    labels = list(table)
    for label in labels:  # warm up: page cache, bytecode, the jinja2 template cache
        run(table[label][0])
        run(table[label][0])
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    wall: dict[str, list[float]] = {label: [] for label in labels}
    cpu: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(options.runs):
        shift = r % len(labels)
        for label in labels[shift:] + labels[:shift]:
            elapsed, used = run(table[label][0])
            wall[label].append(elapsed)
            cpu[label].append(used)
    after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(
        f"{options.runs} runs each, whole processes, interleaved; Python {sys.version.split()[0]}; "
        f"load average {load} before, {after} after"
    )
    print(
        f"{'command':<28}{'wall':>9}{'own part':>10}{'ratio':>7}"
        f"{'CPU':>10}{'own part':>10}{'ratio':>7}"
    )
    for label in labels:
        line = f"{label:<35}"
        for times in (wall, cpu):
            median = statistics.median(times[label])
            line += f"{median:>7.1f}ms"
            floor = table[label][1]
            if floor:
                base = statistics.median(times[floor])
                line += f"{median - base:>+8.1f}ms{median / base:>7.2f}"
            else:
                line += " " * 17
        print(line)
    print(
        "medians; own part = median - median of its floor; ratio = median / median of its floor. "
        "CPU = user + system time of the process: what it costs, without the time it waited "
        "for a CPU that other work held"
    )


if __name__ == "__main__":
    main()

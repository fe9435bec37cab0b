#!/usr/bin/env python3
"""Time and memory of `rtlibvirt render` on the hostile inputs of issue 9.

Each input is made here, run R times as its own process, and reported as the
median wall time and the largest max RSS (wait4 of that child); a valid
vm.yaml is the baseline. Issue 9 measured, before the bounds: the alias bomb
30 s and 1.6 GB, a cpulist 0-99999999 1.3 GB and then MemoryError, /dev/zero
until memory ran out.

Usage: .venv/bin/python bench/hostile_inputs.py [--runs R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostile import cases  # noqa: E402
from tests.hostile.cases import VM, VM_SPOTS, spoiled  # noqa: E402


def inputs(folder: Path) -> dict[str, str]:
    made: dict[str, str] = {}

    def put(name: str, text: str) -> None:
        path = folder / f"{name}.yaml"
        path.write_text(text)
        made[name] = str(path)

    put("valid vm.yaml", cases.base(VM))
    bomb = "\n".join(cases.alias_bomb(indent="    "))
    put(
        "alias bomb (0.5 KiB)",
        cases.base(VM).replace(
            "  features: {arch-capabilities: require}\n", "  features:\n" + bomb + "\n"
        ),
    )
    put("cpulist 0-99999999", spoiled(VM, VM_SPOTS["emulator"], "  emulator: 0-99999999"))
    put("100,000 nested [", spoiled(VM, VM_SPOTS["name"], "name: " + "[" * 100_000 + "]" * 100_000))
    put("5,000-digit integer", spoiled(VM, VM_SPOTS["vcpus"], "vcpus: " + "9" * 5000))
    put("1 MiB - 1 of blank lines", cases.base(VM) + "\n" * ((1 << 20) - 1 - len(cases.base(VM))))
    put("a 900 KiB string", spoiled(VM, VM_SPOTS["name"], "name: " + "x" * 900_000))
    put(
        "30,000-item list",
        spoiled(VM, VM_SPOTS["pinning"], "  pinning: [" + ", ".join(["2"] * 30_000) + "]"),
    )
    big = folder / "11 MiB file.yaml"
    big.write_text("name: " + "x" * (11 << 20) + "\n")
    made["an 11 MiB file"] = str(big)
    made["/dev/zero"] = "/dev/zero"
    return made


def run_once(path: str) -> tuple[float, float, int]:
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execv(sys.executable, [sys.executable, "-m", "rtlibvirt", "render", path])
    _, status, usage = os.wait4(pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'input':<28} {'exit':>4} {'median s':>9} {'max RSS MiB':>12}")
        for name, path in inputs(Path(folder)).items():
            results = [run_once(path) for _ in range(args.runs)]
            codes = {code for _, _, code in results}
            median = statistics.median(t for t, _, _ in results)
            rss = max(r for _, r, _ in results)
            print(f"{name:<28} {','.join(map(str, sorted(codes))):>4} {median:>9.3f} {rss:>12.1f}")


if __name__ == "__main__":
    main()

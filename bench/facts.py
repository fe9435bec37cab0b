#!/usr/bin/env python3
"""Time the one reader of domain XML, domain.facts, beside the hook's own reader.

For each domain (rtlibvirt's plc example as rendered, and virt-manager's desktop
as libvirt stores it): parsing alone (xml.etree), facts() (parse + read), and
hook.domain.parse() while the hook still has a reader of its own. Then the
import cost of domain.facts in a fresh interpreter (python -X importtime, the
module's cumulative time), which the hook pays once per libvirt event of an
rtlibvirt domain. Each figure is the best of R runs of N calls.

Usage: .venv/bin/python bench/facts.py [--calls N] [--runs R]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import timeit
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from rtlibvirt.domain.facts import facts

ROOT = Path(__file__).resolve().parent.parent
DOMAINS = {
    "plc (rtlibvirt)": ROOT / "tests" / "expected" / "plc.xml",
    "desktop (virt-manager)": ROOT
    / "tests"
    / "data"
    / "domains"
    / "virt-manager-desktop.libvirt.xml",
}


def best_us(function: Callable[[str], object], xml: str, calls: int, runs: int) -> float:
    timings = timeit.repeat(lambda: function(xml), number=calls, repeat=runs)
    return min(timings) / calls * 1e6


def import_ms(module: str, runs: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, env=env)  # .pyc
    best = float("inf")
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True, text=True, check=True, env=env,
        ).stderr  # fmt: skip
        line = [x for x in err.splitlines() if x.rstrip().endswith(f"| {module}")][-1]
        best = min(best, int(line.split("|")[1]) / 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    try:
        from rtlibvirt.hook.domain import parse as hook_parse
    except ImportError:  # the hook reads through domain.facts
        hook_parse = None
    print(f"{'domain':24} {'parse':>9} {'facts()':>9} {'hook parse':>11}   (us per call)")
    for name, path in DOMAINS.items():
        xml = path.read_text()
        parse = best_us(ET.fromstring, xml, args.calls, args.runs)
        read = best_us(facts, xml, args.calls, args.runs)
        hook = best_us(hook_parse, xml, args.calls, args.runs) if hook_parse else None
        hook_text = f"{hook:11.1f}" if hook is not None else f"{'-':>11}"
        print(f"{name:24} {parse:9.1f} {read:9.1f} {hook_text}")
    print(
        f"import rtlibvirt.domain.facts (cumulative, fresh interpreter): "
        f"{import_ms('rtlibvirt.domain.facts', args.runs):.2f} ms"
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Time `cpu.pinning: auto`: 100 VMs placed one after another on a 512-CPU host.

The host is libvirt's test driver loaded with tests/data/hosts/empty-8x64.xml
(8 NUMA nodes x 32 cores x 2 threads, no domains). Each VM has 2 or 3 vCPUs,
all but vCPU 0 realtime, and every fourth one asks for a NUMA node. Two
figures:

- **placement**: the host is read once; each VM is placed seeing every VM
  placed before it as a defined domain (its rendered XML read back into the
  facts the placement uses), so the 100th placement avoids 99 domains;
- **define**: the whole `define` path on the test driver for each VM: read the
  host and every defined domain through libvirt, place, check, render and
  define. This grows with the number of domains already defined.

Usage: .venv/bin/python bench/placement.py [--vms N] [--runs R]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import libvirt

from rtlibvirt.config.vm import VmSpec, validate_data
from rtlibvirt.domain.facts import facts
from rtlibvirt.domain.render import render
from rtlibvirt.fit import fitting as fit
from rtlibvirt.fit.host import gather
from rtlibvirt.virt import define

HOST = Path(__file__).resolve().parent.parent / "tests" / "data" / "hosts" / "empty-8x64.xml"
URI = f"test://{HOST}"


def specs(count: int) -> list[VmSpec]:
    result = []
    for i in range(count):
        vcpus = 2 + i % 2
        data: dict[str, Any] = {
            "name": f"vm{i:03d}",
            "memory": "2GiB",
            "vcpus": vcpus,
            "cpu": {
                "pinning": "auto",
                "emulator": "auto",
                "realtime": {"vcpus": f"1-{vcpus - 1}"},
            },
        }
        if i % 4 == 3:
            data["numa"] = {"node": (i // 4) % 8}
        result.append(validate_data(data))
    return result


def place_only(vms: list[VmSpec]) -> float:
    conn = libvirt.open(URI)
    try:
        start = time.perf_counter()
        host = gather(conn, URI, use_fs=False)
        for spec in vms:
            placed, _ = fit.place_spec(host, spec)
            host = dataclasses.replace(host, domains=(*host.domains, facts(render(placed))))
        return time.perf_counter() - start
    finally:
        conn.close()


def define_all(vms: list[VmSpec]) -> float:
    conn = libvirt.open(URI)
    try:
        start = time.perf_counter()
        for spec in vms:
            fitted = fit.fit_spec(conn, URI, spec)
            assert fitted.spec is not None and not fitted.errors, fitted.errors
            define.apply(conn, define.plan(conn, fitted.spec))
        return time.perf_counter() - start
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    vms = specs(args.vms)
    placed = [place_only(vms) for _ in range(args.runs)]
    defined = [define_all(vms) for _ in range(args.runs)]
    print(f"host: {HOST.name} (8 NUMA nodes, 256 cores, 512 CPUs); {args.vms} VMs")
    print(
        f"placement, one after another: median {statistics.median(placed):.3f} s "
        f"(min {min(placed):.3f}, max {max(placed):.3f}) over {args.runs} runs"
    )
    print(
        f"define path on the test driver: median {statistics.median(defined):.3f} s "
        f"(min {min(defined):.3f}, max {max(defined):.3f}) over {args.runs} runs"
    )


if __name__ == "__main__":
    main()

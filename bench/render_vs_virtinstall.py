#!/usr/bin/env python3
"""Time `rtlibvirt render` against `virt-install --print-xml`, as whole processes.

Both produce the domain XML of examples/plc.yaml: rtlibvirt from the YAML file,
virt-install from the nearest equivalent command line (every real-time option
spelled out). virt-install needs a libvirt connection and looks the disk and
the PCI device up through it, so this uses qemu:///system (`make bench` starts
libvirtd), a qcow2 file that exists, and a PCI device this host has. The same
substitutions go into the spec rtlibvirt renders.

Usage: .venv/bin/python bench/render_vs_virtinstall.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lxml import etree

REPO = Path(__file__).resolve().parent.parent
RTLIBVIRT = Path(sys.executable).parent / "rtlibvirt"


def first_pci_device() -> str:
    devices = sorted(os.listdir("/sys/bus/pci/devices"))
    if not devices:
        sys.exit("bench: this host has no PCI device for the hostdev")
    return devices[-1]


def virt_install_command(disk: Path, pci: str) -> list[str]:
    pins = ",".join(f"vcpupin{v}.vcpu={v},vcpupin{v}.cpuset={2 + v}" for v in range(4))
    return [
        "virt-install", "--connect", "qemu:///system", "--print-xml",
        "--name", "plc", "--memory", "2048", "--vcpus", "4", "--machine", "q35",
        "--cputune", f"{pins},emulatorpin.cpuset=0-1,vcpusched0.vcpus=1-3,"
        "vcpusched0.scheduler=fifo,vcpusched0.priority=1",
        "--memorybacking", "hugepages.page0.size=1048576,hugepages.page0.unit=KiB,"
        "nosharepages=on,locked=on,allocation.mode=immediate",
        "--memtune", "hard_limit=3145728",
        "--cpu", "host-passthrough,check=none,migratable=off,topology.sockets=1,"
        "topology.dies=1,topology.cores=4,topology.threads=1",
        "--features", "acpi=on,apic=on,kvm.hint-dedicated.state=on,pmu.state=off",
        "--clock", "offset=utc,timer0.name=rtc,timer0.tickpolicy=catchup,timer1.name=pit,"
        "timer1.tickpolicy=delay,timer2.name=hpet,timer2.present=no",
        "--pm", "suspend_to_mem.enabled=off,suspend_to_disk.enabled=off",
        "--disk", f"path={disk},format=qcow2,bus=virtio,cache=none,io=native",
        "--controller", "usb,model=none", "--hostdev", pci,
        "--serial", "pty", "--console", "pty,target.type=serial",
        "--memballoon", "none", "--graphics", "none", "--sound", "none", "--video", "none",
        "--network", "none", "--osinfo", "generic", "--import", "--noautoconsole",
        "--boot", "hd",
    ]  # fmt: skip


def time_runs(command: list[str], runs: int) -> list[float]:
    for _ in range(2):  # warm the page cache
        subprocess.run(command, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def check_equivalent(ours: str, theirs: str) -> None:
    """Both outputs carry the real-time parts; otherwise the comparison means nothing."""
    for xml, who in ((ours, "rtlibvirt"), (theirs, "virt-install")):
        root = etree.fromstring(xml.encode())
        assert len(root.findall("cputune/vcpupin")) == 4, who
        assert root.find("cputune/vcpusched").get("scheduler") == "fifo", who
        assert root.find("memoryBacking/locked") is not None, who
        assert root.find("devices/memballoon").get("model") == "none", who
        assert root.find("devices/hostdev") is not None, who
        assert root.find("features/pmu").get("state") == "off", who


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached
    if shutil.which("virt-install") is None:
        sys.exit("bench: virt-install is missing (scripts/install-deps --bench)")

    with tempfile.TemporaryDirectory() as tmp:
        disk = Path(tmp, "plc.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1G"], check=True)
        pci = first_pci_device()
        spec = Path(tmp, "plc.yaml")
        spec.write_text(
            (REPO / "examples" / "plc.yaml")
            .read_text()
            .replace("/var/lib/libvirt/images/plc.qcow2", str(disk))
            .replace("0000:03:00.0", pci)
        )
        ours = [str(RTLIBVIRT), "render", str(spec)]
        theirs = virt_install_command(disk, pci)
        check_equivalent(
            subprocess.run(ours, check=True, capture_output=True, text=True).stdout,
            subprocess.run(theirs, check=True, capture_output=True, text=True).stdout,
        )
        results = {
            "rtlibvirt render": time_runs(ours, args.runs),
            "virt-install --print-xml": time_runs(theirs, args.runs),
        }

    print(f"examples/plc.yaml, {args.runs} runs each, whole processes, wall time")
    print(f"{'command':28} {'median':>9} {'min':>9} {'max':>9}")
    for name, times in results.items():
        print(
            f"{name:28} {statistics.median(times) * 1000:7.1f}ms {min(times) * 1000:7.1f}ms "
            f"{max(times) * 1000:7.1f}ms"
        )
    ratio = statistics.median(results["virt-install --print-xml"]) / statistics.median(
        results["rtlibvirt render"]
    )
    print(f"virt-install / rtlibvirt (median): {ratio:.2f}x")


if __name__ == "__main__":
    main()

"""Helpers for the hook's tests: domain XML of real-time VMs, and hook calls."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rtlibvirt import hook
from rtlibvirt.config.vm import validate_data
from rtlibvirt.domain.render import render
from rtlibvirt.hook.state import StateStore, peek
from rtlibvirt.kernel.fs import HostFS
from tests.fakes.host import add_vm

LOG = "var/log/rtlibvirt/hook.log"


def domain_xml(
    name: str,
    pinning: list[int],
    realtime: list[int] | None,
    emulator: str = "0",
    isolation: dict[str, Any] | None = None,
    share_with: list[str] | None = None,
    realtime_options: dict[str, Any] | None = None,
    **extra: Any,
) -> str:
    """The XML rtlibvirt renders for a small real-time VM (what libvirt hands the hook);
    ``realtime_options``: more keys of ``cpu.realtime`` (priority, kernel_threads)."""
    spec: dict[str, Any] = {
        "name": name,
        "memory": "1GiB",
        "vcpus": len(pinning),
        "cpu": {
            "pinning": pinning,
            "emulator": emulator,
            "realtime": False
            if realtime is None
            else {"vcpus": realtime, **(realtime_options or {})},
        },
        "memory_backing": {"hugepages": "none", "locked": False},
        **extra,
    }
    if isolation is not None:
        spec["isolation"] = isolation
    if share_with is not None:
        spec["cpu"]["share_with"] = share_with
    return render(validate_data(spec))


PLAIN_XML = """<domain type='kvm'>
  <name>plain</name>
  <memory unit='KiB'>1048576</memory>
  <vcpu placement='static'>2</vcpu>
  <cputune>
    <vcpupin vcpu='1' cpuset='1'/>
    <vcpusched vcpus='1' scheduler='fifo' priority='1'/>
  </cputune>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
</domain>
"""


class Hook:
    """Calls the hook in-process on a fake host, as libvirt would."""

    def __init__(self, fs: HostFS) -> None:
        self.fs = fs
        self.root = fs.root
        self.pids: dict[str, int] = {}

    def __call__(self, name: str, op: str, sub: str, xml: str) -> int:
        return hook.main([name, op, sub, "-"], io.StringIO(xml), fs=self.fs)

    def qemu(self, name: str, vcpus: dict[int, tuple[frozenset[int], str, int]]) -> int:
        """QEMU of ``name`` appears: vCPU -> (CPUs, policy, priority); returns its pid."""
        pid = 1000 * (len(self.pids) + 1)
        self.pids[name] = pid
        threads = {v: (pid + 1 + v, cpus, pol, prio) for v, (cpus, pol, prio) in vcpus.items()}
        add_vm(self.root, name, pid, threads)
        return pid

    def start(self, name: str, xml: str, cpus: dict[int, int], rt: list[int]) -> int:
        """prepare + QEMU appears + started; ``cpus``: vCPU -> host CPU."""
        assert self(name, "prepare", "begin", xml) == 0, self.log()
        self.qemu(
            name,
            {
                v: (frozenset([c]), "fifo" if v in rt else "other", 1 if v in rt else 0)
                for v, c in cpus.items()
            },
        )
        return self(name, "started", "begin", xml)

    def stop(self, name: str, xml: str) -> tuple[int, int]:
        """QEMU exits, then stopped end + release end (as libvirt calls them)."""
        from tests.fakes.host import remove_vm

        if name in self.pids:
            remove_vm(self.root, name, self.pids.pop(name))
        return self(name, "stopped", "end", xml), self(name, "release", "end", xml)

    def state(self) -> dict[str, Any] | None:
        """The hook's state as on disk (snapshot + journal), in its JSON form; None if none."""
        if not StateStore(self.fs).exists():
            return None
        return peek(self.fs).to_json()

    def log(self) -> str:
        path = Path(self.root) / LOG
        return path.read_text() if path.exists() else ""

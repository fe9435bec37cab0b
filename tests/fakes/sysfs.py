"""A fake host tree in the kernel's own formats, for what this machine lacks.

Files hold what the kernel prints (a value and a newline; an empty line for
an empty cpulist), and links point where the kernel's point:

- ``/sys/devices/system/cpu/{online,possible,present,isolated,nohz_full}``
- ``/sys/devices/system/node/nodeN/hugepages/hugepages-<size>kB/{nr,free,surplus}_hugepages``
- ``/sys/bus/pci/devices/ADDR -> ../../../devices/pci0000:00/ADDR`` with ``class``,
  ``numa_node``, ``driver -> ../../../bus/pci/drivers/NAME`` and
  ``iommu_group -> ../../../kernel/iommu_groups/N``; the group lists its
  members in ``/sys/kernel/iommu_groups/N/devices/``
- ``/proc/mounts``, ``/sys/fs/cgroup/cpu/...cpu.rt_runtime_us``,
  ``/proc/sys/kernel/sched_rt_runtime_us``, ``/etc/libvirt/qemu.conf``
"""

from __future__ import annotations

import os
from pathlib import Path

from rtlibvirt.kernel.fs import HostFS

CGROUP_V1_MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""


class FakeSys:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.fs = HostFS(root)

    def write(self, host_path: str, text: str) -> None:
        path = self.fs.path(host_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text.endswith("\n") else text + "\n")

    def link(self, host_path: str, target: str) -> None:
        path = self.fs.path(host_path, follow=False)  # the link itself
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        os.symlink(target, path)

    # ---- CPUs ------------------------------------------------------------------

    def cpus(self, online: str, *, isolated: str = "", nohz_full: str = "") -> FakeSys:
        base = "/sys/devices/system/cpu"
        for name in ("online", "possible", "present"):
            self.write(f"{base}/{name}", online)
        self.write(f"{base}/isolated", isolated)
        if nohz_full:
            self.write(f"{base}/nohz_full", nohz_full)
        elif self.fs.exists(f"{base}/nohz_full"):
            self.fs.path(f"{base}/nohz_full").unlink()
        return self

    # ---- hugepages ---------------------------------------------------------------

    def hugepages(self, node: int, size_kib: int, free: int, total: int | None = None) -> FakeSys:
        base = f"/sys/devices/system/node/node{node}/hugepages/hugepages-{size_kib}kB"
        self.write(f"{base}/nr_hugepages", str(total if total is not None else free))
        self.write(f"{base}/free_hugepages", str(free))
        self.write(f"{base}/surplus_hugepages", "0")
        return self

    def meminfo(self, hugepagesize_kib: int = 2048) -> FakeSys:
        self.write(
            "/proc/meminfo",
            f"MemTotal:       32768000 kB\nHugepagesize:       {hugepagesize_kib} kB\n",
        )
        return self

    # ---- PCI -----------------------------------------------------------------------

    def pci(
        self,
        address: str,
        *,
        driver: str | None = None,
        group: int | None = None,
        numa_node: int = -1,
        pci_class: str = "0x020000",
    ) -> FakeSys:
        device = f"/sys/devices/pci0000:00/{address}"
        self.write(f"{device}/class", pci_class)
        self.write(f"{device}/numa_node", str(numa_node))
        self.write(f"{device}/vendor", "0x8086")
        self.link(f"/sys/bus/pci/devices/{address}", f"../../../devices/pci0000:00/{address}")
        if driver is not None:
            self.fs.path(f"/sys/bus/pci/drivers/{driver}").mkdir(parents=True, exist_ok=True)
            self.link(f"{device}/driver", f"../../../bus/pci/drivers/{driver}")
        if group is not None:
            self.link(f"{device}/iommu_group", f"../../../kernel/iommu_groups/{group}")
            self.link(
                f"/sys/kernel/iommu_groups/{group}/devices/{address}",
                f"../../../../devices/pci0000:00/{address}",
            )
        return self

    # ---- RT group scheduling ----------------------------------------------------------

    def cgroup_v1(
        self,
        *,
        rt_group_sched: bool = True,
        machine_runtime_us: int | None = 0,
        sched_rt_runtime_us: int = 950000,
        qemu_conf: str | None = None,
    ) -> FakeSys:
        self.write("/proc/mounts", CGROUP_V1_MOUNTS)
        cpu = "/sys/fs/cgroup/cpu"
        self.write(f"{cpu}/cpu.shares", "1024")
        if rt_group_sched:
            self.write(f"{cpu}/cpu.rt_runtime_us", "950000")
            self.write(f"{cpu}/cpu.rt_period_us", "1000000")
        if machine_runtime_us is not None:
            self.write(f"{cpu}/machine/cpu.shares", "1024")
            if rt_group_sched:
                self.write(f"{cpu}/machine/cpu.rt_runtime_us", str(machine_runtime_us))
        self.write("/proc/sys/kernel/sched_rt_runtime_us", str(sched_rt_runtime_us))
        if qemu_conf is not None:
            self.write("/etc/libvirt/qemu.conf", qemu_conf)
        return self

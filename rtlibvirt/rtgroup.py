"""Why SCHED_FIFO vCPUs fail with "Cannot set scheduler parameters: Operation not permitted".

On a kernel with RT group scheduling (CONFIG_RT_GROUP_SCHED: the cgroup v1
``cpu`` controller has ``cpu.rt_runtime_us``), a task may only become
SCHED_FIFO or SCHED_RR if its cpu cgroup has real-time runtime. libvirt puts
every vCPU thread into a cgroup of its own under ``machine``, and new cgroups
get ``cpu.rt_runtime_us`` 0, so libvirt's ``sched_setscheduler`` fails with
EPERM and the domain does not start. libvirt leaves the cpu controller alone
when ``cgroup_controllers`` in ``/etc/libvirt/qemu.conf`` does not list
``cpu``; the vCPU threads then stay in the root cpu cgroup, which has runtime.

Standard library only.
"""

from __future__ import annotations

import re

from .sysfs import HostFS

QEMU_CONF = "/etc/libvirt/qemu.conf"
LIBVIRT_ERROR = "Cannot set scheduler parameters: Operation not permitted"
HINT = (
    'remove "cpu" from cgroup_controllers in /etc/libvirt/qemu.conf, e.g. '
    'cgroup_controllers = [ "devices", "memory", "blkio", "cpuset", "cpuacct" ], '
    "and restart libvirtd"
)
_CONTROLLERS = re.compile(r"^[ \t]*cgroup_controllers[ \t]*=[ \t]*\[([^\]]*)\]", re.MULTILINE)


def cpu_controller_root(fs: HostFS) -> str | None:
    """Where the cgroup v1 ``cpu`` controller is mounted, if it is."""
    for line in fs.read_or("/proc/mounts", "").splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "cgroup" and "cpu" in fields[3].split(","):
            return fields[1]
    return None


def libvirt_controllers(fs: HostFS) -> list[str] | None:
    """The ``cgroup_controllers`` libvirt's QEMU driver uses; None = its default (all)."""
    text = fs.read_or(QEMU_CONF, "")
    uncommented = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    m = _CONTROLLERS.search(uncommented)
    if m is None:
        return None
    return re.findall(r'"([^"]*)"', m.group(1))


def diagnose(fs: HostFS) -> str | None:
    """A one-line explanation when libvirt cannot give vCPUs a real-time policy here."""
    root = cpu_controller_root(fs)
    if root is None or not fs.exists(f"{root}/cpu.rt_runtime_us"):
        return None  # no RT group scheduling
    if fs.read_or("/proc/sys/kernel/sched_rt_runtime_us", "").strip() == "-1":
        return None  # RT bandwidth control is off: no runtime check at all
    controllers = libvirt_controllers(fs)
    if controllers is not None and "cpu" not in controllers:
        return None
    machine = next(
        (f"{root}/{part}" for part in ("machine", "machine.slice") if fs.exists(f"{root}/{part}")),
        f"{root}/machine",
    )
    runtime = fs.read_or(f"{machine}/cpu.rt_runtime_us", "0").strip()
    return (
        f"real-time vCPUs cannot start here: the kernel has RT group scheduling and libvirt "
        f"puts vCPU threads into cpu cgroups under {machine} (cpu.rt_runtime_us {runtime}; a new "
        f"vCPU cgroup gets 0), so libvirt fails with '{LIBVIRT_ERROR}'"
    )

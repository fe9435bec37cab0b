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

from rtlibvirt.kernel import mounts
from rtlibvirt.kernel.fs import HostFS

QEMU_CONF = "/etc/libvirt/qemu.conf"
LIBVIRT_ERROR = "Cannot set scheduler parameters: Operation not permitted"
HINT = (
    "run `sysctl -w kernel.sched_rt_runtime_us=-1` (and keep it in /etc/sysctl.d/), or remove "
    '"cpu" from cgroup_controllers in /etc/libvirt/qemu.conf, e.g. cgroup_controllers = '
    '[ "devices", "memory", "blkio", "cpuset", "cpuacct" ], and restart libvirtd'
)
# libvirt's default when qemu.conf does not set cgroup_controllers: every controller
DEFAULT_CONTROLLERS = ("cpu", "devices", "memory", "blkio", "cpuset", "cpuacct")
_CONTROLLERS = re.compile(r"^[ \t]*cgroup_controllers[ \t]*=[ \t]*\[([^\]]*)\]", re.MULTILINE)


class RtGroupSched:
    """RT group scheduling, as it concerns libvirt's SCHED_FIFO vCPUs."""

    __slots__ = (
        "cpu_mount",
        "libvirt_uses_cpu",
        "machine_cgroup",
        "machine_runtime_us",
        "rt_runtime_sysctl",
    )

    def __init__(
        self,
        cpu_mount: str,
        machine_cgroup: str,
        machine_runtime_us: int | None,
        rt_runtime_sysctl: int | None,
        libvirt_uses_cpu: bool | None,  # None: qemu.conf cannot be read from here
    ) -> None:
        self.cpu_mount = cpu_mount  # where the cgroup v1 cpu controller is mounted
        self.machine_cgroup = machine_cgroup  # libvirt's machine cgroup
        self.machine_runtime_us = machine_runtime_us  # its cpu.rt_runtime_us, if it exists
        self.rt_runtime_sysctl = rt_runtime_sysctl  # kernel.sched_rt_runtime_us
        self.libvirt_uses_cpu = libvirt_uses_cpu

    @property
    def blocks_fifo(self) -> bool:
        """sched_setscheduler(SCHED_FIFO) fails with EPERM for libvirt's vCPU threads.

        The kernel refuses real-time policies to a task whose cpu cgroup has no
        RT runtime, unless RT bandwidth control is off (sysctl -1). libvirt
        moves each vCPU thread into a cgroup of its own, which starts at 0.
        """
        return self.libvirt_uses_cpu is True and self.rt_runtime_sysctl != -1


def cpu_controller_root(fs: HostFS) -> str | None:
    """Where the cgroup v1 ``cpu`` controller is mounted, if it is."""
    return mounts.cgroup_v1(fs, "cpu")


def libvirt_controllers(fs: HostFS) -> tuple[str, ...] | None:
    """The ``cgroup_controllers`` libvirt's QEMU driver uses (qemu.conf, else all);
    None when qemu.conf exists but cannot be read (mode 0600, not root): unknown, never
    read as empty."""
    try:
        text = fs.read(QEMU_CONF)
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError):
        return None
    uncommented = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    m = _CONTROLLERS.search(uncommented)
    if m is None:
        return DEFAULT_CONTROLLERS
    return tuple(re.findall(r'"([^"]*)"', m.group(1)))


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else None


def probe(fs: HostFS) -> RtGroupSched | None:
    """The host's RT group scheduling state; None when the kernel has none."""
    root = cpu_controller_root(fs)
    if root is None or not fs.exists(f"{root}/cpu.rt_runtime_us"):
        return None
    machine = next(
        (f"{root}/{part}" for part in ("machine", "machine.slice") if fs.exists(f"{root}/{part}")),
        f"{root}/machine",
    )
    controllers = libvirt_controllers(fs)
    return RtGroupSched(
        cpu_mount=root,
        machine_cgroup=machine,
        machine_runtime_us=_int(fs.read_or(f"{machine}/cpu.rt_runtime_us", "")),
        rt_runtime_sysctl=_int(fs.read_or("/proc/sys/kernel/sched_rt_runtime_us", "")),
        libvirt_uses_cpu=None if controllers is None else "cpu" in controllers,
    )


def diagnose(fs: HostFS) -> str | None:
    """A one-line explanation when libvirt cannot give vCPUs a real-time policy here."""
    state = probe(fs)
    if state is None or not state.blocks_fifo:
        return None
    runtime = state.machine_runtime_us if state.machine_runtime_us is not None else 0
    return (
        f"real-time vCPUs cannot start here: the kernel has RT group scheduling and libvirt "
        f"puts vCPU threads into cpu cgroups under {state.machine_cgroup} (cpu.rt_runtime_us "
        f"{runtime}; a new vCPU cgroup gets 0), so libvirt fails with '{LIBVIRT_ERROR}'"
    )

"""sysctl: ``/etc/sysctl.d/50-rtlibvirt.conf`` for every boot, and the same values now."""

from __future__ import annotations

from rtlibvirt.config.host import Resolved
from rtlibvirt.hostprep.changes import FileChange, Plan, RuntimeChange, header
from rtlibvirt.hostprep.effects import FileState

PATH = "/etc/sysctl.d/50-rtlibvirt.conf"

# (key, value, why, may fail): a "-" prefix tells systemd-sysctl to go on when
# the key cannot be set (nmi_watchdog is read-only without a hard-lockup detector).
VALUES: tuple[tuple[str, str, str, bool], ...] = (
    (
        "kernel.sched_rt_runtime_us",
        "-1",
        "no RT throttling: a FIFO vCPU may use its whole CPU",
        False,
    ),
    ("kernel.timer_migration", "0", "timers stay on the CPU that armed them", False),
    ("kernel.nmi_watchdog", "0", "no NMI watchdog interrupts", True),
    ("vm.stat_interval", "10", "VM statistics updated every 10 s, not every second", False),
)


def values(host: Resolved) -> list[tuple[str, str, str, bool]]:
    """:data:`VALUES` and the ones host.yaml's keys ask for (each optional: a kernel
    without NUMA balancing or the hung-task detector has no such key)."""
    out = list(VALUES)
    if not host.spec.numa_balancing:
        out.append(
            (
                "kernel.numa_balancing",
                "0",
                "no automatic NUMA balancing: no page-fault scanning of the vCPUs' memory "
                "(VMs are placed by their pinning)",
                True,
            )
        )
    timeout = host.spec.hung_task_timeout_secs
    if timeout is not None:
        out.append(
            (
                "kernel.hung_task_timeout_secs",
                str(timeout),
                f"a task blocked behind a FIFO vCPU is reported hung only after {timeout} s",
                True,
            )
        )
    return out


def proc_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def plan(plan_: Plan) -> None:
    if not plan_.runtime_only:
        lines = [header()]
        for key, value, why, optional in values(plan_.host):
            lines.append(f"# {why}\n{'-' if optional else ''}{key} = {value}\n")
        plan_.files.append(
            FileChange(
                PATH,
                FileState.file("".join(lines).encode("utf-8")),
                "the same sysctl values at every boot",
                "sysctl",
            )
        )
    runtime(plan_)


def runtime(plan_: Plan) -> None:
    fs = plan_.facts.fs
    for key, value, why, _optional in values(plan_.host):
        path = proc_path(key)
        if not fs.exists(path):
            plan_.note(
                "sysctl",
                f"{key}: {path} does not exist under {fs.root}: not set now"
                + ("" if plan_.runtime_only else " (the sysctl.d file sets it at boot)"),
            )
            continue
        writable = bool(fs.path(path).stat().st_mode & 0o222)
        plan_.runtime.append(RuntimeChange(path, value, key, why, writable))

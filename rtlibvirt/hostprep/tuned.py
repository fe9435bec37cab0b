"""TuneD beside host-prep: what an active TuneD profile already sets, what both would
write, and how to combine them.

TuneD's active profile is named in ``/etc/tuned/active_profile`` (several, blank
separated, when profiles are merged); ``/etc/tuned/<profile>-variables.conf``
holds its ``isolated_cores``. The table below is read from TuneD's own profiles
(``profiles/*/tuned.conf`` and ``realtime-virtual-host/script.sh``), each with the
profile it includes. Nothing is changed here: the plan only says it (notes).
"""

from __future__ import annotations

import re

from rtlibvirt.hostprep.changes import Plan
from rtlibvirt.kernel import cpuset
from rtlibvirt.kernel.cpufreq import read_small

ACTIVE = "/etc/tuned/active_profile"
TOPIC = "tuned"
_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
_ISOLATED = re.compile(r"\s*isolated_cores\s*=\s*([0-9,\- ]{1,256})\s*")

# profile -> (the profile it includes, what it sets that host-prep also manages)
PROFILES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "latency-performance": (
        None,
        (
            "the performance cpufreq governor and energy_perf_bias performance (as "
            "cpu_governor and energy_perf_bias)",
            "C-states limited through PM QoS (force_latency) where host-prep uses idle=",
        ),
    ),
    "network-latency": (
        "latency-performance",
        (
            "transparent hugepages never, kernel.numa_balancing 0, hung_task_timeout_secs 600, "
            "nmi_watchdog 0, vm.stat_interval 10, timer_migration 0 (the same values)",
            "skew_tick=1 tsc=reliable on the kernel command line",
        ),
    ),
    "realtime": (
        "network-latency",
        (
            "isolcpus= on the kernel command line (its bootloader plugin)",
            "the workqueue cpumasks, writeback's and every sysfs workqueue's",
            "irqbalance's banned CPUs, kernel.sched_rt_runtime_us -1",
        ),
    ),
    "realtime-virtual-host": (
        "realtime",
        (
            "nohz_full= rcu_nocbs= on the kernel command line",
            "KSM stopped (ksm/run 2), KVM module options (kvmclock_periodic_sync, ple_gap)",
            "the default IRQ affinity off the isolated CPUs, ksoftirqd/rcuc/ktimers at FIFO "
            "priorities (the hook does both per VM)",
        ),
    ),
    "cpu-partitioning": (
        "network-latency",
        (
            "nohz_full= nosoftlockup intel_pstate=disable on the kernel command line",
            "systemd's CPUAffinity, the workqueue cpumasks, irqbalance's banned CPUs",
        ),
    ),
    "throughput-performance": (
        None,
        ("the performance governor, but transparent hugepages always (host-prep: never)",),
    ),
    "virtual-host": ("throughput-performance", ()),
    "balanced": (None, ("a power-saving cpufreq governor (host-prep: performance)",)),
    "powersave": (None, ("the powersave governor and power-saving C-states",)),
}
CMDLINE_WRITERS = frozenset({"realtime", "realtime-virtual-host", "cpu-partitioning"})


def chain(profile: str) -> list[str]:
    """The profile and every profile it includes, most specific first."""
    out: list[str] = []
    current: str | None = profile
    while current is not None and current in PROFILES and current not in out:
        out.append(current)
        current = PROFILES[current][0]
    return out


def active(plan_: Plan) -> list[str]:
    text = read_small(plan_.facts.fs, ACTIVE)
    return [w for w in (text or "").split() if _NAME.fullmatch(w)][:8]


def isolated_cores(plan_: Plan, profile: str) -> frozenset[int] | None:
    text = read_small(plan_.facts.fs, f"/etc/tuned/{profile}-variables.conf")
    for line in (text or "").splitlines():
        m = _ISOLATED.fullmatch(line)
        if m:
            try:
                return frozenset(cpuset.parse_cpulist(m.group(1).replace(" ", "")))
            except cpuset.CpuListError:
                return None
    return None


def plan(plan_: Plan) -> None:
    """Notes on an active TuneD profile (nothing is changed)."""
    profiles = active(plan_)
    if not profiles:
        return
    names = " ".join(profiles)
    known = [p for name in profiles for p in chain(name)]
    if not known:
        plan_.note(
            TOPIC,
            f"TuneD's active profile is {names} ({ACTIVE}), which host-prep does not know: "
            "check with `tuned-adm verify` that it sets no kernel command line, governor, "
            "THP or workqueue mask of its own",
        )
        return
    sets = [item for name in known for item in PROFILES[name][1]]
    plan_.note(
        TOPIC,
        f"TuneD's active profile {names} ({' < '.join(known)}) also sets: " + "; ".join(sets),
    )
    writers = [name for name in known if name in CMDLINE_WRITERS]
    if writers:
        plan_.note(
            TOPIC,
            "two writers: TuneD's bootloader plugin adds its own isolcpus/nohz_full "
            "($tuned_params, /etc/tuned/bootcmdline) beside host-prep's, and both write the "
            "workqueue cpumasks and IRQ affinities (TuneD at its start, host-prep at boot, the "
            "hook per VM): the last writer wins, and `tuned-adm off` puts back TuneD's saved "
            "values over host-prep's",
        )
        for name in writers:
            cores = isolated_cores(plan_, name)
            if cores is not None and cores != plan_.host.isolated:
                plan_.note(
                    TOPIC,
                    f"conflict: TuneD's {name} isolates CPUs {cpuset.format_cpulist(cores)} "
                    f"(/etc/tuned/{name}-variables.conf), host.yaml "
                    f"{cpuset.format_cpulist(plan_.host.isolated)}: the kernel takes the last "
                    "isolcpus= on the line",
                )
    plan_.note(
        TOPIC,
        "to combine them: let one own the boot-time part. Either keep TuneD "
        "(cpu-partitioning or realtime-virtual-host with isolated_cores = isolated_cpus) and "
        "use rtlibvirt only for VMs and its per-VM hook, or switch TuneD to a profile "
        "without a command line (`tuned-adm profile latency-performance`) or off, and let "
        "host-prep own it (see docs/host-prep.md, TuneD)",
    )

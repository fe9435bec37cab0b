"""Host settings that do not survive a reboot: 2M hugepages, resctrl, machine-check polling,
transparent hugepages, KSM, the cpufreq governor, the energy/performance bias and
the unbound workqueues' cpumasks.

``apply`` sets them at once; ``rtlibvirt-host.service`` sets them again at
each boot (``apply --runtime-only``). Where the kernel lacks one (no resctrl
support, no machinecheck devices) the plan says so instead of failing.
"""

from __future__ import annotations

from rtlibvirt.config.host import EPB_VALUES
from rtlibvirt.hostprep.changes import MountChange, Plan, RuntimeChange
from rtlibvirt.kernel import cpufreq, cpuset, machinecheck, realtime, resctrl
from rtlibvirt.kernel.fs import HostFS

HUGEPAGES_2M = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
RESCTRL = resctrl.RESCTRL
MACHINECHECK = machinecheck.MC_DIR


def plan(plan_: Plan) -> None:
    host, facts = plan_.host, plan_.facts
    fs = facts.fs
    count = host.hugepages("2M") if host.hypervisor else None
    if count is not None:
        if fs.exists(HUGEPAGES_2M):
            plan_.runtime.append(
                RuntimeChange(HUGEPAGES_2M, str(count), "2M hugepages", f"{count} 2M pages for VMs")
            )
        else:
            plan_.note("hugepages", f"2M hugepages: {HUGEPAGES_2M} does not exist; skipped")
    if host.spec.cache_allocation and host.hypervisor:
        if "resctrl" not in facts.filesystems:
            plan_.note(
                "resctrl",
                "the running kernel has no resctrl file system (none in /proc/filesystems): "
                "not mounted; rdt=l3cat takes effect on a kernel and CPU that support it",
            )
        elif not resctrl.mounted(fs):
            plan_.mounts.append(
                MountChange(RESCTRL, "resctrl", "the cache allocation interface for the hook")
            )
    if host.spec.machine_check_polling is False:
        if not machinecheck.devices(fs):
            plan_.note("machine check", f"{MACHINECHECK} does not exist: polling not changed")
        for path in machinecheck.interval_paths(fs):
            plan_.runtime.append(
                RuntimeChange(path, "0", machinecheck.describe(path), "no machine-check polling")
            )
    _memory(plan_)
    _frequency(plan_)
    _workqueues(plan_)


def _value(plan_: Plan, path: str, value: str, label: str, why: str, missing: str) -> None:
    """Plan ``path`` = ``value`` where the file exists; a note saying ``missing`` otherwise."""
    if plan_.facts.fs.exists(path):
        plan_.runtime.append(RuntimeChange(path, value, label, why))
    else:
        plan_.note(label, f"{path} does not exist under {plan_.facts.fs.root}: {missing}")


def _memory(plan_: Plan) -> None:
    spec = plan_.host.spec
    if spec.transparent_hugepages != "default":
        _value(
            plan_,
            realtime.THP_ENABLED,
            spec.transparent_hugepages,
            "transparent hugepages",
            "no khugepaged or compaction behind the vCPUs"
            if spec.transparent_hugepages == "never"
            else f"transparent hugepages {spec.transparent_hugepages}",
            "the kernel has no transparent hugepages; not set",
        )
    if not spec.ksm:
        _value(
            plan_,
            realtime.KSM_RUN,
            "2",
            "KSM (ksm/run)",
            "ksmd stopped and merged pages unmerged: no page scanning, no copy-on-write "
            "faults in the vCPUs' memory",
            "the kernel has no KSM; nothing to stop",
        )


def _frequency(plan_: Plan) -> None:
    spec, fs = plan_.host.spec, plan_.facts.fs
    if spec.cpu_governor != "default":
        found = cpufreq.policies(fs)
        if not found:
            plan_.note(
                "cpufreq",
                f"no cpufreq policy under {fs.root} ({cpufreq.CPUFREQ}): the frequency is the "
                "firmware's (a VM, or no cpufreq driver); cpufreq.default_governor= applies "
                "where a driver loads at boot",
            )
        for policy in found:
            plan_.runtime.append(
                RuntimeChange(
                    cpufreq.governor_path(policy),
                    spec.cpu_governor,
                    f"cpufreq {policy} governor",
                    "no frequency changes under the vCPUs"
                    if spec.cpu_governor == "performance"
                    else f"the {spec.cpu_governor} governor",
                )
            )
    if spec.energy_perf_bias != "default":
        paths = cpufreq.epb_paths(fs)
        if not paths:
            plan_.note(
                "energy_perf_bias",
                "no CPU here has energy_perf_bias (an Intel feature, also absent in VMs); not set",
            )
        bias = str(EPB_VALUES[spec.energy_perf_bias])
        for path in paths:
            cpu = path.split("/")[5]
            plan_.runtime.append(
                RuntimeChange(
                    path,
                    bias,
                    f"{cpu} energy_perf_bias",
                    f"{spec.energy_perf_bias} ({bias}): the CPU favours speed over saving energy"
                    if spec.energy_perf_bias == "performance"
                    else f"{spec.energy_perf_bias} ({bias})",
                )
            )


WORKQUEUES = "/sys/devices/virtual/workqueue"
UNBOUND_MASK = f"{WORKQUEUES}/cpumask"


def workqueue_masks(fs: HostFS) -> list[str]:
    """The global unbound cpumask, then every sysfs workqueue's own (``WQ_SYSFS``:
    writeback, blkcg_punt_bio, ...), by name."""
    paths = [UNBOUND_MASK] if fs.exists(UNBOUND_MASK) else []
    for name in fs.listdir(WORKQUEUES)[: cpufreq.MAX_ENTRIES]:
        path = f"{WORKQUEUES}/{name}/cpumask"
        if fs.path(f"{WORKQUEUES}/{name}").is_dir() and fs.exists(path):
            paths.append(path)
    return paths


def _workqueues(plan_: Plan) -> None:
    if plan_.host.spec.unbound_workqueues != "housekeeping":
        return
    fs = plan_.facts.fs
    paths = workqueue_masks(fs)
    if not paths:
        plan_.note(
            "workqueues",
            f"{WORKQUEUES} does not exist under {fs.root}: unbound workqueue masks not set",
        )
    mask = cpuset.format_mask(plan_.host.housekeeping)
    for path in paths:
        name = path.split("/")[-2]
        label = "workqueue cpumask (all unbound)" if path == UNBOUND_MASK else f"workqueue {name}"
        plan_.runtime.append(
            RuntimeChange(
                path,
                mask,
                label,
                "unbound work items run on the housekeeping CPUs "
                f"{cpuset.format_cpulist(plan_.host.housekeeping)}, from boot on",
            )
        )

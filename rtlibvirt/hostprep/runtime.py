"""Host settings that do not survive a reboot: 2M hugepages, resctrl, machine-check polling.

``apply`` sets them at once; ``rtlibvirt-host.service`` sets them again at
each boot (``apply --runtime-only``). Where the kernel lacks one (no resctrl
support, no machinecheck devices) the plan says so instead of failing.
"""

from __future__ import annotations

from rtlibvirt.hostprep.changes import MountChange, Plan, RuntimeChange
from rtlibvirt.kernel import machinecheck, resctrl

HUGEPAGES_2M = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
RESCTRL = resctrl.RESCTRL
MACHINECHECK = machinecheck.MC_DIR


def plan(plan_: Plan) -> None:
    host, facts = plan_.host, plan_.facts
    fs = facts.fs
    count = host.hugepages("2M")
    if count is not None:
        if fs.exists(HUGEPAGES_2M):
            plan_.runtime.append(
                RuntimeChange(HUGEPAGES_2M, str(count), "2M hugepages", f"{count} 2M pages for VMs")
            )
        else:
            plan_.note("hugepages", f"2M hugepages: {HUGEPAGES_2M} does not exist; skipped")
    if host.spec.cache_allocation:
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

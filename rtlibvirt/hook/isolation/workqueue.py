"""Workqueues: the VM's CPUs out of the kernel's unbound-workqueue cpumasks.

The global cpumask of every unbound workqueue, and the cpumask of each
``WQ_SYSFS`` workqueue that has one (``writeback``, ``blkcg_punt_bio``,
``nvme-wq``, ... under ``/sys/bus/workqueue/devices``: see
``kernel.workqueue``), handled exactly like IRQ affinities: each becomes its
original without the CPUs of the running real-time VMs, originals journaled
first, back to the original at the last stop. A workqueue's
``affinity_scope`` and ``affinity_strict`` are left as they are: its cpumask
bounds its workers in every scope. A workqueue created while VMs run is taken
in at the next hook call; one whose mask the kernel refuses (EINVAL, EIO) gets
a warning line naming it and why, and is left as it is until the last VM
stops (the start goes on).
"""

from __future__ import annotations

from rtlibvirt.hook.isolation.base import Host, Step, ValuePlan, mask_plan
from rtlibvirt.hook.state import Claim
from rtlibvirt.kernel import workqueue

NAME = "workqueues"


def plan(host: Host, claims: list[Claim]) -> ValuePlan:
    fs = host.fs
    paths: list[str] = []
    odd: list[str] = []
    if claims:
        found, odd = workqueue.names(fs)
        paths = [workqueue.UNBOUND] if fs.exists(workqueue.UNBOUND) else []
        paths += [workqueue.own_mask(name) for name in found]
    result = mask_plan(
        host,
        NAME,
        paths,
        claims,
        owns=workqueue.owns,
        describe=workqueue.describe,
        explain=workqueue.explain,
        loud=True,
    )
    if odd:
        shown = ", ".join(repr(name[:80]) for name in odd[:3])
        result.notes.append(
            f"{workqueue.BUS}: {len(odd)} entries whose name is no workqueue's ({shown}); "
            "left alone"
        )
    return result


def check(host: Host, claim: Claim, others: list[Claim]) -> list[str]:
    return [f"{path} does not exist" for path in workqueue.FILES if not host.fs.exists(path)]


STEP = Step(NAME, wants=lambda settings: settings.workqueues, check=check, plan=plan)

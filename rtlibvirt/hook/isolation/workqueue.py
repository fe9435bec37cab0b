"""Workqueues: the VM's CPUs out of the kernel's unbound-workqueue cpumasks.

The two cpumask files of ``kernel.workqueue`` (every unbound workqueue, and
the writeback workqueue's own), handled exactly like IRQ affinities.
"""

from __future__ import annotations

from rtlibvirt.hook.isolation.base import Host, Step, ValuePlan, mask_plan
from rtlibvirt.hook.state import Claim
from rtlibvirt.kernel import workqueue

NAME = "workqueues"


def plan(host: Host, claims: list[Claim]) -> ValuePlan:
    paths = workqueue.paths(host.fs) if claims else ()
    return mask_plan(host, NAME, paths, claims, owns=workqueue.owns, describe=workqueue.describe)


def check(host: Host, claim: Claim, others: list[Claim]) -> list[str]:
    return [f"{path} does not exist" for path in workqueue.FILES if not host.fs.exists(path)]


STEP = Step(NAME, wants=lambda settings: settings.workqueues, check=check, plan=plan)

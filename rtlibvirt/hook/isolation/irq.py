"""IRQs: every movable host IRQ, and the default for new ones, off the VM's CPUs.

The wanted affinity of each IRQ (``kernel.irq``) is its original without the
CPUs of every running real-time VM; an IRQ that would be left without a CPU
gets all the housekeeping CPUs. IRQs the kernel does not let user space move
(managed and per-CPU interrupts: EIO, or EPERM since Linux 6.12) are logged
and skipped until the last VM stops.
"""

from __future__ import annotations

from rtlibvirt.hook.isolation.base import (
    Host,
    Step,
    ValuePlan,
    isolated_cpus,
    mask_plan,
)
from rtlibvirt.hook.state import Claim
from rtlibvirt.kernel import irq

NAME = "irqs"


def plan(host: Host, claims: list[Claim]) -> ValuePlan:
    paths = irq.paths(host.fs) if claims else ()
    return mask_plan(
        host, NAME, paths, claims, owns=irq.owns, describe=irq.describe, explain=irq.explain
    )


def check(host: Host, claim: Claim, others: list[Claim]) -> list[str]:
    if not host.fs.exists(irq.IRQ_DIR):
        return [f"{irq.IRQ_DIR} does not exist"]
    online = host.fs.cpus_online()
    if online and not online - isolated_cpus([*others, claim]):
        return ["no online housekeeping CPU would be left for IRQs"]
    return []


STEP = Step(NAME, wants=lambda settings: settings.irqs, check=check, plan=plan)

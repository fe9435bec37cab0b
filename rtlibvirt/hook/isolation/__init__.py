"""The isolation steps the hook applies while real-time VMs run.

One module per step: ``irq``, ``workqueue``, ``tasks``, ``kthreads``, ``machinecheck``,
``resctrl``.
Each has the same functions:

- ``wants(settings)``: does a VM with these isolation settings want the step?
- ``plan(host, claims)``: what the host should look like for the running VMs
  in ``claims`` that want this step (no claims: every value back to its
  original); computed from the saved originals, so the result depends only on
  who is running, never on the order in which VMs came and went;
- ``reconcile(host, claims)``: apply that plan, saving each value's original
  in the state (and the state on disk) *before* the first write to it; with
  no claims this is the step's undo;
- ``verify(host, claims)``: what on the live host differs from the plan.

and ``check(host, claim, others)``: why this step cannot be applied for a VM
about to start (used by ``prepare``: a refusal when the VM is ``strict``,
else a warning).

:func:`reconcile` runs every step; the hook calls it after each change of the
claims. Because it converges on the plan, a call that finds the work of a
killed predecessor half done simply finishes (or undoes) it. What the steps
share is in :mod:`rtlibvirt.hook.isolation.base`.

Standard library only.
"""

from __future__ import annotations

from rtlibvirt.hook.isolation import irq, kthreads, machinecheck, resctrl, tasks, workqueue
from rtlibvirt.hook.isolation.base import Host, Step
from rtlibvirt.hook.state import Claim

__all__ = ["Host", "Step", "check", "reconcile", "steps", "verify"]

# kthreads after tasks: it reuses the tasks step's scan of /proc
STEPS = (irq.STEP, workqueue.STEP, tasks.STEP, kthreads.STEP, machinecheck.STEP, resctrl.STEP)


def steps() -> tuple[Step, ...]:
    return STEPS


def reconcile(host: Host) -> None:
    """Bring the host to what the claims want (VMs running or starting), step by step."""
    running = host.state.isolating()
    for step in steps():
        claims = [c for c in running if step.wants(c.settings)]
        try:
            step.reconcile(host, claims)
        except OSError as exc:
            host.log.error(f"{step.name}: {exc.strerror or exc}")


def verify(host: Host) -> list[str]:
    running = host.state.isolating()
    problems = []
    for step in steps():
        claims = [c for c in running if step.wants(c.settings)]
        problems += [f"{step.name}: {p}" for p in step.verify(host, claims)]
    return problems


def check(host: Host, claim: Claim, others: list[Claim]) -> list[str]:
    """Why some requested step cannot be applied for ``claim`` (empty: all can)."""
    problems = []
    for step in steps():
        if step.wants(claim.settings):
            mine = [c for c in others if step.wants(c.settings)]
            problems += [f"{step.name}: {p}" for p in step.check(host, claim, mine)]
    return problems

"""Workqueues: the VM's CPUs out of the kernel's unbound-workqueue cpumasks.

``/sys/devices/virtual/workqueue/cpumask`` (every unbound workqueue) and
``/sys/bus/workqueue/devices/writeback/cpumask`` (the writeback workqueue, which
has a mask of its own). Hex masks, handled like IRQ affinities.
"""

from __future__ import annotations

from rtlibvirt.hook.isolation import (
    Host,
    ValuePlan,
    cached_mask,
    converge,
    forget_refused,
    isolated_cpus,
    owned,
    same_mask,
    show_mask,
    shrink,
    verify_values,
)
from rtlibvirt.hook.state import Claim, Settings
from rtlibvirt.kernel.cpuset import CpuListError, format_mask

NAME = "workqueues"
UNBOUND = "/sys/devices/virtual/workqueue/cpumask"
WRITEBACK = "/sys/bus/workqueue/devices/writeback/cpumask"
FILES = (UNBOUND, WRITEBACK)
PREFIXES = FILES


def wants(settings: Settings) -> bool:
    return settings.workqueues


def describe(path: str) -> str:
    return "unbound workqueue cpumask" if path == UNBOUND else "writeback workqueue cpumask"


def plan(host: Host, claims: list[Claim]) -> ValuePlan:
    state, fs = host.state, host.fs
    isolated = isolated_cpus(claims)
    wanted: dict[str, str | None] = {}
    notes: list[str] = []
    if isolated:
        online = fs.cpus_online()
        nbits = fs.nr_cpu_ids()
        for path in FILES:
            if path in state.refused or not fs.exists(path):
                continue
            base_text = state.originals.get(path) or fs.read_or(path, "")
            try:
                base = cached_mask(base_text)
            except CpuListError:
                notes.append(f"{describe(path)}: cannot parse {base_text!r}; left alone")
                continue
            want = shrink(base, isolated, online)
            if want:
                wanted[path] = format_mask(want, nbits)
    else:
        forget_refused(state, PREFIXES)
    for path in owned(state, PREFIXES):
        wanted.setdefault(path, None)
    return ValuePlan(NAME, wanted, same=same_mask, describe=describe, show=show_mask, notes=notes)


def reconcile(host: Host, claims: list[Claim]) -> None:
    converge(host, plan(host, claims))


def verify(host: Host, claims: list[Claim]) -> list[str]:
    return verify_values(host, plan(host, claims))


def check(host: Host, claim: Claim, others: list[Claim]) -> list[str]:
    return [f"{path} does not exist" for path in FILES if not host.fs.exists(path)]

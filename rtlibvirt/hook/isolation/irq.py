"""IRQs: every movable host IRQ, and the default for new ones, off the VM's CPUs.

``/proc/irq/N/smp_affinity`` of each IRQ and ``/proc/irq/default_smp_affinity``
(hex masks). The wanted mask is the original without the CPUs of every
running real-time VM; an IRQ that would be left without a CPU gets all the
housekeeping CPUs. Some IRQs refuse a new affinity (the kernel answers EIO for
managed and per-CPU interrupts, and some drivers answer EPERM): those are
logged and skipped.
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

NAME = "irqs"
IRQ_DIR = "/proc/irq"
DEFAULT = f"{IRQ_DIR}/default_smp_affinity"
PREFIXES = (f"{IRQ_DIR}/",)


def wants(settings: Settings) -> bool:
    return settings.irqs


def paths(host: Host) -> list[str]:
    irqs = sorted(int(n) for n in host.fs.listdir(IRQ_DIR) if n.isdigit())
    found = [f"{IRQ_DIR}/{n}/smp_affinity" for n in irqs]
    if host.fs.exists(DEFAULT):
        found.insert(0, DEFAULT)
    return found


def describe(path: str) -> str:
    if path == DEFAULT:
        return "default IRQ affinity"
    return f"IRQ {path.split('/')[3]} affinity"


def plan(host: Host, claims: list[Claim]) -> ValuePlan:
    state, fs = host.state, host.fs
    isolated = isolated_cpus(claims)
    wanted: dict[str, str | None] = {}
    notes: list[str] = []
    if isolated:
        online = fs.cpus_online()
        nbits = fs.nr_cpu_ids()
        for path in paths(host):
            if path in state.refused:
                continue
            base_text = state.originals.get(path) or fs.read_or(path, "")
            try:
                base = cached_mask(base_text)
            except CpuListError:
                notes.append(f"{describe(path)}: cannot parse {base_text!r}; left alone")
                continue
            want = shrink(base, isolated, online)
            if not want:
                notes.append(f"{describe(path)}: no housekeeping CPU is online; left alone")
                continue
            wanted[path] = format_mask(want, nbits)
    else:
        forget_refused(state, PREFIXES)
    for path in owned(state, PREFIXES):
        wanted.setdefault(path, None)  # no longer wanted (or the IRQ is gone): restore
    return ValuePlan(NAME, wanted, same=same_mask, describe=describe, show=show_mask, notes=notes)


def reconcile(host: Host, claims: list[Claim]) -> None:
    converge(host, plan(host, claims))


def verify(host: Host, claims: list[Claim]) -> list[str]:
    return verify_values(host, plan(host, claims))


def check(host: Host, claim: Claim, others: list[Claim]) -> list[str]:
    if not host.fs.exists(IRQ_DIR):
        return [f"{IRQ_DIR} does not exist"]
    online = host.fs.cpus_online()
    if online and not online - isolated_cpus([*others, claim]):
        return ["no online housekeeping CPU would be left for IRQs"]
    return []

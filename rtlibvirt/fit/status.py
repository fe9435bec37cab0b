"""``rtlibvirt status``: the host's CPUs and who holds them, as text or JSON.

NUMA nodes, cores and their SMT siblings, which CPUs are housekeeping and
which isolated, which domain's vCPU (and with which scheduler) or emulator is
pinned to each CPU, and, where the rtlibvirt hook is in use, what it
currently isolates (:func:`hook_isolation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtlibvirt.domain.facts import DomainFacts
from rtlibvirt.fit.host import HostModel
from rtlibvirt.kernel.cpuset import format_cpulist
from rtlibvirt.kernel.fs import HostFS

PAGE_SIZES_KIB = (2048, 1048576)


def hook_isolation(fs: HostFS | None) -> dict[str, frozenset[int]] | None:
    """Domain name -> the host CPUs the rtlibvirt hook isolates for it now.

    Read from the hook's state file (``state.isolated_by_vm``). None when the
    host's /run cannot be read from here (a remote URI or the test driver) or
    the state file is unreadable; ``status`` then says so. Never raises.
    """
    if fs is None:
        return None
    from rtlibvirt.hook.state import isolated_by_vm

    return isolated_by_vm(fs)


def hook_unmoved(fs: HostFS | None) -> dict[str, list[str]]:
    """Domain name -> the host threads the hook could not move off its CPUs, and why.

    Empty when there are none or the state cannot be read. Never raises.
    """
    if fs is None:
        return {}
    from rtlibvirt.hook.state import unmoved_by_vm

    return unmoved_by_vm(fs)


def kernel_facts(fs: HostFS | None) -> dict[str, Any] | None:
    """The running kernel: release, PREEMPT_RT or not, command line; None when remote."""
    if fs is None:
        return None
    release = fs.read_or("/proc/sys/kernel/osrelease", "").strip() or None
    realtime = fs.read_or("/sys/kernel/realtime", "").strip()
    return {
        "release": release,
        "preempt_rt": realtime == "1",
        "cmdline": fs.read_or("/proc/cmdline", "").strip()[:4096] or None,
    }


@dataclass(frozen=True)
class Holder:
    domain: str
    what: str  # "vCPU 1", "emulator", "I/O thread 1"
    vcpu: int | None
    policy: str | None  # "fifo", "rr", or None
    priority: int | None
    running: bool

    def label(self) -> str:
        sched = f" {self.policy} {self.priority}" if self.policy else ""
        return f"{self.domain} {self.what}{sched}"

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "what": self.what,
            "vcpu": self.vcpu,
            "policy": self.policy,
            "priority": self.priority,
            "running": self.running,
        }


def holders(domains: tuple[DomainFacts, ...]) -> dict[int, list[Holder]]:
    """host CPU -> what is pinned there, in domain-name order."""
    result: dict[int, list[Holder]] = {}
    for dom in sorted(domains, key=lambda d: d.name):
        for vcpu in range(dom.vcpus):
            cpus = dom.vcpupins.get(vcpu)
            if cpus is None:
                continue
            policy, priority = dom.sched.get(vcpu, (None, None))
            if policy not in ("fifo", "rr"):
                policy, priority = None, None
            for cpu in cpus:
                result.setdefault(cpu, []).append(
                    Holder(dom.name, f"vCPU {vcpu}", vcpu, policy, priority, dom.active)
                )
        for cpu in dom.emulatorpin or ():
            result.setdefault(cpu, []).append(
                Holder(dom.name, "emulator", None, None, None, dom.active)
            )
        for iothread, cpus in sorted(dom.iothreadpins.items()):
            for cpu in cpus:
                result.setdefault(cpu, []).append(
                    Holder(dom.name, f"I/O thread {iothread}", None, None, None, dom.active)
                )
    return result


def _role(host: HostModel, cpu: int) -> str:
    if cpu not in host.topology.online:
        return "offline"
    if host.isolated is None:
        return "?"
    if cpu in host.isolated:
        return "isolated" + (" nohz" if cpu in (host.nohz_full or ()) else "")
    return "housekeeping"


def _domain_line(dom: DomainFacts, pending: bool = False) -> str:
    state = "running" if dom.active else "shut off"
    rt = dom.realtime_vcpus
    pins = dom.vcpu_cpu_set
    where = (
        f"on CPU{'s' if len(pins) != 1 else ''} {format_cpulist(pins)}"
        if pins
        else "not pinned (floats over every CPU)"
    )
    text = f"{dom.vcpus} vCPU{'s' if dom.vcpus != 1 else ''}"
    if rt:
        text += f" ({len(rt)} realtime: {format_cpulist(rt)})"
    text += f" {where}"
    if dom.emulatorpin:
        text += f", emulator on {format_cpulist(dom.emulatorpin)}"
    mark = ", rtlibvirt" if dom.managed else ""
    if dom.share_with:
        text += f"; shares CPUs with {', '.join(sorted(dom.share_with))} (never together)"
    waiting = (
        " (as it runs; a new definition waits for its next start: `virsh dumpxml --inactive`)"
        if pending
        else ""
    )
    return f"{state}{mark}; {text}{waiting}"


def _hook_line(hook: dict[str, frozenset[int]]) -> str:
    """``Hook isolation: CPU 1 isolated for plc; ...``: which CPUs, for which VM."""
    parts = [
        f"CPU{'s' if len(cpus) != 1 else ''} {format_cpulist(cpus)} isolated for {name}"
        for name, cpus in sorted(hook.items())
    ]
    return "Hook isolation: " + ("; ".join(parts) or "nothing isolated now")


def text(host: HostModel, hook: dict[str, frozenset[int]] | None) -> str:
    topo = host.topology
    held = holders(host.domains)
    out: list[str] = [f"Host {host.uri}: {topo.describe()}"]
    if host.isolated is None:
        out.append("Isolated CPUs: unknown (the host's /sys cannot be read from here)")
    else:
        isolated = format_cpulist(host.isolated) or "none"
        nohz = format_cpulist(host.nohz_full or ()) or "none"
        housekeeping = format_cpulist(host.housekeeping) or "none"
        out.append(f"Housekeeping CPUs: {housekeeping}; isolated: {isolated}; nohz_full: {nohz}")
    if hook is None:
        out.append("Hook isolation: unknown (the hook's state cannot be read from here)")
    else:
        out.append(_hook_line(hook))
        for name, lines in sorted(hook_unmoved(host.fs).items()):
            out.append(f"  could not move off {name}'s CPUs: " + "; ".join(lines))
    hooked: dict[int, list[str]] = {}
    for name, cpus in (hook or {}).items():
        for cpu in cpus:
            hooked.setdefault(cpu, []).append(name)

    for node, cpus in topo.nodes.items():
        pages = []
        for size in PAGE_SIZES_KIB:
            free = host.free_hugepages(node, size)
            if free is not None:
                pages.append(f"{'1G' if size == 1048576 else '2M'} {free}")
        free_text = f"; free hugepages {', '.join(pages)}" if pages else ""
        out.append("")
        out.append(f"NUMA node {node}: CPUs {format_cpulist(cpus)}{free_text}")
        out.append(f"  {'core':<10} {'CPU':>4}  {'role':<14} held by")
        for core in topo.cores[node]:
            first = True
            for cpu in sorted(core):
                label = format_cpulist(core) if first else ""
                first = False
                who = [h.label() + (" *" if h.running else "") for h in held.get(cpu, [])]
                if cpu in hooked:
                    who.append("hook isolates for " + ", ".join(sorted(hooked[cpu])))
                out.append(
                    f"  {label:<10} {cpu:>4}  {_role(host, cpu):<14} {', '.join(who) or '-'}"
                )
    if host.domains:
        out.append("")
        out.append("Domains (* running)")
        width = max(len(d.name) for d in host.domains)
        for dom in sorted(host.domains, key=lambda d: d.name):
            out.append(f"  {dom.name:<{width}}  {_domain_line(dom, dom.name in host.pending)}")
        out += noise_pointers(host.domains)
    return "\n".join(out) + "\n"


def noise_pointers(domains: tuple[DomainFacts, ...]) -> list[str]:
    """One line per running real-time VM: where to see what disturbs its CPUs (no tracing)."""
    running = sorted(d.name for d in domains if d.active and d.realtime_vcpus)
    import shlex

    return [f"What disturbs {name}'s CPUs: rtlibvirt noise {shlex.quote(name)}" for name in running]


def to_json(host: HostModel, hook: dict[str, frozenset[int]] | None) -> dict[str, Any]:
    topo = host.topology
    held = holders(host.domains)
    nodes = []
    for node, cpus in topo.nodes.items():
        free = {}
        for size in PAGE_SIZES_KIB:
            value = host.free_hugepages(node, size)
            if value is not None:
                free[str(size)] = value
        nodes.append(
            {
                "id": node,
                "cpus": sorted(cpus),
                "cores": [sorted(core) for core in topo.cores[node]],
                "free_hugepages_by_kib": free,
            }
        )
    cpu_list = []
    for cpu in sorted(topo.cpus):
        info = topo.cpus[cpu]
        cpu_list.append(
            {
                "id": cpu,
                "node": info.node,
                "siblings": sorted(info.siblings),
                "online": info.online,
                "isolated": None if host.isolated is None else cpu in host.isolated,
                "nohz_full": None if host.nohz_full is None else cpu in host.nohz_full,
                "role": _role(host, cpu),
                "held_by": [h.to_json() for h in held.get(cpu, [])],
            }
        )
    domains = [
        {
            "name": dom.name,
            "running": dom.active,
            "pending_definition": dom.name in host.pending,
            "share_with": sorted(dom.share_with),
            "rtlibvirt": dom.managed,
            "vcpus": dom.vcpus,
            "realtime_vcpus": list(dom.realtime_vcpus),
            "pinned_cpus": sorted(dom.vcpu_cpu_set),
            "emulator_cpus": sorted(dom.emulatorpin) if dom.emulatorpin is not None else None,
        }
        for dom in sorted(host.domains, key=lambda d: d.name)
    ]
    return {
        "uri": host.uri,
        "kernel": kernel_facts(host.fs),
        "topology": topo.describe(),
        "housekeeping": sorted(host.housekeeping) if host.isolated is not None else None,
        "isolated": sorted(host.isolated) if host.isolated is not None else None,
        "nohz_full": sorted(host.nohz_full) if host.nohz_full is not None else None,
        "nodes": nodes,
        "cpus": cpu_list,
        "domains": domains,
        "hook": None if hook is None else {k: sorted(v) for k, v in sorted(hook.items())},
        "hook_unmoved": hook_unmoved(host.fs) if hook is not None else None,
    }

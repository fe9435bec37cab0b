"""Real-time checks of one domain: against the host, and of the domain itself.

:func:`host_findings` compares a domain (as :class:`~rtlibvirt.domain.facts.DomainFacts`)
with the host it is defined on: CPUs that do not exist or are offline, CPUs
that are not isolated, CPUs other domains pin, busy SMT siblings, NUMA
locality, free hugepages, PCI devices and their IOMMU groups and drivers, and
RT group scheduling. :func:`domain_findings` says what the definition itself
lacks for real time (pins, scheduling, balloon, USB, hugepages, locking, ...).

Both are pure functions of their inputs; what could not be checked (no access
to the host's /sys) is listed in ``skipped``, not reported as a finding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rtlibvirt.domain.facts import DomainFacts
from rtlibvirt.fit.findings import Finding
from rtlibvirt.fit.host import Host
from rtlibvirt.kernel.cpuset import format_cpulist

VFIO = "vfio-pci"


@dataclass
class Result:
    findings: list[Finding] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def add(self, severity: str, code: str, what: str, fix: str | None = None) -> None:
        self.findings.append(Finding(severity, code, what, fix))  # type: ignore[arg-type]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _cpus(cpus: Iterable[int]) -> str:
    cpus = sorted(set(cpus))
    text = format_cpulist(cpus)
    return f"CPU {text}" if len(cpus) == 1 else f"CPUs {text}"


def _vcpus(vcpus: Iterable[int]) -> str:
    vcpus = sorted(set(vcpus))
    text = format_cpulist(vcpus)
    return f"vCPU {text}" if len(vcpus) == 1 else f"vCPUs {text}"


def uses(dom: DomainFacts) -> dict[int, list[str]]:
    """host CPU -> what of ``dom`` is pinned there ("vCPU 1", "the emulator", ...)."""
    result: dict[int, list[str]] = {}
    for cpu, vcpus in sorted(dom.vcpu_claims().items()):
        result.setdefault(cpu, []).append(_vcpus(vcpus))
    for cpu in sorted(dom.emulatorpin or ()):
        result.setdefault(cpu, []).append("the emulator")
    for iothread, cpus in sorted(dom.iothreadpins.items()):
        for cpu in sorted(cpus):
            result.setdefault(cpu, []).append(f"I/O thread {iothread}")
    return result


def _where(cpus: Iterable[int], used: dict[int, list[str]]) -> str:
    return ", ".join(f"{cpu} ({' and '.join(used.get(cpu, ['?']))})" for cpu in sorted(cpus))


# ---------------------------------------------------------------------------
# The domain against the host
# ---------------------------------------------------------------------------


def host_findings(host: Host, dom: DomainFacts, *, allow_shared: bool = False) -> Result:
    result = Result()
    _cpus_exist(host, dom, result)
    _isolation(host, dom, result)
    _shared(host, dom, result, allow_shared)
    _siblings(host, dom, result)
    _numa(host, dom, result)
    _hugepages(host, dom, result)
    _hostdevs(host, dom, result)
    _rt_group_sched(host, dom, result)
    if host.fs is None:
        result.skipped.append(
            f"isolation, hugepages, PCI devices and RT group scheduling: the kernel files "
            f"of {host.uri} cannot be read from here"
        )
    return result


def _cpus_exist(host: Host, dom: DomainFacts, result: Result) -> None:
    topo = host.topology
    used = uses(dom)
    missing = [cpu for cpu in used if cpu not in topo.cpus]
    if missing:
        result.add(
            "error",
            "cpu-missing",
            f"pinned to host CPUs the host does not have: {_where(missing, used)}; "
            f"the host has {topo.describe()}",
            "pin to CPUs the host has (`cpu.pinning`, `cpu.emulator`), or write `auto`",
        )
    offline = [cpu for cpu in used if cpu in topo.cpus and cpu not in topo.online]
    if offline:
        result.add(
            "error",
            "cpu-offline",
            f"pinned to host CPUs that are offline: {_where(offline, used)}",
            "bring them online (echo 1 > /sys/devices/system/cpu/cpuN/online) "
            "or pin to online CPUs",
        )


def _isolation(host: Host, dom: DomainFacts, result: Result) -> None:
    rt_cpus = dom.realtime_cpu_set & host.topology.all
    if not rt_cpus or host.isolated is None:
        return
    not_isolated = rt_cpus - host.isolated
    if not_isolated:
        isolated = format_cpulist(host.isolated) if host.isolated else "none"
        cpus = format_cpulist(not_isolated)
        result.add(
            "warning",
            "cpu-not-isolated",
            f"realtime vCPUs run on host {_cpus(not_isolated)}, which the running kernel does "
            f"not isolate (isolated CPUs: {isolated}): host tasks and interrupts share them",
            f"isolate them at boot: isolcpus=domain,managed_irq,{cpus} nohz_full={cpus} "
            f"rcu_nocbs={cpus} on the kernel command line, then reboot; or pin the realtime "
            "vCPUs to isolated CPUs (`cpu.pinning: auto` prefers them)",
        )
    ticking = (rt_cpus & host.isolated) - (host.nohz_full or frozenset())
    if ticking:
        cpus = format_cpulist(ticking)
        result.add(
            "info",
            "cpu-not-nohz-full",
            f"host {_cpus(ticking)} of realtime vCPUs are isolated but not nohz_full: "
            "the scheduler tick still interrupts them",
            f"add nohz_full={cpus} rcu_nocbs={cpus} to the kernel command line",
        )


def _shared(host: Host, dom: DomainFacts, result: Result, allow_shared: bool) -> None:
    ours = uses(dom)
    our_vcpus = dom.vcpu_cpu_set
    our_helpers = dom.helper_cpu_set
    clashes: list[str] = []
    for other in host.others(dom.name):
        theirs = uses(other)
        cpus = (our_vcpus & other.pinned_cpu_set) | (our_helpers & other.vcpu_cpu_set)
        for cpu in sorted(cpus):
            clashes.append(
                f"host CPU {cpu} ({' and '.join(ours[cpu])}) is also pinned by domain "
                f"{other.name!r} ({' and '.join(theirs[cpu])})"
            )
    if clashes:
        if allow_shared:
            result.add(
                "warning",
                "cpu-shared",
                "; ".join(clashes) + " (allowed by --allow-shared)",
                "make sure these domains never run at the same time",
            )
        else:
            result.add(
                "error",
                "cpu-shared",
                "; ".join(clashes),
                "choose other CPUs (`cpu.pinning: auto` picks free ones), or pass "
                "--allow-shared if these domains never run at the same time",
            )


def _siblings(host: Host, dom: DomainFacts, result: Result) -> None:
    topo = host.topology
    ours = uses(dom)
    others = host.others(dom.name)
    busy: list[str] = []
    for cpu in sorted(dom.realtime_cpu_set):
        for sibling in sorted(topo.siblings(cpu) - {cpu}):
            users: list[str] = []
            for what in ours.get(sibling, []):
                users.append("this domain's " + what.replace("the ", ""))
            for other in others:
                if sibling in other.pinned_cpu_set:
                    users.append(f"domain {other.name!r}")
            if host.isolated is not None and sibling in host.housekeeping:
                users.append("the host's housekeeping (it is not isolated)")
            if users:
                busy.append(f"CPU {sibling}, sibling of CPU {cpu}, is used by {', '.join(users)}")
    if busy:
        result.add(
            "warning",
            "smt-sibling-busy",
            "SMT siblings of realtime vCPUs' CPUs are busy: " + "; ".join(busy),
            "give each realtime vCPU a whole core: keep its sibling isolated and pinned to "
            "nothing (`cpu.pinning: auto` does), or turn SMT off (nosmt)",
        )


def _numa(host: Host, dom: DomainFacts, result: Result) -> None:
    topo = host.topology
    nodes = topo.nodes
    if dom.memory_nodes is not None:
        missing = dom.memory_nodes - set(nodes)
        if missing:
            result.add(
                "error",
                "numa-node-missing",
                f"memory is bound to host NUMA node {format_cpulist(missing)}, which does not "
                f"exist; the host has node{'s' if len(nodes) != 1 else ''} "
                f"{format_cpulist(nodes)}",
                f"set `numa.node` to one of {format_cpulist(nodes)}",
            )
    if len(nodes) < 2:
        return
    vcpu_nodes = topo.nodes_of(dom.vcpu_cpu_set)
    problems: list[str] = []
    if len(vcpu_nodes) > 1:
        per_node = {
            node: [v for v in range(dom.vcpus) if topo.nodes_of(dom.vcpu_cpus(v) or ()) == {node}]
            for node in sorted(vcpu_nodes)
        }
        detail = ", ".join(f"{_vcpus(v)} on node {n}" for n, v in per_node.items() if v)
        problems.append(f"the vCPUs span NUMA nodes {format_cpulist(vcpu_nodes)} ({detail})")
    if dom.memory_nodes is not None and vcpu_nodes and not vcpu_nodes <= dom.memory_nodes:
        problems.append(
            f"memory is on node {format_cpulist(dom.memory_nodes)} but vCPUs run on node "
            f"{format_cpulist(vcpu_nodes)}"
        )
    if host.fs is not None:
        for dev in dom.hostdevs:
            pci = host.pci(dev.address)
            if pci is None or pci.numa_node is None:
                continue
            if vcpu_nodes and pci.numa_node not in vcpu_nodes:
                problems.append(
                    f"PCI device {dev.address} is on node {pci.numa_node} but vCPUs run on node "
                    f"{format_cpulist(vcpu_nodes)}"
                )
            if dom.memory_nodes is not None and pci.numa_node not in dom.memory_nodes:
                problems.append(
                    f"PCI device {dev.address} is on node {pci.numa_node} but memory is on node "
                    f"{format_cpulist(dom.memory_nodes)}"
                )
    if problems:
        result.add(
            "warning",
            "numa-split",
            "; ".join(problems) + ": every crossing between nodes adds latency",
            "keep CPUs, memory and devices on one node: set `numa.node` (to the devices' node) "
            "and `cpu.pinning: auto`, which places on that node",
        )


def _default_hugepage_kib(host: Host) -> int:
    if host.fs is not None:
        for line in host.fs.read_or("/proc/meminfo", "").splitlines():
            if line.startswith("Hugepagesize:"):
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    return int(parts[1])
    return 2048


def _page_name(kib: int) -> str:
    return {2048: "2M", 1048576: "1G"}.get(kib, f"{kib}KiB")


def _hugepages(host: Host, dom: DomainFacts, result: Result) -> None:
    if not dom.hugepages or host.fs is None:
        return
    if dom.active:
        result.skipped.append("free hugepages: the domain is running and holds its pages")
        return
    page = dom.hugepage_kib or _default_hugepage_kib(host)
    needed = -(-dom.memory_kib // page)
    nodes = sorted(dom.memory_nodes) if dom.memory_nodes is not None else list(host.topology.nodes)
    nodes = [n for n in nodes if n in host.topology.nodes]
    if not nodes:
        return
    free_by_node = {n: host.free_hugepages(n, page) for n in nodes}
    free = sum(v or 0 for v in free_by_node.values())
    if free >= needed:
        return
    where = f"node {format_cpulist(nodes)}" if len(nodes) == 1 else "the host"
    node = nodes[0]
    supported = any(v is not None for v in free_by_node.values())
    reserve = (
        f"echo {needed} > /sys/devices/system/node/node{node}/hugepages/"
        f"hugepages-{page}kB/nr_hugepages"
    )
    if page >= 1048576:
        reserve += f", or at boot: hugepagesz=1G hugepages={needed} (1G pages are best reserved "
        reserve += "at boot, before memory fragments)"
    result.add(
        "warning",
        "hugepages-short",
        f"the domain needs {needed} free {_page_name(page)} hugepages on {where} for its "
        f"{dom.memory_kib // 1024} MiB, but {free} "
        f"{'is' if free == 1 else 'are'} free"
        + ("" if supported else f" ({_page_name(page)} pages are not available on this host)"),
        f"reserve them before starting the domain: {reserve}",
    )


def _hostdevs(host: Host, dom: DomainFacts, result: Result) -> None:
    if not dom.hostdevs or host.fs is None:
        return
    ours = {dev.address for dev in dom.hostdevs}
    for dev in dom.hostdevs:
        pci = host.pci(dev.address)
        if pci is None:
            result.add(
                "error",
                "hostdev-missing",
                f"PCI device {dev.address} does not exist on this host",
                "check the address with `lspci -D` and fix `devices.hostdevs`",
            )
            continue
        if pci.iommu_group is None:
            result.add(
                "error",
                "iommu-off",
                f"PCI device {dev.address} is in no IOMMU group: the IOMMU is off, and VFIO "
                "cannot pass devices through without it",
                "turn VT-d / AMD-Vi on in the firmware and boot with intel_iommu=on iommu=pt "
                "(Intel) or amd_iommu=on iommu=pt (AMD)",
            )
        else:
            strangers = []
            for member in pci.group_members:
                if member in ours:
                    continue
                other = host.pci(member)
                if other is not None and other.bridge:
                    continue  # PCI bridges in a group do not stop VFIO
                driver = other.driver if other is not None else None
                strangers.append(f"{member} (driver {driver or 'none'})")
            if strangers:
                result.add(
                    "error",
                    "iommu-group-shared",
                    f"PCI device {dev.address} is in IOMMU group {pci.iommu_group} with "
                    f"{', '.join(strangers)}, not passed to this domain: VFIO needs the whole "
                    "group",
                    "pass every device of the group to this domain (add them to "
                    "`devices.hostdevs`), or move the card to a slot whose group it has alone",
                )
        if not dev.managed and pci.driver != VFIO:
            result.add(
                "error",
                "hostdev-not-vfio",
                f"PCI device {dev.address} is not managed by libvirt and is bound to "
                f"{pci.driver or 'no driver'}, not {VFIO}",
                f"bind it to {VFIO} (e.g. `driverctl set-override {dev.address} {VFIO}`), "
                "or set `managed: true` so libvirt binds it when the domain starts",
            )


def _rt_group_sched(host: Host, dom: DomainFacts, result: Result) -> None:
    if not dom.realtime_vcpus or host.fs is None:
        return
    state = host.rt_group_sched()
    if state is None or not state.blocks_fifo:
        return
    runtime = (
        f"cpu.rt_runtime_us {state.machine_runtime_us}"
        if state.machine_runtime_us is not None
        else "not created yet; new cgroups get cpu.rt_runtime_us 0"
    )
    result.add(
        "error",
        "rt-group-sched",
        f"the kernel has RT group scheduling ({state.cpu_mount}/cpu.rt_runtime_us exists), "
        f"libvirt puts each vCPU thread in a cpu cgroup of its own under "
        f"{state.machine_cgroup} ({runtime}) where new cgroups get no RT runtime, and "
        f"kernel.sched_rt_runtime_us is {state.rt_runtime_sysctl}: the domain will not start "
        '("Cannot set scheduler parameters ...: Operation not permitted")',
        "run `sysctl -w kernel.sched_rt_runtime_us=-1` (and put "
        '`kernel.sched_rt_runtime_us = -1` in /etc/sysctl.d/ to keep it); or remove "cpu" '
        "from cgroup_controllers in /etc/libvirt/qemu.conf and restart libvirtd; or boot a "
        "kernel without CONFIG_RT_GROUP_SCHED (or with rt_group_sched=0, Linux 6.16+)",
    )


# ---------------------------------------------------------------------------
# The domain itself
# ---------------------------------------------------------------------------


def domain_findings(dom: DomainFacts) -> Result:
    """What the definition lacks, or has too much of, for real time."""
    result = Result()
    unpinned = [v for v in range(dom.vcpus) if dom.vcpu_cpus(v) is None]
    if unpinned:
        result.add(
            "error",
            "vcpu-not-pinned",
            f"{_vcpus(unpinned)} {'is' if len(unpinned) == 1 else 'are'} not pinned "
            "(no <vcpupin>): the host scheduler moves them between CPUs",
            "pin every vCPU to a host CPU of its own: `rtlibvirt tune DOMAIN TUNING.yaml` "
            "with `cpu.pinning` (or `auto`)",
        )
    wide = [v for v in range(dom.vcpus) if len(dom.vcpu_cpus(v) or ()) > 1]
    if wide:
        result.add(
            "warning",
            "vcpu-pin-range",
            "; ".join(
                f"vCPU {v} may run on any of host {_cpus(dom.vcpu_cpus(v) or ())}" for v in wide
            ),
            "pin each vCPU to exactly one host CPU",
        )
    shared = {cpu: vcpus for cpu, vcpus in dom.vcpu_claims().items() if len(vcpus) > 1}
    exclusive = {
        cpu: vcpus
        for cpu, vcpus in shared.items()
        if all(len(dom.vcpu_cpus(v) or ()) == 1 for v in vcpus)
    }
    if exclusive:
        result.add(
            "error",
            "vcpu-cpu-shared",
            "; ".join(f"{_vcpus(v)} share host CPU {cpu}" for cpu, v in sorted(exclusive.items())),
            "give each vCPU a host CPU of its own",
        )
    if dom.emulatorpin is None:
        result.add(
            "warning",
            "emulator-not-pinned",
            "the emulator threads are not pinned (no <emulatorpin>): QEMU's own threads may run "
            "on the vCPUs' CPUs",
            "pin the emulator to housekeeping CPUs (`cpu.emulator`, or `auto`)",
        )
    rt_cpus = dom.realtime_cpu_set
    clash = rt_cpus & dom.helper_cpu_set
    if clash:
        result.add(
            "error",
            "emulator-on-rt-cpu",
            f"the emulator or I/O threads share host {_cpus(clash)} with realtime vCPUs: a "
            "SCHED_FIFO vCPU there starves QEMU's own threads and the guest hangs",
            "pin the emulator to CPUs no realtime vCPU uses",
        )
    if not dom.realtime_vcpus:
        result.add(
            "warning",
            "no-realtime-sched",
            "no vCPU has a real-time scheduler (no <vcpusched scheduler='fifo'>)",
            "schedule the guest's realtime vCPUs SCHED_FIFO (`cpu.realtime.vcpus`)",
        )
    if dom.quota:
        result.add(
            "warning",
            "cpu-quota",
            "<cputune> sets a CPU quota: the vCPUs are throttled every period",
            "remove <period>/<quota> from <cputune> (`virsh schedinfo` / virsh edit)",
        )
    if dom.memballoon not in (None, "none"):
        result.add(
            "warning",
            "memballoon",
            f"a memory balloon ({dom.memballoon}) is present: the host can take guest memory "
            "back and its stats polling wakes the guest",
            "set <memballoon model='none'/> (`rtlibvirt tune` does)",
        )
    if dom.usb_controllers:
        result.add(
            "warning",
            "usb-controller",
            f"a USB controller is present ({', '.join(dom.usb_controllers)}): it polls and "
            "interrupts the guest",
            "set <controller type='usb' model='none'/> (`rtlibvirt tune` does)",
        )
    if dom.usb_devices:
        result.add(
            "warning",
            "usb-device",
            f"USB devices are present ({', '.join(dom.usb_devices)}), e.g. a tablet that the "
            "guest polls",
            "remove them (`rtlibvirt tune` does; the mouse falls back to PS/2)",
        )
    if not dom.hugepages:
        result.add(
            "warning",
            "no-hugepages",
            "guest memory is not backed by hugepages: TLB misses add latency",
            "back it with hugepages (`memory_backing.hugepages: 1G` or `2M`)",
        )
    if not dom.locked:
        result.add(
            "warning",
            "not-locked",
            "guest memory is not locked (no <locked/>): the host may swap or migrate it",
            "lock it (`memory_backing.locked: true`)",
        )
    if not dom.pmu_off:
        result.add(
            "info",
            "pmu-on",
            "the virtual PMU is on: perf counter accesses from the guest cause exits",
            "turn it off with <pmu state='off'/> (`rtlibvirt tune` does)",
        )
    if dom.cpu_mode != "host-passthrough":
        result.add(
            "info",
            "cpu-model",
            f"the CPU model is {dom.cpu_mode or 'the hypervisor default'}, not "
            "host-passthrough: the guest may lack the invariant TSC and other host features",
            "use `cpu.model: host-passthrough`",
        )
    return result

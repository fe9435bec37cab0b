"""Real-time checks of one domain: against the host, and of the domain itself.

Every check is registered in :data:`CHECKS` with its code, its severity, what
it looks at (``host``: the domain against the host it is defined on;
``domain``: the definition alone) and its function, whose docstring says what
it finds (``docs/host-checks.md`` is generated from the registry).

:func:`host_findings` runs the host checks on a domain (as
:class:`~rtlibvirt.domain.facts.DomainFacts`): CPUs that do not exist or are
offline, CPUs that are not isolated, CPUs other domains pin, busy SMT
siblings, NUMA locality, free hugepages, PCI devices and their IOMMU groups
and drivers, RT group scheduling, and the libvirt networks of its NICs.
:func:`domain_findings` runs the domain checks: what the definition itself
lacks for real time (pins, scheduling, balloon, USB, hugepages, locking, ...).

Both are pure functions of their inputs; what could not be checked (no access
to the host's /sys) is listed in ``skipped``, not reported as a finding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import field
from typing import Literal

from rtlibvirt.config.units import GIB, hugepage_name
from rtlibvirt.domain.facts import DomainFacts
from rtlibvirt.fit.findings import Finding, Severity
from rtlibvirt.fit.host import HostModel, Network, PciDevice
from rtlibvirt.kernel.cpuset import format_cpulist
from rtlibvirt.records import frozen_record, record

VFIO = "vfio-pci"

Subject = Literal["host", "domain"]


@record
class Result:
    """The findings of a run of checks, and what could not be checked."""

    findings: list[Finding] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@frozen_record
class Found:
    """What one check found: a finding without its code (the registry has it)."""

    what: str
    fix: str | None = None
    severity: Severity | None = None  # None: the check's own


@record
class Context:
    """What a check looks at; ``host`` is None for the domain checks."""

    dom: DomainFacts
    host: HostModel | None = None
    allow_shared: bool = False
    skipped: list[str] = field(default_factory=list)
    _pci: dict[str, PciDevice | None] = field(default_factory=dict)

    @property
    def on(self) -> HostModel:
        """The host (host checks only)."""
        assert self.host is not None, "a host check ran without a host"
        return self.host

    def pci(self, address: str) -> PciDevice | None:
        """The host's PCI device at ``address``, read once per run."""
        if address not in self._pci:
            self._pci[address] = self.on.pci(address)
        return self._pci[address]


CheckFunction = Callable[[Context], Iterable[Found]]


@frozen_record
class Check:
    """One registered check: its code, severity, subject and function."""

    code: str
    severity: Severity  # what it reports (a Found may say otherwise, e.g. --allow-shared)
    subject: Subject
    function: CheckFunction

    @property
    def about(self) -> str:
        """What it finds: the first paragraph of the function's docstring, on one line."""
        doc = (self.function.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(doc.split())


CHECKS: list[Check] = []


def check(
    code: str, severity: Severity, subject: Subject
) -> Callable[[CheckFunction], CheckFunction]:
    """Register the decorated function as the check ``code``."""

    def register(function: CheckFunction) -> CheckFunction:
        if any(c.code == code for c in CHECKS):
            raise ValueError(f"check {code!r} is registered twice")
        CHECKS.append(Check(code, severity, subject, function))
        return function

    return register


def _run(subject: Subject, ctx: Context) -> Result:
    result = Result(skipped=ctx.skipped)
    for registered in CHECKS:
        if registered.subject != subject:
            continue
        for found in registered.function(ctx):
            severity = found.severity or registered.severity
            result.findings.append(Finding(severity, registered.code, found.what, found.fix))
    return result


def _cpus_label(cpus: Iterable[int]) -> str:
    """``CPU 3`` or ``CPUs 2-3``."""
    cpus = sorted(set(cpus))
    text = format_cpulist(cpus)
    return f"CPU {text}" if len(cpus) == 1 else f"CPUs {text}"


def _vcpus_label(vcpus: Iterable[int]) -> str:
    """``vCPU 1`` or ``vCPUs 1-3``."""
    vcpus = sorted(set(vcpus))
    text = format_cpulist(vcpus)
    return f"vCPU {text}" if len(vcpus) == 1 else f"vCPUs {text}"


def uses(dom: DomainFacts) -> dict[int, list[str]]:
    """host CPU -> what of ``dom`` is pinned there ("vCPU 1", "the emulator", ...)."""
    result: dict[int, list[str]] = {}
    for cpu, vcpus in sorted(dom.vcpu_claims().items()):
        result.setdefault(cpu, []).append(_vcpus_label(vcpus))
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


def host_findings(host: HostModel, dom: DomainFacts, *, allow_shared: bool = False) -> Result:
    """Run the host checks of ``dom`` on ``host``."""
    result = _run("host", Context(dom, host, allow_shared))
    if host.fs is None:
        result.skipped.append(
            f"isolation, hugepages, PCI devices and RT group scheduling: the kernel files "
            f"of {host.uri} cannot be read from here"
        )
    return result


@check("cpu-missing", "error", "host")
def _cpu_missing(ctx: Context) -> Iterator[Found]:
    """A vCPU, emulator or I/O thread pinned to a host CPU the host does not have."""
    topo = ctx.on.topology
    used = uses(ctx.dom)
    missing = [cpu for cpu in used if cpu not in topo.cpus]
    if missing:
        yield Found(
            f"pinned to host CPUs the host does not have: {_where(missing, used)}; "
            f"the host has {topo.describe()}",
            "pin to CPUs the host has (`cpu.pinning`, `cpu.emulator`), or write `auto`",
        )


@check("cpu-offline", "error", "host")
def _cpu_offline(ctx: Context) -> Iterator[Found]:
    """A vCPU, emulator or I/O thread pinned to a host CPU that is offline."""
    topo = ctx.on.topology
    used = uses(ctx.dom)
    offline = [cpu for cpu in used if cpu in topo.cpus and cpu not in topo.online]
    if offline:
        yield Found(
            f"pinned to host CPUs that are offline: {_where(offline, used)}",
            "bring them online (echo 1 > /sys/devices/system/cpu/cpuN/online) "
            "or pin to online CPUs",
        )


@check("cpu-not-isolated", "warning", "host")
def _cpu_not_isolated(ctx: Context) -> Iterator[Found]:
    """A realtime vCPU on a host CPU the running kernel does not isolate."""
    host = ctx.on
    rt_cpus = ctx.dom.realtime_cpu_set & host.topology.all
    if not rt_cpus or host.isolated is None:
        return
    not_isolated = rt_cpus - host.isolated
    if not_isolated:
        isolated = format_cpulist(host.isolated) if host.isolated else "none"
        cpus = format_cpulist(not_isolated)
        yield Found(
            f"realtime vCPUs run on host {_cpus_label(not_isolated)}, which the running kernel "
            f"does not isolate (isolated CPUs: {isolated}): host tasks and interrupts share them",
            f"isolate them at boot: isolcpus=domain,managed_irq,{cpus} nohz_full={cpus} "
            f"rcu_nocbs={cpus} on the kernel command line, then reboot; or pin the realtime "
            "vCPUs to isolated CPUs (`cpu.pinning: auto` prefers them)",
        )


@check("cpu-not-nohz-full", "info", "host")
def _cpu_not_nohz_full(ctx: Context) -> Iterator[Found]:
    """A realtime vCPU on an isolated host CPU without ``nohz_full``."""
    host = ctx.on
    rt_cpus = ctx.dom.realtime_cpu_set & host.topology.all
    if not rt_cpus or host.isolated is None:
        return
    ticking = (rt_cpus & host.isolated) - (host.nohz_full or frozenset())
    if ticking:
        cpus = format_cpulist(ticking)
        yield Found(
            f"host {_cpus_label(ticking)} of realtime vCPUs are isolated but not nohz_full: "
            "the scheduler tick still interrupts them",
            f"add nohz_full={cpus} rcu_nocbs={cpus} to the kernel command line",
        )


@check("cpu-shared", "error", "host")
def _cpu_shared(ctx: Context) -> Iterator[Found]:
    """A host CPU that another defined domain pins (this domain's vCPUs on any of its
    CPUs, or this domain's emulator and I/O threads on its vCPUs' CPUs), unless either
    domain names the other in ``cpu.share_with`` (they never run at the same time); a
    warning with ``--allow-shared``.
    """
    dom = ctx.dom
    ours = uses(dom)
    our_vcpus = dom.vcpu_cpu_set
    our_helpers = dom.helper_cpu_set
    clashes: list[str] = []
    undeclared: list[str] = []
    for other in ctx.on.others(dom.name):
        theirs = uses(other)
        cpus = (our_vcpus & other.pinned_cpu_set) | (our_helpers & other.vcpu_cpu_set)
        if not cpus:
            continue
        lines = [
            f"host CPU {cpu} ({' and '.join(ours[cpu])}) is also pinned by domain "
            f"{other.name!r} ({' and '.join(theirs[cpu])})"
            for cpu in sorted(cpus)
        ]
        if dom.shares_cpus_with(other):
            continue
        clashes += lines
        undeclared.append(other.name)
    if not clashes:  # declared ones are fine: the hook keeps them from running together
        return
    names = ", ".join(undeclared)
    if ctx.allow_shared:
        yield Found(
            "; ".join(clashes) + " (allowed by --allow-shared)",
            f"make sure these domains never run at the same time; to say so for good (and not "
            f"pass --allow-shared again), add `cpu.share_with: [{names}]` to the VM's spec",
            severity="warning",
        )
    else:
        yield Found(
            "; ".join(clashes),
            "choose other CPUs (`cpu.pinning: auto` picks free ones), or, if these domains "
            f"never run at the same time, add `cpu.share_with: [{names}]` to the VM's spec "
            "(or pass --allow-shared once)",
        )


@check("smt-sibling-busy", "warning", "host")
def _smt_sibling_busy(ctx: Context) -> Iterator[Found]:
    """The SMT sibling of a realtime vCPU's host CPU is used: by this domain's emulator
    or other vCPUs, by another domain, or by the host's housekeeping.
    """
    host, dom = ctx.on, ctx.dom
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
        yield Found(
            "SMT siblings of realtime vCPUs' CPUs are busy: " + "; ".join(busy),
            "give each realtime vCPU a whole core: keep its sibling isolated and pinned to "
            "nothing (`cpu.pinning: auto` does), or turn SMT off (nosmt)",
        )


@check("numa-node-missing", "error", "host")
def _numa_node_missing(ctx: Context) -> Iterator[Found]:
    """Memory bound to a host NUMA node (``numa.node``) that does not exist."""
    nodes = ctx.on.topology.nodes
    if ctx.dom.memory_nodes is None:
        return
    missing = ctx.dom.memory_nodes - set(nodes)
    if missing:
        one = len(missing) == 1
        yield Found(
            f"memory is bound to host NUMA node{'' if one else 's'} {format_cpulist(missing)}, "
            f"which {'does' if one else 'do'} not exist; the host has "
            f"node{'s' if len(nodes) != 1 else ''} {format_cpulist(nodes)}",
            f"set `numa.node` to one of {format_cpulist(nodes)}",
        )


@check("numa-split", "warning", "host")
def _numa_split(ctx: Context) -> Iterator[Found]:
    """vCPUs, memory and PCI devices on different host NUMA nodes."""
    host, dom = ctx.on, ctx.dom
    topo = host.topology
    if len(topo.nodes) < 2:
        return
    vcpu_nodes = topo.nodes_of(dom.vcpu_cpu_set)
    problems: list[str] = []
    if len(vcpu_nodes) > 1:
        per_node = {
            node: [v for v in range(dom.vcpus) if topo.nodes_of(dom.vcpu_cpus(v) or ()) == {node}]
            for node in sorted(vcpu_nodes)
        }
        spanning = [v for v in range(dom.vcpus) if len(topo.nodes_of(dom.vcpu_cpus(v) or ())) > 1]
        parts = [f"{_vcpus_label(v)} on node {n}" for n, v in per_node.items() if v]
        if spanning:  # pinned to CPUs of several nodes: no node of their own
            nodes_of = format_cpulist(
                topo.nodes_of(set().union(*(dom.vcpu_cpus(v) or () for v in spanning)))
            )
            parts.append(f"{_vcpus_label(spanning)} on CPUs of nodes {nodes_of}")
        detail = f" ({', '.join(parts)})" if parts else ""
        problems.append(f"the vCPUs span NUMA nodes {format_cpulist(vcpu_nodes)}{detail}")
    if dom.memory_nodes is not None and vcpu_nodes and not vcpu_nodes <= dom.memory_nodes:
        problems.append(
            f"memory is on node {format_cpulist(dom.memory_nodes)} but vCPUs run on node "
            f"{format_cpulist(vcpu_nodes)}"
        )
    if host.fs is not None:
        for dev in dom.hostdevs:
            pci = ctx.pci(dev.address)
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
        yield Found(
            "; ".join(problems) + ": every crossing between nodes adds latency",
            "keep CPUs, memory and devices on one node: set `numa.node` (to the devices' node) "
            "and `cpu.pinning: auto`, which places on that node",
        )


def _default_hugepage_kib(host: HostModel) -> int:
    if host.fs is not None:
        for line in host.fs.read_or("/proc/meminfo", "").splitlines():
            if line.startswith("Hugepagesize:"):
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    return int(parts[1])
    return 2048


@check("hugepages-short", "warning", "host")
def _hugepages_short(ctx: Context) -> Iterator[Found]:
    """Fewer free hugepages of the domain's page size on its node than its memory needs
    (they can still be reserved before it starts).
    """
    host, dom = ctx.on, ctx.dom
    if not dom.hugepages or host.fs is None:
        return
    if dom.active:
        ctx.skipped.append("free hugepages: the domain is running and holds its pages")
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
    if page >= GIB:
        reserve += f", or at boot: hugepagesz=1G hugepages={needed} (1G pages are best reserved "
        reserve += "at boot, before memory fragments)"
    yield Found(
        f"the domain needs {needed} free {hugepage_name(page)} hugepages on {where} for its "
        f"{dom.memory_kib // 1024} MiB, but {free} "
        f"{'is' if free == 1 else 'are'} free"
        + ("" if supported else f" ({hugepage_name(page)} pages are not available on this host)"),
        f"reserve them before starting the domain: {reserve}",
    )


def _passed_through(ctx: Context) -> Iterator[tuple[str, bool, PciDevice | None]]:
    """(address, managed, the host's device) of each PCI device, where /sys can be read."""
    if ctx.on.fs is None:
        return
    for dev in ctx.dom.hostdevs:
        yield dev.address, dev.managed, ctx.pci(dev.address)


@check("hostdev-missing", "error", "host")
def _hostdev_missing(ctx: Context) -> Iterator[Found]:
    """A PCI device to pass through that does not exist on the host."""
    for address, _, pci in _passed_through(ctx):
        if pci is None:
            yield Found(
                f"PCI device {address} does not exist on this host",
                "check the address with `lspci -D` and fix `devices.hostdevs`",
            )


@check("iommu-off", "error", "host")
def _iommu_off(ctx: Context) -> Iterator[Found]:
    """A PCI device in no IOMMU group: the IOMMU is off."""
    for address, _, pci in _passed_through(ctx):
        if pci is not None and pci.iommu_group is None:
            yield Found(
                f"PCI device {address} is in no IOMMU group: the IOMMU is off, and VFIO "
                "cannot pass devices through without it",
                "turn VT-d / AMD-Vi on in the firmware and boot with intel_iommu=on iommu=pt "
                "(Intel) or amd_iommu=on iommu=pt (AMD)",
            )


@check("iommu-group-shared", "error", "host")
def _iommu_group_shared(ctx: Context) -> Iterator[Found]:
    """A PCI device whose IOMMU group holds devices not passed to the same domain
    (PCI bridges excepted).
    """
    ours = {dev.address for dev in ctx.dom.hostdevs}
    for address, _, pci in _passed_through(ctx):
        if pci is None or pci.iommu_group is None:
            continue
        strangers = []
        for member in pci.group_members:
            if member in ours:
                continue
            other = ctx.pci(member)
            if other is not None and other.bridge:
                continue  # PCI bridges in a group do not stop VFIO
            driver = other.driver if other is not None else None
            strangers.append(f"{member} (driver {driver or 'none'})")
        if strangers:
            yield Found(
                f"PCI device {address} is in IOMMU group {pci.iommu_group} with "
                f"{', '.join(strangers)}, not passed to this domain: VFIO needs the whole "
                "group",
                "pass every device of the group to this domain (add them to "
                "`devices.hostdevs`), or move the card to a slot whose group it has alone",
            )


@check("hostdev-not-vfio", "error", "host")
def _hostdev_not_vfio(ctx: Context) -> Iterator[Found]:
    """A PCI device that libvirt does not manage (``managed: false``) and that is not
    bound to ``vfio-pci``.
    """
    for address, managed, pci in _passed_through(ctx):
        if pci is not None and not managed and pci.driver != VFIO:
            yield Found(
                f"PCI device {address} is not managed by libvirt and is bound to "
                f"{pci.driver or 'no driver'}, not {VFIO}",
                f"bind it to {VFIO} (e.g. `driverctl set-override {address} {VFIO}`), "
                "or set `managed: true` so libvirt binds it when the domain starts",
            )


@check("rt-group-sched", "error", "host")
def _rt_group_sched(ctx: Context) -> Iterator[Found]:
    """RT group scheduling with libvirt's cpu controller and RT bandwidth limits on:
    libvirt's SCHED_FIFO fails with EPERM, because each vCPU thread lands in a new cpu
    cgroup whose ``cpu.rt_runtime_us`` is 0.
    """
    host = ctx.on
    if not ctx.dom.realtime_vcpus or host.fs is None:
        return
    state = host.rt_group_sched()
    if state is not None and state.libvirt_uses_cpu is None:
        ctx.skipped.append(
            "RT group scheduling: /etc/libvirt/qemu.conf cannot be read here (run as root)"
        )
        return
    if state is None or not state.blocks_fifo:
        return
    runtime = (
        f"cpu.rt_runtime_us {state.machine_runtime_us}"
        if state.machine_runtime_us is not None
        else "not created yet; new cgroups get cpu.rt_runtime_us 0"
    )
    yield Found(
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


# ---- libvirt networks ---------------------------------------------------------------


def _networks(ctx: Context) -> Iterator[tuple[str, Network | None]]:
    """(name, the host's network or None) of each libvirt network the domain's NICs use;
    nothing when the host's networks could not be listed (noted as skipped)."""
    if not ctx.dom.networks:
        return
    known = ctx.on.networks
    if known is None:
        if not any(s.startswith("libvirt networks:") for s in ctx.skipped):
            ctx.skipped.append(f"libvirt networks: {ctx.on.networks_unknown}")
        return
    for name in ctx.dom.networks:
        yield name, known.get(name)


@check("network-missing", "error", "host")
def _network_missing(ctx: Context) -> Iterator[Found]:
    """A NIC on a libvirt network (``network: NAME``) that the host does not have:
    the domain cannot start."""
    for name, network in _networks(ctx):
        if network is None:
            have = ctx.on.networks or {}
            listed = ", ".join(repr(n) for n in sorted(have)[:8]) or "none"
            yield Found(
                f"a NIC uses libvirt network {name!r}, which this host does not have "
                f"(its networks: {listed}): the domain cannot start",
                f"define the network (`virsh net-define NETWORK.xml`, then `virsh net-start "
                f"{name}` and `virsh net-autostart {name}`), or use one the host has "
                "(`devices.networks`: `network: NAME`, or `bridge: BRIDGE` for a host bridge)",
            )


@check("network-inactive", "error", "host")
def _network_inactive(ctx: Context) -> Iterator[Found]:
    """A NIC on a libvirt network that is not active: ``virsh start`` fails ("network
    'NAME' is not active") until the network is started."""
    for name, network in _networks(ctx):
        if network is not None and not network.active:
            state = (
                "is not active (it autostarts, but only when libvirtd starts)"
                if network.autostart
                else "is not active and does not autostart"
            )
            fix = f"start it: `virsh net-start {name}`"
            if not network.autostart:
                fix += f"; and to start it with the host: `virsh net-autostart {name}`"
            yield Found(
                f"a NIC uses libvirt network {name!r}, which {state}: the domain cannot "
                "start until it is started",
                fix,
            )


@check("network-no-autostart", "warning", "host")
def _network_no_autostart(ctx: Context) -> Iterator[Found]:
    """A NIC on a libvirt network that is active but does not autostart: after the host
    reboots, the domain cannot start (nor autostart) until someone starts the network."""
    for name, network in _networks(ctx):
        if network is not None and network.active and not network.autostart:
            yield Found(
                f"a NIC uses libvirt network {name!r}, which is active but does not "
                "autostart: after a reboot of the host the domain cannot start until the "
                "network is started by hand",
                f"`virsh net-autostart {name}`",
            )


# ---- the host kernel and its tuning (host-prep's recipe) ----------------------------


@check("kernel-not-rt", "warning", "host")
def _kernel_not_rt(ctx: Context) -> Iterator[Found]:
    """A realtime vCPU on a host whose kernel is not PREEMPT_RT (``/sys/kernel/realtime``,
    else the kernel version, as ``uname -v`` shows it): a vCPU can wait behind
    non-preemptible kernel sections of milliseconds, whatever else is tuned."""
    from rtlibvirt.kernel import realtime

    fs = ctx.on.fs
    if not ctx.dom.realtime_vcpus or fs is None:
        return
    rt, evidence = realtime.preempt_rt(fs)
    if rt is False:
        yield Found(f"the host kernel is not PREEMPT_RT ({evidence})", realtime.RT_KERNEL_HINT)


@check("cpufreq-governor", "warning", "host")
def _cpufreq_governor(ctx: Context) -> Iterator[Found]:
    """A realtime vCPU on a host CPU whose cpufreq governor is not ``performance``: the
    frequency changes under the vCPU (a host without cpufreq is not reported)."""
    from rtlibvirt.kernel import cpufreq

    fs = ctx.on.fs
    if not ctx.dom.realtime_vcpus or fs is None:
        return
    slow: dict[str, list[int]] = {}
    for cpu in sorted(ctx.dom.realtime_cpu_set & ctx.on.topology.all):
        governor = cpufreq.read_small(fs, f"{cpufreq.CPU_DIR}/cpu{cpu}/cpufreq/scaling_governor")
        if governor is not None and governor != "performance":
            slow.setdefault(governor, []).append(cpu)
    for governor, cpus in slow.items():
        yield Found(
            f"host {_cpus_label(cpus)} of realtime vCPUs run the {governor!r} cpufreq "
            "governor: the frequency changes under the vCPUs",
            "set the performance governor: `cpu_governor: performance` in host.yaml "
            "(`rtlibvirt host-prep`), or cpufreq.default_governor=performance",
        )


@check("thp-enabled", "warning", "host")
def _thp_enabled(ctx: Context) -> Iterator[Found]:
    """Transparent hugepages not ``never`` on a host of realtime vCPUs: khugepaged scans
    and compaction can stall them (``madvise`` is reported as info)."""
    from rtlibvirt.kernel import realtime

    fs = ctx.on.fs
    if not ctx.dom.realtime_vcpus or fs is None:
        return
    mode = realtime.thp_mode(fs)
    if mode in ("always", "madvise"):
        yield Found(
            f"transparent hugepages are {mode!r} ({realtime.THP_ENABLED}): khugepaged and "
            "memory compaction can stall the vCPUs",
            "`transparent_hugepages: never` in host.yaml (`rtlibvirt host-prep`), or "
            "transparent_hugepage=never on the kernel command line",
            severity="info" if mode == "madvise" else None,
        )


# ---------------------------------------------------------------------------
# The domain itself
# ---------------------------------------------------------------------------


def domain_findings(dom: DomainFacts) -> Result:
    """What the definition lacks, or has too much of, for real time."""
    return _run("domain", Context(dom))


@check("vcpu-not-pinned", "error", "domain")
def _vcpu_not_pinned(ctx: Context) -> Iterator[Found]:
    """A vCPU without ``<vcpupin>`` (nor ``<vcpu cpuset>``): the host scheduler moves it."""
    dom = ctx.dom
    unpinned = [v for v in range(dom.vcpus) if dom.vcpu_cpus(v) is None]
    if unpinned:
        yield Found(
            f"{_vcpus_label(unpinned)} {'is' if len(unpinned) == 1 else 'are'} not pinned "
            f"(no <vcpupin>): the host scheduler moves {'it' if len(unpinned) == 1 else 'them'} "
            "between CPUs",
            "pin every vCPU to a host CPU of its own: `rtlibvirt tune DOMAIN TUNING.yaml` "
            "with `cpu.pinning` (or `auto`)",
        )


@check("vcpu-pin-range", "warning", "domain")
def _vcpu_pin_range(ctx: Context) -> Iterator[Found]:
    """A vCPU pinned to more than one host CPU."""
    dom = ctx.dom
    wide = [v for v in range(dom.vcpus) if len(dom.vcpu_cpus(v) or ()) > 1]
    if wide:
        yield Found(
            "; ".join(
                f"vCPU {v} may run on any of host {_cpus_label(dom.vcpu_cpus(v) or ())}"
                for v in wide
            ),
            "pin each vCPU to exactly one host CPU",
        )


@check("vcpu-cpu-shared", "error", "domain")
def _vcpu_cpu_shared(ctx: Context) -> Iterator[Found]:
    """Two vCPUs of the domain pinned to the same single host CPU."""
    dom = ctx.dom
    shared = {cpu: vcpus for cpu, vcpus in dom.vcpu_claims().items() if len(vcpus) > 1}
    exclusive = {
        cpu: vcpus
        for cpu, vcpus in shared.items()
        if all(len(dom.vcpu_cpus(v) or ()) == 1 for v in vcpus)
    }
    if exclusive:
        yield Found(
            "; ".join(
                f"{_vcpus_label(v)} share host CPU {cpu}" for cpu, v in sorted(exclusive.items())
            ),
            "give each vCPU a host CPU of its own",
        )


@check("emulator-not-pinned", "warning", "domain")
def _emulator_not_pinned(ctx: Context) -> Iterator[Found]:
    """No ``<emulatorpin>``: QEMU's own threads may run on the vCPUs' CPUs."""
    if ctx.dom.emulatorpin is None:
        yield Found(
            "the emulator threads are not pinned (no <emulatorpin>): QEMU's own threads may run "
            "on the vCPUs' CPUs",
            "pin the emulator to housekeeping CPUs (`cpu.emulator`, or `auto`)",
        )


@check("emulator-on-rt-cpu", "error", "domain")
def _emulator_on_rt_cpu(ctx: Context) -> Iterator[Found]:
    """The emulator or an I/O thread pinned to a realtime vCPU's host CPU."""
    dom = ctx.dom
    clash = dom.realtime_cpu_set & dom.helper_cpu_set
    if clash:
        yield Found(
            f"the emulator or I/O threads share host {_cpus_label(clash)} with realtime vCPUs: a "
            "SCHED_FIFO vCPU there starves QEMU's own threads and the guest hangs",
            "pin the emulator to CPUs no realtime vCPU uses",
        )


@check("no-realtime-sched", "warning", "domain")
def _no_realtime_sched(ctx: Context) -> Iterator[Found]:
    """No vCPU with a real-time scheduler (``<vcpusched scheduler='fifo'>`` or ``rr``)."""
    if not ctx.dom.realtime_vcpus:
        yield Found(
            "no vCPU has a real-time scheduler (no <vcpusched scheduler='fifo'>)",
            "schedule the guest's realtime vCPUs SCHED_FIFO (`cpu.realtime.vcpus`)",
        )


@check("cpu-quota", "warning", "domain")
def _cpu_quota(ctx: Context) -> Iterator[Found]:
    """A CPU bandwidth quota in ``<cputune>``: the vCPUs are throttled every period."""
    if ctx.dom.quota:
        yield Found(
            "<cputune> sets a CPU quota: the vCPUs are throttled every period",
            "remove <period>/<quota> from <cputune> (`virsh schedinfo` / virsh edit)",
        )


@check("memballoon", "warning", "domain")
def _memballoon(ctx: Context) -> Iterator[Found]:
    """A memory balloon: the host can take guest memory back, its stats polling wakes
    the guest.
    """
    balloon = ctx.dom.memballoon
    if balloon not in (None, "none"):
        yield Found(
            f"a memory balloon ({balloon}) is present: the host can take guest memory "
            "back and its stats polling wakes the guest",
            "set <memballoon model='none'/> (`rtlibvirt tune` does)",
        )


@check("usb-controller", "warning", "domain")
def _usb_controller(ctx: Context) -> Iterator[Found]:
    """A USB controller: it polls and interrupts the guest."""
    if ctx.dom.usb_controllers:
        yield Found(
            f"a USB controller is present ({', '.join(ctx.dom.usb_controllers)}): it polls and "
            "interrupts the guest",
            "set <controller type='usb' model='none'/> (`rtlibvirt tune` does)",
        )


@check("usb-device", "warning", "domain")
def _usb_device(ctx: Context) -> Iterator[Found]:
    """USB devices (a tablet, USB redirection, USB host devices) that the guest polls."""
    if ctx.dom.usb_devices:
        yield Found(
            f"USB devices are present ({', '.join(ctx.dom.usb_devices)}), e.g. a tablet that the "
            "guest polls",
            "remove them (`rtlibvirt tune` does; the mouse falls back to PS/2)",
        )


@check("emulated-devices", "warning", "domain")
def _emulated_devices(ctx: Context) -> Iterator[Found]:
    """Graphics (SPICE, VNC), video (QXL, VGA, virtio) and sound that QEMU emulates:
    display refresh and audio timers run on the emulator threads and interrupt the guest.
    """
    found = ctx.dom.emulated
    if found:
        yield Found(
            f"QEMU emulates {', '.join(found)}: display refresh and audio timers keep the "
            "emulator threads busy and interrupt the guest",
            "for a headless real-time guest remove them and use a serial console: "
            "`virt-xml DOMAIN --remove-device --graphics all --sound all --audio all` and "
            "<video><model type='none'/></video> (virsh edit); rtlibvirt tune keeps them, "
            "since they are yours",
        )


@check("no-hugepages", "warning", "domain")
def _no_hugepages(ctx: Context) -> Iterator[Found]:
    """Guest memory not backed by hugepages: TLB misses add latency."""
    if not ctx.dom.hugepages:
        yield Found(
            "guest memory is not backed by hugepages: TLB misses add latency",
            "back it with hugepages (`memory_backing.hugepages: 1G` or `2M`)",
        )


@check("not-locked", "warning", "domain")
def _not_locked(ctx: Context) -> Iterator[Found]:
    """Guest memory not locked (no ``<locked/>``): the host may swap or migrate it."""
    if not ctx.dom.locked:
        yield Found(
            "guest memory is not locked (no <locked/>): the host may swap or migrate it",
            "lock it (`memory_backing.locked: true`)",
        )


@check("pmu-on", "info", "domain")
def _pmu_on(ctx: Context) -> Iterator[Found]:
    """The virtual PMU is on: the guest's perf counter accesses cause exits."""
    if not ctx.dom.pmu_off:
        yield Found(
            "the virtual PMU is on: perf counter accesses from the guest cause exits",
            "turn it off with <pmu state='off'/> (`rtlibvirt tune` does)",
        )


@check("cpu-model", "info", "domain")
def _cpu_model(ctx: Context) -> Iterator[Found]:
    """A CPU model other than host-passthrough: the guest may lack the invariant TSC."""
    mode = ctx.dom.cpu_mode
    if mode != "host-passthrough":
        yield Found(
            f"the CPU model is {mode or 'the hypervisor default'}, not "
            "host-passthrough: the guest may lack the invariant TSC and other host features",
            "use `cpu.model: host-passthrough`",
        )

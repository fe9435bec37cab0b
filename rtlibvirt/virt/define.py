"""``rtlibvirt define``: plan the definition of a spec's domain, then apply it.

Planning reads the current definition (if any) and decides everything;
applying is a single ``defineXML``. A redefine keeps the domain's UUID and the
MAC addresses libvirt generated, so the guest sees the same machine. A domain
of the same name that rtlibvirt did not create is never replaced without
``force``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtlibvirt.config.units import hugepage_name
from rtlibvirt.config.vm import VmSpec
from rtlibvirt.domain import diff as xmldiff
from rtlibvirt.domain.facts import DomainFacts, DomainXMLError, facts
from rtlibvirt.domain.metadata import TUNE_ORIGIN
from rtlibvirt.domain.render import Identity, render
from rtlibvirt.errors import LibvirtError
from rtlibvirt.kernel.cpuset import format_cpulist
from rtlibvirt.virt import connection as virt


@dataclass(frozen=True)
class DefinePlan:
    """What ``define`` would do; computed without changing anything."""

    name: str
    uri: str
    xml: str
    current_xml: str | None  # the existing persistent definition, if any
    managed: bool  # the existing domain carries rtlibvirt metadata
    running: bool

    @property
    def exists(self) -> bool:
        return self.current_xml is not None

    def diff(self) -> str:
        """Unified diff of the current definition against the new one ('' when equal)."""
        if self.current_xml is None:
            return self.xml
        return xmldiff.unified(
            self.current_xml,
            self.xml,
            f"{self.name} (current definition on {self.uri})",
            f"{self.name} (new definition)",
        )


def stored_facts(domain_xml: str, name: str, uri: str) -> DomainFacts:
    """The facts of a definition libvirt stores; LibvirtError when they cannot be read."""
    try:
        return facts(domain_xml)
    except DomainXMLError as exc:
        raise LibvirtError(
            f"the definition of {name!r} on {uri} cannot be read: {exc}; nothing was changed",
            "`virsh dumpxml --inactive` shows it; fix it with virsh edit",
        ) from None


def plan(conn: Any, spec: VmSpec, *, force: bool = False) -> DefinePlan:
    uri = virt.uri_of(conn)
    domain = virt.lookup(conn, spec.name)
    if domain is None:
        return DefinePlan(spec.name, uri, render(spec), None, managed=False, running=False)
    current = virt.inactive_xml(domain)
    found = stored_facts(current, spec.name, uri)
    # rtlibvirt's element is there, and was written by `define` (not by `tune`).
    managed = found.managed and found.origin != TUNE_ORIGIN
    if not managed and not force:
        raise LibvirtError(
            f"a domain named {spec.name!r} already exists on {uri} and was not created by "
            "rtlibvirt; nothing was changed",
            "choose another `name`, or pass --force to replace its definition "
            "(its UUID and MAC addresses are kept); --dry-run shows what would change",
        )
    xml = render(spec, Identity(uuid=found.uuid, macs=found.macs))
    return DefinePlan(spec.name, uri, xml, current, managed, virt.is_active(domain))


def apply(conn: Any, define_plan: DefinePlan) -> str:
    """Define the planned XML; returns the definition as libvirt now stores it."""
    return apply_xml(conn, define_plan.xml)


def apply_xml(conn: Any, xml: str) -> str:
    """Define ``xml``; returns the definition as libvirt now stores it."""
    domain = virt.define(conn, xml)
    return virt.inactive_xml(domain)


def describe(domain_xml: str) -> list[str]:
    """A short, human summary of the real-time parts of any domain definition."""
    dom = facts(domain_xml)
    placed = []
    for vcpu, cpus in sorted(dom.vcpupins.items()):
        policy, priority = dom.sched.get(vcpu, ("", None))
        sched = f"{policy} {'' if priority is None else priority}".strip()
        placed.append(f"{vcpu}->{format_cpulist(cpus)}{' ' + sched if sched else ''}")
    lines = [f"vCPUs      {dom.vcpus}" + (f": {', '.join(placed)}" if placed else ", not pinned")]
    emulator = dom.emulatorpin
    lines.append(
        "emulator   "
        + (f"CPUs {format_cpulist(emulator)}" if emulator is not None else "not pinned")
    )
    if dom.memory_kib:
        backing = []
        if dom.hugepage_kib is not None:
            backing.append(f"{hugepage_name(dom.hugepage_kib)} hugepages")
        elif dom.hugepages:
            backing.append("default hugepages")
        if dom.locked:
            backing.append("locked")
        if dom.nosharepages:
            backing.append("no page sharing")
        if dom.memballoon == "none":
            backing.append("no balloon")
        lines.append(
            f"memory     {dom.memory_kib // 1024} MiB"
            + (f", {', '.join(backing)}" if backing else "")
        )
    counts = [
        _count(dom.disks, "disk"),
        _count(len(dom.macs), "NIC"),
        _count(len(dom.hostdevs), "PCI passthrough device"),
    ]
    lines.append("devices    " + ", ".join(counts))
    if dom.memory_nodes is not None:
        lines.append(
            f"NUMA       memory {dom.memory_mode} on host node {format_cpulist(dom.memory_nodes)}"
        )
    return lines


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"

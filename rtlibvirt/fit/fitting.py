"""A spec or a domain, fitted to its host: placement for ``auto``, then the checks.

Used by ``define`` (placement, host checks), ``check`` (host checks and what
the domain lacks) and ``tune``. No printing here: the CLI reports.
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING, Any

from rtlibvirt.config.vm import VmSpec
from rtlibvirt.domain.facts import DomainFacts, facts
from rtlibvirt.domain.render import render
from rtlibvirt.errors import HostError, LibvirtError
from rtlibvirt.fit import checks
from rtlibvirt.fit.findings import Finding, errors, ordered
from rtlibvirt.fit.host import HostModel, gather
from rtlibvirt.kernel.fs import HostFS
from rtlibvirt.records import record
from rtlibvirt.virt import connection as virt

if TYPE_CHECKING:
    from rtlibvirt.fit.placement import Placement


# Errors with which the domain cannot start at all: skipping the check only moves the
# failure to `virsh start`, so the hint never offers --no-host-check for them.
CANNOT_START = frozenset(
    {
        "cpu-missing",
        "cpu-offline",
        "numa-node-missing",
        "hostdev-missing",
        "iommu-off",
        "iommu-group-shared",
        "hostdev-not-vfio",
        "rt-group-sched",
        "network-missing",
        "network-inactive",
    }
)


def _host_check_hint(found: list[Finding], outcome: str) -> str:
    codes = {f.code for f in found}
    verb = "define" if outcome == "defined" else "change"
    if codes & CANNOT_START:
        blocking = ", ".join(sorted(codes & CANNOT_START))
        return (
            f"fix them as each error's hint says ({blocking}: libvirt could not start the "
            "domain with them)"
        )
    if codes == {"cpu-shared"}:
        return (
            "choose free CPUs (`cpu.pinning: auto`), or, if these domains never run at the "
            "same time, say so in `cpu.share_with` (or pass --allow-shared once)"
        )
    return f"fix the errors above, or pass --no-host-check to {verb} it anyway"


class HostCheckError(HostError):
    """Host checks found errors; nothing was defined."""

    def __init__(self, name: str, found: list[Finding], *, outcome: str = "defined") -> None:
        self.found = found
        count = len(found)
        super().__init__(
            f"{name!r} does not fit this host ({count} error{'s' if count != 1 else ''}); "
            f"nothing was {outcome}",
            _host_check_hint(found, outcome),
        )

    def render(self) -> str:
        lines = [f.render() for f in self.found]
        return "\n".join([*lines, super().render()])


@record
class Fitted:
    """The outcome of fitting one spec or domain to the host."""

    host: HostModel
    spec: VmSpec | None  # with `auto` resolved
    facts: DomainFacts
    placement: Placement | None = None
    findings: list[Finding] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return errors(self.findings)


def device_nodes(host: HostModel, spec: VmSpec) -> frozenset[int]:
    """The NUMA nodes of the spec's PCI devices, where the host tells."""
    nodes = set()
    for dev in spec.devices.hostdevs:
        pci = host.pci(dev.address)
        if pci is not None and pci.numa_node is not None:
            nodes.add(pci.numa_node)
    return frozenset(nodes)


def place_spec(host: HostModel, spec: VmSpec) -> tuple[VmSpec, Placement | None]:
    """Resolve ``cpu.pinning: auto`` / ``cpu.emulator: auto`` on ``host``."""
    if not spec.needs_placement:
        return spec, None
    # imported here: a spec that names its CPUs (the usual case) does not need placement
    from rtlibvirt.fit.placement import Request, place, previous_of

    cpu = spec.cpu
    previous, previous_emulator = previous_of(host.domain(spec.name))
    request = Request(
        name=spec.name,
        vcpus=spec.vcpus,
        realtime=frozenset(spec.realtime_vcpus),
        pinning=cpu.pinning if isinstance(cpu.pinning, tuple) else None,
        emulator=cpu.emulator if isinstance(cpu.emulator, tuple) else None,
        node=spec.numa.node,
        device_nodes=device_nodes(host, spec),
        previous_pinning=previous,
        previous_emulator=previous_emulator,
    )
    # domains it shares CPUs with (they never run together) leave their CPUs free for it
    others = tuple(
        o
        for o in host.others(spec.name)
        if o.name not in spec.cpu.share_with and spec.name not in o.share_with
    )
    placement = place(host.topology, host.isolated, others, request)
    return spec.placed(placement.pinning, placement.emulator), placement


def fit_spec(
    conn: Any,
    uri: str,
    spec: VmSpec,
    *,
    host_check: bool = True,
    readiness: bool = False,
    allow_shared: bool = False,
    fs: HostFS | None = None,
) -> Fitted:
    """Place ``spec`` (if ``auto``) and check its domain against the host."""
    host = gather(conn, uri, fs)
    spec, placement = place_spec(host, spec)
    dom = facts(render(spec))
    fitted = Fitted(host=host, spec=spec, facts=dom, placement=placement)
    if host_check:
        _check(fitted, dom, readiness=readiness, allow_shared=allow_shared)
    return fitted


def fit_domain(
    conn: Any, uri: str, name: str, *, allow_shared: bool = False, fs: HostFS | None = None
) -> Fitted:
    """Check an existing domain against the host, and for what it lacks."""
    if virt.lookup(conn, name) is None:
        raise LibvirtError(
            f"no domain named {name!r} on {uri}",
            "`virsh list --all` lists the domains; a VM.yaml argument must be an existing file",
        )
    host = gather(conn, uri, fs)
    dom = host.domain(name)
    if dom is None:
        why = host.unreadable.get(name, "libvirt did not list it")
        raise LibvirtError(
            f"the definition of {name!r} on {uri} cannot be read: {why}",
            f"`virsh dumpxml --inactive {name}` shows it; fix it with `virsh edit {name}`",
        )
    fitted = Fitted(host=host, spec=None, facts=dom)
    _check(fitted, dom, readiness=True, allow_shared=allow_shared)
    return fitted


def _check(fitted: Fitted, dom: DomainFacts, *, readiness: bool, allow_shared: bool) -> None:
    result = checks.host_findings(fitted.host, dom, allow_shared=allow_shared)
    findings = list(result.findings)
    skipped = list(result.skipped)
    if readiness:
        own = checks.domain_findings(dom)
        findings += own.findings
        skipped += own.skipped
    if fitted.host.unreadable:
        skipped.append(
            "domains whose definitions could not be read: "
            + "; ".join(f"{name} ({why})" for name, why in fitted.host.unreadable.items())
        )
    fitted.findings = ordered(findings)
    fitted.skipped = skipped

"""``rtlibvirt define``: plan the definition of a spec's domain, then apply it.

Planning reads the current definition (if any) and decides everything;
applying is a single ``defineXML``. A redefine keeps the domain's UUID and the
MAC addresses libvirt generated, so the guest sees the same machine. A domain
of the same name that rtlibvirt did not create is never replaced without
``force``.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from rtlibvirt.config.units import hugepage_name
from rtlibvirt.config.vm import VmSpec
from rtlibvirt.domain import diff as xmldiff
from rtlibvirt.domain.facts import DomainFacts, DomainXMLError, facts
from rtlibvirt.domain.metadata import TUNE_ORIGIN
from rtlibvirt.domain.render import Identity, render
from rtlibvirt.errors import LibvirtError
from rtlibvirt.fit.findings import Finding
from rtlibvirt.kernel.cpuset import format_cpulist
from rtlibvirt.records import frozen_record
from rtlibvirt.virt import connection as virt

if TYPE_CHECKING:
    from rtlibvirt.fit.placement import Placement  # only fit/fitting.py makes one, for `auto`


@frozen_record
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
    managed = _created_by_rtlibvirt(found)
    xml = render(spec, Identity(uuid=found.uuid, macs=found.macs))
    if not managed and not force:
        lost = _dropped_devices(current, xml)
        drop = f"; its {_and(lost)} would be dropped" if lost else ""
        if found.managed:  # origin='tune'
            raise LibvirtError(
                f"a domain named {spec.name!r} already exists on {uri}: rtlibvirt tune made "
                "it real-time and keeps its own devices, which a vm.yaml does not describe"
                f"{drop}; nothing was changed",
                f"change it with `rtlibvirt tune {spec.name} TUNING.yaml` (the `cpu`, "
                "`memory_backing`, `numa` and `isolation` sections of this vm.yaml); or pass "
                "--force to replace its definition (--dry-run shows the diff)",
            )
        raise LibvirtError(
            f"a domain named {spec.name!r} already exists on {uri} and was not made by "
            f"rtlibvirt (virt-manager, virt-install or virsh){drop}; nothing was changed",
            f"make it real-time and keep its devices: `rtlibvirt tune {spec.name} TUNING.yaml` "
            "(the `cpu`, `memory_backing`, `numa` and `isolation` sections of this vm.yaml); "
            "or choose another `name`; --force replaces its definition (--dry-run shows the diff)",
        )
    return DefinePlan(spec.name, uri, xml, current, managed, virt.is_active(domain))


def _dropped_devices(current: str, new: str) -> list[str]:
    """The kinds of device the current definition has and the new one has not."""
    import xml.etree.ElementTree as ET

    def kinds(xml: str) -> dict[str, None]:
        devices = ET.fromstring(xml).find("devices")
        return dict.fromkeys(str(d.tag) for d in (devices if devices is not None else ()))

    ours = kinds(new)
    return [_DEVICES[tag] for tag in kinds(current) if tag in _DEVICES and tag not in ours]


# The devices a user added (libvirt fills in the others: controllers, inputs, emulator).
_DEVICES = {
    "disk": "disks",
    "filesystem": "shared folders",
    "interface": "NICs",
    "graphics": "graphics",
    "sound": "sound",
    "audio": "audio",
    "video": "video",
    "channel": "channels",
    "serial": "serial ports",
    "rng": "RNG",
    "tpm": "TPM",
    "hostdev": "passed-through devices",
    "redirdev": "USB redirection",
    "smartcard": "smartcard",
    "watchdog": "watchdog",
}


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def created_by_rtlibvirt(domain_xml: str) -> bool:
    """Whether ``define`` made this domain: rtlibvirt's element is there, not ``tune``'s.

    DomainXMLError when the XML cannot be read.
    """
    return _created_by_rtlibvirt(facts(domain_xml))


def _created_by_rtlibvirt(found: DomainFacts) -> bool:
    return found.managed and found.origin != TUNE_ORIGIN


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


# ---- define in one call: the public API under `define --json` and the Ansible module ----


@frozen_record
class Outcome:
    """What ``define`` did, or would do: the plan, the host step and the result.

    ``result`` is ``defined`` (a new domain), ``updated``, ``replaced`` (a domain
    rtlibvirt did not create, with ``force``) or ``unchanged``: the definition is
    the same once what libvirt fills in is left out (:func:`rtlibvirt.domain.diff.canonical`,
    as ``--dry-run`` shows it). ``stored`` is the definition as libvirt keeps it
    after :func:`commit` (None before, and for a new domain on a dry run).
    """

    plan: DefinePlan
    spec: VmSpec  # with `auto` resolved
    diff: str  # unified diff of the canonical forms; '' when unchanged
    placement: Placement | None = None
    placement_text: str = ""  # how the placement reads, e.g. "vCPUs 0->2, 1->3 on NUMA node 0"
    findings: tuple[Finding, ...] = ()
    not_checked: tuple[str, ...] = ()
    host_checked: bool = True
    stored: str | None = None
    committed: bool = False

    @property
    def changed(self) -> bool:
        return not self.plan.exists or bool(self.diff)

    @property
    def result(self) -> str:
        if not self.changed:
            return "unchanged"
        if not self.plan.exists:
            return "defined"
        return "updated" if self.plan.managed else "replaced"

    @property
    def uuid(self) -> str | None:
        xml = self.stored or self.plan.current_xml
        return facts(xml).uuid if xml else None

    def to_json(self) -> dict[str, Any]:
        """The JSON form (``rtlibvirt define --json``); every key always present."""
        return {
            "name": self.plan.name,
            "uri": self.plan.uri,
            "result": self.result,
            "changed": self.changed,
            "dry_run": not self.committed,
            "existed": self.plan.exists,
            "managed": self.plan.managed if self.plan.exists else None,
            "running": self.plan.running,
            "uuid": self.uuid,
            "placement": placement_json(self.placement, self.placement_text),
            "host_checked": self.host_checked,
            "findings": [f.to_json() for f in self.findings],
            "not_checked": list(self.not_checked),
            "diff": self.diff,
            "xml": self.stored if self.stored is not None else self.plan.xml,
        }


def placement_json(placement: Placement | None, text: str = "") -> dict[str, Any] | None:
    if placement is None:
        return None
    return {
        "text": text,
        "pinning": list(placement.pinning),
        "emulator": list(placement.emulator),
        "nodes": sorted(placement.nodes),
        "isolated": placement.isolated,
        "whole_cores": placement.whole_cores,
        "kept": placement.kept,
    }


def prepare(
    conn: Any,
    uri: str,
    spec: VmSpec,
    *,
    force: bool = False,
    host_check: bool = True,
    allow_shared: bool = False,
) -> Outcome:
    """Place ``auto`` CPUs, check the host and plan the definition. Changes nothing.

    Raises HostCheckError when the host checks find errors, LibvirtError when a
    same-named domain rtlibvirt did not create is in the way (without ``force``).
    """
    from rtlibvirt.fit.fitting import HostCheckError, fit_spec

    placement: Placement | None = None
    placement_text = ""
    findings: tuple[Finding, ...] = ()
    not_checked: tuple[str, ...] = ()
    if host_check or spec.needs_placement:
        fitted = fit_spec(conn, uri, spec, host_check=host_check, allow_shared=allow_shared)
        if fitted.errors:
            raise HostCheckError(spec.name, fitted.errors)
        assert fitted.spec is not None
        spec, placement = fitted.spec, fitted.placement
        if placement is not None:
            placement_text = placement.describe(fitted.host.topology, bool(spec.realtime_vcpus))
        findings, not_checked = tuple(fitted.findings), tuple(fitted.skipped)
    planned = plan(conn, spec, force=force)
    if planned.current_xml is None:
        diff = "".join(
            difflib.unified_diff(
                [],
                xmldiff.canonical(planned.xml).splitlines(keepends=True),
                "/dev/null",
                f"{planned.name} (new definition)",
            )
        )
    else:
        diff = planned.diff()
    return Outcome(
        plan=planned,
        spec=spec,
        diff=diff,
        placement=placement,
        placement_text=placement_text,
        findings=findings,
        not_checked=not_checked,
        host_checked=host_check,
    )


def commit(conn: Any, outcome: Outcome) -> Outcome:
    """Define the planned domain, unless it is unchanged (then libvirt is not asked)."""
    if not outcome.changed:
        return replace(outcome, stored=outcome.plan.current_xml, committed=True)
    return replace(outcome, stored=apply(conn, outcome.plan), committed=True)

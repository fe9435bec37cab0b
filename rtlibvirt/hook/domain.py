"""What the hook needs to know about a domain, read from the XML on its stdin.

"The VM's CPUs" are the host CPUs its realtime vCPUs are pinned to. They come
from the domain XML itself (``<cputune>``: ``<vcpupin>`` and ``<vcpusched>``),
because that is what libvirt applies, even if someone edited the domain after
``rtlibvirt define``; only a domain without ``<cputune>`` falls back to the
spec stored in rtlibvirt's metadata. The isolation settings always come from
the metadata.

Standard library only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from rtlibvirt.domain import metadata
from rtlibvirt.hook.state import Settings
from rtlibvirt.kernel.cpuset import CpuListError, parse_cpulist

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from typing import Any

RT_SCHEDULERS = ("fifo", "rr")


class DomainError(ValueError):
    """The domain XML or its rtlibvirt metadata cannot be used."""


class Vcpu:
    __slots__ = ("cpus", "policy", "priority", "vcpu")

    def __init__(
        self, vcpu: int, cpus: frozenset[int] | None, policy: str | None, priority: int | None
    ) -> None:
        self.vcpu = vcpu
        self.cpus = cpus  # pinned host CPUs; None when not pinned
        self.policy = policy  # "fifo" / "rr" for realtime vCPUs, else None
        self.priority = priority


class DomainInfo:
    """A domain as the hook sees it."""

    __slots__ = ("name", "notes", "realtime", "settings", "spec", "uuid")

    def __init__(
        self,
        name: str,
        uuid: str | None,
        spec: dict[str, Any] | None,
        settings: Settings,
        realtime: list[Vcpu],
        notes: list[str],
    ) -> None:
        self.name = name
        self.uuid = uuid
        self.spec = spec
        self.settings = settings
        self.realtime = realtime  # the realtime vCPUs, in vCPU order
        self.notes = notes  # things worth a warning in the log

    @property
    def managed(self) -> bool:
        """The domain carries rtlibvirt metadata."""
        return self.spec is not None

    @property
    def cpus(self) -> frozenset[int]:
        """The VM's CPUs: host CPUs of its pinned realtime vCPUs."""
        found: set[int] = set()
        for vcpu in self.realtime:
            if vcpu.cpus is not None:
                found |= vcpu.cpus
        return frozenset(found)


def parse(domain_xml: str) -> DomainInfo:
    """Read a domain's XML; raises DomainError when it or its metadata is unusable."""
    try:
        root = ET.fromstring(domain_xml)
    except ET.ParseError as exc:
        raise DomainError(f"the domain XML on stdin is not well-formed: {exc}") from None
    if root.tag != "domain":
        raise DomainError(f"stdin holds <{root.tag}>, not a <domain>")
    name = (root.findtext("name") or "").strip()
    uuid = (root.findtext("uuid") or "").strip() or None
    try:
        spec = metadata.read_element(root)
    except metadata.MetadataError as exc:
        raise DomainError(str(exc)) from None
    notes: list[str] = []
    settings = Settings()
    if spec is not None:
        try:
            settings = Settings.from_json(spec.get("isolation"))
        except ValueError as exc:
            raise DomainError(f"rtlibvirt metadata: {exc}") from None
    realtime = _realtime_vcpus(root, spec, notes)
    return DomainInfo(name, uuid, spec, settings, realtime, notes)


def _cpus(text: str | None, what: str) -> frozenset[int]:
    try:
        return frozenset(parse_cpulist(text or ""))
    except CpuListError as exc:
        raise DomainError(f"{what}: {exc}") from None


def _int(text: str | None, what: str) -> int:
    try:
        return int(text or "")
    except ValueError:
        raise DomainError(f"{what}: {text!r} is not an integer") from None


def _realtime_vcpus(root: ET.Element, spec: dict[str, Any] | None, notes: list[str]) -> list[Vcpu]:
    cputune = root.find("cputune")
    if cputune is None:
        return _from_spec(spec, notes)
    pins: dict[int, frozenset[int]] = {}
    for pin in cputune.findall("vcpupin"):
        vcpu = _int(pin.get("vcpu"), "<vcpupin vcpu>")
        pins[vcpu] = _cpus(pin.get("cpuset"), f"<vcpupin vcpu='{vcpu}' cpuset>")
    sched: dict[int, tuple[str, int | None]] = {}
    for element in cputune.findall("vcpusched"):
        policy = (element.get("scheduler") or "").strip()
        if policy not in RT_SCHEDULERS:
            continue
        priority = element.get("priority")
        prio = _int(priority, "<vcpusched priority>") if priority is not None else None
        for vcpu in _cpus(element.get("vcpus"), "<vcpusched vcpus>"):
            sched[vcpu] = (policy, prio)
    realtime = []
    for vcpu in sorted(sched):
        policy, prio = sched[vcpu]
        cpus = pins.get(vcpu)
        if cpus is None:
            notes.append(
                f"realtime vCPU {vcpu} has no <vcpupin>: it may run on any CPU, "
                "so no CPU is isolated for it"
            )
        realtime.append(Vcpu(vcpu, cpus, policy, prio))
    return realtime


def _from_spec(spec: dict[str, Any] | None, notes: list[str]) -> list[Vcpu]:
    """No <cputune> in the XML: fall back to the pinning in the stored spec."""
    if spec is None:
        return []
    cpu = spec.get("cpu")
    if not isinstance(cpu, dict):
        raise DomainError("rtlibvirt metadata: cpu is missing")
    rt = cpu.get("realtime")
    pinning = cpu.get("pinning")
    if rt in (None, False):
        return []
    if not isinstance(rt, dict) or not isinstance(pinning, list):
        raise DomainError("rtlibvirt metadata: cpu.realtime or cpu.pinning is malformed")
    vcpus = rt.get("vcpus")
    if vcpus is None:
        vcpus = list(range(len(pinning)))
    if not isinstance(vcpus, list) or not all(isinstance(v, int) for v in vcpus):
        raise DomainError("rtlibvirt metadata: cpu.realtime.vcpus is malformed")
    policy = rt.get("policy", "fifo")
    priority = rt.get("priority", 1)
    notes.append("the domain XML has no <cputune>; the VM's CPUs are taken from rtlibvirt metadata")
    realtime = []
    for vcpu in sorted(set(vcpus)):
        host = pinning[vcpu] if 0 <= vcpu < len(pinning) else None
        cpus = frozenset([host]) if isinstance(host, int) else None
        prio = priority if isinstance(priority, int) else None
        realtime.append(Vcpu(vcpu, cpus, str(policy), prio))
    return realtime

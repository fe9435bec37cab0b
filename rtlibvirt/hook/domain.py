"""What the hook needs to know about a domain, read from the XML on its stdin.

Everything here is untrusted input: libvirt hands the hook whatever XML the
domain has, and anyone who may define or edit a domain writes its metadata.

- The XML is bounded (:data:`MAX_XML`) and may not declare a DTD (libvirt
  never writes one; expat also caps entity expansion).
- "The VM's CPUs" are the host CPUs its realtime vCPUs are pinned to. They come
  from the domain XML itself (``<cputune>``: ``<vcpupin>`` and
  ``<vcpusched>``), because that is what libvirt applies, even if someone
  edited the domain after ``rtlibvirt define``; only a domain without
  ``<cputune>`` falls back to the pinning of the spec stored in the metadata.
- The metadata (rtlibvirt's spec, as JSON) is validated by :func:`validate`
  with the very model and rules of ``vm.yaml`` (``config.vm``): the isolation
  settings are ``config.vm.Isolation``, defined once. Importing that model
  costs ~15 ms, so :func:`parse` only reads the XML; the hook validates at
  ``prepare`` and reuses the validated settings of the claim later, as long as
  the metadata text has the same checksum (:attr:`DomainInfo.meta`).
- A domain name becomes part of file paths (libvirt's pid file, a resctrl
  group) only after :func:`name_problem` found nothing wrong with it.

Standard library only (``config.vm`` and ``config.model`` are too).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zlib

from rtlibvirt.domain import metadata
from rtlibvirt.hook.state import Settings, valid_name
from rtlibvirt.kernel.cpuset import CpuListError, format_cpulist, parse_cpulist

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from typing import Any

RT_SCHEDULERS = ("fifo", "rr")
MAX_XML = 4 * 1024 * 1024  # bytes: a domain XML is kilobytes; libvirt's own limit is 10 MiB
MAX_CPU = 8191  # the kernel's largest NR_CPUS (as config.model)
_NUMBER = re.compile(r"\d+")


class DomainError(ValueError):
    """The domain XML or its rtlibvirt metadata cannot be used."""


def name_problem(name: str) -> str | None:
    """Why a domain name cannot be used by the hook (in paths and the state); None if it can.

    libvirt refuses ``/`` in names; rtlibvirt does not rely on that.
    """
    if not valid_name(name):
        return (
            "its name is empty, longer than 200 bytes, or holds '/' or control characters: "
            "rtlibvirt cannot use it in file names"
        )
    return None


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
    """A domain as the hook sees it, before its metadata is validated."""

    __slots__ = ("meta", "meta_text", "name", "notes", "realtime", "uuid")

    def __init__(
        self,
        name: str,
        uuid: str | None,
        meta_text: str | None,
        realtime: list[Vcpu] | None,
        notes: list[str],
    ) -> None:
        self.name = name
        self.uuid = uuid
        self.meta_text = meta_text  # rtlibvirt's metadata, None when the domain has none
        # a checksum of the metadata text: the claim remembers which text it validated
        self.meta = None if meta_text is None else zlib.crc32(meta_text.encode("utf-8"))
        self.realtime = realtime  # the realtime vCPUs of <cputune>; None without <cputune>
        self.notes = notes  # things worth a warning in the log

    @property
    def managed(self) -> bool:
        """The domain carries rtlibvirt metadata."""
        return self.meta_text is not None


class Validated:
    """What the validated metadata says: the settings and the realtime vCPUs."""

    __slots__ = ("realtime", "settings")

    def __init__(self, settings: Settings, realtime: list[Vcpu]) -> None:
        self.settings = settings
        self.realtime = realtime

    @property
    def cpus(self) -> frozenset[int]:
        """The VM's CPUs: host CPUs of its pinned realtime vCPUs."""
        return cpus_of(self.realtime)


def cpus_of(realtime: list[Vcpu]) -> frozenset[int]:
    found: set[int] = set()
    for vcpu in realtime:
        if vcpu.cpus is not None:
            found |= vcpu.cpus
    return frozenset(found)


def parse(domain_xml: str) -> DomainInfo:
    """Read a domain's XML; raises DomainError when it is unusable."""
    if len(domain_xml) > MAX_XML:
        raise DomainError(f"the domain XML on stdin is larger than {MAX_XML // 1048576} MiB")
    if "<!DOCTYPE" in domain_xml or "<!ENTITY" in domain_xml:
        raise DomainError("the domain XML declares a DTD or entities, which libvirt never writes")
    try:
        root = ET.fromstring(domain_xml)
    except ET.ParseError as exc:
        raise DomainError(f"the domain XML on stdin is not well-formed: {exc}") from None
    if root.tag != "domain":
        raise DomainError(f"stdin holds <{_short(root.tag)}>, not a <domain>")
    name = (root.findtext("name") or "").strip()
    uuid = (root.findtext("uuid") or "").strip()[:64] or None
    element = metadata.find(root)
    meta_text = None if element is None else (element.text or "")
    notes: list[str] = []
    realtime = _realtime_vcpus(root, notes)
    return DomainInfo(name, uuid, meta_text, realtime, notes)


def validate(domain: DomainInfo, online: frozenset[int]) -> Validated:
    """Validate the metadata with vm.yaml's model and rules, and the CPUs against the host.

    Raises DomainError with one line (the first problem, and how many more).
    """
    from rtlibvirt.config.vm import validate_data  # ~15 ms: only when validating
    from rtlibvirt.errors import SpecError

    if domain.meta_text is None:
        raise DomainError("the domain has no rtlibvirt metadata")
    try:
        data = metadata.parse_text(domain.meta_text)
    except metadata.MetadataError as exc:
        raise DomainError(str(exc)) from None
    try:
        spec = validate_data(data, source="rtlibvirt metadata")
    except SpecError as exc:
        first = exc.problems[0]
        where = f"{first.path}: " if first.path else ""
        more = len(exc.problems) - 1
        tail = f" (and {more} more problem{'s' if more != 1 else ''})" if more else ""
        raise DomainError(f"invalid rtlibvirt metadata: {where}{first.message}{tail}") from None
    realtime = domain.realtime
    if realtime is None:
        domain.notes.append(
            "the domain XML has no <cputune>; the VM's CPUs are taken from rtlibvirt metadata"
        )
        realtime = _from_spec(spec)
    cpus = cpus_of(realtime)
    if online and not cpus <= online:
        raise DomainError(
            f"the real-time vCPUs are pinned to CPU {format_cpulist(cpus - online)}, which is "
            f"not online on this host (online: {format_cpulist(online)})"
        )
    for key in ("pinning", "emulator"):
        named = getattr(spec.cpu, key)
        if online and isinstance(named, tuple) and not set(named) <= online:
            raise DomainError(
                f"rtlibvirt metadata: cpu.{key} names CPU {format_cpulist(set(named) - online)}, "
                f"which is not online on this host (online: {format_cpulist(online)})"
            )
    return Validated(Settings.from_model(spec.isolation), realtime)


def _short(text: str) -> str:
    return text if len(text) <= 64 else text[:61] + "..."


def _cpus(text: str | None, what: str) -> frozenset[int]:
    """A cpulist attribute, range-checked before it is expanded."""
    text = text or ""
    numbers = _NUMBER.findall(text)
    if len(text) > 4096 or any(len(n) > 5 or int(n) > MAX_CPU for n in numbers):
        raise DomainError(f"{what}: {_short(text)!r} names a CPU beyond {MAX_CPU}")
    try:
        return frozenset(parse_cpulist(text))
    except CpuListError as exc:
        raise DomainError(f"{what}: {exc}") from None


def _int(text: str | None, what: str) -> int:
    text = (text or "").strip()
    if not (text.isdigit() and text.isascii() and len(text) <= 5):
        raise DomainError(f"{what}: {_short(text)!r} is not a small non-negative integer")
    return int(text)


def _realtime_vcpus(root: ET.Element, notes: list[str]) -> list[Vcpu] | None:
    cputune = root.find("cputune")
    if cputune is None:
        return None
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


def _from_spec(spec: Any) -> list[Vcpu]:
    """No <cputune> in the XML: the realtime vCPUs and pinning of the validated spec."""
    rt = spec.cpu.realtime
    pinning = spec.cpu.pinning
    if rt is None:
        return []
    realtime = []
    for vcpu in spec.realtime_vcpus:
        host = pinning[vcpu] if isinstance(pinning, tuple) and vcpu < len(pinning) else None
        cpus = frozenset([host]) if host is not None else None
        realtime.append(Vcpu(vcpu, cpus, rt.policy, rt.priority))
    return realtime

"""What the hook needs to know about a domain, read from the XML on its stdin.

Everything here is untrusted input: libvirt hands the hook whatever XML the
domain has, and anyone who may define or edit a domain writes its metadata.

- The XML is read by ``domain.facts`` (the one reader of domain XML, bounded
  to :data:`MAX_XML` characters) and may not declare a DTD (libvirt never
  writes one; expat also caps entity expansion).
- "The VM's CPUs" are the host CPUs its realtime vCPUs are pinned to. They come
  from the domain XML itself (``<cputune>``: ``<vcpupin>`` and
  ``<vcpusched>``), because that is what libvirt applies, even if someone
  edited the domain after ``rtlibvirt define``; only a domain without
  ``<cputune>`` falls back to the pinning of the spec stored in the metadata.
- The metadata (rtlibvirt's spec, as JSON) is validated by :func:`validate`
  with the very model and rules of ``vm.yaml`` (``config.vm``): the isolation
  settings are ``config.vm.Isolation``, defined once. Importing that model
  costs ~15 ms, so :func:`parse` only reads the XML, and :func:`validated`
  remembers what it validated by the SHA-256 of the metadata text
  (:attr:`DomainInfo.meta`) in ``/run/rtlibvirt/validated``: a VM that starts
  again with the same metadata costs no model import; ``started`` reuses the
  claim ``prepare`` made.
- A domain name becomes part of file paths (libvirt's pid file, a resctrl
  group) only after :func:`name_problem` found nothing wrong with it.

Standard library only (``config.vm`` and ``config.model`` are too).
"""

from __future__ import annotations

import json
import os

from rtlibvirt.domain import facts, metadata
from rtlibvirt.hook.state import STATE_DIR, Invalid, Settings, valid_name
from rtlibvirt.kernel import files
from rtlibvirt.kernel.cpuset import CpuListError, format_cpulist, parse_cpulist

try:  # the C module itself: hashlib's import costs ~2 ms, this ~0.5 ms
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - a Python without it
    from hashlib import sha256

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from typing import Any

MAX_XML = facts.MAX_XML_CHARS  # = hook.MAX_XML: a domain XML is a few KiB
VALIDATED_FILE = f"{STATE_DIR}/validated"
MAX_VALIDATED = 64  # metadata texts remembered


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
        # the SHA-256 of the metadata text: which text a claim (or the cache) validated
        self.meta = None if meta_text is None else sha256(meta_text.encode("utf-8")).hexdigest()
        self.realtime = realtime  # the realtime vCPUs of <cputune>; None without <cputune>
        self.notes = notes  # things worth a warning in the log

    @property
    def managed(self) -> bool:
        """The domain carries rtlibvirt metadata."""
        return self.meta_text is not None

    @property
    def cpus(self) -> frozenset[int]:
        """The host CPUs of the realtime vCPUs that ``<cputune>`` pins (empty without it;
        :func:`validate` then takes them from the metadata)."""
        return cpus_of(self.realtime or [])


class Validated:
    """What the validated metadata says: the settings and the realtime vCPUs."""

    __slots__ = ("kthreads", "named", "realtime", "settings")

    def __init__(
        self,
        settings: Settings,
        realtime: list[Vcpu],
        named: frozenset[int] = frozenset(),
        kthreads: dict[str, int] | None = None,
    ) -> None:
        self.settings = settings
        self.realtime = realtime
        self.named = named  # every host CPU the metadata names (pinning and emulator)
        # cpu.realtime.kernel_threads: kind -> levels above the highest vCPU priority
        self.kthreads = dict(kthreads or {})

    @property
    def cpus(self) -> frozenset[int]:
        """The VM's CPUs: host CPUs of its pinned realtime vCPUs."""
        return cpus_of(self.realtime)

    def kthread_priorities(self) -> dict[str, int]:
        """Kind of kernel thread -> the SCHED_FIFO priority it needs on the VM's CPUs: above
        the highest priority ``<vcpusched>`` gives a realtime vCPU (the XML, which libvirt
        applies, not the spec: ``virsh edit`` counts). May exceed 99: see :func:`no_room`."""
        if not self.kthreads or not self.realtime:
            return {}
        top = max(v.priority or 1 for v in self.realtime)
        return {kind: top + levels for kind, levels in self.kthreads.items()}


MAX_RT_PRIO = 99


def no_room(priorities: dict[str, int]) -> str | None:
    """Why these kernel-thread priorities cannot be given (past 99); None if they can."""
    if not priorities:
        return None
    kind, top = max(priorities.items(), key=lambda item: item[1])
    if top <= MAX_RT_PRIO:
        return None
    names = {"ksoftirqd": "ksoftirqd/N", "ktimers": "ktimers/N", "rcu": "rcuc/N"}
    return (
        f"the real-time vCPUs' priority leaves no room above them for the kernel threads of "
        f"their CPUs: {names.get(kind, kind)} would need SCHED_FIFO {top}, past the highest "
        "real-time "
        f"priority {MAX_RT_PRIO}; lower the vCPU priority (<vcpusched priority=...>, "
        "cpu.realtime.priority) or cpu.realtime.kernel_threads, or set it to false"
    )


def cpus_of(realtime: list[Vcpu]) -> frozenset[int]:
    found: set[int] = set()
    for vcpu in realtime:
        if vcpu.cpus is not None:
            found |= vcpu.cpus
    return frozenset(found)


def parse(domain_xml: str) -> DomainInfo:
    """Read a domain's XML (with ``domain.facts``, the one reader); DomainError if unusable."""
    if "<!DOCTYPE" in domain_xml or "<!ENTITY" in domain_xml:
        raise DomainError("the domain XML declares a DTD or entities, which libvirt never writes")
    try:
        found = facts.facts(domain_xml)
    except facts.DomainXMLError as exc:
        raise DomainError(str(exc)) from None
    notes: list[str] = []
    realtime = _realtime_vcpus(found, notes) if found.cputune else None
    return DomainInfo(
        found.name, (found.uuid or "")[:64] or None, found.metadata_text, realtime, notes
    )


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
    named: set[int] = set()
    for key in ("pinning", "emulator"):
        cpus_named = getattr(spec.cpu, key)
        if isinstance(cpus_named, tuple):
            named |= set(cpus_named)
    rt = spec.cpu.realtime
    levels = rt.kernel_threads.dump() if rt is not None and rt.kernel_threads else {}
    checked = Validated(Settings.from_model(spec.isolation), realtime, frozenset(named), levels)
    _check_online(checked, online)
    return checked


def _check_online(checked: Validated, online: frozenset[int]) -> None:
    if not online:
        return
    cpus = checked.cpus
    if not cpus <= online:
        raise DomainError(
            f"the real-time vCPUs are pinned to CPU {format_cpulist(cpus - online)}, which is "
            f"not online on this host (online: {format_cpulist(online)})"
        )
    if not checked.named <= online:
        raise DomainError(
            f"rtlibvirt metadata names CPU {format_cpulist(checked.named - online)}, which is "
            f"not online on this host (online: {format_cpulist(online)})"
        )


def validated(fs: Any, domain: DomainInfo, online: frozenset[int]) -> Validated:
    """:func:`validate`, remembered by the SHA-256 of the metadata text.

    A domain with ``<cputune>`` whose metadata text was validated before (by
    any hook call since boot) takes the remembered settings: only its CPUs are
    checked against the host again. Raises DomainError like :func:`validate`.
    """
    path = fs.real(VALIDATED_FILE)
    known = _read_validated(path)
    entry = known.get(domain.meta or "")
    if entry is not None and domain.realtime is not None:
        checked = Validated(entry[0], domain.realtime, entry[1], entry[2])
        _check_online(checked, online)
        return checked
    checked = validate(domain, online)
    if domain.meta is not None and domain.realtime is not None:
        known[domain.meta] = (checked.settings, checked.named, checked.kthreads)
        _write_validated(path, known)
    return checked


_Remembered = tuple[Settings, frozenset[int], dict[str, int]]


def _read_validated(path: Any) -> dict[str, _Remembered]:
    """The remembered validations; any damage in the file only costs a validation."""
    try:
        with open(path, "rb") as handle:
            raw = json.loads(handle.read(1 << 20))
    except (OSError, ValueError, RecursionError):
        return {}
    found: dict[str, _Remembered] = {}
    if not isinstance(raw, dict):
        return found
    for digest, entry in list(raw.items())[-MAX_VALIDATED:]:
        try:
            if not (isinstance(digest, str) and len(digest) == 64 and isinstance(entry, dict)):
                continue
            named = frozenset(parse_cpulist(str(entry.get("cpus", ""))))
            levels = entry.get("kthreads")  # missing (an older hook's entry): validate again
            if not (
                isinstance(levels, dict)
                and len(levels) <= 8
                and all(
                    isinstance(k, str)
                    and isinstance(v, int)
                    and not isinstance(v, bool)
                    and 1 <= v <= MAX_RT_PRIO
                    for k, v in levels.items()
                )
            ):
                continue
            found[digest] = (Settings.from_json(entry.get("settings")), named, dict(levels))
        except (Invalid, CpuListError):
            continue
    return found


def _write_validated(path: Any, known: dict[str, _Remembered]) -> None:
    data = {
        digest: {
            "settings": settings.to_json(),
            "cpus": format_cpulist(named),
            "kthreads": levels,
        }
        for digest, (settings, named, levels) in list(known.items())[-MAX_VALIDATED:]
    }
    try:
        os.makedirs(os.path.dirname(str(path)), mode=0o755, exist_ok=True)
        files.atomic_write(path, json.dumps(data).encode("utf-8"), mode=0o600, durable=False)
    except OSError:
        pass  # only a cache: the next call validates again


def _realtime_vcpus(found: facts.DomainFacts, notes: list[str]) -> list[Vcpu]:
    """The realtime vCPUs of ``<cputune>``: their CPUs, policy and priority."""
    realtime = []
    for vcpu in found.realtime_vcpus:
        policy, prio = found.sched[vcpu]
        cpus = found.vcpu_cpus(vcpu)
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

"""What any domain definition says about real time: pins, scheduling, memory, devices.

:func:`facts` reads a domain XML (made by rtlibvirt, virt-manager, virt-install
or by hand) into a small frozen record. Checks, placement and ``status`` work
on these records, never on raw XML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lxml import etree

from rtlibvirt.domain import metadata
from rtlibvirt.kernel.cpuset import CpuListError, parse_cpulist

# libvirt's memory units (virScaleInteger): a single letter is binary.
_UNIT_BYTES = {
    "b": 1,
    "bytes": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}


class DomainXMLError(ValueError):
    """A domain definition that cannot be read."""


def to_kib(value: str | None, unit: str | None, default_unit: str = "KiB") -> int:
    """A libvirt scaled integer (``<memory unit='GiB'>2</memory>``) in KiB."""
    factor = _UNIT_BYTES.get((unit or default_unit).lower())
    if factor is None:
        raise DomainXMLError(f"unknown memory unit {unit!r}")
    try:
        number = int((value or "0").strip())
    except ValueError:
        raise DomainXMLError(f"{value!r} is not an integer") from None
    return number * factor // 1024


def _cpus(text: str | None) -> frozenset[int]:
    if not text:
        return frozenset()
    try:
        # libvirt cpusets may exclude CPUs ("0-7,^3"): honour the exclusions.
        include = [p for p in text.split(",") if not p.strip().startswith("^")]
        exclude = [p.strip()[1:] for p in text.split(",") if p.strip().startswith("^")]
        cpus = set(parse_cpulist(",".join(include)))
        cpus -= set(parse_cpulist(",".join(exclude)))
    except CpuListError as exc:
        raise DomainXMLError(f"cpuset {text!r}: {exc}") from None
    return frozenset(cpus)


@dataclass(frozen=True)
class Hostdev:
    """A PCI host device of a domain."""

    address: str  # 0000:03:00.0
    managed: bool


@dataclass(frozen=True)
class DomainFacts:
    """The real-time relevant parts of one domain definition."""

    name: str
    vcpus: int
    active: bool = False
    vcpu_cpuset: frozenset[int] | None = None  # <vcpu cpuset=...>: every vCPU's default
    vcpupins: Mapping[int, frozenset[int]] = field(default_factory=dict)
    emulatorpin: frozenset[int] | None = None
    iothreadpins: Mapping[int, frozenset[int]] = field(default_factory=dict)
    sched: Mapping[int, tuple[str, int | None]] = field(default_factory=dict)
    quota: bool = False  # <period>/<quota> limits on vCPUs
    memory_kib: int = 0
    hugepages: bool = False
    hugepage_kib: int | None = None  # page size; None with hugepages = the host default size
    locked: bool = False
    nosharepages: bool = False
    memory_nodes: frozenset[int] | None = None  # <numatune><memory nodeset>
    memory_mode: str | None = None
    memballoon: str | None = None  # model, or None without a balloon element
    usb_controllers: tuple[str, ...] = ()  # models, "none" excluded
    usb_devices: tuple[str, ...] = ()  # e.g. "tablet input", "redirdev (spicevmc)"
    pmu_off: bool = False
    cpu_mode: str | None = None
    hostdevs: tuple[Hostdev, ...] = ()
    managed: bool = False  # carries rtlibvirt's metadata

    def vcpu_cpus(self, vcpu: int) -> frozenset[int] | None:
        """The host CPUs vCPU ``vcpu`` may run on; None when it is not pinned at all."""
        if vcpu in self.vcpupins:
            return self.vcpupins[vcpu]
        return self.vcpu_cpuset

    @property
    def realtime_vcpus(self) -> tuple[int, ...]:
        return tuple(sorted(v for v, (policy, _) in self.sched.items() if policy in ("fifo", "rr")))

    @property
    def emulator_cpus(self) -> frozenset[int] | None:
        """Where QEMU's emulator threads may run (emulatorpin, else <vcpu cpuset>)."""
        return self.emulatorpin if self.emulatorpin is not None else self.vcpu_cpuset

    def vcpu_claims(self) -> dict[int, set[int]]:
        """host CPU -> the vCPUs pinned there."""
        claims: dict[int, set[int]] = {}
        for vcpu in range(self.vcpus):
            for cpu in self.vcpu_cpus(vcpu) or ():
                claims.setdefault(cpu, set()).add(vcpu)
        return claims

    @property
    def vcpu_cpu_set(self) -> frozenset[int]:
        return frozenset(self.vcpu_claims())

    @property
    def realtime_cpu_set(self) -> frozenset[int]:
        cpus: set[int] = set()
        for vcpu in self.realtime_vcpus:
            cpus |= self.vcpu_cpus(vcpu) or frozenset()
        return frozenset(cpus)

    @property
    def pinned_cpu_set(self) -> frozenset[int]:
        """Every host CPU this domain pins anything to."""
        cpus = set(self.vcpu_cpu_set) | set(self.emulatorpin or ())
        for pins in self.iothreadpins.values():
            cpus |= pins
        return frozenset(cpus)

    @property
    def helper_cpu_set(self) -> frozenset[int]:
        """CPUs of the emulator and I/O threads."""
        cpus = set(self.emulatorpin or ())
        for pins in self.iothreadpins.values():
            cpus |= pins
        return frozenset(cpus)


def _int(text: str | None, what: str) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        raise DomainXMLError(f"{what}: {text!r} is not an integer") from None


def facts(xml: str, *, active: bool = False) -> DomainFacts:
    """Read a domain definition; raises DomainXMLError on what cannot be read."""
    try:
        root = etree.fromstring(xml.encode("utf-8"))
    except etree.XMLSyntaxError as exc:
        raise DomainXMLError(f"the domain XML is not well-formed: {exc}") from None
    if root.tag != "domain":
        raise DomainXMLError(f"expected a <domain> element, got <{root.tag!r}>")
    name = (root.findtext("name") or "").strip()
    vcpu = root.find("vcpu")
    vcpus = _int(vcpu.text, "<vcpu>") if vcpu is not None else 1
    vcpu_cpuset = _cpus(vcpu.get("cpuset")) if vcpu is not None and vcpu.get("cpuset") else None

    vcpupins: dict[int, frozenset[int]] = {}
    iothreadpins: dict[int, frozenset[int]] = {}
    sched: dict[int, tuple[str, int | None]] = {}
    emulatorpin = None
    quota = False
    cputune = root.find("cputune")
    if cputune is not None:
        for pin in cputune.findall("vcpupin"):
            vcpupins[_int(pin.get("vcpu"), "vcpupin vcpu")] = _cpus(pin.get("cpuset"))
        element = cputune.find("emulatorpin")
        if element is not None:
            emulatorpin = _cpus(element.get("cpuset"))
        for pin in cputune.findall("iothreadpin"):
            iothreadpins[_int(pin.get("iothread"), "iothreadpin iothread")] = _cpus(
                pin.get("cpuset")
            )
        for element in cputune.findall("vcpusched"):
            priority = element.get("priority")
            for v in _cpus(element.get("vcpus")):
                sched[v] = (
                    element.get("scheduler", ""),
                    int(priority) if priority is not None else None,
                )
        quota = any(
            (cputune.findtext(tag) or "").strip() not in ("", "0", "-1")
            for tag in ("quota", "emulator_quota", "global_quota")
        )

    memory = root.find("memory")
    memory_kib = to_kib(memory.text, memory.get("unit")) if memory is not None else 0
    backing = root.find("memoryBacking")
    hugepages = backing is not None and backing.find("hugepages") is not None
    hugepage_kib = None
    if backing is not None:
        page = backing.find("hugepages/page")
        if page is not None:
            hugepage_kib = to_kib(page.get("size"), page.get("unit"))
    numa_memory = root.find("numatune/memory")
    memory_nodes = None
    memory_mode = None
    if numa_memory is not None and numa_memory.get("nodeset"):
        memory_nodes = _cpus(numa_memory.get("nodeset"))
        memory_mode = numa_memory.get("mode", "strict")

    devices = root.find("devices")
    balloon = None
    usb_controllers: list[str] = []
    usb_devices: list[str] = []
    hostdevs: list[Hostdev] = []
    if devices is not None:
        element = devices.find("memballoon")
        if element is not None:
            balloon = element.get("model", "")
        for controller in devices.findall("controller"):
            if controller.get("type") == "usb" and controller.get("model") != "none":
                usb_controllers.append(controller.get("model") or "default")
        for device in devices:
            if not isinstance(device.tag, str):
                continue
            if device.tag in ("input", "redirdev") and device.get("bus") == "usb":
                usb_devices.append(f"{device.get('type')} {device.tag}")
            elif device.tag == "hostdev" and device.get("type") == "usb":
                usb_devices.append("USB host device")
        for hostdev in devices.findall("hostdev"):
            if hostdev.get("mode", "subsystem") != "subsystem" or hostdev.get("type") != "pci":
                continue
            address = hostdev.find("source/address")
            if address is None:
                continue
            try:
                text = (
                    f"{int(address.get('domain', '0'), 16):04x}:"
                    f"{int(address.get('bus', '0'), 16):02x}:"
                    f"{int(address.get('slot', '0'), 16):02x}."
                    f"{int(address.get('function', '0'), 16):x}"
                )
            except ValueError:
                raise DomainXMLError("a PCI hostdev has a malformed source address") from None
            hostdevs.append(Hostdev(text, hostdev.get("managed", "no") == "yes"))

    pmu = root.find("features/pmu")
    cpu = root.find("cpu")
    managed = root.find(f"metadata/{metadata.TAG}") is not None
    return DomainFacts(
        name=name,
        vcpus=vcpus,
        active=active,
        vcpu_cpuset=vcpu_cpuset,
        vcpupins=vcpupins,
        emulatorpin=emulatorpin,
        iothreadpins=iothreadpins,
        sched=sched,
        quota=quota,
        memory_kib=memory_kib,
        hugepages=hugepages,
        hugepage_kib=hugepage_kib,
        locked=backing is not None and backing.find("locked") is not None,
        nosharepages=backing is not None and backing.find("nosharepages") is not None,
        memory_nodes=memory_nodes,
        memory_mode=memory_mode,
        memballoon=balloon,
        usb_controllers=tuple(usb_controllers),
        usb_devices=tuple(usb_devices),
        pmu_off=pmu is not None and pmu.get("state") == "off",
        cpu_mode=cpu.get("mode", "custom") if cpu is not None else None,
        hostdevs=tuple(hostdevs),
        managed=managed,
    )


def merge_live(definition: DomainFacts, live: DomainFacts) -> DomainFacts:
    """A running domain claims the CPUs of its definition and of its live state."""
    from dataclasses import replace

    pins = {v: definition.vcpupins.get(v, frozenset()) | p for v, p in live.vcpupins.items()}
    for v, p in definition.vcpupins.items():
        pins.setdefault(v, p)
    emulator = definition.emulatorpin
    if live.emulatorpin is not None:
        emulator = (emulator or frozenset()) | live.emulatorpin
    sched = {**definition.sched, **live.sched}
    return replace(
        definition,
        active=True,
        vcpus=max(definition.vcpus, live.vcpus),
        vcpupins=pins,
        emulatorpin=emulator,
        sched=sched,
    )

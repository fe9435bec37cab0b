"""The one reader of domain XML: what a definition says about real time.

:func:`facts` reads a domain XML (made by rtlibvirt, virt-manager, virt-install
or by hand, as libvirt stores it or as the hook gets it on stdin) into a
read-only :class:`DomainFacts`. ``define``, ``tune``, ``check``, ``status``,
placement and the hook work on these records, never on raw XML; only the
writers (``domain.render``, ``domain.edit``) and ``domain.diff`` hold an XML
tree of their own.

Standard library only (``xml.etree``), and no ``dataclasses`` or ``typing``
at run time: the libvirt hook imports this module on every event of an
rtlibvirt domain, where each millisecond of imports counts.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from rtlibvirt.domain import metadata
from rtlibvirt.kernel.cpuset import CpuListError, parse_cpulist

TYPE_CHECKING = False  # not typing's: importing typing costs the hook ~3 ms a call
if TYPE_CHECKING:
    from typing import Any, ClassVar

# Bounds on what is read, checked before any work that grows with the value.
MAX_XML_CHARS = 16 * 1024 * 1024  # far above any real definition
MAX_CPU = 65535  # the highest host CPU or vCPU id a cpuset may name (Linux: 8192 max)
LIMIT = MAX_CPU + 1  # parse_cpulist's limit: CPUs 0 to MAX_CPU
MAX_VCPUS = 16384  # libvirt's own ceiling (QEMU: 4096 on q35)
MAX_SHARE_WITH = 256  # = config.vm.MAX_SHARE_WITH: domains one VM may share CPUs with

RT_POLICIES = ("fifo", "rr")  # <vcpusched scheduler>s that are real-time

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
    "p": 1024**5,
    "pib": 1024**5,
    "pb": 1000**5,
    "e": 1024**6,
    "eib": 1024**6,
    "eb": 1000**6,
}


class DomainXMLError(ValueError):
    """A domain definition that cannot be read."""


def to_kib(value: str | None, unit: str | None, default_unit: str = "KiB") -> int:
    """A libvirt scaled integer (``<memory unit='GiB'>2</memory>``) in KiB."""
    factor = _UNIT_BYTES.get((unit or default_unit).lower())
    if factor is None:
        raise DomainXMLError(f"unknown memory unit {unit!r}")
    text = (value or "0").strip()
    if not text.isdigit() or len(text) > 24:
        raise DomainXMLError(f"{value!r} is not a size (a whole number below 10^24)")
    return int(text) * factor // 1024


def parse_cpuset(text: str | None, what: str) -> frozenset[int]:
    """A libvirt cpuset (``"0-7,^3"``: exclusions honoured); '' or None is empty.

    ``what`` names the attribute in the error, e.g. ``<vcpupin vcpu='1' cpuset>``.
    """
    if not text:
        return frozenset()
    parts = [p.strip() for p in text.split(",")]
    # One limit, MAX_CPU, checked by parse_cpulist before any range is expanded.
    try:
        cpus = set(parse_cpulist(",".join(p for p in parts if not p.startswith("^")), LIMIT))
        cpus -= set(parse_cpulist(",".join(p[1:] for p in parts if p.startswith("^")), LIMIT))
    except CpuListError as exc:
        raise DomainXMLError(f"{what}: {exc}") from None
    return frozenset(cpus)


def _int(text: str | None, what: str, low: int = 0, high: int = MAX_CPU) -> int:
    value = (text or "").strip()
    try:
        number = int(value) if len(value) <= 12 else None
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise DomainXMLError(f"{what}: {text!r} is not an integer from {low} to {high}")
    return number


class Hostdev:
    """A PCI host device of a domain."""

    __slots__ = ("address", "managed")

    def __init__(self, address: str, managed: bool) -> None:
        self.address = address  # 0000:03:00.0
        self.managed = managed

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hostdev) and (self.address, self.managed) == (
            other.address,
            other.managed,
        )

    def __hash__(self) -> int:
        return hash((self.address, self.managed))

    def __repr__(self) -> str:
        return f"Hostdev({self.address!r}, managed={self.managed})"


class DomainFacts:
    """The real-time relevant parts of one domain definition. Read-only.

    Built by :func:`facts`; tests may build one directly (keyword arguments,
    every one but ``name`` and ``vcpus`` optional) and :meth:`replace` makes
    changed copies.
    """

    __slots__ = (
        "active",
        "cpu_mode",
        "cputune",
        "disks",
        "emulated",
        "emulatorpin",
        "firmware",
        "hostdevs",
        "hugepage_kib",
        "hugepages",
        "iothreadpins",
        "iothreads",
        "locked",
        "machine",
        "macs",
        "managed",
        "memballoon",
        "memory_kib",
        "memory_mode",
        "memory_nodes",
        "metadata_text",
        "name",
        "networks",
        "nosharepages",
        "origin",
        "pmu_off",
        "quota",
        "sched",
        "usb_controllers",
        "usb_devices",
        "uuid",
        "vcpu_cpuset",
        "vcpupins",
        "vcpus",
    )

    name: str
    uuid: str | None
    vcpus: int
    active: bool  # read from a running domain's live XML
    vcpu_cpuset: frozenset[int] | None  # <vcpu cpuset=...>: every vCPU's default
    cputune: bool  # the definition has a <cputune> element
    vcpupins: dict[int, frozenset[int]]  # vCPU -> <vcpupin cpuset>
    emulatorpin: frozenset[int] | None
    iothreadpins: dict[int, frozenset[int]]
    iothreads: tuple[int, ...]  # the ids of its I/O threads
    sched: dict[int, tuple[str, int | None]]  # vCPU -> (<vcpusched scheduler>, priority)
    quota: bool  # <period>/<quota> limits on vCPUs
    memory_kib: int
    hugepages: bool
    hugepage_kib: int | None  # page size; None with hugepages = the host default size
    locked: bool
    nosharepages: bool
    memory_nodes: frozenset[int] | None  # <numatune><memory nodeset>
    memory_mode: str | None
    memballoon: str | None  # model, or None without a balloon element
    usb_controllers: tuple[str, ...]  # models, "none" excluded
    usb_devices: tuple[str, ...]  # e.g. "tablet input", "spicevmc redirdev", "USB host device"
    pmu_off: bool
    cpu_mode: str | None
    machine: str  # <os><type machine>, as written ("pc-q35-7.2", "q35", "")
    firmware: str  # "efi" or "bios"
    hostdevs: tuple[Hostdev, ...]
    disks: int
    emulated: tuple[str, ...]  # display and audio devices QEMU emulates: "SPICE graphics", ...
    macs: tuple[str | None, ...]  # each <interface>'s MAC address, None when libvirt picks
    networks: tuple[str, ...]  # the libvirt networks its NICs use (<source network>), in order
    managed: bool  # carries rtlibvirt's metadata element
    origin: str | None  # that element's origin attribute ("tune"), if any
    metadata_text: str | None  # that element's text: the stored spec as JSON

    _DEFAULTS: ClassVar[dict[str, Any]] = {
        "uuid": None,
        "active": False,
        "vcpu_cpuset": None,
        "cputune": False,
        "emulatorpin": None,
        "iothreads": (),
        "quota": False,
        "memory_kib": 0,
        "hugepages": False,
        "hugepage_kib": None,
        "locked": False,
        "nosharepages": False,
        "memory_nodes": None,
        "memory_mode": None,
        "memballoon": None,
        "usb_controllers": (),
        "usb_devices": (),
        "pmu_off": False,
        "cpu_mode": None,
        "machine": "",
        "firmware": "bios",
        "hostdevs": (),
        "disks": 0,
        "emulated": (),
        "macs": (),
        "networks": (),
        "managed": False,
        "origin": None,
        "metadata_text": None,
    }

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.__slots__)
        if unknown:
            raise TypeError(f"DomainFacts has no field {', '.join(sorted(unknown))}")
        for slot in self.__slots__:
            if slot in values:
                value = values[slot]
            elif slot in ("vcpupins", "iothreadpins", "sched"):
                value = {}
            elif slot in self._DEFAULTS:
                value = self._DEFAULTS[slot]
            else:
                raise TypeError(f"DomainFacts needs {slot}")
            object.__setattr__(self, slot, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"DomainFacts is read-only (use .replace({name}=...))")

    def replace(self, **changes: Any) -> DomainFacts:
        """A copy with ``changes``."""
        return DomainFacts(**{**{s: getattr(self, s) for s in self.__slots__}, **changes})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DomainFacts):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # it holds dicts

    def __repr__(self) -> str:
        return f"DomainFacts(name={self.name!r}, vcpus={self.vcpus}, active={self.active})"

    # ---- derived views ------------------------------------------------------------

    def vcpu_cpus(self, vcpu: int) -> frozenset[int] | None:
        """The host CPUs vCPU ``vcpu`` may run on; None when it is not pinned at all."""
        if vcpu in self.vcpupins:
            return self.vcpupins[vcpu]
        return self.vcpu_cpuset

    @property
    def realtime_vcpus(self) -> tuple[int, ...]:
        return tuple(sorted(v for v, (policy, _) in self.sched.items() if policy in RT_POLICIES))

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
        return self.vcpu_cpu_set | self.helper_cpu_set

    @property
    def helper_cpu_set(self) -> frozenset[int]:
        """CPUs of the emulator and I/O threads."""
        cpus = set(self.emulatorpin or ())
        for pins in self.iothreadpins.values():
            cpus |= pins
        return frozenset(cpus)

    @property
    def share_with(self) -> frozenset[str]:
        """The domains its stored spec says it may share host CPUs with (``cpu.share_with``:
        they never run at the same time); empty without metadata or when it cannot be read.
        Untrusted: only names of at most 64 characters, at most MAX_SHARE_WITH of them."""
        try:
            spec = self.stored_spec()
        except metadata.MetadataError:
            return frozenset()
        cpu = spec.get("cpu") if spec is not None else None
        names = cpu.get("share_with") if isinstance(cpu, dict) else None
        if not isinstance(names, list) or len(names) > MAX_SHARE_WITH:
            return frozenset()
        return frozenset(n for n in names if isinstance(n, str) and 0 < len(n) <= 64)

    def shares_cpus_with(self, other: DomainFacts) -> bool:
        """Either domain declares (``cpu.share_with``) that the two never run together."""
        return other.name in self.share_with or self.name in other.share_with

    def stored_spec(self) -> dict[str, Any] | None:
        """The spec in rtlibvirt's metadata (a normalized vm.yaml); None when there is none.

        Raises :class:`~rtlibvirt.domain.metadata.MetadataError` when it is not
        a JSON mapping.
        """
        if self.metadata_text is None:
            return None
        return metadata.parse_text(self.metadata_text)


def facts(xml: str, *, active: bool = False) -> DomainFacts:
    """Read a domain definition; raises DomainXMLError on what cannot be read."""
    if len(xml) > MAX_XML_CHARS:
        raise DomainXMLError(f"the domain XML has {len(xml)} characters, more than {MAX_XML_CHARS}")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise DomainXMLError(f"the domain XML is not well-formed: {exc}") from None
    return from_element(root, active=active)


def from_element(root: ET.Element, *, active: bool = False) -> DomainFacts:
    """Like :func:`facts`, on an already parsed ``<domain>`` element."""
    if root.tag != "domain":
        raise DomainXMLError(f"expected a <domain> element, got <{root.tag}>")
    values: dict[str, Any] = {
        "name": (root.findtext("name") or "").strip(),
        "uuid": (root.findtext("uuid") or "").strip() or None,
        "active": active,
    }
    vcpu = root.find("vcpu")
    values["vcpus"] = _int(vcpu.text, "<vcpu>", 1, MAX_VCPUS) if vcpu is not None else 1
    if vcpu is not None and vcpu.get("cpuset"):
        values["vcpu_cpuset"] = parse_cpuset(vcpu.get("cpuset"), "<vcpu cpuset>")
    _read_cputune(root, values)
    _read_memory(root, values)
    _read_devices(root, values)
    values["iothreads"] = _iothread_ids(root)

    pmu = root.find("features/pmu")
    values["pmu_off"] = pmu is not None and pmu.get("state") == "off"
    cpu = root.find("cpu")
    values["cpu_mode"] = cpu.get("mode", "custom") if cpu is not None else None
    os_element = root.find("os")
    if os_element is not None:
        ostype = os_element.find("type")
        values["machine"] = ostype.get("machine", "") if ostype is not None else ""
        loader = os_element.find("loader")
        efi = os_element.get("firmware") == "efi" or (
            loader is not None and loader.get("type") == "pflash"
        )
        values["firmware"] = "efi" if efi else "bios"
    ours = metadata.find(root)
    if ours is not None:
        values["managed"] = True
        values["origin"] = ours.get("origin")
        values["metadata_text"] = ours.text or ""
    return DomainFacts(**values)


def _read_cputune(root: ET.Element, values: dict[str, Any]) -> None:
    vcpupins: dict[int, frozenset[int]] = {}
    iothreadpins: dict[int, frozenset[int]] = {}
    sched: dict[int, tuple[str, int | None]] = {}
    values.update(vcpupins=vcpupins, iothreadpins=iothreadpins, sched=sched)
    cputune = root.find("cputune")
    if cputune is None:
        return
    values["cputune"] = True
    for pin in cputune.findall("vcpupin"):
        vcpu = _int(pin.get("vcpu"), "<vcpupin vcpu>", 0, MAX_VCPUS - 1)
        vcpupins[vcpu] = parse_cpuset(pin.get("cpuset"), f"<vcpupin vcpu='{vcpu}' cpuset>")
    element = cputune.find("emulatorpin")
    if element is not None:
        values["emulatorpin"] = parse_cpuset(element.get("cpuset"), "<emulatorpin cpuset>")
    for pin in cputune.findall("iothreadpin"):
        iothread = _int(pin.get("iothread"), "<iothreadpin iothread>")
        iothreadpins[iothread] = parse_cpuset(
            pin.get("cpuset"), f"<iothreadpin iothread='{iothread}' cpuset>"
        )
    for element in cputune.findall("vcpusched"):
        policy = (element.get("scheduler") or "").strip()
        priority = element.get("priority")
        prio = _int(priority, "<vcpusched priority>", 0, 99) if priority is not None else None
        for v in parse_cpuset(element.get("vcpus"), "<vcpusched vcpus>"):
            sched[v] = (policy, prio)
    values["quota"] = any(
        (cputune.findtext(tag) or "").strip() not in ("", "0", "-1")
        for tag in ("quota", "emulator_quota", "global_quota")
    )


def _read_memory(root: ET.Element, values: dict[str, Any]) -> None:
    memory = root.find("memory")
    if memory is not None:
        values["memory_kib"] = to_kib(memory.text, memory.get("unit"))
    backing = root.find("memoryBacking")
    if backing is not None:
        hugepages = backing.find("hugepages")
        values["hugepages"] = hugepages is not None
        page = hugepages.find("page") if hugepages is not None else None
        if page is not None:
            values["hugepage_kib"] = to_kib(page.get("size"), page.get("unit"))
        values["locked"] = backing.find("locked") is not None
        values["nosharepages"] = backing.find("nosharepages") is not None
    numa_memory = root.find("numatune/memory")
    if numa_memory is not None and numa_memory.get("nodeset"):
        values["memory_nodes"] = parse_cpuset(
            numa_memory.get("nodeset"), "<numatune><memory nodeset>"
        )
        values["memory_mode"] = numa_memory.get("mode", "strict")


def _read_devices(root: ET.Element, values: dict[str, Any]) -> None:
    devices = root.find("devices")
    if devices is None:
        return
    usb_controllers: list[str] = []
    usb_devices: list[str] = []
    hostdevs: list[Hostdev] = []
    macs: list[str | None] = []
    networks: dict[str, None] = {}  # ordered, each name once
    emulated: list[str] = []
    disks = 0
    for device in devices:
        tag = device.tag
        if tag == "disk":
            disks += 1
        elif tag == "graphics":
            emulated.append(f"{_upper(device.get('type'))} graphics")
        elif tag == "video":
            model = device.find("model")
            kind = model.get("type") if model is not None else None
            if kind != "none":
                emulated.append(f"{_upper(kind or 'default')} video")
        elif tag == "sound":
            emulated.append(f"{(device.get('model') or 'default')[:32]} sound")
        elif tag == "audio" and device.get("type") not in (None, "none"):
            emulated.append(f"{(device.get('type') or '')[:32]} audio")
        elif tag == "interface":
            mac = device.find("mac")
            macs.append(mac.get("address") if mac is not None else None)
            source = device.find("source")
            network = source.get("network") if source is not None else None
            if device.get("type") == "network" and network:
                networks[network] = None
        elif tag == "memballoon":
            values.setdefault("memballoon", device.get("model", ""))
        elif tag == "controller":
            if device.get("type") == "usb" and device.get("model") != "none":
                usb_controllers.append(device.get("model") or "default")
        elif tag in ("input", "redirdev"):
            if device.get("bus") == "usb":
                usb_devices.append(f"{device.get('type')} {tag}")
        elif tag == "hostdev":
            kind = device.get("type")
            if kind == "usb":
                usb_devices.append("USB host device")
            elif kind == "pci" and device.get("mode", "subsystem") == "subsystem":
                hostdev = _pci_hostdev(device)
                if hostdev is not None:
                    hostdevs.append(hostdev)
    values.update(
        usb_controllers=tuple(usb_controllers),
        usb_devices=tuple(usb_devices),
        hostdevs=tuple(hostdevs),
        macs=tuple(macs),
        networks=tuple(networks),
        disks=disks,
        emulated=tuple(emulated),
    )


def _upper(kind: str | None) -> str:
    """``spice`` -> ``SPICE``, ``qxl`` -> ``QXL``, ``virtio`` stays (a name, not an acronym)."""
    text = (kind or "?")[:32]
    return text.upper() if text in ("spice", "vnc", "qxl", "vga", "sdl", "rdp") else text


def _pci_hostdev(device: ET.Element) -> Hostdev | None:
    address = device.find("source/address")
    if address is None:
        return None
    try:
        text = (
            f"{int(address.get('domain', '0'), 16):04x}:"
            f"{int(address.get('bus', '0'), 16):02x}:"
            f"{int(address.get('slot', '0'), 16):02x}."
            f"{int(address.get('function', '0'), 16):x}"
        )
    except ValueError:
        raise DomainXMLError("a PCI hostdev has a malformed source address") from None
    if len(text) != 12:
        raise DomainXMLError(f"a PCI hostdev's source address {text!r} is out of range")
    return Hostdev(text, device.get("managed", "no") == "yes")


def _iothread_ids(root: ET.Element) -> tuple[int, ...]:
    """<iothreadids> when present, in their order (libvirt's order of <iothreadpin>s too),
    else 1..<iothreads>."""
    ids = [_int(i.get("id"), "<iothread id>", 1) for i in root.findall("iothreadids/iothread")]
    if ids:
        return tuple(dict.fromkeys(ids))
    count = root.findtext("iothreads")
    if count is None:
        return ()
    return tuple(range(1, _int(count, "<iothreads>") + 1))


def merge_live(definition: DomainFacts, live: DomainFacts) -> DomainFacts:
    """A running domain claims the CPUs of its definition and of its live state."""
    pins = {v: definition.vcpupins.get(v, frozenset()) | p for v, p in live.vcpupins.items()}
    for v, p in definition.vcpupins.items():
        pins.setdefault(v, p)
    emulator = definition.emulatorpin
    if live.emulatorpin is not None:
        emulator = (emulator or frozenset()) | live.emulatorpin
    return definition.replace(
        active=True,
        vcpus=max(definition.vcpus, live.vcpus),
        vcpupins=pins,
        emulatorpin=emulator,
        sched={**definition.sched, **live.sched},
    )

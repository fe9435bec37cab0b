"""The probe domains: the user's VM as a measuring guest, and the untuned VM beside it.

:func:`probe_xml` keeps from the VM's domain XML (rendered from a vm.yaml or
read from a defined domain) everything that decides its latency: the vCPU
count and ``<cputune>`` (pinning, emulator and I/O thread pins,
``<vcpusched>``), ``<memoryBacking>``, ``<memtune>``, ``<numatune>``, the CPU
model and topology, the clock, the features and the metadata (rtlibvirt's
spec: the installed hook isolates the host exactly as for the real VM). It
boots the probe image directly (``<kernel>``, ``<initrd>``, ``<cmdline>``),
has no disks, NICs or host devices, and writes its two serial ports to files.

:func:`untuned_xml` is the same guest as ``virt-install`` makes it by default
(tests/data/domains/virt-install-server.xml): no pinning, no real-time
scheduling, no hugepages, a virtio balloon and RNG, a USB controller, and no
rtlibvirt metadata, so the hook leaves the host alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from rtlibvirt.domain import metadata
from rtlibvirt.domain.edit import ORDER
from rtlibvirt.domain.facts import DomainFacts, DomainXMLError, facts
from rtlibvirt.errors import InputError

# Top-level elements taken over as they are. They are written in libvirt's order, the one
# table of it (domain.edit.ORDER[""]), as is everything the probe writes itself.
KEPT = frozenset(
    {
        "metadata",
        "maxMemory",
        "memory",
        "currentMemory",
        "blkiotune",
        "memtune",
        "memoryBacking",
        "vcpu",
        "vcpus",
        "iothreads",
        "iothreadids",
        "cputune",
        "numatune",
        "resource",
        "features",
        "cpu",
        "clock",
    }
)
VIRT_TYPES = ("kvm", "qemu")
MAX_XML = 4 * 1024 * 1024  # no real domain definition is near this


@dataclass(frozen=True)
class Files:
    """What the probe guest boots and where its serial ports write."""

    kernel: Path
    initrd: Path
    cmdline: str
    console: Path  # ttyS0: the guest's kernel messages
    results: Path  # ttyS1: the results (see guest.INIT)


def parse(xml: str) -> etree._Element:
    if len(xml) > MAX_XML:
        raise InputError(f"the domain XML is {len(xml)} characters, more than {MAX_XML}")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=True
    )
    try:
        root = etree.fromstring(xml.encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        raise InputError(f"the domain XML is not well-formed: {exc}") from None
    if root.tag != "domain":
        raise InputError(f"expected a <domain>, got <{root.tag!s}>")
    return root


def read_facts(xml: str) -> DomainFacts:
    try:
        return facts(xml)
    except DomainXMLError as exc:
        raise InputError(f"the domain XML cannot be read: {exc}") from None


def _os(base: etree._Element, files: Files) -> etree._Element:
    """Direct kernel boot; the machine type of the VM, BIOS (the firmware does not matter)."""
    os_element = etree.Element("os")
    old = base.find("os/type")
    typ = etree.SubElement(os_element, "type", arch="x86_64")
    machine = old.get("machine") if old is not None else None
    arch = old.get("arch") if old is not None else None
    typ.set("arch", str(arch or "x86_64"))
    typ.set("machine", str(machine or "q35"))
    typ.text = "hvm"
    etree.SubElement(os_element, "kernel").text = str(files.kernel)
    etree.SubElement(os_element, "initrd").text = str(files.initrd)
    etree.SubElement(os_element, "cmdline").text = files.cmdline
    return os_element


def _devices(files: Files, *, balloon: etree._Element | None, untuned: bool) -> etree._Element:
    devices = etree.Element("devices")
    if untuned:
        etree.SubElement(devices, "controller", type="usb", model="qemu-xhci", ports="15")
    else:
        etree.SubElement(devices, "controller", type="usb", model="none")
    for port, path in ((0, files.console), (1, files.results)):
        serial = etree.SubElement(devices, "serial", type="file")
        etree.SubElement(serial, "source", path=str(path), append="off")
        etree.SubElement(serial, "target", port=str(port))
    if untuned:
        etree.SubElement(devices, "memballoon", model="virtio")
        rng = etree.SubElement(devices, "rng", model="virtio")
        etree.SubElement(rng, "backend", model="random").text = "/dev/urandom"
    elif balloon is not None:
        devices.append(copy.deepcopy(balloon))
    else:
        etree.SubElement(devices, "memballoon", model="none")
    return devices


def _tail(domain: etree._Element, devices: etree._Element) -> None:
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        etree.SubElement(domain, event).text = "destroy"  # every way out ends the probe
    pm = etree.SubElement(domain, "pm")
    etree.SubElement(pm, "suspend-to-mem", enabled="no")
    etree.SubElement(pm, "suspend-to-disk", enabled="no")
    domain.append(devices)


def _for_tcg(domain: etree._Element) -> None:
    """TCG has no host CPU to pass through and no KVM paravirt features."""
    cpu = domain.find("cpu")
    if cpu is not None and cpu.get("mode") in ("host-passthrough", "host-model"):
        for attribute in list(cpu.attrib):
            del cpu.attrib[attribute]
        cpu.set("mode", "maximum")
        cpu.set("check", "none")
        for model in cpu.findall("model"):
            cpu.remove(model)
    features = domain.find("features")
    if features is not None:
        for kvm in features.findall("kvm"):
            features.remove(kvm)


def _ensure_acpi(domain: etree._Element) -> None:
    """The probe powers itself off through ACPI."""
    features = domain.find("features")
    if features is None:
        features = etree.Element("features")
        cpu = domain.find("cpu")
        (cpu.addprevious if cpu is not None else domain.find("os").addnext)(features)  # type: ignore[union-attr]
    if features.find("acpi") is None:
        features.insert(0, etree.Element("acpi"))


def probe_xml(base_xml: str, name: str, files: Files, virt_type: str = "kvm") -> str:
    """The tuned probe domain: the VM's real-time configuration, booting the probe image."""
    if virt_type not in VIRT_TYPES:
        raise InputError(f"--virt-type {virt_type}: choose kvm or qemu")
    base = parse(base_xml)
    domain = etree.Element("domain", type=virt_type)
    etree.SubElement(domain, "name").text = name
    for tag in ORDER[""]:
        if tag == "os":
            domain.append(_os(base, files))
        elif tag in KEPT:
            for element in base.findall(tag):
                domain.append(copy.deepcopy(element))
    _ensure_acpi(domain)
    if virt_type == "qemu":
        _for_tcg(domain)
    _tail(domain, _devices(files, balloon=base.find("devices/memballoon"), untuned=False))
    return etree.tostring(domain, encoding="unicode", pretty_print=True)


def untuned_xml(base_xml: str, name: str, files: Files, virt_type: str = "kvm") -> str:
    """The same guest as virt-install makes it: the vCPUs and memory, nothing real-time."""
    if virt_type not in VIRT_TYPES:
        raise InputError(f"--virt-type {virt_type}: choose kvm or qemu")
    base = parse(base_xml)
    info = read_facts(base_xml)
    domain = etree.Element("domain", type=virt_type)
    etree.SubElement(domain, "name").text = name
    memory_kib = str(info.memory_kib)
    etree.SubElement(domain, "memory", unit="KiB").text = memory_kib
    etree.SubElement(domain, "currentMemory", unit="KiB").text = memory_kib
    etree.SubElement(domain, "vcpu").text = str(info.vcpus)
    domain.append(_os(base, files))
    features = etree.SubElement(domain, "features")
    etree.SubElement(features, "acpi")
    etree.SubElement(features, "apic")
    etree.SubElement(domain, "cpu", mode="host-passthrough" if virt_type == "kvm" else "maximum")
    clock = etree.SubElement(domain, "clock", offset="utc")
    etree.SubElement(clock, "timer", name="rtc", tickpolicy="catchup")
    etree.SubElement(clock, "timer", name="pit", tickpolicy="delay")
    etree.SubElement(clock, "timer", name="hpet", present="no")
    _tail(domain, _devices(files, balloon=None, untuned=True))
    return etree.tostring(domain, encoding="unicode", pretty_print=True)


def has_rtlibvirt_metadata(xml: str) -> bool:
    return parse(xml).find(f"metadata/{metadata.TAG}") is not None

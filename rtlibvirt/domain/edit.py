"""``rtlibvirt tune``'s XML edit: make an existing domain real-time, keeping everything else.

``TUNING.yaml`` holds the ``cpu``, ``memory_backing``, ``numa`` and
``isolation`` sections of a ``vm.yaml``. They are validated with the same
rules (and messages) as a ``vm.yaml``, against the domain's own vCPU count and
memory. The domain's XML is then changed in place (lxml), touching only:

- ``<vcpu>`` (static placement), ``<cputune>`` pins and ``<vcpusched>``
  (other cputune settings stay), ``<iothreadpin>`` for its I/O threads;
- ``<memoryBacking>`` hugepages / nosharepages / locked / allocation (a
  memfd source or shared access, e.g. for virtiofs, stays), ``<memtune>``
  hard_limit when memory is locked, ``<numatune>`` when ``numa.node`` is set;
- ``<features>``: PMU off, ``<kvm><hint-dedicated>`` when every vCPU has a
  CPU of its own; ``<cpu>``: ``migratable='off'`` for host-passthrough, and
  the model, topology and features only when TUNING.yaml sets them;
- ``<memballoon model='none'/>``; no USB: the USB controllers, USB inputs
  (the tablet), USB redirection and hubs go, ``<controller type='usb'
  model='none'/>`` comes;
- rtlibvirt's ``<metadata>`` element (``origin='tune'``), which the hook reads.

Disks, NICs, graphics, video, sound, channels, the UUID and every other
element are left as they are.
"""

from __future__ import annotations

from lxml import etree

from rtlibvirt import __version__
from rtlibvirt.config.vm import VmSpec
from rtlibvirt.domain import metadata
from rtlibvirt.domain.facts import facts
from rtlibvirt.domain.render import LOCKED_OVERHEAD_KIB
from rtlibvirt.errors import InputError
from rtlibvirt.kernel.cpuset import format_cpulist

ORIGIN = metadata.TUNE_ORIGIN


def _child(parent: etree._Element, tag: str, after: tuple[str, ...] = ()) -> etree._Element:
    """``parent``'s first ``tag`` child, created (after the last of ``after``) if missing."""
    found = parent.find(tag)
    if found is not None:
        return found
    element = etree.Element(tag)
    anchor = None
    for name in after:
        for candidate in parent.findall(name):
            anchor = candidate
    if anchor is not None:
        anchor.addnext(element)
    else:
        parent.append(element)
    return element


def _remove(parent: etree._Element, *tags: str) -> None:
    for tag in tags:
        for element in parent.findall(tag):
            parent.remove(element)


_TOP_ORDER = (
    "name",
    "uuid",
    "genid",
    "title",
    "description",
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
    "sysinfo",
    "bootloader",
    "os",
    "idmap",
    "features",
    "cpu",
)


def _top(root: etree._Element, tag: str) -> etree._Element:
    index = _TOP_ORDER.index(tag)
    return _child(root, tag, after=_TOP_ORDER[:index])


# The orders libvirt writes <features> and <devices> in, after the elements tune adds;
# following them makes a tuned definition read back from libvirt unchanged.
_AFTER_PMU = (
    "vmport", "gic", "smm", "ioapic", "hpt", "vmcoreinfo", "htm", "nested-hv", "msrs",
    "ccf-assist", "xen", "cfpc", "sbbc", "ibs", "tcg", "async-teardown",
)  # fmt: skip


_AFTER_KVM = ("pvspinlock", "capabilities", "pmu", *_AFTER_PMU)


_AFTER_MEMBALLOON = ("rng", "panic", "shmem", "memory", "iommu", "vsock", "crypto")


def _insert_before(
    parent: etree._Element, element: etree._Element, followers: tuple[str, ...]
) -> None:
    """Insert before the first child named in ``followers``, else at the end."""
    for child in parent:
        if isinstance(child.tag, str) and child.tag in followers:
            child.addprevious(element)
            return
    parent.append(element)


class TuneError(InputError):
    """The domain has something tune cannot change safely."""


def _usb_off(devices: etree._Element) -> None:
    blocking = []
    for device in list(devices):
        if not isinstance(device.tag, str):
            continue
        tag, bus = device.tag, device.get("bus")
        usb_input = tag == "input" and (
            bus == "usb" or (bus is None and device.get("type") == "tablet")
        )
        if (
            usb_input
            or (tag == "controller" and device.get("type") == "usb")
            or tag in ("redirdev", "redirfilter", "hub")
        ):
            devices.remove(device)
        elif (
            (tag == "hostdev" and device.get("type") == "usb")
            or tag == "smartcard"
            or (device.find("address[@type='usb']") is not None)
        ):
            target = device.find("target")
            name = target.get("dev") if target is not None else None
            blocking.append(f"<{tag}{' ' + name if name else ''}>")
    if blocking:
        raise TuneError(
            f"the domain has USB devices that need a USB controller: {', '.join(blocking)}; "
            "nothing was changed",
            "remove them (virt-manager or virsh edit), then tune again; a real-time domain "
            "has no USB",
        )
    controller = etree.Element("controller", type="usb", model="none")
    first = devices.find("controller")
    if first is not None:
        first.addprevious(controller)
    else:
        devices.append(controller)


def tune_xml(domain_xml: str, spec: VmSpec) -> str:
    """The domain XML with ``spec``'s real-time settings applied; nothing else changed."""
    parser = etree.XMLParser(remove_blank_text=False)
    root = etree.fromstring(domain_xml.encode("utf-8"), parser)
    cpu_spec = spec.cpu
    pinning, emulator = cpu_spec.pinning, cpu_spec.emulator
    if not isinstance(pinning, tuple) or not isinstance(emulator, tuple):
        raise ValueError("tune_xml needs a placed spec")  # pragma: no cover - fit places first
    emulator_set = format_cpulist(emulator)

    # <metadata>: ours, replacing an older one.
    meta = _top(root, "metadata")
    for old in meta.findall(metadata.TAG):
        meta.remove(old)
    ours = etree.SubElement(
        meta,
        metadata.TAG,
        {"schema": metadata.SCHEMA_VERSION, "generator": f"rtlibvirt {__version__}"},
        nsmap={metadata.PREFIX: metadata.NAMESPACE},
    )
    ours.set("origin", ORIGIN)
    ours.text = metadata.spec_text(spec.normalized(), indent="      ")

    # Memory.
    backing = spec.memory_backing
    if backing.locked:
        memtune = _top(root, "memtune")
        _remove(memtune, "hard_limit")
        limit = etree.Element("hard_limit", unit="KiB")
        limit.text = str(spec.memory + LOCKED_OVERHEAD_KIB)
        memtune.insert(0, limit)
    mb = _top(root, "memoryBacking")
    _remove(mb, "hugepages", "nosharepages", "locked", "allocation")
    position = 0
    if spec.hugepage_kib is not None:
        hugepages = etree.Element("hugepages")
        etree.SubElement(hugepages, "page", size=str(spec.hugepage_kib), unit="KiB")
        mb.insert(position, hugepages)
        position += 1
    for flag, tag in ((backing.nosharepages, "nosharepages"), (backing.locked, "locked")):
        if flag:
            mb.insert(position, etree.Element(tag))
            position += 1
    mb.append(etree.Element("allocation", mode="immediate"))

    # vCPUs and their pinning.
    vcpu = _top(root, "vcpu")
    vcpu.set("placement", "static")
    vcpu.attrib.pop("cpuset", None)
    cputune = _top(root, "cputune")
    _remove(cputune, "vcpupin", "emulatorpin", "iothreadpin", "vcpusched", "emulatorsched")
    new: list[etree._Element] = [
        etree.Element("vcpupin", vcpu=str(v), cpuset=str(c)) for v, c in enumerate(pinning)
    ]
    new.append(etree.Element("emulatorpin", cpuset=emulator_set))
    for iothread in facts(domain_xml).iothreads:
        new.append(etree.Element("iothreadpin", iothread=str(iothread), cpuset=emulator_set))
    rt = cpu_spec.realtime
    if rt is not None and spec.realtime_vcpus:
        new.append(
            etree.Element(
                "vcpusched",
                vcpus=format_cpulist(spec.realtime_vcpus),
                scheduler=rt.policy,
                priority=str(rt.priority),
            )
        )
    for index, element in enumerate(new):
        cputune.insert(index, element)

    if spec.numa.node is not None:
        numatune = _top(root, "numatune")
        _remove(numatune, "memory")
        numatune.insert(0, etree.Element("memory", mode="strict", nodeset=str(spec.numa.node)))

    # <features> and <cpu>.
    features = _top(root, "features")
    _remove(features, "pmu")
    _insert_before(features, etree.Element("pmu", state="off"), _AFTER_PMU)
    cpu = _top(root, "cpu")
    fields = cpu_spec.fields_set
    if "model" in fields:
        for attr in ("mode", "match", "check", "migratable"):
            cpu.attrib.pop(attr, None)
        _remove(cpu, "model", "vendor")
        if cpu_spec.model in ("host-passthrough", "host-model"):
            cpu.set("mode", cpu_spec.model)
        else:
            cpu.set("mode", "custom")
            cpu.set("match", "exact")
            cpu.set("check", "partial")
            model = etree.Element("model", fallback="forbid")
            model.text = cpu_spec.model
            cpu.insert(0, model)
    if cpu.get("mode") == "host-passthrough":
        cpu.set("check", "none")
        cpu.set("migratable", "off")
    if cpu_spec.topology is not None:
        _remove(cpu, "topology")
        t = cpu_spec.topology
        topology = etree.Element(
            "topology",
            sockets=str(t.sockets),
            dies="1",
            cores=str(t.cores),
            threads=str(t.threads),
        )
        anchor = cpu.find("vendor") if cpu.find("vendor") is not None else cpu.find("model")
        if anchor is not None:
            anchor.addnext(topology)
        else:
            cpu.insert(0, topology)
    for name, policy in sorted(cpu_spec.features.items()):
        for old in cpu.findall(f"feature[@name='{name}']"):
            cpu.remove(old)
        feature = etree.Element("feature", policy=policy, name=name)
        numa = cpu.find("numa")
        if numa is not None:
            numa.addprevious(feature)
        else:
            cpu.append(feature)
    if not cpu.attrib and len(cpu) == 0:
        root.remove(cpu)
    dedicated = len(set(pinning)) == len(pinning) and not set(emulator) & set(pinning)
    kvm = features.find("kvm")
    if cpu.get("mode") == "host-passthrough" and dedicated:
        if kvm is None:
            kvm = etree.Element("kvm")
            _insert_before(features, kvm, _AFTER_KVM)
        _remove(kvm, "hint-dedicated")
        etree.SubElement(kvm, "hint-dedicated", state="on")
    elif kvm is not None:
        _remove(kvm, "hint-dedicated")
        if len(kvm) == 0:
            features.remove(kvm)

    # Devices: no balloon, no USB.
    devices = root.find("devices")
    if devices is None:
        devices = etree.SubElement(root, "devices")
    _usb_off(devices)
    _remove(devices, "memballoon")
    _insert_before(devices, etree.Element("memballoon", model="none"), _AFTER_MEMBALLOON)

    etree.indent(root, space="  ")
    return etree.tostring(root, encoding="unicode") + "\n"


def is_tuned(domain_xml: str) -> bool:
    """True when the domain's rtlibvirt metadata was written by ``tune``."""
    return facts(domain_xml).origin == ORIGIN

"""``rtlibvirt tune``'s XML edit: make an existing domain real-time, keeping everything else.

``TUNING.yaml`` holds the ``cpu``, ``memory_backing``, ``numa`` and
``isolation`` sections of a ``vm.yaml``. They are validated with the same
rules (and messages) as a ``vm.yaml``, against the domain's own vCPU count and
memory. The domain's XML is then changed in place (lxml), touching only:

- ``<vcpu>`` (static placement), ``<cputune>`` pins and ``<vcpusched>``
  (other cputune settings stay: shares, period and quota, ``<emulatorsched>``,
  ``<iothreadsched>``, cache tuning), ``<iothreadpin>`` for its I/O threads;
- ``<memoryBacking>`` hugepages / nosharepages / locked / allocation (a
  memfd source or shared access, e.g. for virtiofs, stays), ``<memtune>``
  hard_limit when memory is locked, ``<numatune>`` when ``numa.node`` is set;
- ``<features>``: PMU off, ``<kvm><hint-dedicated>`` when every vCPU has a
  CPU of its own; ``<cpu>``: ``migratable='off'`` and ``tsc-deadline``
  required for host-passthrough (unless the domain or TUNING.yaml names that
  feature), and the model, topology and features only when TUNING.yaml sets
  them;
- ``<memballoon model='none'/>``; no USB: the USB controllers, USB inputs
  (the tablet), USB redirection and hubs go, ``<controller type='usb'
  model='none'/>`` comes;
- rtlibvirt's ``<metadata>`` element (``origin='tune'``), which the hook reads.

Disks, NICs, graphics, video, sound, channels, the UUID and every other
element are left as they are.

Every element tune adds goes where libvirt itself writes it (:data:`ORDER`),
and an element it replaces stays where it was, so that a tuned definition
reads back from libvirt unchanged and tuning it again changes nothing.
"""

from __future__ import annotations

from lxml import etree

from rtlibvirt import __version__
from rtlibvirt.config.vm import VmSpec
from rtlibvirt.domain import metadata
from rtlibvirt.domain.facts import facts
from rtlibvirt.domain.render import LOCKED_OVERHEAD_KIB, cpu_features
from rtlibvirt.errors import InputError
from rtlibvirt.kernel.cpuset import format_cpulist

ORIGIN = metadata.TUNE_ORIGIN


# The order in which libvirt writes the children of each element tune adds to: the
# order of its formatter (virDomainDefFormat and the functions it calls). libvirt's
# schema does not give it (domain.rng lists most of them in an <interleave>, and in
# another order), so this is the one table of it; tests/domain/test_order.py checks it
# against the installed libvirt, tests/daemon/test_fit_daemon.py against libvirtd.
# Keys are paths below <domain> ("" is <domain> itself).
ORDER: dict[str, tuple[str, ...]] = {
    "": (
        "name", "uuid", "genid", "title", "description", "metadata", "maxMemory", "memory",
        "currentMemory", "blkiotune", "memtune", "memoryBacking", "vcpu", "vcpus",
        "iothreads", "iothreadids", "defaultiothread", "cputune", "numatune", "resource",
        "sysinfo", "bootloader", "bootloader_args", "os", "idmap", "features", "cpu", "clock",
        "on_poweroff", "on_reboot", "on_crash", "on_lockfailure", "pm", "perf", "devices",
        "seclabel", "keywrap", "launchSecurity",
    ),
    "memtune": ("hard_limit", "soft_limit", "min_guarantee", "swap_hard_limit"),
    "memoryBacking": (
        "hugepages", "nosharepages", "locked", "source", "access", "allocation", "discard",
    ),
    "cputune": (
        "shares", "period", "quota", "global_period", "global_quota", "emulator_period",
        "emulator_quota", "iothread_period", "iothread_quota", "vcpupin", "emulatorpin",
        "iothreadpin", "emulatorsched", "vcpusched", "iothreadsched", "cachetune",
        "memorytune",
    ),
    "numatune": ("memory", "memnode"),
    "features": (
        "acpi", "apic", "pae", "hap", "viridian", "privnet", "hyperv", "kvm", "pvspinlock",
        "capabilities", "pmu", "vmport", "gic", "smm", "ioapic", "hpt", "vmcoreinfo", "htm",
        "nested-hv", "msrs", "ccf-assist", "xen", "cfpc", "sbbc", "ibs", "tcg",
        "async-teardown",
    ),
    "features/kvm": ("hidden", "hint-dedicated", "poll-control", "pv-ipi", "dirty-ring"),
    "cpu": ("model", "vendor", "topology", "cache", "maxphysaddr", "feature", "numa"),
    "devices": (
        "emulator", "disk", "controller", "lease", "filesystem", "interface", "smartcard",
        "serial", "parallel", "console", "channel", "input", "tpm", "graphics", "sound",
        "audio", "video", "hostdev", "redirdev", "redirfilter", "hub", "watchdog",
        "memballoon", "rng", "panic", "shmem", "memory", "iommu", "vsock", "crypto",
    ),
}  # fmt: skip


def _place(parent: etree._Element, path: str, element: etree._Element) -> etree._Element:
    """Insert ``element`` among ``parent``'s children where libvirt writes it.

    After the last child that libvirt writes before it (or at its own rank),
    else before the first it writes after it; children the table does not
    know (comments, other namespaces' elements) do not count.
    """
    order = ORDER[path]
    rank = order.index(element.tag)
    after = before = None
    for child in parent:
        tag = child.tag
        if not isinstance(tag, str) or tag not in order:
            continue
        if order.index(tag) <= rank:
            after = child
        elif before is None:
            before = child
    if after is not None:
        after.addnext(element)
    elif before is not None:
        before.addprevious(element)
    else:
        parent.append(element)
    return element


def _get(parent: etree._Element, path: str, tag: str) -> etree._Element:
    """``parent``'s first ``tag`` child, placed where libvirt writes it if missing."""
    found = parent.find(tag)
    if found is not None:
        return found
    return _place(parent, path, etree.Element(tag))


def _put(
    parent: etree._Element, path: str, element: etree._Element, old: list[etree._Element]
) -> etree._Element:
    """Replace the ``old`` children with ``element``: where the first was, else placed."""
    if old:
        old[0].addprevious(element)
        for gone in old:
            parent.remove(gone)
        return element
    return _place(parent, path, element)


def _remove(parent: etree._Element, *tags: str) -> None:
    for tag in tags:
        for element in parent.findall(tag):
            parent.remove(element)


class TuneError(InputError):
    """The domain has something tune cannot change safely."""


def _usb_device(device: etree._Element) -> str:
    """Which device it is, in the words of its XML: ``<disk sdb>``, ``<hostdev 046d:c52b>``."""
    tag = str(device.tag)
    target = device.find("target")
    vendor = device.find("source/vendor")
    product = device.find("source/product")
    address = device.find("source/address")
    usb = device.find("address[@type='usb']")
    alias = device.find("alias")
    if target is not None and target.get("dev"):
        what = target.get("dev")
    elif vendor is not None and product is not None:
        ids = (e.get("id", "?").removeprefix("0x") for e in (vendor, product))
        what = ":".join(ids)
    elif tag == "hostdev" and address is not None:
        what = f"at USB bus {address.get('bus', '?')} device {address.get('device', '?')}"
    elif tag == "controller":
        what = f"type='{device.get('type')}' index='{device.get('index', '0')}'"
    elif device.get("mode"):
        what = f"mode='{device.get('mode')}'"
    elif device.get("type"):
        what = f"type='{device.get('type')}'"
    else:
        what = ""
    where = f" on USB port {usb.get('port')}" if usb is not None and usb.get("port") else ""
    name = f" ({alias.get('name')})" if alias is not None and alias.get("name") else ""
    return f"<{tag}{' ' + what if what else ''}>{where}{name}"


def _usb_off(devices: etree._Element) -> None:
    blocking = []
    controllers = []
    for device in list(devices):
        if not isinstance(device.tag, str):
            continue
        tag, bus = device.tag, device.get("bus")
        usb_input = tag == "input" and (
            bus == "usb" or (bus is None and device.get("type") == "tablet")
        )
        if tag == "controller" and device.get("type") == "usb":
            controllers.append(device)
        elif usb_input or tag in ("redirdev", "redirfilter", "hub"):
            devices.remove(device)
        elif (
            (tag == "hostdev" and device.get("type") == "usb")
            or tag == "smartcard"
            or (device.find("address[@type='usb']") is not None)
            or (device.find("target[@bus='usb']") is not None)  # a USB disk
        ):
            blocking.append(_usb_device(device))
    if blocking:
        raise TuneError(
            f"the domain has USB devices that need a USB controller: {', '.join(blocking)}; "
            "nothing was changed",
            "remove them (virt-manager or virsh edit), then tune again; a real-time domain "
            "has no USB",
        )
    _put(devices, "devices", etree.Element("controller", type="usb", model="none"), controllers)


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
    meta = _get(root, "", "metadata")
    ours = etree.Element(
        metadata.TAG,
        {"schema": metadata.SCHEMA_VERSION, "generator": f"rtlibvirt {__version__}"},
        nsmap={metadata.PREFIX: metadata.NAMESPACE},
    )
    ours.set("origin", ORIGIN)
    ours.text = metadata.spec_text(spec.normalized(), indent="      ")
    old = meta.findall(metadata.TAG)
    if old:
        _put(meta, "metadata", ours, old)
    else:
        meta.append(ours)

    # Memory.
    backing = spec.memory_backing
    if backing.locked:
        memtune = _get(root, "", "memtune")
        limit = etree.Element("hard_limit", unit="KiB")
        limit.text = str(spec.memory + LOCKED_OVERHEAD_KIB)
        _put(memtune, "memtune", limit, memtune.findall("hard_limit"))
    mb = _get(root, "", "memoryBacking")
    _remove(mb, "hugepages", "nosharepages", "locked", "allocation")
    if spec.hugepage_kib is not None:
        hugepages = _place(mb, "memoryBacking", etree.Element("hugepages"))
        etree.SubElement(hugepages, "page", size=str(spec.hugepage_kib), unit="KiB")
    for flag, tag in ((backing.nosharepages, "nosharepages"), (backing.locked, "locked")):
        if flag:
            _place(mb, "memoryBacking", etree.Element(tag))
    _place(mb, "memoryBacking", etree.Element("allocation", mode="immediate"))

    # vCPUs and their pinning; the other cputune settings stay.
    vcpu = _get(root, "", "vcpu")
    if not (vcpu.text or "").strip():  # no <vcpu> was there: libvirt's default, one vCPU
        vcpu.text = str(spec.vcpus)
    vcpu.set("placement", "static")
    vcpu.attrib.pop("cpuset", None)
    cputune = _get(root, "", "cputune")
    _remove(cputune, "vcpupin", "emulatorpin", "iothreadpin", "vcpusched")
    for v, c in enumerate(pinning):
        _place(cputune, "cputune", etree.Element("vcpupin", vcpu=str(v), cpuset=str(c)))
    _place(cputune, "cputune", etree.Element("emulatorpin", cpuset=emulator_set))
    for iothread in facts(domain_xml).iothreads:  # in <iothreadids> order, as libvirt writes
        pin = etree.Element("iothreadpin", iothread=str(iothread), cpuset=emulator_set)
        _place(cputune, "cputune", pin)
    rt = cpu_spec.realtime
    if rt is not None and spec.realtime_vcpus:
        sched = etree.Element(
            "vcpusched",
            vcpus=format_cpulist(spec.realtime_vcpus),
            scheduler=rt.policy,
            priority=str(rt.priority),
        )
        _place(cputune, "cputune", sched)

    if spec.numa.node is not None:
        numatune = _get(root, "", "numatune")
        memory = etree.Element("memory", mode="strict", nodeset=str(spec.numa.node))
        _put(numatune, "numatune", memory, numatune.findall("memory"))

    # <features> and <cpu>.
    features = _get(root, "", "features")
    _put(features, "features", etree.Element("pmu", state="off"), features.findall("pmu"))
    cpu = _get(root, "", "cpu")
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
            model = _place(cpu, "cpu", etree.Element("model", fallback="forbid"))
            model.text = cpu_spec.model
    if cpu.get("mode") == "host-passthrough":
        cpu.set("check", "none")
        cpu.set("migratable", "off")
    if cpu_spec.topology is not None:
        t = cpu_spec.topology
        topology = etree.Element(
            "topology",
            sockets=str(t.sockets),
            dies="1",
            cores=str(t.cores),
            threads=str(t.threads),
        )
        _put(cpu, "cpu", topology, cpu.findall("topology"))
    for name, policy in sorted(cpu_features(cpu_spec.features, cpu.get("mode")).items()):
        existing = cpu.findall(f"feature[@name='{name}']")
        if existing and name not in cpu_spec.features:
            continue  # added by rtlibvirt (tsc-deadline), but the domain says: it stays
        feature = etree.Element("feature", policy=policy, name=name)
        _put(cpu, "cpu", feature, existing)
    if not cpu.attrib and len(cpu) == 0:
        root.remove(cpu)
    dedicated = len(set(pinning)) == len(pinning) and not set(emulator) & set(pinning)
    kvm = features.find("kvm")
    if cpu.get("mode") == "host-passthrough" and dedicated:
        kvm = _get(features, "features", "kvm")
        hint = etree.Element("hint-dedicated", state="on")
        _put(kvm, "features/kvm", hint, kvm.findall("hint-dedicated"))
    elif kvm is not None:
        _remove(kvm, "hint-dedicated")
        if len(kvm) == 0:
            features.remove(kvm)

    # Devices: no balloon, no USB.
    devices = _get(root, "", "devices")
    _usb_off(devices)
    balloon = etree.Element("memballoon", model="none")
    _put(devices, "devices", balloon, devices.findall("memballoon"))

    etree.indent(root, space="  ")
    return etree.tostring(root, encoding="unicode") + "\n"

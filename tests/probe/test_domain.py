"""The probe domains: every real-time element of the VM kept, nothing that needs a disk or a device."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import libvirt
import pytest
from lxml import etree

import rtlibvirt.virt.connection  # noqa: F401 - silences libvirt's default error printer
from rtlibvirt.config.vm import load_spec
from rtlibvirt.domain import metadata
from rtlibvirt.domain.edit import ORDER
from rtlibvirt.domain.facts import facts
from rtlibvirt.domain.render import render
from rtlibvirt.hook.domain import parse as hook_parse
from rtlibvirt.hook.domain import validate as hook_validate
from rtlibvirt.probe import domain as probedomain
from tests.conftest import EXAMPLES, REPO

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
FILES = probedomain.Files(
    kernel=Path("/var/cache/rtlibvirt/probe/kernels/k/vmlinuz"),
    initrd=Path("/var/cache/rtlibvirt/probe/initramfs/i/initrd.img"),
    cmdline="console=ttyS0,115200 isolcpus=1 rtlprobe.duration=5",
    console=Path("/tmp/rtlibvirt-probe-x/rtlibvirt/console.log"),
    results=Path("/tmp/rtlibvirt-probe-x/rtlibvirt/results.txt"),
)
REALTIME = (
    "memtune",
    "memoryBacking",
    "vcpu",
    "iothreads",
    "cputune",
    "numatune",
    "clock",
    "features",
    "cpu",
)
VIRT_MANAGER = REPO / "tests/data/domains/virt-manager-desktop.libvirt.xml"


def canonical(element: etree._Element | None) -> str:
    if element is None:
        return ""
    copy = etree.fromstring(etree.tostring(element), etree.XMLParser(remove_blank_text=True))
    return etree.tostring(copy, method="c14n").decode()


def libvirt_accepts(xml: str) -> None:
    """libvirt itself parses and validates it (its test driver: no daemon, nothing started)."""
    conn = libvirt.open("test:///default")
    try:
        domain = conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        domain.undefine()
    finally:
        conn.close()


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("virt_type", ["kvm", "qemu"])
def test_the_probe_keeps_every_real_time_element_and_nothing_else(
    example: Path, virt_type: str, assert_valid_domain: Callable[[str], etree._Element]
) -> None:
    base_xml = render(load_spec(example).spec)
    base = etree.fromstring(base_xml.encode())
    xml = probedomain.probe_xml(base_xml, "x-probe", FILES, virt_type)
    probe = assert_valid_domain(xml)
    libvirt_accepts(xml)
    assert probe.get("type") == virt_type
    assert probe.findtext("name") == "x-probe"
    for tag in REALTIME:
        if virt_type == "qemu" and tag in ("cpu", "features"):
            continue
        assert canonical(probe.find(tag)) == canonical(base.find(tag)), tag
    assert canonical(probe.find("memory")) == canonical(base.find("memory"))
    # the spec, for the hook: byte for byte
    assert probe.find(f"metadata/{metadata.TAG}").text == base.find(f"metadata/{metadata.TAG}").text
    # the hook sees the same VM: the same realtime CPUs (from <cputune>) and spec
    real, probed = facts(base_xml), facts(xml)
    assert probed.managed and probed.realtime_cpu_set == real.realtime_cpu_set
    assert probed.sched == real.sched and probed.vcpupins == real.vcpupins
    assert probed.stored_spec() == real.stored_spec()
    online = frozenset(range(64))
    hook_real, hook_probed = hook_parse(base_xml), hook_parse(xml)
    assert hook_validate(hook_probed, online).settings == hook_validate(hook_real, online).settings
    # direct kernel boot, no disk, NIC or host device, serial ports to files
    os_element = probe.find("os")
    assert os_element.findtext("kernel") == str(FILES.kernel)
    assert os_element.findtext("initrd") == str(FILES.initrd)
    assert os_element.findtext("cmdline") == FILES.cmdline
    assert os_element.find("boot") is None and os_element.get("firmware") is None
    devices = probe.find("devices")
    assert sorted({d.tag for d in devices}) == ["controller", "memballoon", "serial"]
    assert devices.find("memballoon").get("model") == "none"
    serials = devices.findall("serial")
    assert [
        (s.get("type"), s.find("source").get("path"), s.find("target").get("port")) for s in serials
    ] == [
        ("file", str(FILES.console), "0"),
        ("file", str(FILES.results), "1"),
    ]
    assert [probe.findtext(e) for e in ("on_poweroff", "on_reboot", "on_crash")] == ["destroy"] * 3
    assert probe.find("features/acpi") is not None  # the guest powers itself off


def test_under_tcg_the_cpu_is_qemus_maximum_with_the_same_topology_and_features() -> None:
    base_xml = render(load_spec(EXAMPLES / "motion.yaml").spec)
    base = etree.fromstring(base_xml.encode())
    probe = etree.fromstring(probedomain.probe_xml(base_xml, "m", FILES, "qemu").encode())
    cpu = probe.find("cpu")
    assert cpu.get("mode") == "maximum"
    assert canonical(cpu.find("topology")) == canonical(base.find("cpu/topology"))
    assert [canonical(f) for f in cpu.findall("feature")] == [
        canonical(f) for f in base.findall("cpu/feature")
    ]
    assert canonical(cpu.find("numa")) == canonical(base.find("cpu/numa"))
    assert probe.find("features/kvm") is None  # KVM hints need KVM
    assert probe.find("features/pmu") is not None


def test_a_virt_manager_domain_loses_its_devices_and_keeps_its_cpu_and_clock(
    assert_valid_domain: Callable[[str], etree._Element],
) -> None:
    base_xml = VIRT_MANAGER.read_text()
    xml = probedomain.probe_xml(base_xml, "desktop-probe", FILES, "kvm")
    probe = assert_valid_domain(xml)
    libvirt_accepts(xml)
    base = etree.fromstring(base_xml.encode())
    for tag in ("cpu", "clock", "features", "vcpu", "memory"):
        assert canonical(probe.find(tag)) == canonical(base.find(tag)), tag
    assert probe.find("os/type").get("machine") == "pc-q35-7.2"
    assert probe.find("uuid") is None  # a new domain, never the VM itself
    devices = {d.tag for d in probe.find("devices")}
    assert devices == {"controller", "serial", "memballoon"}
    # its balloon stays: the probe measures the VM as it is
    assert probe.find("devices/memballoon").get("model") == "virtio"
    assert not facts(xml).managed


@pytest.mark.parametrize("virt_type", ["kvm", "qemu"])
def test_the_untuned_vm_is_what_virt_install_makes(
    virt_type: str, assert_valid_domain: Callable[[str], etree._Element]
) -> None:
    base_xml = render(load_spec(EXAMPLES / "plc.yaml").spec)
    xml = probedomain.untuned_xml(base_xml, "plc-probe-untuned", FILES, virt_type)
    untuned = assert_valid_domain(xml)
    libvirt_accepts(xml)
    assert untuned.findtext("vcpu") == "4"
    assert untuned.findtext("memory") == str(2 * 1024 * 1024)
    for absent in ("cputune", "memoryBacking", "memtune", "numatune", "metadata", "iothreads"):
        assert untuned.find(absent) is None, absent
    assert untuned.find("vcpu").get("cpuset") is None
    assert untuned.find("devices/memballoon").get("model") == "virtio"
    assert untuned.find("devices/rng") is not None
    assert untuned.find("devices/controller[@type='usb']").get("model") == "qemu-xhci"
    assert untuned.find("devices/disk") is None and untuned.find("devices/hostdev") is None
    assert untuned.find("cpu").get("mode") == (
        "host-passthrough" if virt_type == "kvm" else "maximum"
    )
    # virt-install's clock and features
    shape = etree.parse(str(REPO / "tests/data/domains/virt-install-server.xml")).getroot()
    assert canonical(untuned.find("clock")) == canonical(shape.find("clock"))
    assert canonical(untuned.find("features")) == canonical(shape.find("features"))
    seen = facts(xml)
    assert not seen.managed and not seen.realtime_cpu_set  # the hook leaves the host alone


def in_libvirts_order(domain: etree._Element) -> None:
    """Every element below <domain> that ORDER knows the parent of is where libvirt writes it."""
    for path, order in ORDER.items():
        for parent in [domain] if path == "" else domain.findall(path):
            tags = [c.tag for c in parent if isinstance(c.tag, str)]
            assert [t for t in tags if t not in order] == [], f"<{path}> children not in ORDER"
            ranks = [order.index(t) for t in tags]
            assert ranks == sorted(ranks), f"<{path or 'domain'}>: {tags}"


def test_what_the_probe_keeps_is_in_the_one_element_order_table() -> None:
    # probe_xml writes the kept elements in the order of domain.edit.ORDER[""]: one missing
    # there would be dropped without a word
    assert sorted(probedomain.KEPT - set(ORDER[""])) == []
    assert {"name", "os", "on_poweroff", "on_reboot", "on_crash", "pm", "devices"} <= set(ORDER[""])


@pytest.mark.parametrize("base", [*EXAMPLE_FILES, VIRT_MANAGER], ids=lambda p: p.stem)
@pytest.mark.parametrize("virt_type", ["kvm", "qemu"])
def test_the_probe_domains_are_written_in_libvirts_order(base: Path, virt_type: str) -> None:
    base_xml = render(load_spec(base).spec) if base.suffix == ".yaml" else base.read_text()
    for make in (probedomain.probe_xml, probedomain.untuned_xml):
        in_libvirts_order(etree.fromstring(make(base_xml, "x", FILES, virt_type).encode()))


def test_every_kept_element_is_kept_in_libvirts_order_whatever_the_base_order() -> None:
    kept = sorted(probedomain.KEPT, reverse=True)  # not libvirt's order
    base_xml = "<domain type='kvm'><name>b</name>" + "".join(f"<{t}/>" for t in kept) + "</domain>"
    probe = etree.fromstring(probedomain.probe_xml(base_xml, "x", FILES).encode())
    in_libvirts_order(probe)
    assert {c.tag for c in probe} >= probedomain.KEPT


def test_hostile_domain_xml_is_refused_without_expanding_it() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><domain><name>&b;</name></domain>'
    )
    assert "aaaaaaaaaa" not in (probedomain.parse(bomb).findtext("name") or "")
    assert "aaaaaaaaaa" not in probedomain.probe_xml(bomb, "p", FILES, "kvm")
    with pytest.raises(probedomain.InputError, match="not well-formed"):
        probedomain.probe_xml("<domain>", "p", FILES, "kvm")
    with pytest.raises(probedomain.InputError, match="expected a <domain>"):
        probedomain.probe_xml("<network/>", "p", FILES, "kvm")
    with pytest.raises(probedomain.InputError, match="more than"):
        probedomain.probe_xml(
            "<domain>" + " " * probedomain.MAX_XML + "</domain>", "p", FILES, "kvm"
        )
    with pytest.raises(probedomain.InputError, match="--virt-type"):
        probedomain.probe_xml("<domain/>", "p", FILES, "xen")

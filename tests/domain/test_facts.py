"""domain.facts: the one reader of domain XML, on rtlibvirt's own XML and other tools'."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rtlibvirt.domain import metadata
from rtlibvirt.domain.facts import (
    MAX_XML_CHARS,
    DomainFacts,
    DomainXMLError,
    Hostdev,
    facts,
    merge_live,
    parse_cpuset,
    to_kib,
)
from tests.fakes.libvirt_hosts import DOMAINS

REPO = Path(__file__).resolve().parents[2]
EXPECTED = REPO / "tests" / "expected"


def domain(body: str, name: str = "d") -> str:
    return f"<domain type='kvm'><name>{name}</name>{body}</domain>"


def test_rtlibvirt_xml() -> None:
    dom = facts((EXPECTED / "plc.xml").read_text())
    assert dom.name == "plc" and dom.vcpus == 4
    assert dom.vcpupins == {0: {2}, 1: {3}, 2: {4}, 3: {5}}
    assert dom.emulatorpin == {0, 1}
    assert dom.sched == {1: ("fifo", 1), 2: ("fifo", 1), 3: ("fifo", 1)}
    assert dom.realtime_vcpus == (1, 2, 3) and dom.realtime_cpu_set == {3, 4, 5}
    assert dom.cputune and not dom.quota
    assert dom.hugepages and dom.hugepage_kib == 1024 * 1024
    assert dom.locked and dom.nosharepages
    assert dom.memballoon == "none" and dom.usb_controllers == () and dom.usb_devices == ()
    assert dom.pmu_off and dom.cpu_mode == "host-passthrough"
    assert dom.machine == "q35" and dom.firmware == "bios"
    assert dom.hostdevs == (Hostdev("0000:03:00.0", True),)
    assert dom.managed and dom.origin is None
    spec = dom.stored_spec()
    assert spec is not None and spec["name"] == "plc"
    assert spec == metadata.read((EXPECTED / "plc.xml").read_text())
    assert facts((EXPECTED / "motion.xml").read_text()).firmware == "efi"


def test_virt_manager_xml() -> None:
    dom = facts((DOMAINS / "virt-manager-desktop.libvirt.xml").read_text())
    assert dom.name == "desktop" and dom.uuid == "af551f3d-aef5-429c-a825-fa64429a931a"
    assert dom.vcpus == 4 and dom.vcpu_cpus(0) is None and not dom.cputune
    assert dom.memory_kib == 4 * 1024 * 1024 and not dom.hugepages
    assert dom.memballoon == "virtio"
    assert dom.usb_controllers == ("qemu-xhci",)
    assert dom.usb_devices == ("tablet input", "spicevmc redirdev", "spicevmc redirdev")
    assert dom.machine == "pc-q35-7.2" and dom.firmware == "bios"
    assert dom.disks == 1 and dom.macs == ("52:54:00:2e:e8:a8",)
    assert dom.networks == ("default",)
    assert not dom.managed and dom.stored_spec() is None
    assert dom.cpu_mode == "host-passthrough" and not dom.pmu_off


@pytest.mark.parametrize("source", sorted(p.name for p in DOMAINS.glob("*.xml")))
def test_every_tool_domain_reads(source: str) -> None:
    dom = facts((DOMAINS / source).read_text())
    assert dom.vcpus >= 1 and dom.memory_kib > 0 and dom.disks >= 1
    assert len(dom.macs) == 1


def test_networks_of_the_nics() -> None:
    """Each libvirt network once, in order; bridges and direct NICs are not networks."""
    nics = (
        "<interface type='network'><source network='lan'/></interface>"
        "<interface type='bridge'><source bridge='br0'/></interface>"
        "<interface type='network'><source network='ctl'/></interface>"
        "<interface type='network'><source network='lan'/></interface>"
        "<interface type='direct'><source dev='eth0' mode='bridge'/></interface>"
        "<interface type='network'/>"
    )
    xml = f"<domain><name>n</name><vcpu>1</vcpu><devices>{nics}</devices></domain>"
    dom = facts(xml)
    assert dom.networks == ("lan", "ctl") and len(dom.macs) == 6


def test_libvirt_cpusets_and_units() -> None:
    assert parse_cpuset("0-7,^3,^5-6", "x") == {0, 1, 2, 4, 7}
    assert parse_cpuset("", "x") == frozenset()
    assert to_kib("2", "GiB") == 2 * 1024 * 1024
    assert to_kib("1", "G") == 1024 * 1024
    assert to_kib("1000000", "KB") == 976562
    assert to_kib("4", None) == 4


def test_vcpu_cpuset_is_the_default_pin() -> None:
    dom = facts(
        domain(
            "<vcpu cpuset='0-3,^1'>2</vcpu><cputune><vcpupin vcpu='1' cpuset='5'/>"
            "<iothreadpin iothread='1' cpuset='0'/><quota>5000</quota></cputune>"
            "<iothreads>2</iothreads>"
        )
    )
    assert dom.vcpu_cpus(0) == {0, 2, 3} and dom.vcpu_cpus(1) == {5}
    assert dom.vcpu_claims() == {0: {0}, 2: {0}, 3: {0}, 5: {1}}
    assert dom.pinned_cpu_set == {0, 2, 3, 5} and dom.helper_cpu_set == {0}
    assert dom.quota and dom.iothreads == (1, 2) and dom.emulatorpin is None


def test_iothread_ids_and_efi_loader() -> None:
    dom = facts(
        domain(
            "<iothreads>2</iothreads><iothreadids><iothread id='4'/><iothread id='2'/>"
            "</iothreadids><os><type machine='pc-i440fx-7.2'>hvm</type>"
            "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader></os>"
        )
    )
    assert dom.iothreads == (4, 2)  # <iothreadids> order: libvirt writes <iothreadpin>s in it
    assert dom.firmware == "efi" and dom.machine == "pc-i440fx-7.2"


def test_metadata_origin_and_bad_json() -> None:
    ns = metadata.NAMESPACE
    dom = facts(domain(f"<metadata><r:vm xmlns:r='{ns}' origin='tune'>{{}}</r:vm></metadata>"))
    assert dom.managed and dom.origin == "tune" and dom.stored_spec() == {}
    bad = facts(domain(f"<metadata><r:vm xmlns:r='{ns}'>[1</r:vm></metadata>"))
    assert bad.managed  # readable: only the spec is not
    with pytest.raises(metadata.MetadataError, match="not valid JSON"):
        bad.stored_spec()


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<domain><name>x</name>", "not well-formed"),
        ("<network><name>x</name></network>", "expected a <domain> element, got <network>"),
        (domain("<vcpu>many</vcpu>"), "<vcpu>: 'many' is not an integer from 1 to 16384"),
        (domain("<vcpu>100000000</vcpu>"), "<vcpu>: '100000000' is not an integer"),
        (
            domain("<cputune><vcpupin vcpu='0' cpuset='0-99999999999'/></cputune>"),
            "<vcpupin vcpu='0' cpuset>: '0-99999999999': CPU numbers go from 0 to 65535",
        ),
        (
            domain("<cputune><vcpupin vcpu='0' cpuset='3-1'/></cputune>"),
            "<vcpupin vcpu='0' cpuset>: range '3-1' goes backwards",
        ),
        (
            domain("<cputune><vcpusched vcpus='0' scheduler='fifo' priority='high'/></cputune>"),
            "<vcpusched priority>: 'high' is not an integer from 0 to 99",
        ),
        (domain("<memory unit='furlong'>1</memory>"), "unknown memory unit 'furlong'"),
        (domain("<memory>-1</memory>"), "'-1' is not a size"),
        (
            domain(
                "<devices><hostdev mode='subsystem' type='pci'><source>"
                "<address domain='0x0' bus='0x1ff' slot='0' function='0'/></source></hostdev>"
                "</devices>"
            ),
            "out of range",
        ),
        (domain("<iothreads>-2</iothreads>"), "<iothreads>: '-2' is not an integer"),
    ],
)
def test_what_cannot_be_read(xml: str, message: str) -> None:
    with pytest.raises(DomainXMLError, match=message.replace("(", r"\(").replace(")", r"\)")):
        facts(xml)


def test_too_big_is_refused_before_parsing() -> None:
    with pytest.raises(DomainXMLError, match="more than"):
        facts(domain(" " * MAX_XML_CHARS))


def test_records_are_read_only_and_replace_copies() -> None:
    dom = DomainFacts(name="a", vcpus=2, vcpupins={0: frozenset({1})})
    with pytest.raises(AttributeError, match="read-only"):
        dom.vcpus = 3  # type: ignore[misc]
    other = dom.replace(vcpus=3)
    assert (dom.vcpus, other.vcpus, other.vcpupins) == (2, 3, {0: {1}})
    assert dom == DomainFacts(name="a", vcpus=2, vcpupins={0: frozenset({1})}) != other
    with pytest.raises(TypeError, match="no field colour"):
        DomainFacts(name="a", vcpus=1, colour="red")
    with pytest.raises(TypeError, match="needs vcpus"):
        DomainFacts(name="a")


def test_live_pins_add_to_the_definition() -> None:
    definition = facts(domain("<vcpu>2</vcpu><cputune><vcpupin vcpu='0' cpuset='1'/></cputune>"))
    live = facts(
        domain(
            "<vcpu>2</vcpu><cputune><vcpupin vcpu='0' cpuset='2'/><vcpupin vcpu='1' cpuset='3'/>"
            "<emulatorpin cpuset='0'/><vcpusched vcpus='1' scheduler='fifo' priority='5'/>"
            "</cputune>"
        ),
        active=True,
    )
    merged = merge_live(definition, live)
    assert merged.active and merged.vcpupins == {0: {1, 2}, 1: {3}}
    assert merged.emulatorpin == {0} and merged.sched == {1: ("fifo", 5)}


def test_the_reader_imports_only_the_standard_library() -> None:
    """The hook shares this reader: it must not pull lxml, dataclasses or typing in."""
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from rtlibvirt.domain.facts import facts; "
        "d = facts(open(sys.argv[2]).read()); assert d.realtime_vcpus == (1, 2, 3); "
        "d.stored_spec(); heavy = ('lxml', 'dataclasses', 'typing', 'libvirt', 'click'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-IS", "-c", probe, str(REPO), str(EXPECTED / "plc.xml")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "[]"

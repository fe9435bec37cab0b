"""tune's element order (domain.edit.ORDER) is libvirt's, and a tuned domain tunes to itself.

libvirt's test driver formats definitions with the same code as libvirtd
(virDomainDefFormat), so these run without a daemon; the daemon test
(tests/daemon/test_fit_daemon.py) does the round trip on qemu:///system.
"""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest
from lxml import etree

from rtlibvirt.config.tuning import load_tuning, spec_for
from rtlibvirt.domain import diff as xmldiff
from rtlibvirt.domain.edit import ORDER, tune_xml
from rtlibvirt.domain.facts import facts
from rtlibvirt.fit.fitting import place_spec
from rtlibvirt.fit.host import gather
from rtlibvirt.virt import connection as virt
from rtlibvirt.virt import define
from tests.domain.domains import TUNINGS, retune_cases
from tests.fakes.libvirt_hosts import connection, host_file

# Every element of the table that the test driver accepts, each parent's children
# written in the reverse of the table's order.
SHUFFLED = """\
<domain type='test'>
  <devices>
    <memballoon model='none'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <watchdog model='i6300esb'/>
    <redirfilter><usbdev allow='yes'/></redirfilter>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0' bus='3' slot='0' function='0'/></source>
    </hostdev>
    <video><model type='vga'/></video>
    <audio id='1' type='none'/>
    <sound model='ich9'/>
    <graphics type='vnc'/>
    <input type='keyboard' bus='virtio'/>
    <channel type='pty'><target type='virtio' name='org.example.0'/></channel>
    <console type='pty'/>
    <serial type='pty'/>
    <interface type='user'/>
    <controller type='usb' model='none'/>
    <disk type='file' device='disk'><source file='/x.img'/><target dev='vda' bus='virtio'/></disk>
  </devices>
  <features>
    <vmport state='off'/><pmu state='off'/>
    <kvm><hint-dedicated state='on'/><hidden state='on'/></kvm>
    <hyperv mode='custom'><relaxed state='on'/></hyperv><apic/><acpi/>
  </features>
  <cpu mode='custom' match='exact'>
    <numa><cell id='0' cpus='0' memory='1048576' unit='KiB'/></numa>
    <feature policy='require' name='tsc-deadline'/>
    <topology sockets='1' dies='1' cores='1' threads='1'/>
    <vendor>Intel</vendor>
    <model fallback='forbid'>Skylake-Client</model>
  </cpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <numatune><memnode cellid='0' mode='strict' nodeset='0'/><memory mode='strict' nodeset='0'/>
  </numatune>
  <cputune>
    <memorytune vcpus='0'><node id='0' bandwidth='50'/></memorytune>
    <iothreadsched iothreads='1' scheduler='fifo' priority='3'/>
    <vcpusched vcpus='0' scheduler='fifo' priority='1'/>
    <emulatorsched scheduler='fifo' priority='2'/>
    <iothreadpin iothread='1' cpuset='0'/>
    <emulatorpin cpuset='0'/>
    <vcpupin vcpu='0' cpuset='0'/>
    <iothread_quota>2000</iothread_quota><iothread_period>100000</iothread_period>
    <emulator_quota>2000</emulator_quota><emulator_period>100000</emulator_period>
    <global_quota>2000</global_quota><global_period>100000</global_period>
    <quota>2000</quota><period>100000</period>
    <shares>1024</shares>
  </cputune>
  <iothreads>1</iothreads>
  <vcpu placement='static'>1</vcpu>
  <memoryBacking>
    <discard/><allocation mode='immediate'/><access mode='shared'/><source type='memfd'/>
    <locked/><nosharepages/><hugepages><page size='2048' unit='KiB'/></hugepages>
  </memoryBacking>
  <memtune>
    <swap_hard_limit unit='KiB'>4194304</swap_hard_limit>
    <min_guarantee unit='KiB'>1</min_guarantee>
    <soft_limit unit='KiB'>1048576</soft_limit>
    <hard_limit unit='KiB'>2097152</hard_limit>
  </memtune>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <memory unit='KiB'>1048576</memory>
  <metadata><x:y xmlns:x='urn:example'/></metadata>
  <description>d</description>
  <title>t</title>
  <uuid>5e0b3a1c-7f41-4d6a-9c1e-2a4b6c8d0e1f</uuid>
  <name>rtl-layout-order</name>
</domain>
"""


def stored(xml: str) -> etree._Element:
    conn = libvirt.open("test:///default")
    try:
        dom = conn.defineXML(xml)
        text = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        dom.undefine()
    finally:
        conn.close()
    return etree.fromstring(text.encode())


def children(parent: etree._Element) -> list[str]:
    return [c.tag for c in parent if isinstance(c.tag, str)]


def test_the_order_table_is_libvirts() -> None:
    root = stored(SHUFFLED)
    checked = 0
    for path, order in ORDER.items():
        parent = root if path == "" else root.find(path)
        assert parent is not None, path
        tags = children(parent)
        assert [t for t in tags if t not in order] == [], f"<{path}> children not in ORDER"
        ranks = [order.index(t) for t in tags]
        assert ranks == sorted(ranks), f"libvirt writes <{path or 'domain'}> as {tags}"
        checked += len(set(tags))
    # Not vacuous: libvirt reordered what was written backwards, and most of the table
    # was exercised (the test driver refuses the rest: lease, tpm, async-teardown, ...).
    assert children(root.find("cputune"))[:3] == ["shares", "period", "quota"]
    assert checked >= 75


def tuned(uri: str, name: str, tuning: Path, xml: str | None = None) -> tuple[str, str]:
    """(current, tuned) XML, computed as `rtlibvirt tune` does."""
    with connection(uri) as conn:
        current = xml if xml is not None else virt.inactive_xml(conn.lookupByName(name))
        host = gather(conn, uri)
    spec, _ = spec_for(load_tuning(tuning), facts(current))
    spec, _ = place_spec(host, spec)
    return current, tune_xml(current, spec)


CASES = retune_cases()


@pytest.mark.parametrize("tuning", sorted(TUNINGS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_tuned_domain_tunes_to_itself(tmp_path: Path, case: str, tuning: str) -> None:
    name, xml = CASES[case]
    vcpus = facts(xml).vcpus
    uri = host_file(tmp_path, cores=8, threads=2, domains=[xml])
    path = tmp_path / "tuning.yaml"
    path.write_text(TUNINGS[tuning].format(vcpus=vcpus))

    current, new = tuned(uri, name, path)
    with connection(uri) as conn:
        kept = define.apply_xml(conn, new)
    # libvirt stores what tune wrote, element for element and in the same order ...
    assert xmldiff.unified(new, kept, "tuned", "stored") == ""
    # ... and tuning the stored definition again changes nothing.
    _, again = tuned(uri, name, path, kept)
    assert xmldiff.unified(kept, again, "stored", "tuned again") == ""

    before, after = etree.fromstring(current.encode()), etree.fromstring(kept.encode())
    for setting in ("shares", "period", "quota", "emulatorsched"):
        assert len(after.findall(f"cputune/{setting}")) == len(before.findall(f"cputune/{setting}"))
    assert (
        after.find("memoryBacking/discard") is not None
        or before.find("memoryBacking/discard") is None
    )
    assert [c.get("model") for c in after.findall("devices/controller[@type='usb']")] == ["none"]


def test_emulatorsched_is_kept() -> None:
    name, xml = CASES["server-cputune-memfd-iothreads"]
    from rtlibvirt.config.vm import validate_data

    spec = validate_data(
        {"name": name, "memory": 2048, "vcpus": 2, "cpu": {"pinning": [2, 3], "emulator": 0}}
    )
    root = etree.fromstring(tune_xml(xml, spec).encode())
    sched = root.find("cputune/emulatorsched")
    assert sched is not None and sched.attrib == {"scheduler": "fifo", "priority": "2"}
    assert children(root.find("cputune")) == [
        "shares", "period", "quota", "vcpupin", "vcpupin", "emulatorpin", "iothreadpin",
        "iothreadpin", "emulatorsched", "vcpusched",
    ]  # fmt: skip

"""Spec -> domain XML: expected files, libvirt's schema, every real-time element."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from rtlibvirt.config.vm import VmSpec, load_spec, validate_data
from rtlibvirt.domain import metadata
from rtlibvirt.domain.render import Identity, disk_target, render
from tests.conftest import EXAMPLES

EXPECTED = Path(__file__).resolve().parents[1] / "expected"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def spec_of(data: dict[str, Any]) -> VmSpec:
    base: dict[str, Any] = {
        "name": "t",
        "memory": "2GiB",
        "vcpus": 2,
        "cpu": {"pinning": [1, 2], "emulator": [0], "realtime": {"vcpus": [1]}},
    }
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return validate_data(base)


def xml_of(data: dict[str, Any], identity: Identity | None = None) -> etree._Element:
    return etree.fromstring(render(spec_of(data), identity).encode())


# ---- expected output, regenerated only on purpose ---------------------------------------


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_matches_expected_file(example: Path) -> None:
    expected = EXPECTED / f"{example.stem}.xml"
    xml = render(load_spec(example).spec)
    if os.environ.get("RTLIBVIRT_REGENERATE") == "1":
        expected.parent.mkdir(exist_ok=True)
        expected.write_text(xml)
    assert expected.exists(), (
        f"{expected} is missing; review the XML and create it on purpose with "
        "RTLIBVIRT_REGENERATE=1 pytest tests/test_render.py"
    )
    assert xml == expected.read_text()


def test_every_expected_file_has_an_example() -> None:
    stems = {p.stem for p in EXAMPLE_FILES}
    assert {p.stem for p in EXPECTED.glob("*.xml")} == stems


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_validates_against_libvirt_schema(
    example: Path, assert_valid_domain: Callable[[str], etree._Element]
) -> None:
    assert_valid_domain(render(load_spec(example).spec))


# ---- what a real-time guest needs, and nothing that hurts it -----------------------------


def test_plc_has_every_realtime_element(assert_valid_domain: Callable[[str], Any]) -> None:
    root = assert_valid_domain(render(load_spec(EXAMPLES / "plc.yaml").spec))
    assert root.get("type") == "kvm"
    assert root.findtext("name") == "plc"
    assert root.findtext("memory") == root.findtext("currentMemory") == str(2 * 1024 * 1024)
    assert root.find("vcpu").get("placement") == "static" and root.findtext("vcpu") == "4"
    pins = {p.get("vcpu"): p.get("cpuset") for p in root.findall("cputune/vcpupin")}
    assert pins == {"0": "2", "1": "3", "2": "4", "3": "5"}
    assert root.find("cputune/emulatorpin").get("cpuset") == "0-1"
    (sched,) = root.findall("cputune/vcpusched")
    assert dict(sched.attrib) == {"vcpus": "1-3", "scheduler": "fifo", "priority": "1"}
    page = root.find("memoryBacking/hugepages/page")
    assert (page.get("size"), page.get("unit"), page.get("nodeset")) == ("1048576", "KiB", None)
    assert root.find("memoryBacking/locked") is not None
    assert root.find("memoryBacking/nosharepages") is not None
    assert root.find("memoryBacking/allocation").get("mode") == "immediate"
    assert root.findtext("memtune/hard_limit") == str(3 * 1024 * 1024)
    assert root.find("devices/memballoon").get("model") == "none"
    assert root.find("devices/controller[@type='usb']").get("model") == "none"
    for absent in ("graphics", "sound", "video", "input", "audio", "redirdev", "channel"):
        assert root.find(f"devices/{absent}") is None, absent
    assert root.find("devices/serial").get("type") == "pty"
    assert root.find("devices/console/target").get("type") == "serial"
    assert root.find("features/pmu").get("state") == "off"
    assert root.find("features/kvm/hint-dedicated").get("state") == "on"
    timers = {t.get("name"): dict(t.attrib) for t in root.findall("clock/timer")}
    assert timers["hpet"]["present"] == "no"
    assert timers["rtc"]["tickpolicy"] == "catchup" and timers["pit"]["tickpolicy"] == "delay"
    cpu = root.find("cpu")
    assert (cpu.get("mode"), cpu.get("migratable")) == ("host-passthrough", "off")
    topology = cpu.find("topology")
    assert (topology.get("sockets"), topology.get("cores"), topology.get("threads")) == (
        "1",
        "4",
        "1",
    )
    assert root.find("os/type").get("machine") == "q35"
    assert root.find("os").get("firmware") is None
    disk = root.find("devices/disk")
    assert disk.find("source").get("file") == "/var/lib/libvirt/images/plc.qcow2"
    assert dict(disk.find("driver").attrib) == {
        "name": "qemu",
        "type": "qcow2",
        "cache": "none",
        "io": "native",
    }
    hostdev = root.find("devices/hostdev")
    assert (hostdev.get("mode"), hostdev.get("type"), hostdev.get("managed")) == (
        "subsystem",
        "pci",
        "yes",
    )
    assert hostdev.find("driver").get("name") == "vfio"
    address = hostdev.find("source/address")
    assert dict(address.attrib) == {
        "domain": "0x0000",
        "bus": "0x03",
        "slot": "0x00",
        "function": "0x0",
    }


def test_metadata_holds_the_normalized_spec() -> None:
    spec = load_spec(EXAMPLES / "plc.yaml").spec
    xml = render(spec)
    assert metadata.read(xml) == spec.normalized()
    root = etree.fromstring(xml.encode())
    element = root.find(f"metadata/{metadata.TAG}")
    assert element.get("schema") == metadata.SCHEMA_VERSION


def test_realtime_off_has_no_vcpusched() -> None:
    root = xml_of({"cpu": {"realtime": False}})
    assert root.find("cputune/vcpusched") is None
    assert len(root.findall("cputune/vcpupin")) == 2


def test_rr_policy_and_priority() -> None:
    root = xml_of({"cpu": {"realtime": {"vcpus": "1", "policy": "rr", "priority": 42}}})
    sched = root.find("cputune/vcpusched")
    assert (sched.get("scheduler"), sched.get("priority"), sched.get("vcpus")) == ("rr", "42", "1")


def test_unlocked_memory_has_no_hard_limit() -> None:
    root = xml_of({"memory_backing": {"locked": False, "nosharepages": False, "hugepages": "none"}})
    assert root.find("memtune") is None
    assert root.find("memoryBacking/locked") is None
    assert root.find("memoryBacking/nosharepages") is None
    assert root.find("memoryBacking/hugepages") is None


def test_2m_hugepages() -> None:
    root = xml_of({"memory_backing": {"hugepages": "2M"}, "memory": "6MiB"})
    assert root.find("memoryBacking/hugepages/page").get("size") == "2048"


def test_numa_node_pins_memory_and_names_the_guest_cell() -> None:
    root = xml_of({"numa": {"node": 1}})
    assert dict(root.find("numatune/memory").attrib) == {"mode": "strict", "nodeset": "1"}
    assert dict(root.find("numatune/memnode").attrib) == {
        "cellid": "0",
        "mode": "strict",
        "nodeset": "1",
    }
    cell = root.find("cpu/numa/cell")
    assert (cell.get("id"), cell.get("cpus"), cell.get("memory")) == ("0", "0-1", "2097152")
    assert root.find("memoryBacking/hugepages/page").get("nodeset") == "0"


def test_iothreads_are_pinned_with_the_emulator_and_spread_over_virtio_disks() -> None:
    root = xml_of(
        {
            "cpu": {"emulator": "0,3", "iothreads": 2},
            "devices": {
                "disks": [
                    {"source": "/a.img"},
                    {"source": "/b.img"},
                    {"source": "/c.img"},
                    {"source": "/d.img", "bus": "sata"},
                ]
            },
        }
    )
    assert root.findtext("iothreads") == "2"
    pins = [(p.get("iothread"), p.get("cpuset")) for p in root.findall("cputune/iothreadpin")]
    assert pins == [("1", "0,3"), ("2", "0,3")]
    threads = [d.find("driver").get("iothread") for d in root.findall("devices/disk")]
    assert threads == ["1", "2", "1", None]


def test_disk_targets_formats_and_block_devices() -> None:
    root = xml_of(
        {
            "machine": "pc",
            "devices": {
                "disks": [
                    {"source": "/images/a.qcow2"},
                    {"source": "/dev/vg/b"},
                    {"source": "/images/c.QCOW2", "bus": "sata"},
                    {"source": "/images/d.img", "bus": "scsi", "readonly": True},
                    {"source": "/images/e.raw", "bus": "ide", "format": "raw"},
                    {"source": "/images/f.vmdk", "format": "vmdk"},
                ]
            },
        }
    )
    disks = root.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == [
        "vda",
        "vdb",
        "sda",
        "sdb",
        "hda",
        "vdc",
    ]
    assert [d.find("driver").get("type") for d in disks] == [
        "qcow2",
        "raw",
        "qcow2",
        "raw",
        "raw",
        "vmdk",
    ]
    assert disks[1].get("type") == "block" and disks[1].find("source").get("dev") == "/dev/vg/b"
    assert disks[3].find("readonly") is not None
    scsi = root.find("devices/controller[@type='scsi']")
    assert scsi.get("model") == "virtio-scsi" and len(scsi) == 0


def test_disk_target_names_go_past_z() -> None:
    assert [disk_target("virtio", i) for i in (0, 25, 26, 27, 701, 702)] == [
        "vda",
        "vdz",
        "vdaa",
        "vdab",
        "vdzz",
        "vdaaa",
    ]


def test_networks_and_kept_macs() -> None:
    data = {
        "devices": {
            "networks": [
                {"bridge": "br0"},
                {"network": "default", "model": "e1000e"},
                {"bridge": "br1", "mac": "52:54:00:00:00:09"},
            ]
        }
    }
    root = xml_of(
        data, Identity(uuid="6b1e1d2a-0f3c-4a51-9a3e-2c7d8f0e1a23", macs=("52:54:00:00:00:01",))
    )
    nics = root.findall("devices/interface")
    assert [(n.get("type"), n.find("source").attrib) for n in nics] == [
        ("bridge", {"bridge": "br0"}),
        ("network", {"network": "default"}),
        ("bridge", {"bridge": "br1"}),
    ]
    macs = [n.find("mac").get("address") if n.find("mac") is not None else None for n in nics]
    assert macs == ["52:54:00:00:00:01", None, "52:54:00:00:00:09"]
    assert nics[1].find("model").get("type") == "e1000e"
    assert root.findtext("uuid") == "6b1e1d2a-0f3c-4a51-9a3e-2c7d8f0e1a23"


def test_unmanaged_hostdev() -> None:
    root = xml_of({"devices": {"hostdevs": [{"address": "81:00.1", "managed": False}]}})
    hostdev = root.find("devices/hostdev")
    assert hostdev.get("managed") == "no"
    assert hostdev.find("source/address").get("bus") == "0x81"
    assert hostdev.find("source/address").get("function") == "0x1"


@pytest.mark.parametrize(
    ("cpu", "dedicated"),
    [
        ({}, True),
        ({"emulator": [1]}, False),  # vCPU 0 shares host CPU 1 with the emulator
        ({"model": "host-model"}, False),  # libvirt allows the hint with host-passthrough only
    ],
)
def test_hint_dedicated_only_when_true(cpu: dict[str, Any], dedicated: bool) -> None:
    root = xml_of({"cpu": cpu})
    assert (root.find("features/kvm/hint-dedicated") is not None) is dedicated


def test_cpu_models_features_and_topology() -> None:
    root = xml_of(
        {
            "vcpus": 4,
            "cpu": {
                "pinning": "1-4",
                "realtime": {"vcpus": "1-3"},
                "model": "EPYC-Rome",
                "topology": {"sockets": 1, "cores": 2, "threads": 2},
                "features": {"x2apic": "require", "arch-capabilities": "disable"},
            },
        }
    )
    cpu = root.find("cpu")
    assert (cpu.get("mode"), cpu.findtext("model")) == ("custom", "EPYC-Rome")
    assert cpu.find("model").get("fallback") == "forbid"
    assert [(f.get("name"), f.get("policy")) for f in cpu.findall("feature")] == [
        ("arch-capabilities", "disable"),
        ("x2apic", "require"),
    ]
    assert cpu.find("topology").get("threads") == "2"
    assert xml_of({"cpu": {"model": "host-model"}}).find("cpu").get("mode") == "host-model"


def test_machine_and_firmware() -> None:
    root = xml_of({"machine": "pc", "firmware": "efi"})
    assert root.find("os").get("firmware") == "efi"
    assert root.find("os/type").get("machine") == "pc"


def test_virt_type_qemu_renders_a_tcg_domain(
    tmp_path: Path, assert_valid_domain: Callable[[str], Any]
) -> None:
    """A host without KVM: domain type qemu, the CPU TCG emulates best, no KVM hints."""
    root = xml_of({"virt_type": "qemu"})
    assert_valid_domain(etree.tostring(root, encoding="unicode"))
    assert root.get("type") == "qemu"
    assert root.find("cpu").get("mode") == "maximum"
    assert root.find("features/kvm") is None
    assert xml_of({}).get("type") == "kvm"  # the default
    path = tmp_path / "tcg.yaml"
    path.write_text(
        "name: t\nmemory: 1GiB\nvcpus: 1\ncpu: {pinning: [1], emulator: 0}\nvirt_type: qemu\n"
    )
    loaded = load_spec(path)
    assert "virt_type" in [w.path for w in loaded.warnings]  # TCG: a trial, not real time


# ---- hostile strings never become markup ---------------------------------------------------

HOSTILE = [
    '/x/</source><graphics type="vnc"/><source file="/y',
    "/x/'quoted' & \"double\" <tag>",
    "/x/]]><!--",
    "/x/é ü 日本 \u00a0space",
]


@pytest.mark.parametrize("source", HOSTILE)
def test_strings_from_the_spec_are_escaped(
    source: str, assert_valid_domain: Callable[[str], Any]
) -> None:
    spec = spec_of(
        {"devices": {"disks": [{"source": source}], "networks": [{"network": source[3:]}]}}
    )
    xml = render(spec)
    root = assert_valid_domain(xml)
    assert root.find("devices/graphics") is None
    assert root.find("devices/disk/source").get("file") == source
    assert root.find("devices/interface/source").get("network") == source[3:]
    assert len(root.findall("devices/disk")) == 1
    assert metadata.read(xml) == spec.normalized()


# ---- a property-based spread of valid specs ------------------------------------------------

SAFE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20
)


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=8))
    pool = list(range(64))
    pinning = draw(st.permutations(pool).map(lambda p: p[:n]))
    realtime: Any
    if draw(st.booleans()):
        rt = sorted(draw(st.sets(st.integers(0, n - 1), min_size=1)))
        realtime = {
            "vcpus": rt,
            "policy": draw(st.sampled_from(["fifo", "rr"])),
            "priority": draw(st.integers(1, 99)),
        }
        if realtime["priority"] > 96:  # no room above it for the kernel threads' defaults
            realtime["kernel_threads"] = False
        rt_hosts = {pinning[v] for v in rt}
    else:
        realtime = False
        rt_hosts = set()
    emulator = sorted(
        draw(
            st.sets(st.sampled_from([c for c in pool if c not in rt_hosts]), min_size=1, max_size=4)
        )
    )
    hugepages = draw(st.sampled_from(["2M", "1G", "none"]))
    pages = draw(st.integers(1, 4))
    memory = {"2M": f"{pages * 2}MiB", "1G": f"{pages}GiB", "none": pages * 256}[hugepages]
    threads = draw(st.sampled_from([t for t in (1, 2) if n % t == 0]))
    machine = draw(st.sampled_from(["q35", "pc"]))
    buses = ["virtio", "sata", "scsi"] + (["ide"] if machine == "pc" else [])
    disks = []
    for _ in range(draw(st.integers(0, 3))):
        bus = draw(st.sampled_from(buses))
        disks.append(
            {
                "source": "/" + draw(SAFE_TEXT),
                "bus": bus,
                "readonly": draw(st.booleans()) if bus in ("virtio", "scsi") else False,
            }
        )
    networks = []
    for index in range(draw(st.integers(0, 2))):
        nic: dict[str, Any] = (
            {"bridge": f"br{index}"} if draw(st.booleans()) else {"network": draw(SAFE_TEXT)}
        )
        if draw(st.booleans()):
            nic["mac"] = f"52:54:00:00:00:{index:02x}"
        networks.append(nic)
    hostdevs = [
        {"address": f"0000:{bus:02x}:00.0", "managed": draw(st.booleans())}
        for bus in sorted(draw(st.sets(st.integers(1, 255), max_size=3)))
    ]
    spec: dict[str, Any] = {
        "name": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,20}", fullmatch=True)),
        "memory": memory,
        "vcpus": n,
        "cpu": {
            "pinning": pinning,
            "emulator": emulator,
            "iothreads": draw(st.integers(0, 2)),
            "realtime": realtime,
            "model": draw(st.sampled_from(["host-passthrough", "host-model", "EPYC"])),
            "topology": {"sockets": 1, "cores": n // threads, "threads": threads},
            "features": draw(
                st.dictionaries(
                    st.sampled_from(["x2apic", "pcid", "arch-capabilities"]),
                    st.sampled_from(["require", "disable"]),
                )
            ),
        },
        "memory_backing": {
            "hugepages": hugepages,
            "locked": draw(st.booleans()),
            "nosharepages": draw(st.booleans()),
        },
        "machine": machine,
        "firmware": draw(st.sampled_from(["bios", "efi"])),
        "devices": {"disks": disks, "networks": networks, "hostdevs": hostdevs},
    }
    if draw(st.booleans()):
        spec["numa"] = {"node": draw(st.integers(0, 7))}
    return spec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=valid_specs())
def test_any_valid_spec_renders_schema_valid_xml(
    data: dict[str, Any], domain_schema: etree.RelaxNG
) -> None:
    spec = validate_data(data)
    xml = render(spec)
    root = etree.fromstring(xml.encode())
    assert domain_schema.validate(root), str(domain_schema.error_log)
    assert metadata.read(xml) == spec.normalized()
    assert len(root.findall("cputune/vcpupin")) == spec.vcpus
    assert len(root.findall("devices/disk")) == len(spec.devices.disks)
    assert len(root.findall("devices/interface")) == len(spec.devices.networks)
    assert len(root.findall("devices/hostdev")) == len(spec.devices.hostdevs)
    assert root.find("devices/memballoon").get("model") == "none"


def test_host_passthrough_requires_tsc_deadline_unless_the_spec_names_it(
    assert_valid_domain: Callable[[str], etree._Element],
) -> None:
    def features(cpu: dict[str, Any]) -> dict[str, str]:
        root = assert_valid_domain(render(spec_of({"cpu": cpu})))
        return {f.get("name"): f.get("policy") for f in root.findall("cpu/feature")}

    assert features({}) == {"tsc-deadline": "require"}
    assert features({"features": {"tsc-deadline": "optional"}}) == {"tsc-deadline": "optional"}
    assert features({"features": {"tsc-deadline": "disable", "pdpe1gb": "require"}}) == {
        "tsc-deadline": "disable",
        "pdpe1gb": "require",
    }
    assert features({"model": "host-model"}) == {}  # libvirt's model of the host has it
    assert features({"model": "Skylake-Client"}) == {}  # a named model says what it has

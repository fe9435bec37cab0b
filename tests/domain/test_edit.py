"""`rtlibvirt tune` on domains as virt-manager and virt-install write them.

Only the real-time parts change; the result validates against libvirt's
domain.rng and defines on libvirt's test driver.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from lxml import etree

from rtlibvirt.cli import cli
from rtlibvirt.config.tuning import load_tuning, spec_for
from rtlibvirt.config.vm import validate_data
from rtlibvirt.domain import diff as xmldiff
from rtlibvirt.domain import metadata
from rtlibvirt.domain.edit import TuneError, tune_xml
from rtlibvirt.domain.facts import facts
from rtlibvirt.errors import LibvirtError, SpecError
from rtlibvirt.fit.fitting import place_spec
from rtlibvirt.fit.host import gather
from rtlibvirt.kernel.cpuset import format_cpulist
from rtlibvirt.virt import connection as virt
from rtlibvirt.virt import define
from tests.fakes.libvirt_hosts import DEFAULT_NETWORK, DOMAINS, connection, host_file

TUNING = """\
cpu:
  pinning: auto
  emulator: auto
  realtime:
    vcpus: {rt}
    priority: 10
memory_backing:
  hugepages: 2M
isolation:
  irqs: true
"""

SOURCES = {
    "virt-manager-desktop.libvirt.xml": ("desktop", 4),
    "virt-install-desktop.xml": ("desktop", 4),
    "virt-install-server.xml": ("server", 2),
    "virt-install-win10.xml": ("win10", 4),
}


def host_with(tmp_path: Path, source: str) -> str:
    """A 1-node, 8-core SMT host for the test driver holding the domain in ``source``."""
    xml = (DOMAINS / source).read_text()
    return host_file(tmp_path, cores=8, threads=2, domains=[xml], extra=[DEFAULT_NETWORK])


def tuning_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tuning.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def tuned(uri: str, name: str, tuning: Path) -> tuple[str, str]:
    """(current, tuned) XML, computed as the command does."""
    with connection(uri) as conn:
        current = virt.inactive_xml(conn.lookupByName(name))
        host = gather(conn, uri)
    spec, _ = spec_for(load_tuning(tuning), facts(current))
    spec, _ = place_spec(host, spec)
    return current, tune_xml(current, spec)


_REALTIME_PARTS = (
    f"metadata/{metadata.TAG}",
    "memtune",
    "memoryBacking",
    "cputune",
    "numatune",
    "features/pmu",
    "features/kvm",
    "cpu/feature[@name='tsc-deadline']",  # required for host-passthrough
    "devices/controller[@type='usb']",
    "devices/input[@bus='usb']",
    "devices/redirdev",
    "devices/memballoon",
)


def without_realtime_parts(xml: str) -> str:
    root = etree.fromstring(xml.encode())
    for path in _REALTIME_PARTS:
        for element in root.findall(path):
            element.getparent().remove(element)
    vcpu = root.find("vcpu")
    if vcpu is not None:
        vcpu.attrib.pop("placement", None)
    cpu = root.find("cpu")
    if cpu is not None:
        cpu.attrib.pop("migratable", None)
        cpu.attrib.pop("check", None)
        if len(cpu) == 0:
            cpu.text = None  # <cpu .../> whether or not tune added a feature to it
    return xmldiff.canonical(etree.tostring(root, encoding="unicode"))


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_tune_changes_only_the_realtime_parts(
    tmp_path: Path, source: str, assert_valid_domain: Callable[[str], Any]
) -> None:
    name, vcpus = SOURCES[source]
    uri = host_with(tmp_path, source)
    rt = format_cpulist(range(1, vcpus))
    current, new = tuned(uri, name, tuning_file(tmp_path, TUNING.format(rt=rt)))

    root = assert_valid_domain(new)
    assert without_realtime_parts(new) == without_realtime_parts(current)
    before = etree.fromstring(current.encode())
    # What the user made stays: UUID, disks, NICs (with their MACs), graphics, video, sound.
    assert root.findtext("uuid") == before.findtext("uuid")
    for tag in ("disk", "interface", "graphics", "video", "sound", "channel", "rng"):
        assert len(root.findall(f"devices/{tag}")) == len(before.findall(f"devices/{tag}"))
    # The real-time parts are there.
    assert len(root.findall("cputune/vcpupin")) == vcpus
    assert root.find("cputune/emulatorpin") is not None
    sched = root.find("cputune/vcpusched")
    assert (sched.get("vcpus"), sched.get("scheduler"), sched.get("priority")) == (
        rt,
        "fifo",
        "10",
    )
    assert root.find("memoryBacking/hugepages/page").get("size") == "2048"
    assert root.find("memoryBacking/locked") is not None
    assert root.find("devices/memballoon").get("model") == "none"
    assert [c.get("model") for c in root.findall("devices/controller[@type='usb']")] == ["none"]
    assert root.find("devices/input[@type='tablet']") is None
    assert root.find("features/pmu").get("state") == "off"
    assert facts(new).origin == "tune"
    stored = metadata.read(new)
    assert stored is not None and stored["name"] == name and stored["isolation"]["irqs"]

    # libvirt itself accepts it (with its schema validation), and reads back the same.
    with connection(uri) as conn:
        again = define.apply_xml(conn, new)
    assert xmldiff.unified(new, again, "tuned", "stored") == ""


def test_tuned_domain_checks_clean_of_domain_findings(tmp_path: Path) -> None:
    from rtlibvirt.fit import checks

    uri = host_with(tmp_path, "virt-manager-desktop.libvirt.xml")
    _, new = tuned(uri, "desktop", tuning_file(tmp_path, TUNING.format(rt="1-3")))
    # only what tune keeps on purpose (the user's display and sound) is left, and named
    found = checks.domain_findings(facts(new)).findings
    assert [f.code for f in found] == ["emulated-devices"]


def test_tune_says_what_it_kept_and_why(tmp_path: Path) -> None:
    uri = host_with(tmp_path, "virt-manager-desktop.libvirt.xml")
    path = tuning_file(tmp_path, TUNING.format(rt="1-3"))
    result = CliRunner().invoke(cli, ["tune", "desktop", str(path), "-c", uri])
    assert result.exit_code == 0, result.output
    kept = next(line for line in result.stderr.splitlines() if line.startswith("kept:"))
    assert "SPICE graphics" in kept and "sound" in kept and "emulated-devices" in kept


def test_explicit_pins_numa_and_cpu_model(tmp_path: Path) -> None:
    uri = host_with(tmp_path, "virt-install-server.xml")
    text = """\
    cpu:
      pinning: [3, 2]
      emulator: 0
      realtime:
        vcpus: 1
      topology: {sockets: 1, cores: 1, threads: 2}
      features: {tsc-deadline: require}
    numa:
      node: 0
    memory_backing:
      hugepages: 1G
    """
    _, new = tuned(uri, "server", tuning_file(tmp_path, text))
    root = etree.fromstring(new.encode())
    assert [p.get("cpuset") for p in root.findall("cputune/vcpupin")] == ["3", "2"]
    assert root.find("numatune/memory").attrib == {"mode": "strict", "nodeset": "0"}
    assert root.find("cpu/topology").get("threads") == "2"
    assert root.find("cpu/feature").attrib == {"policy": "require", "name": "tsc-deadline"}


def test_a_tuned_host_passthrough_cpu_requires_tsc_deadline_unless_someone_chose(
    tmp_path: Path,
) -> None:
    uri = host_with(tmp_path, "virt-install-server.xml")  # <cpu mode="host-passthrough"/>
    _, new = tuned(uri, "server", tuning_file(tmp_path, TUNING.format(rt="1")))
    root = etree.fromstring(new.encode())
    assert [f.attrib for f in root.findall("cpu/feature")] == [
        {"policy": "require", "name": "tsc-deadline"}
    ]
    # the domain's own choice stays; TUNING.yaml's wins over it
    source = (
        (DOMAINS / "virt-install-server.xml")
        .read_text()
        .replace(
            '<cpu mode="host-passthrough"/>',
            '<cpu mode="host-passthrough"><feature policy="disable" name="tsc-deadline"/></cpu>',
        )
    )
    (tmp_path / "own").mkdir()
    uri = host_file(tmp_path / "own", cores=8, threads=2, domains=[source])
    _, new = tuned(uri, "server", tuning_file(tmp_path, TUNING.format(rt="1")))
    assert [f.get("policy") for f in etree.fromstring(new.encode()).findall("cpu/feature")] == [
        "disable"
    ]
    optional = TUNING.format(rt="1").replace(
        "    priority: 10\n", "    priority: 10\n  features: {tsc-deadline: optional}\n"
    )
    _, new = tuned(uri, "server", tuning_file(tmp_path, optional))
    assert [f.get("policy") for f in etree.fromstring(new.encode()).findall("cpu/feature")] == [
        "optional"
    ]


def test_tuning_errors_name_the_tuning_file(tmp_path: Path) -> None:
    uri = host_with(tmp_path, "virt-install-server.xml")
    bad = tuning_file(tmp_path, "cpu:\n  pinning: [1, 2, 3]\n  emulatr: 0\n")
    result = CliRunner().invoke(cli, ["tune", "server", str(bad), "-c", uri])
    assert result.exit_code == 2
    assert "tuning.yaml:3: cpu.emulatr: unknown key" in result.output
    assert "did you mean `emulator`?" in result.output

    wrong = tuning_file(tmp_path, "cpu:\n  pinning: [1, 2, 3]\n  emulator: 0\n")
    result = CliRunner().invoke(cli, ["tune", "server", str(wrong), "-c", uri])
    assert result.exit_code == 2
    assert "tuning.yaml:2: cpu.pinning: lists 3 host CPUs but the domain has 2 vCPUs" in (
        result.output
    )


def test_memory_that_is_no_multiple_of_the_page_size(tmp_path: Path) -> None:
    uri = host_with(tmp_path, "virt-install-server.xml")  # 2 GiB
    path = tuning_file(
        tmp_path, "cpu:\n  pinning: auto\n  emulator: auto\nmemory_backing:\n  hugepages: 1G\n"
    )
    with connection(uri) as conn:
        xml = virt.inactive_xml(conn.lookupByName("server"))
    three_gib = xml.replace(">2097152<", ">3145728<")
    spec, _ = spec_for(load_tuning(path), facts(three_gib))
    assert spec.memory == 3 * 1024 * 1024
    bigger = xml.replace(">2097152<", ">2621440<")  # 2.5 GiB
    with pytest.raises(SpecError) as info:
        spec_for(load_tuning(path), facts(bigger))
    assert info.value.problems[0].path == "(the domain's <memory>)"


def test_iothreads_are_the_domains_own(tmp_path: Path) -> None:
    path = tuning_file(tmp_path, "cpu:\n  pinning: auto\n  emulator: auto\n  iothreads: 2\n")
    with pytest.raises(SpecError, match="1 problem"):
        load_tuning(path)


def test_domain_iothreads_are_pinned_to_the_emulator(tmp_path: Path) -> None:
    xml = (DOMAINS / "virt-install-server.xml").read_text()
    xml = xml.replace("<vcpu>2</vcpu>", "<vcpu>2</vcpu><iothreads>2</iothreads>")
    spec = validate_data(
        {"name": "server", "memory": 2048, "vcpus": 2, "cpu": {"pinning": [2, 3], "emulator": 0}}
    )
    root = etree.fromstring(tune_xml(xml, spec).encode())
    assert [(p.get("iothread"), p.get("cpuset")) for p in root.findall("cputune/iothreadpin")] == [
        ("1", "0"),
        ("2", "0"),
    ]


def test_usb_devices_that_need_the_controller_stop_tune(tmp_path: Path) -> None:
    xml = (DOMAINS / "virt-install-server.xml").read_text()
    xml = xml.replace(
        "</devices>",
        "<hostdev mode='subsystem' type='usb'><source><vendor id='0x046d'/>"
        "<product id='0xc52b'/></source></hostdev></devices>",
    )
    spec = validate_data(
        {"name": "server", "memory": 2048, "vcpus": 2, "cpu": {"pinning": [2, 3], "emulator": 0}}
    )
    with pytest.raises(
        TuneError, match="USB devices that need a USB controller: <hostdev 046d:c52b>"
    ):
        tune_xml(xml, spec)


def test_dry_run_shows_the_diff_and_changes_nothing(tmp_path: Path) -> None:
    uri = host_with(tmp_path, "virt-manager-desktop.libvirt.xml")
    path = tuning_file(tmp_path, TUNING.format(rt="1-3"))
    result = CliRunner().invoke(cli, ["tune", "desktop", str(path), "-c", uri, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Would tune domain 'desktop'" in result.stdout
    assert '-    <memballoon model="virtio"/>' in result.stdout
    assert '+    <memballoon model="none"/>' in result.stdout
    assert '-    <input bus="usb" type="tablet"/>' in result.stdout
    assert "nothing was changed" in result.stderr


def test_tune_command_defines_and_summarises(tmp_path: Path) -> None:
    uri = host_with(tmp_path, "virt-install-win10.xml")
    path = tuning_file(tmp_path, TUNING.format(rt="1-3"))
    result = CliRunner().invoke(cli, ["tune", "win10", str(path), "-c", uri])
    assert result.exit_code == 0, result.output
    assert "Tuned domain 'win10'" in result.stdout
    assert "vCPUs      4: 0->4, 1->1 fifo 10, 2->2 fifo 10, 3->3 fifo 10" in result.stdout
    assert "no balloon" in result.stdout
    assert "auto placement:" in result.stderr


def test_unknown_domain(tmp_path: Path) -> None:
    uri = host_with(tmp_path, "virt-install-server.xml")
    path = tuning_file(tmp_path, TUNING.format(rt="1"))
    result = CliRunner().invoke(cli, ["tune", "nosuch", str(path), "-c", uri])
    assert result.exit_code == 2
    assert "no domain named 'nosuch'" in result.output


def test_define_does_not_replace_a_tuned_domain_without_force(
    tmp_path: Path, write_spec: Callable[..., Path]
) -> None:
    uri = host_with(tmp_path, "virt-install-server.xml")
    _, new = tuned(uri, "server", tuning_file(tmp_path, TUNING.format(rt="1")))
    spec = validate_data(
        {"name": "server", "memory": 2048, "vcpus": 2, "cpu": {"pinning": [2, 3], "emulator": 0}}
    )
    with connection(uri) as conn:
        define.apply_xml(conn, new)
        with pytest.raises(LibvirtError) as refused:
            define.plan(conn, spec)
        # a tuned domain is rtlibvirt's (status says so too): tune it again
        assert "rtlibvirt tune made it real-time" in refused.value.message
        assert "not made by rtlibvirt" not in refused.value.message
        assert "NICs" in refused.value.message  # what the vm.yaml would drop
        assert refused.value.hint and "rtlibvirt tune server TUNING.yaml" in refused.value.hint
        assert define.plan(conn, spec, force=True).exists


def test_tuning_again_changes_nothing(tmp_path: Path) -> None:
    uri = host_with(tmp_path, "virt-manager-desktop.libvirt.xml")
    path = tuning_file(tmp_path, TUNING.format(rt="1-3"))
    _, new = tuned(uri, "desktop", path)
    with connection(uri) as conn:
        stored = define.apply_xml(conn, new)
        host = gather(conn, uri)
    spec, _ = spec_for(load_tuning(path), facts(stored))
    spec, placement = place_spec(host, spec)
    assert placement is not None and placement.kept
    assert xmldiff.unified(stored, tune_xml(stored, spec), "stored", "again") == ""


def test_iothreadpins_follow_libvirts_iothreadids_order(
    tmp_path: Path, assert_valid_domain: Callable[[str], Any]
) -> None:
    """libvirt stores <iothreadpin> in <iothreadids> order: a second tune changes nothing."""
    uri = host_with(tmp_path, "iothreadids-unordered.xml")
    path = tuning_file(tmp_path, TUNING.format(rt="1"))
    _, new = tuned(uri, "pools", path)
    assert_valid_domain(new)
    pins = [
        p.get("iothread") for p in etree.fromstring(new.encode()).findall("cputune/iothreadpin")
    ]
    assert pins == ["2", "4", "1", "3", "5"]
    with connection(uri) as conn:
        stored = define.apply_xml(conn, new)
    _, again = tuned(uri, "pools", path)
    assert xmldiff.unified(stored, again, "stored", "again") == ""


def test_a_domain_without_vcpu_gets_a_valid_one(
    tmp_path: Path, assert_valid_domain: Callable[[str], Any]
) -> None:
    """As a file holds it (libvirt itself writes <vcpu> back): one vCPU, its default."""
    xml = (DOMAINS / "no-vcpu-element.xml").read_text()
    tuning = tuning_file(tmp_path, "cpu:\n  pinning: [2]\n  emulator: 0\n  realtime: false\n")
    spec, _ = spec_for(load_tuning(tuning), facts(xml))
    new = tune_xml(xml, spec)
    assert_valid_domain(new)
    vcpu = etree.fromstring(new.encode()).find("vcpu")
    assert vcpu is not None and vcpu.text == "1" and vcpu.get("placement") == "static"
    uri = host_file(tmp_path, cores=8)
    with connection(uri) as conn:
        stored = define.apply_xml(conn, new)
    assert facts(stored).vcpus == 1 and facts(stored).vcpupins == {0: frozenset({2})}


def test_tune_honours_share_with(tmp_path: Path) -> None:
    from tests.fakes.libvirt_hosts import pinned_domain

    server = (DOMAINS / "virt-install-server.xml").read_text()
    uri = host_file(tmp_path, cores=8, domains=[server, pinned_domain("other", [2, 3], "0")])
    text = "cpu:\n  pinning: [2, 3]\n  emulator: 0\n  realtime: {vcpus: [1]}\n"
    refused = CliRunner().invoke(
        cli, ["tune", "server", str(tuning_file(tmp_path, text)), "-c", uri, "--dry-run"]
    )
    assert refused.exit_code == 1 and "cpu.share_with: [other]" in refused.stderr
    text += "  share_with: [other]\n"
    result = CliRunner().invoke(
        cli, ["tune", "server", str(tuning_file(tmp_path, text)), "-c", uri, "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "cpu-shared" not in result.stderr
    assert '"share_with": ["other"]' in result.stdout  # kept in the metadata

"""The messages issue 9 found unclear, each as it reads now.

- "(  )" with nothing inside when vCPUs span NUMA nodes;
- "is not pinned ... moves them" for one vCPU;
- "NUMA node 2-3, which does not exist" for a range;
- a refusal naming <controller> and <hostdev> without saying which device;
- "(a whole core per realtime vCPU)" when real-time scheduling is off;
- an invalid domain name blamed on the tuning file;
- tune refusing memory that is not a whole number of MiB with no hugepages asked for.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtlibvirt.cli import cli
from rtlibvirt.config.tuning import load_tuning, spec_for
from rtlibvirt.domain.edit import TuneError, tune_xml
from rtlibvirt.domain.facts import facts
from rtlibvirt.domain.render import render
from rtlibvirt.errors import InputError
from rtlibvirt.fit import checks
from rtlibvirt.fit.placement import Placement
from tests.fakes.libvirt_hosts import DOMAINS, host, host_file, host_uri, pinned_domain
from tests.fit.test_checks import make_spec


def found(h: object, xml: str, code: str) -> str:
    result = checks.host_findings(h, facts(xml))  # type: ignore[arg-type]
    (match,) = [f for f in result.findings if f.code == code]
    return match.what


def test_vcpus_pinned_across_nodes_are_named() -> None:
    h = host(host_uri("two-node-smt"))
    # vCPU 0 on CPUs of both nodes (2 on node 0, 6 on node 1), vCPU 1 on node 0
    xml = pinned_domain("x", [2, 1], emulator="0").replace("cpuset='2'", "cpuset='2,6'", 1)
    text = found(h, xml, "numa-split")
    assert "()" not in text and "( " not in text
    assert "vCPU 0 on CPUs of nodes 0-1" in text and "vCPU 1 on node 0" in text


def test_one_unpinned_vcpu_is_it() -> None:
    xml = render(make_spec()).replace('<vcpupin vcpu="1" cpuset="5"/>', "")
    (what,) = [
        f.what for f in checks.domain_findings(facts(xml)).findings if f.code == "vcpu-not-pinned"
    ]
    assert "vCPU 1 is not pinned" in what and "moves it between" in what and "them" not in what


def test_two_unpinned_vcpus_are_them() -> None:
    xml = render(make_spec())
    xml = xml.replace('<vcpupin vcpu="1" cpuset="5"/>', "").replace(
        '<vcpupin vcpu="0" cpuset="4"/>', ""
    )
    (what,) = [
        f.what for f in checks.domain_findings(facts(xml)).findings if f.code == "vcpu-not-pinned"
    ]
    assert "vCPUs 0-1 are not pinned" in what and "moves them" in what


def test_missing_numa_nodes_in_the_plural() -> None:
    h = host(host_uri("two-node-smt"))
    xml = pinned_domain("x", [2, 1], emulator="0").replace(
        "</vcpu>", "</vcpu><numatune><memory mode='strict' nodeset='2-3'/></numatune>", 1
    )
    text = found(h, xml, "numa-node-missing")
    assert "NUMA nodes 2-3, which do not exist" in text
    single = xml.replace("nodeset='2-3'", "nodeset='3'")
    assert "NUMA node 3, which does not exist" in found(h, single, "numa-node-missing")


@pytest.mark.parametrize(
    ("device", "named"),
    [
        (
            "<hostdev mode='subsystem' type='usb'><source><vendor id='0x046d'/>"
            "<product id='0xc52b'/></source></hostdev>",
            "<hostdev 046d:c52b>",
        ),
        (
            "<hostdev mode='subsystem' type='usb'><source><address bus='1' device='3'/>"
            "</source></hostdev>",
            "<hostdev at USB bus 1 device 3>",
        ),
        (
            "<disk type='file' device='disk'><source file='/x.img'/><target dev='sdb' bus='usb'/>"
            "</disk>",
            "<disk sdb>",
        ),
        (
            "<controller type='ccid' index='0'><address type='usb' bus='0' port='1'/></controller>",
            "<controller type='ccid' index='0'> on USB port 1",
        ),
        (
            "<smartcard mode='passthrough' type='spicevmc'><alias name='ua-card'/></smartcard>",
            "<smartcard mode='passthrough'> (ua-card)",
        ),
    ],
)
def test_a_usb_refusal_says_which_device(device: str, named: str) -> None:
    xml = (
        (DOMAINS / "virt-install-server.xml")
        .read_text()
        .replace("</devices>", device + "</devices>")
    )
    spec = make_spec(name="server", pinning=[2, 3], emulator=[0])
    with pytest.raises(TuneError) as info:
        tune_xml(xml, spec)
    assert named in info.value.message


def test_no_whole_core_talk_without_realtime() -> None:
    from rtlibvirt.fit.host import Topology

    topology = host(host_uri("two-node-smt")).topology
    assert isinstance(topology, Topology) and topology.smt
    placed = Placement((2, 3), (0,), frozenset({0}), False, True, False)
    assert "whole core" in placed.describe(topology, realtime=True)
    assert "whole core" not in placed.describe(topology, realtime=False)
    assert "NUMA node 0;" in placed.describe(topology, realtime=False)
    two = Placement((2, 6), (0,), frozenset({0, 1}), False, False, False)
    assert "NUMA nodes 0-1;" in two.describe(topology)


TUNING = """\
cpu:
  pinning: [2, 3]
  emulator: 0
memory_backing:
  hugepages: {hugepages}
"""


def domain_with(tmp_path: Path, name: str, memory_kib: int) -> str:
    xml = (DOMAINS / "virt-install-server.xml").read_text()
    start, end = xml.index("<name>"), xml.index("</name>")
    xml = xml[:start] + f"<name>{name}</name>" + xml[end + len("</name>") :]
    start, end = xml.index("<memory"), xml.index("</memory>")
    xml = xml[:start] + f"<memory unit='KiB'>{memory_kib}</memory>" + xml[end + len("</memory>") :]
    return host_file(tmp_path, cores=8, domains=[xml])


def tuning(tmp_path: Path, hugepages: str) -> Path:
    path = tmp_path / "tuning.yaml"
    path.write_text(textwrap.dedent(TUNING.format(hugepages=hugepages)))
    return path


def test_an_invalid_domain_name_is_the_domains_not_the_tuning_files(tmp_path: Path) -> None:
    uri = domain_with(tmp_path, "my server", 2 * 1024 * 1024)
    path = tuning(tmp_path, "none")
    result = CliRunner().invoke(cli, ["tune", "my server", str(path), "-c", uri, "--dry-run"])
    assert result.exit_code == 2
    assert "the domain's name 'my server' is not one rtlibvirt can use" in result.stderr
    assert str(path) not in result.stderr  # not the tuning file's fault
    assert "virsh domrename 'my server' NEW-NAME" in result.stderr


def test_memory_not_in_whole_mib_without_hugepages_is_tuned(tmp_path: Path) -> None:
    uri = domain_with(tmp_path, "server", 2 * 1024 * 1024 + 100)
    with_none = tuning(tmp_path, "none")
    result = CliRunner().invoke(cli, ["tune", "server", str(with_none), "-c", uri, "--dry-run"])
    assert result.exit_code == 0, result.stderr
    assert "2097252 KiB is not a whole number of MiB: counted as 2049 MiB" in result.stderr
    with_pages = tuning(tmp_path, "2M")
    result = CliRunner().invoke(cli, ["tune", "server", str(with_pages), "-c", uri, "--dry-run"])
    assert result.exit_code == 2
    assert "not a whole number of 2M hugepages" in result.stderr
    assert "memory_backing.hugepages: none" in result.stderr


def test_spec_for_rounds_up_the_locked_limit(tmp_path: Path) -> None:
    xml = (DOMAINS / "virt-install-server.xml").read_text()
    start, end = xml.index("<memory"), xml.index("</memory>")
    xml = xml[:start] + "<memory unit='KiB'>1048577</memory>" + xml[end + len("</memory>") :]
    loaded = load_tuning(tuning(tmp_path, "none"))
    spec, notes = spec_for(loaded, facts(xml))
    assert spec.memory == 1025 * 1024 and notes
    with pytest.raises(InputError, match="not a whole number of 1G hugepages"):
        spec_for(load_tuning(tuning(tmp_path, "1G")), facts(xml))

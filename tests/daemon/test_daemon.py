"""Against a real libvirtd at qemu:///system (started by `make test`)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from rtlibvirt.cli import cli
from rtlibvirt.kernel.cpuset import parse_cpulist
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.libvirtd

# The examples pin CPUs 2-5 and pass a PCI device through, for hosts bigger than
# this 2-CPU machine: these tests define them with --no-host-check (the host
# checks have tests of their own in test_checks.py and test_fit_daemon.py).


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def virsh(uri: str, *args: str) -> str:
    proc = subprocess.run(
        ["virsh", "-q", "-c", uri, *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def spec_named(write_spec: Callable[..., Path], example: str, name: str, extra: str = "") -> Path:
    text = (EXAMPLES / example).read_text()
    original = next(line for line in text.splitlines() if line.startswith("name:"))
    return write_spec(text.replace(original, f"name: {name}") + extra, name=f"{name}.yaml")


def test_define_dumpxml_undefine(
    system_uri: str, write_spec: Callable[..., Path], system_domain_cleanup: Callable[[str], None]
) -> None:
    name = "rtl-main-plc"
    system_domain_cleanup(name)
    spec = spec_named(write_spec, "plc.yaml", name, "  networks:\n    - network: default\n")

    code, out, err = run("define", str(spec), "-c", system_uri, "--no-host-check")
    assert code == 0, err
    assert f"Defined domain '{name}' on qemu:///system" in out

    root = etree.fromstring(virsh(system_uri, "dumpxml", "--inactive", name).encode())
    assert [p.get("cpuset") for p in root.findall("cputune/vcpupin")] == ["2", "3", "4", "5"]
    assert root.find("cputune/emulatorpin").get("cpuset") == "0-1"
    rt: set[int] = set()
    for sched in root.findall("cputune/vcpusched"):
        assert (sched.get("scheduler"), sched.get("priority")) == ("fifo", "1")
        rt |= set(parse_cpulist(sched.get("vcpus", "")))
    assert rt == {1, 2, 3}
    assert root.find("memoryBacking/hugepages/page").get("size") == "1048576"
    assert root.find("memoryBacking/locked") is not None
    assert root.find("devices/memballoon").get("model") == "none"
    assert root.find("devices/controller[@type='usb']").get("model") == "none"
    assert root.find("devices/hostdev/driver").get("name") == "vfio"
    assert root.find("devices/graphics") is None
    assert root.find("features/kvm/hint-dedicated").get("state") == "on"
    uuid = root.findtext("uuid")
    mac = root.find("devices/interface/mac").get("address")

    # The same spec again: libvirt's own additions are not reported as changes.
    code, out, _ = run("define", str(spec), "-c", system_uri, "--no-host-check", "--dry-run")
    assert code == 0
    assert "is up to date; nothing would change" in out, out

    # An edit made outside rtlibvirt shows as a line the new definition would remove.
    edited = etree.tostring(root, encoding="unicode").replace(
        "</devices>", "<graphics type='vnc' port='-1'/></devices>"
    )
    xml_file = spec.with_suffix(".xml")
    xml_file.write_text(edited)
    virsh(system_uri, "define", str(xml_file))
    code, out, _ = run("define", str(spec), "-c", system_uri, "--no-host-check", "--dry-run")
    assert code == 0
    assert "Would update domain" in out
    assert any(line.startswith("-") and "<graphics" in line for line in out.splitlines()), out

    # Redefining after a change keeps the UUID and the generated MAC.
    spec.write_text(spec.read_text().replace("priority: 1", "priority: 5"))
    code, out, err = run("define", str(spec), "-c", system_uri, "--no-host-check")
    assert code == 0, err
    assert "Updated domain" in out
    again = etree.fromstring(virsh(system_uri, "dumpxml", "--inactive", name).encode())
    assert again.findtext("uuid") == uuid
    assert again.find("devices/interface/mac").get("address") == mac
    assert {s.get("priority") for s in again.findall("cputune/vcpusched")} == {"5"}
    assert again.find("devices/graphics") is None

    virsh(system_uri, "undefine", name)
    assert name not in virsh(system_uri, "list", "--all", "--name").split()


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_defines_on_the_qemu_driver(
    system_uri: str,
    write_spec: Callable[..., Path],
    system_domain_cleanup: Callable[[str], None],
    example: Path,
) -> None:
    name = f"rtl-main-{example.stem}"
    system_domain_cleanup(name)
    spec = spec_named(write_spec, example.name, name)
    code, _, err = run("define", str(spec), "-c", system_uri, "--no-host-check")
    assert code == 0, err
    code, out, _ = run("define", str(spec), "-c", system_uri, "--no-host-check", "--dry-run")
    assert "is up to date" in out, out


def test_a_tcg_vm_defines_and_starts(
    system_uri: str, write_spec: Callable[..., Path], system_domain_cleanup: Callable[[str], None]
) -> None:
    """`virt_type: qemu` for a host without usable KVM: libvirtd takes it and QEMU starts it
    (TCG's `maximum` CPU, FIFO vCPU)."""
    name = "rtl-main-tcg"
    system_domain_cleanup(name)
    spec = spec_named(write_spec, "small.yaml", name, "virt_type: qemu\n")
    code, _, err = run("define", str(spec), "-c", system_uri, "--no-host-check")
    assert code == 0, err
    assert "virt_type: qemu (TCG) emulates the guest CPU" in err
    root = etree.fromstring(virsh(system_uri, "dumpxml", "--inactive", name).encode())
    assert root.get("type") == "qemu" and root.find("cpu").get("mode") == "maximum"
    virsh(system_uri, "start", name)
    assert virsh(system_uri, "domstate", name).strip() == "running"
    virsh(system_uri, "destroy", name)

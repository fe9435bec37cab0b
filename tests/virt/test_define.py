"""``rtlibvirt define`` on libvirt's in-process test driver, and its failure paths."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from click.testing import CliRunner
from lxml import etree
from pytest_mock import MockerFixture

from rtlibvirt.cli import cli
from rtlibvirt.kernel.cpuset import parse_cpulist
from tests.conftest import EXAMPLES

TEST_URI = "test:///default"


@pytest.fixture
def test_conn() -> Iterator[Any]:
    """A connection to test:///default held open for the whole test.

    The default test driver keeps its domains while any connection is open, so
    what the CLI defines (on its own connections) is visible here, and every
    test starts from the driver's pristine state (one domain, named 'test').
    """
    conn = libvirt.open(TEST_URI)
    yield conn
    conn.close()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def stored(conn: Any, name: str) -> etree._Element:
    xml = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    return etree.fromstring(xml.encode())


def names(conn: Any) -> set[str]:
    return {d.name() for d in conn.listAllDomains()}


def test_define_plc(test_conn: Any) -> None:
    code, out, err = run("define", str(EXAMPLES / "plc.yaml"), "-c", TEST_URI)
    assert code == 0, err
    assert "Defined domain 'plc' on test:///default" in out
    assert "1->3 fifo 1" in out
    root = stored(test_conn, "plc")
    pins = [(p.get("vcpu"), p.get("cpuset")) for p in root.findall("cputune/vcpupin")]
    assert pins == [("0", "2"), ("1", "3"), ("2", "4"), ("3", "5")]
    assert root.find("cputune/emulatorpin").get("cpuset") == "0-1"
    # libvirt may store one <vcpusched> per vCPU; what matters is vCPUs 1-3 and only they
    covered: set[int] = set()
    for sched in root.findall("cputune/vcpusched"):
        assert (sched.get("scheduler"), sched.get("priority")) == ("fifo", "1")
        covered |= set(parse_cpulist(sched.get("vcpus")))
    assert covered == {1, 2, 3}
    backing = root.find("memoryBacking")
    assert backing.find("hugepages/page").get("size") == "1048576"
    assert backing.find("locked") is not None and backing.find("nosharepages") is not None
    assert root.find("devices/memballoon").get("model") == "none"
    assert root.find("devices/controller[@type='usb']").get("model") == "none"
    assert root.find("devices/hostdev/source/address").get("bus") == "0x03"
    assert root.find("devices/disk/source").get("file") == "/var/lib/libvirt/images/plc.qcow2"
    assert root.find("features/pmu").get("state") == "off"


def test_show_xml_prints_what_libvirt_stored(test_conn: Any) -> None:
    code, out, _ = run("define", str(EXAMPLES / "plc.yaml"), "-c", TEST_URI, "--show-xml")
    assert code == 0
    xml = out[out.index("<domain") :]
    assert (
        etree.fromstring(xml.encode()).findtext("uuid")
        == test_conn.lookupByName("plc").UUIDString()
    )


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_defines(test_conn: Any, example: Path) -> None:
    before = names(test_conn)
    code, _, err = run("define", str(example), "-c", TEST_URI)
    assert code == 0, err
    assert len(names(test_conn) - before) == 1


def test_redefine_keeps_uuid_and_generated_macs(
    test_conn: Any, write_spec: Callable[..., Path]
) -> None:
    text = (EXAMPLES / "plc.yaml").read_text() + "  networks:\n    - network: default\n"
    spec = write_spec(text)
    assert run("define", str(spec), "-c", TEST_URI)[0] == 0
    first = stored(test_conn, "plc")
    uuid = first.findtext("uuid")
    mac = first.find("devices/interface/mac").get("address")
    assert mac, "libvirt generates a MAC for a NIC without one"

    write_spec(text.replace("priority: 1", "priority: 30"))
    code, out, _ = run("define", str(spec), "-c", TEST_URI)
    assert code == 0 and "Updated domain 'plc'" in out
    second = stored(test_conn, "plc")
    assert second.findtext("uuid") == uuid
    assert second.find("devices/interface/mac").get("address") == mac
    assert {s.get("priority") for s in second.findall("cputune/vcpusched")} == {"30"}


def test_foreign_domain_is_not_replaced_without_force(
    test_conn: Any, write_spec: Callable[..., Path]
) -> None:
    """test:///default ships a domain named 'test' that rtlibvirt did not create."""
    original = test_conn.lookupByName("test").XMLDesc(0)
    uuid = test_conn.lookupByName("test").UUIDString()
    spec = write_spec((EXAMPLES / "nort.yaml").read_text().replace("pinned-only", "test"))

    code, out, err = run("define", str(spec), "-c", TEST_URI)
    assert code == 1
    assert "already exists on test:///default and was not made by rtlibvirt" in err
    hint = err.split("hint:")[1]
    assert "rtlibvirt tune test TUNING.yaml" in hint  # the way that keeps its devices
    assert hint.index("rtlibvirt tune") < hint.index("--force")
    assert test_conn.lookupByName("test").XMLDesc(0) == original

    code, out, _ = run("define", str(spec), "-c", TEST_URI, "--dry-run")
    assert code == 1, "a dry run is refused the same way without --force"

    code, out, err = run("define", str(spec), "-c", TEST_URI, "--force", "--dry-run")
    assert code == 0 and "Would update domain 'test'" in out
    assert test_conn.lookupByName("test").XMLDesc(0) == original

    code, out, err = run("define", str(spec), "-c", TEST_URI, "--force")
    assert code == 0, err
    assert "Replaced domain 'test'" in out
    assert test_conn.lookupByName("test").UUIDString() == uuid
    assert stored(test_conn, "test").find("cputune/emulatorpin").get("cpuset") == "0"


def test_dry_run_new_domain_shows_xml_and_defines_nothing(test_conn: Any) -> None:
    before = names(test_conn)
    code, out, err = run("define", str(EXAMPLES / "plc.yaml"), "-c", TEST_URI, "--dry-run")
    assert code == 0
    assert out.startswith("Would define new domain 'plc' on test:///default:")
    assert "<vcpusched" in out
    assert "nothing was defined" in err
    assert names(test_conn) == before


def test_dry_run_shows_only_what_changes(test_conn: Any, write_spec: Callable[..., Path]) -> None:
    text = (EXAMPLES / "plc.yaml").read_text()
    spec = write_spec(text)
    assert run("define", str(spec), "-c", TEST_URI)[0] == 0
    code, out, _ = run("define", str(spec), "-c", TEST_URI, "--dry-run")
    assert code == 0
    assert "is up to date; nothing would change" in out

    write_spec(text.replace("pinning: [2, 3, 4, 5]", "pinning: [2, 3, 4, 6]"))
    code, out, _ = run("define", str(spec), "-c", TEST_URI, "--dry-run")
    assert code == 0
    changed = [
        line for line in out.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert '-    <vcpupin cpuset="5" vcpu="3"/>' in changed
    assert '+    <vcpupin cpuset="6" vcpu="3"/>' in changed
    # the only other changed lines are the stored spec's pinning list
    assert all("vcpupin" in line or "pinning" in line for line in changed), changed
    assert stored(test_conn, "plc").find("cputune/vcpupin[@vcpu='3']").get("cpuset") == "5"


def test_bad_spec_defines_nothing(test_conn: Any, write_spec: Callable[..., Path]) -> None:
    before = names(test_conn)
    spec = write_spec((EXAMPLES / "plc.yaml").read_text().replace("emulator: 0-1", "emulator: 0-3"))
    code, _, err = run("define", str(spec), "-c", TEST_URI)
    assert code == 2 and "cpu.emulator" in err
    assert names(test_conn) == before


def test_default_uri_comes_from_the_environment(
    test_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", TEST_URI)
    code, out, _ = run("define", str(EXAMPLES / "plc.yaml"))
    assert code == 0 and "on test:///default" in out
    assert "plc" in names(test_conn)


# ---- failure paths ----------------------------------------------------------------------------


def _libvirt_error(message: str, code: int) -> libvirt.libvirtError:
    err = libvirt.libvirtError(message)
    err.err = (code, 0, message, 0, "", None, None, 0, 0)
    return err


def test_connection_refused_is_one_clear_line(mocker: MockerFixture) -> None:
    mocker.patch(
        "libvirt.open",
        side_effect=_libvirt_error(
            "Failed to connect socket to '/run/libvirt/libvirt-sock': Connection refused",
            libvirt.VIR_ERR_SYSTEM_ERROR,
        ),
    )
    code, out, err = run("define", str(EXAMPLES / "plc.yaml"), "-c", "qemu:///system")
    assert code == 1
    assert out == ""
    first, hint = err.splitlines()
    assert first == (
        "error: cannot connect to qemu:///system: Failed to connect socket to "
        "'/run/libvirt/libvirt-sock': Connection refused"
    )
    assert "is libvirtd running?" in hint


def test_unknown_uri_scheme_is_reported() -> None:
    code, _, err = run("define", str(EXAMPLES / "plc.yaml"), "-c", "nosuchdriver:///x")
    assert code == 1
    assert err.startswith("error: cannot connect to nosuchdriver:///x:")
    assert "Traceback" not in err


def test_define_rejected_by_libvirt(test_conn: Any, mocker: MockerFixture) -> None:
    mocker.patch.object(
        libvirt.virConnect,
        "defineXMLFlags",
        side_effect=_libvirt_error(
            "unsupported configuration: hugepages are not supported",
            libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
        ),
    )
    code, _out, err = run("define", str(EXAMPLES / "plc.yaml"), "-c", TEST_URI)
    assert code == 1
    assert err.splitlines()[0] == (
        "error: libvirt refused the domain: unsupported configuration: hugepages are not supported"
    )
    assert "plc" not in names(test_conn)


def test_libvirt_schema_validation_flag_is_used(test_conn: Any, mocker: MockerFixture) -> None:
    spy = mocker.spy(libvirt.virConnect, "defineXMLFlags")
    assert run("define", str(EXAMPLES / "plc.yaml"), "-c", TEST_URI)[0] == 0
    assert spy.call_args.args[2] == libvirt.VIR_DOMAIN_DEFINE_VALIDATE


def test_an_unreadable_stored_definition_is_a_libvirt_error() -> None:
    from rtlibvirt.errors import LibvirtError
    from rtlibvirt.virt.define import stored_facts

    bad = "<domain><name>x</name><vcpu>lots</vcpu></domain>"
    with pytest.raises(LibvirtError, match="the definition of 'x' on test:///default cannot be"):
        stored_facts(bad, "x", TEST_URI)
    assert stored_facts("<domain><name>x</name></domain>", "x", TEST_URI).vcpus == 1


def test_a_nic_on_an_inactive_network_is_refused_then_defined(
    test_conn: Any, write_spec: Callable[..., Path]
) -> None:
    """`virsh start` fails on a network that is not active: define and check say so first."""
    test_conn.networkDefineXML("<network><name>plant</name><bridge name='virbr7'/></network>")
    spec = write_spec(
        (EXAMPLES / "small.yaml").read_text() + "devices:\n  networks:\n    - network: plant\n"
    )
    shared = "--allow-shared"  # other tests' domains on the test driver may pin CPUs 0-1
    code, out, err = run("define", str(spec), "-c", TEST_URI, shared)
    assert code == 1 and "small-rt" not in names(test_conn)
    assert "error: [network-inactive]" in err and "'plant'" in err
    assert "virsh net-start plant" in err and "virsh net-autostart plant" in err
    assert "--no-host-check" not in err, "skipping it only moves the failure to virsh start"
    code, out, _ = run("check", str(spec), "-c", TEST_URI, "--json", shared)
    assert code == 3
    found = {f["code"]: f["severity"] for f in json.loads(out)["findings"]}
    assert found["network-inactive"] == "error"

    test_conn.networkLookupByName("plant").create()
    code, out, err = run("define", str(spec), "-c", TEST_URI, shared)
    assert code == 0, err
    assert "warning: [network-no-autostart]" in err and "virsh net-autostart plant" in err
    test_conn.networkLookupByName("plant").setAutostart(1)
    code, out, _ = run("check", "small-rt", "-c", TEST_URI, "--json", shared)
    assert not [f for f in json.loads(out)["findings"] if f["code"].startswith("network")]

"""`rtlibvirt status`: the host picture, as text and JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import libvirt
import pytest
from click.testing import CliRunner

from rtlibvirt.cli import cli
from rtlibvirt.config.vm import validate_data
from rtlibvirt.domain.render import render
from rtlibvirt.fit import status
from rtlibvirt.fit.host import gather
from rtlibvirt.virt import define
from tests.fakes.libvirt_hosts import connection, host_file, host_uri, pinned_domain
from tests.fakes.sysfs import FakeSys


@pytest.fixture
def picture(tmp_path: Path) -> tuple[str, dict]:
    """two-node-smt with "web" and a realtime "rt" on isolated CPUs 1-3,9-11 of node 0."""
    fake = FakeSys(tmp_path).cpus("0-15", isolated="1-3,9-11", nohz_full="1-3")
    fake.hugepages(0, 1048576, free=4).hugepages(1, 1048576, free=0)
    uri = host_uri("two-node-smt")
    spec = validate_data(
        {
            "name": "rt",
            "memory": "1GiB",
            "vcpus": 2,
            "cpu": {"pinning": [2, 1], "emulator": 0, "realtime": {"vcpus": 1, "priority": 5}},
        }
    )
    with connection(uri) as conn:
        define.apply_xml(conn, render(spec))
        host = gather(conn, uri, fake.fs)
    return status.text(host, None), status.to_json(host, None)


def test_text_picture(picture: tuple[str, dict]) -> None:
    text, _ = picture
    lines = text.splitlines()
    assert lines[0].endswith("16 CPUs (0-15), 2 NUMA nodes, 2 threads per core")
    assert "Housekeeping CPUs: 0,4-8,12-15; isolated: 1-3,9-11; nohz_full: 1-3" in lines
    assert "NUMA node 0: CPUs 0-3,8-11; free hugepages 1G 4" in lines
    row = next(line for line in lines if line.split()[:2] == ["1,9", "1"])
    assert row.split()[2:] == ["isolated", "nohz", "rt", "vCPU", "1", "fifo", "5"]
    sibling = next(line for line in lines if line.split()[:2] == ["9", "isolated"])
    assert sibling.rstrip().endswith("-")
    assert any(line.split()[:2] == ["0,8", "0"] and "rt emulator" in line for line in lines)
    assert any("web vCPU 0 *" in line for line in lines)  # web runs (test driver default)
    assert "  rt   shut off, rtlibvirt; 2 vCPUs (1 realtime: 1) on CPUs 1-2, emulator on 0" in lines


def test_json_picture(picture: tuple[str, dict]) -> None:
    _, data = picture
    json.dumps(data)  # serialisable
    cpu1 = data["cpus"][1]
    assert cpu1["siblings"] == [1, 9] and cpu1["isolated"] and cpu1["nohz_full"]
    assert cpu1["held_by"] == [
        {
            "domain": "rt",
            "what": "vCPU 1",
            "vcpu": 1,
            "policy": "fifo",
            "priority": 5,
            "running": False,
        }
    ]
    assert data["nodes"][0]["free_hugepages_by_kib"] == {"1048576": 4}
    assert data["nodes"][1]["cores"][0] == [4, 12]
    assert [d["name"] for d in data["domains"]] == ["rt", "web"]
    assert data["hook"] is None


def test_hook_seam(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status, "hook_isolation", lambda fs: {"web": frozenset({5})})
    result = CliRunner().invoke(cli, ["status", "-c", host_uri("two-node-smt")])
    assert result.exit_code == 0, result.output
    assert "Hook isolation: CPU 5 isolated for web" in result.output
    assert "web vCPU 0 *, hook isolates for web" in result.output
    result = CliRunner().invoke(cli, ["status", "--json", "-c", host_uri("two-node-smt")])
    assert json.loads(result.output)["hook"] == {"web": [5]}


def test_status_command_without_host_files() -> None:
    result = CliRunner().invoke(cli, ["status", "-c", host_uri("single-node")])
    assert result.exit_code == 0, result.output
    assert "Isolated CPUs: unknown" in result.output
    assert "Hook isolation: unknown" in result.output


def test_hook_isolation_reads_the_hooks_state_file(tmp_path: Path) -> None:
    """What status shows is what the hook's own StateStore wrote."""
    from rtlibvirt.hook.state import PHASE_RUNNING, Claim, Settings, State, StateStore
    from rtlibvirt.kernel.fs import HostFS

    fs = HostFS(tmp_path)
    assert status.hook_isolation(fs) == {}, "no state file: nothing isolated"
    state = State()
    state.claims["plc"] = Claim("plc", frozenset({2, 3}), Settings({}), phase=PHASE_RUNNING)
    # prepared (starting): the hook isolates from prepare on
    state.claims["later"] = Claim("later", frozenset({5}), Settings({}))
    store = StateStore(fs)
    with store.locked():
        store.save(state)
    held = {"plc": frozenset({2, 3}), "later": frozenset({5})}
    assert status.hook_isolation(fs) == held
    Path(store.path).write_text("{not json")  # the hook's journal still says who runs
    assert status.hook_isolation(fs) == held
    os.unlink(store.journal.path)
    assert status.hook_isolation(fs) is None
    assert status.hook_isolation(None) is None


def test_a_new_definition_of_a_running_domain_is_shown_waiting(tmp_path: Path) -> None:
    uri = host_file(tmp_path, cores=8, domains=[pinned_domain("plc", [1, 2], emulator="0")])
    with connection(uri) as conn:
        assert conn.lookupByName("plc").isActive()  # the test driver starts its domains
        text = conn.lookupByName("plc").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        conn.defineXML(text.replace("cpuset='2'", "cpuset='3'"))
        host = gather(conn, uri)
        assert host.pending == {"plc"}
        out = status.text(host, None)
        data = status.to_json(host, None)
    line = next(line for line in out.splitlines() if line.strip().startswith("plc "))
    assert "running" in line and "new definition waits for its next start" in line
    assert data["domains"][0]["pending_definition"] is True
    # the same definition again: nothing waits
    with connection(uri) as conn:
        conn.defineXML(conn.lookupByName("plc").XMLDesc(0))
        assert gather(conn, uri).pending == frozenset()


def test_a_pointer_to_noise_for_each_running_realtime_vm() -> None:
    from rtlibvirt.domain.facts import DomainFacts

    rt = DomainFacts(name="plc", vcpus=2, active=True, sched={1: ("fifo", 1)})
    odd = DomainFacts(name="a b", vcpus=1, active=True, sched={0: ("rr", 1)})
    off = DomainFacts(name="off", vcpus=1, active=False, sched={0: ("fifo", 1)})
    plain = DomainFacts(name="web", vcpus=1, active=True)
    assert status.noise_pointers((rt, odd, off, plain)) == [
        "What disturbs a b's CPUs: rtlibvirt noise 'a b'",
        "What disturbs plc's CPUs: rtlibvirt noise plc",
    ]
    assert status.noise_pointers((off, plain)) == []

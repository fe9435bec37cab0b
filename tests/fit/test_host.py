"""The host model: topology from libvirt's capabilities or node info, URIs, kernel files."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtlibvirt.fit.host import (
    HOST_ROOT_ENV,
    host_fs,
    is_local,
    topology_from_capabilities,
    topology_from_nodeinfo,
)
from tests.fakes.libvirt_hosts import HOSTS
from tests.fakes.sysfs import FakeSys

# libvirt's capabilities of a 2-node host with SMT, CPU 7 offline (libvirt writes an
# offline CPU without its topology attributes).
SMT_CAPS = """\
<capabilities><host><topology><cells num='2'>
  <cell id='0'><cpus num='4'>
    <cpu id='0' socket_id='0' die_id='0' core_id='0' siblings='0,4'/>
    <cpu id='1' socket_id='0' die_id='0' core_id='1' siblings='1,5'/>
    <cpu id='4' socket_id='0' die_id='0' core_id='0' siblings='0,4'/>
    <cpu id='5' socket_id='0' die_id='0' core_id='1' siblings='1,5'/>
  </cpus></cell>
  <cell id='1'><cpus num='4'>
    <cpu id='2' socket_id='1' die_id='0' core_id='0' siblings='2,6'/>
    <cpu id='3' socket_id='1' die_id='0' core_id='1' siblings='3'/>
    <cpu id='6' socket_id='1' die_id='0' core_id='0' siblings='2,6'/>
    <cpu id='7'/>
  </cpus></cell>
</cells></topology></host></capabilities>
"""


def test_capabilities_of_this_machine() -> None:
    topo = topology_from_capabilities((HOSTS / "capabilities-2cpu.xml").read_text())
    assert topo is not None
    assert topo.nodes == {0: frozenset({0, 1})}
    assert not topo.smt and topo.online == {0, 1}


def test_capabilities_with_smt_and_an_offline_cpu() -> None:
    topo = topology_from_capabilities(SMT_CAPS)
    assert topo is not None
    assert topo.nodes == {0: frozenset({0, 1, 4, 5}), 1: frozenset({2, 3, 6, 7})}
    assert topo.siblings(4) == {0, 4} and topo.smt
    assert topo.online == {0, 1, 2, 3, 4, 5, 6}
    assert topo.cores[1] == (frozenset({2, 6}), frozenset({3}), frozenset({7}))


def test_capabilities_without_cells() -> None:
    assert topology_from_capabilities("<capabilities><host/></capabilities>") is None


def test_nodeinfo_numbering() -> None:
    topo = topology_from_nodeinfo(["x", 0, 14, 0, 2, 1, 4, 2])
    assert topo.nodes[0] == {0, 1, 2, 3, 8, 9, 10, 11}
    assert topo.siblings(9) == {1, 9}
    assert topo.online == frozenset(range(14))


@pytest.mark.parametrize(
    ("uri", "local"),
    [
        ("qemu:///system", True),
        ("qemu:///session", True),
        ("qemu+ssh://root@rt-host/system", False),
        ("qemu+tcp://localhost/system", True),
        ("test:///default", False),
    ],
)
def test_is_local(uri: str, local: bool) -> None:
    assert is_local(uri) is local


def test_host_files_follow_the_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HOST_ROOT_ENV, raising=False)
    live = host_fs("qemu:///system")
    assert live is not None and live.is_live
    assert host_fs("qemu+ssh://h/system") is None
    assert host_fs("test:///default") is None
    fake = FakeSys(tmp_path).cpus("0-3", isolated="2-3")
    monkeypatch.setenv(HOST_ROOT_ENV, str(tmp_path))
    fs = host_fs("test:///default")
    assert fs is not None and fs.cpus_isolated() == {2, 3}
    assert fake.fs.root == fs.root

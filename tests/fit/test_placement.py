"""`cpu.pinning: auto` / `cpu.emulator: auto`: properties of the placement.

Never overlapping across many VMs, NUMA-local, whole cores for realtime vCPUs,
isolated CPUs first, deterministic, stable on redefine, and one line when it
cannot be done.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from rtlibvirt.cli import cli
from rtlibvirt.config.vm import Numa, VmSpec, validate_data
from rtlibvirt.domain.facts import facts
from rtlibvirt.domain.render import render
from rtlibvirt.fit import checks
from rtlibvirt.fit.fitting import fit_spec, place_spec
from rtlibvirt.fit.host import HostModel, topology_from_nodeinfo
from rtlibvirt.fit.placement import PlacementError
from tests.fakes.libvirt_hosts import connection, host, host_file, host_uri, pinned_domain
from tests.fakes.sysfs import FakeSys


def auto_spec(name: str, vcpus: int = 3, rt: Any = "1-2", **extra: Any) -> VmSpec:
    realtime: Any = {"vcpus": rt} if rt else False
    return validate_data(
        {
            "name": name,
            "memory": "1GiB",
            "vcpus": vcpus,
            "cpu": {"pinning": "auto", "emulator": "auto", "realtime": realtime},
            **extra,
        }
    )


def simulated(
    nodes: int = 2, cores: int = 8, threads: int = 2, isolated: frozenset[int] | None = None
) -> HostModel:
    topology = topology_from_nodeinfo(
        ["x", 0, nodes * cores * threads, 0, nodes, 1, cores, threads]
    )
    return HostModel(uri="test:///sim", topology=topology, isolated=isolated)


def place_all(h: HostModel, specs: list[VmSpec]) -> tuple[HostModel, list[VmSpec]]:
    """Place one after another, each seeing the ones before as defined domains."""
    placed = []
    for spec in specs:
        spec, _ = place_spec(h, spec)
        placed.append(spec)
        h = dataclasses.replace(h, domains=(*h.domains, facts(render(spec))))
    return h, placed


def pins(spec: VmSpec) -> tuple[int, ...]:
    assert isinstance(spec.cpu.pinning, tuple)
    return spec.cpu.pinning


def emulator(spec: VmSpec) -> tuple[int, ...]:
    assert isinstance(spec.cpu.emulator, tuple)
    return spec.cpu.emulator


def assert_sound(h: HostModel, placed: list[VmSpec], *, local: bool = True) -> None:
    """No CPU carries two VMs' vCPUs; no emulator on a vCPU's CPU; whole cores for RT."""
    topo = h.topology
    owner: dict[int, str] = {}
    for spec in placed:
        for cpu in pins(spec):
            assert cpu not in owner, f"CPU {cpu} given to {owner.get(cpu)} and {spec.name}"
            owner[cpu] = spec.name
    all_vcpu_cpus = set(owner)
    for spec in placed:
        # the emulator may share only the VM's own non-realtime vCPUs' CPUs (when
        # placement had to put those beside the housekeeping)
        own_non_rt = {c for v, c in enumerate(pins(spec)) if v not in spec.realtime_vcpus}
        assert not set(emulator(spec)) & (all_vcpu_cpus - own_non_rt)
        rt = spec.realtime_host_cpus
        for cpu in rt:
            for sibling in topo.siblings(cpu) - {cpu}:
                assert sibling not in all_vcpu_cpus, f"{spec.name}: sibling {sibling} is busy"
                assert not any(sibling in emulator(s) for s in placed)
        # NUMA-local: every vCPU on one node, the emulator on the same node.
        if local or len(topo.nodes_of(pins(spec))) == 1:
            assert len(topo.nodes_of(pins(spec))) == 1
            assert topo.nodes_of(emulator(spec)) == topo.nodes_of(pins(spec))


def test_many_vms_never_overlap_and_keep_whole_cores() -> None:
    h = simulated(nodes=2, cores=8, threads=2)
    h, placed = place_all(h, [auto_spec(f"vm{i}") for i in range(4)])
    assert_sound(h, placed)
    # Each VM takes 2 whole cores (realtime) + 1 CPU, on the node with the most room.
    assert [h.topology.nodes_of(pins(s)) for s in placed] == [{0}, {1}, {0}, {1}]
    # The host's own checks agree: no shared CPUs, no busy siblings.
    for spec in placed:
        found = checks.host_findings(h, facts(render(spec))).findings
        assert not [f for f in found if f.code in ("cpu-shared", "smt-sibling-busy")]


def test_one_line_when_the_host_is_full() -> None:
    h = simulated(nodes=2, cores=8, threads=2)
    specs = [auto_spec(f"vm{i}") for i in range(10)]
    with pytest.raises(PlacementError) as info:
        place_all(h, specs)
    message = info.value.message
    assert "\n" not in message
    assert message.startswith("cannot place 'vm")
    assert "whole cores" in message


def test_a_2_cpu_host_puts_the_non_realtime_vcpu_beside_the_housekeeping() -> None:
    """Like this 2-CPU machine (and examples/small.yaml by hand): the only way, said so."""
    h = simulated(nodes=1, cores=2, threads=1)
    spec, placement = place_spec(h, auto_spec("vm", vcpus=2, rt="1"))
    assert placement is not None
    assert pins(spec) == (0, 1) and emulator(spec) == (0,)
    assert placement.on_housekeeping == (0,)
    text = placement.describe(h.topology)
    assert "vCPU 0" in text and "housekeeping CPU 0" in text and "no other free CPU" in text
    # the host's own checks agree: nothing shares a realtime vCPU's CPU
    found = checks.domain_findings(facts(render(spec))).findings
    assert not [f for f in found if f.code in ("emulator-on-rt-cpu", "vcpu-cpu-shared")]
    # realtime vCPUs never go there: two of them do not fit
    with pytest.raises(PlacementError):
        place_spec(h, auto_spec("vm", vcpus=2, rt="0-1"))


def test_a_vm_with_free_cpus_never_shares_the_housekeeping() -> None:
    h = simulated(nodes=1, cores=4, threads=1)
    spec, placement = place_spec(h, auto_spec("vm", vcpus=2, rt="1"))
    assert placement is not None and placement.on_housekeeping == ()
    assert 0 not in pins(spec) and "housekeeping CPU" not in placement.describe(h.topology)


def test_the_one_line_names_the_cpus_that_are_free_and_who_holds_the_rest() -> None:
    """No SMT, so no talk of whole cores; the domains holding CPUs, and what to write."""
    h = simulated(nodes=1, cores=4, threads=1)
    h, _ = place_all(h, [auto_spec("db", vcpus=2, rt="1")])  # takes CPUs 1-2
    with pytest.raises(PlacementError) as info:
        place_spec(h, auto_spec("vm", vcpus=3, rt="1-2"))
    message, hint = info.value.message, info.value.hint
    assert "\n" not in message
    assert message.startswith("cannot place 'vm': it needs 3 free non-housekeeping CPUs")
    assert "1 (CPU 3)" in message and "CPUs 1-2 by 'db'" in message
    assert hint is not None
    assert "cpu.pinning: [" in hint and "cpu.share_with: [db]" in hint and "--allow-shared" in hint


def test_isolated_cpus_first_and_emulator_on_housekeeping() -> None:
    isolated = frozenset(range(2, 8)) | frozenset(range(18, 24))  # node 0, both threads
    h = simulated(nodes=2, cores=8, threads=2, isolated=isolated)
    spec, placement = place_spec(h, auto_spec("a"))
    assert placement is not None and placement.isolated
    assert set(pins(spec)) <= isolated
    assert not set(emulator(spec)) & isolated
    assert h.topology.nodes_of(emulator(spec)) == {0}


def test_without_isolated_cpus_the_first_core_of_a_node_stays_the_hosts() -> None:
    h = simulated(nodes=1, cores=4, threads=2)  # cores {0,4} {1,5} {2,6} {3,7}
    spec, _ = place_spec(h, auto_spec("a"))
    assert not set(pins(spec)) & {0, 4}
    assert emulator(spec) == (0, 4)
    assert pins(spec)[1:] == (1, 2)  # realtime vCPUs: first threads of whole cores


def test_numa_node_is_honoured() -> None:
    h = simulated(nodes=2, cores=8, threads=2)
    spec, _ = place_spec(h, auto_spec("a", numa={"node": 1}))
    assert h.topology.nodes_of(pins(spec)) == {1}
    assert h.topology.nodes_of(emulator(spec)) == {1}


def test_missing_numa_node_is_one_line() -> None:
    with pytest.raises(PlacementError, match=r"numa\.node 5 does not exist"):
        place_spec(simulated(), auto_spec("a", numa={"node": 5}))


def test_node_of_the_host_devices(tmp_path: Path) -> None:
    fake = (
        FakeSys(tmp_path).cpus("0-31").pci("0000:03:00.0", driver="vfio-pci", group=3, numa_node=1)
    )
    h = dataclasses.replace(simulated(), fs=fake.fs)
    spec, _ = place_spec(h, auto_spec("a", devices={"hostdevs": ["03:00.0"]}))
    assert h.topology.nodes_of(pins(spec)) == {1}


def test_deterministic() -> None:
    specs = [auto_spec(f"vm{i}", vcpus=2 + i % 3, rt="1") for i in range(6)]
    first = place_all(simulated(nodes=2, cores=16), specs)[1]
    second = place_all(simulated(nodes=2, cores=16), specs)[1]
    assert [pins(s) for s in first] == [pins(s) for s in second]
    assert [emulator(s) for s in first] == [emulator(s) for s in second]


def test_redefining_keeps_the_current_cpus() -> None:
    h = simulated(nodes=1, cores=8, threads=1)
    spec, _ = place_spec(h, auto_spec("a"))  # vCPUs 1,2,3
    # Pretend "a" was defined on 5,6,7 (say, by an earlier host state): it stays there.
    current = spec.placed((5, 6, 7), (0,))
    h = dataclasses.replace(h, domains=(facts(render(current)),))
    again, placement = place_spec(h, auto_spec("a"))
    assert placement is not None and placement.kept
    assert pins(again) == (5, 6, 7)


def test_explicit_pinning_with_auto_emulator() -> None:
    h = simulated(nodes=2, cores=8, threads=2)
    spec = validate_data(
        {
            "name": "a",
            "memory": "1GiB",
            "vcpus": 2,
            "cpu": {"pinning": [9, 10], "emulator": "auto", "realtime": {"vcpus": [1]}},
        }
    )
    placed, _ = place_spec(h, spec)
    assert pins(placed) == (9, 10)
    assert emulator(placed) == (8, 24)  # the first core of node 1, the vCPUs' node


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 3)), min_size=1, max_size=12),
    threads=st.sampled_from([1, 2]),
)
def test_property_no_overlap_numa_local_whole_cores(
    sizes: list[tuple[int, int]], threads: int
) -> None:
    h = simulated(nodes=2, cores=8, threads=threads)
    placed: list[VmSpec] = []
    for i, (vcpus, n_rt) in enumerate(sizes):
        rt = ",".join(str(v) for v in range(vcpus - min(n_rt, vcpus - 1), vcpus)) if n_rt else ""
        spec = auto_spec(f"vm{i}", vcpus=vcpus, rt=rt if rt and vcpus > 1 else False)
        try:
            placed_spec, _ = place_spec(h, spec)
        except PlacementError:
            break
        if len(h.topology.nodes_of(pins(placed_spec))) > 1:
            # Spanning nodes only when no single node has room.
            # (or only beside the housekeeping, which comes after spanning)
            for node in h.topology.nodes:
                try:
                    _, on_node = place_spec(h, spec.replace(numa=Numa(node=node)))
                except PlacementError:
                    continue
                assert on_node is not None and on_node.on_housekeeping
        placed.append(placed_spec)
        h = dataclasses.replace(h, domains=(*h.domains, facts(render(placed_spec))))
    assert_sound(h, placed, local=False)


# ---- through libvirt's test driver ---------------------------------------------------------


def test_placement_avoids_the_cpus_other_domains_pin() -> None:
    uri = host_uri("two-node-smt")  # "web" pins 5 (core {5,13}) and its emulator to 4
    with connection(uri) as conn:
        fitted = fit_spec(conn, uri, auto_spec("a", numa={"node": 1}))
    assert fitted.spec is not None
    assert not set(pins(fitted.spec)) & {4, 5, 12}  # web's CPUs and 12, the sibling of 4
    assert pins(fitted.spec) == (13, 6, 7)  # the split core's free thread first; 2 whole cores
    assert emulator(fitted.spec) == (4, 12)  # node 1's housekeeping core, shared with web's
    assert not fitted.errors


def test_define_auto_writes_the_choice_into_the_domain(tmp_path: Path) -> None:
    uri = host_file(tmp_path, nodes=1, cores=4, threads=2)
    path = tmp_path / "vm.yaml"
    path.write_text(
        "name: a\nmemory: 1GiB\nvcpus: 2\n"
        "cpu:\n  pinning: auto\n  emulator: auto\n  realtime:\n    vcpus: 1\n"
    )
    result = CliRunner().invoke(cli, ["define", str(path), "-c", uri, "--show-xml"])
    assert result.exit_code == 0, result.output
    # Cores {0,4} {1,5} {2,6} {3,7}: {0,4} stays the host's (no CPU is isolated), the
    # realtime vCPU 1 gets core {1,5} alone, vCPU 0 the next free CPU.
    assert "auto placement: vCPUs 0->2, 1->1 on NUMA node 0" in result.output
    assert "<vcpupin vcpu='0' cpuset='2'/>" in result.output
    assert "<vcpupin vcpu='1' cpuset='1'/>" in result.output
    assert "<emulatorpin cpuset='0,4'/>" in result.output
    assert '"pinning": [2, 1]' in result.output  # the metadata holds the choice


def test_define_auto_when_nothing_fits_is_one_line_and_defines_nothing(tmp_path: Path) -> None:
    uri = host_file(tmp_path, nodes=1, cores=2, threads=1)
    path = tmp_path / "vm.yaml"
    path.write_text(
        "name: big\nmemory: 1GiB\nvcpus: 4\ncpu:\n  pinning: auto\n  emulator: auto\n"
        "  realtime:\n    vcpus: 1-3\n"
    )
    result = CliRunner().invoke(cli, ["define", str(path), "-c", uri])
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot place 'big': it needs 4 free")
    assert "hint: this host has too few CPUs for 4 vCPUs" in result.output
    assert "Traceback" not in result.output


def test_render_refuses_auto_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "vm.yaml"
    path.write_text("name: a\nmemory: 1GiB\nvcpus: 1\ncpu:\n  pinning: auto\n  emulator: 0\n")
    result = CliRunner().invoke(cli, ["render", str(path)])
    assert result.exit_code == 2
    assert "cpu.pinning is `auto`" in result.output and "--dry-run" in result.output


def test_auto_is_validated_like_a_cpu_list(tmp_path: Path) -> None:
    path = tmp_path / "vm.yaml"
    path.write_text("name: a\nmemory: 1GiB\nvcpus: 1\ncpu:\n  pinning: autp\n  emulator: 0\n")
    result = CliRunner().invoke(cli, ["render", str(path)])
    assert result.exit_code == 2
    assert "vm.yaml:5: cpu.pinning:" in result.output and "`auto`" in result.output


def test_topology_of_a_test_driver_host() -> None:
    assert host(host_uri("single-node")).topology.describe().startswith("8 CPUs (0-7)")


def test_define_and_tune_auto_on_a_2_cpu_host(tmp_path: Path) -> None:
    """The first hour on a 2-CPU machine: one realtime vCPU, one beside the housekeeping."""
    # and a 2-vCPU domain of virt-manager's, not pinned, to tune with auto
    plain = pinned_domain("vm", [0, 1]).replace("<vcpupin vcpu='0' cpuset='0'/>", "")
    plain = plain.replace("<vcpupin vcpu='1' cpuset='1'/>", "")
    uri = host_file(tmp_path, nodes=1, cores=2, threads=1, domains=[plain])
    path = tmp_path / "vm.yaml"
    path.write_text(
        "name: trial-plc\nmemory: 1GiB\nvcpus: 2\ncpu:\n  pinning: auto\n  emulator: auto\n"
        "  realtime:\n    vcpus: [1]\n"
    )
    result = CliRunner().invoke(cli, ["define", str(path), "-c", uri, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "vCPUs 0->0, 1->1" in result.stderr
    assert "vCPU 0 shares housekeeping CPU 0" in result.stderr

    tuning = tmp_path / "tuning.yaml"
    tuning.write_text("cpu:\n  pinning: auto\n  emulator: auto\n  realtime:\n    vcpus: [1]\n")
    result = CliRunner().invoke(cli, ["tune", "vm", str(tuning), "-c", uri, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "vCPU 0 shares housekeeping CPU 0" in result.stderr

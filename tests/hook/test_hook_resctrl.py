"""Exclusive L3 cache ways through resctrl, on a fake resctrl (this machine has none)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rtlibvirt.hook.isolation import resctrl
from rtlibvirt.hook.isolation.resctrl import narrow, parse_l3
from rtlibvirt.kernel import mounts
from tests.fakes.hook import Hook, domain_xml
from tests.fakes.host import RESCTRL, FakeKernel, Killed, snapshot


def vm(name: str, cpu: int, ways: int, **isolation: Any) -> tuple[str, str, int]:
    xml = domain_xml(name, [0, cpu], [1], isolation={"cache_ways": ways, **isolation})
    return name, xml, cpu


def start(call: Hook, the_vm: tuple[str, str, int]) -> int:
    name, xml, cpu = the_vm
    return call.start(name, xml, {0: 0, 1: cpu}, rt=[1])


def stop(call: Hook, the_vm: tuple[str, str, int]) -> tuple[int, int]:
    return call.stop(the_vm[0], the_vm[1])


def l3(fs: FakeKernel, group: str = "") -> dict[str, int]:
    directory = RESCTRL if not group else f"{RESCTRL}/{group}"
    masks = parse_l3(fs.read(f"{directory}/schemata"))
    assert masks is not None
    return masks


def all_groups(fs: FakeKernel) -> list[str]:
    return sorted(fs.groups)


# ---- the algebra -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "taken", "sparse", "expected"),
    [
        (0xFFFFF, 0xF0000, False, 0x0FFFF),
        (0xFFFFF, 0x0F000, False, 0x00FFF),  # 12 low ways beat 4 high ones
        (0xFFFFF, 0x0F000, True, 0xF0FFF),
        (0x000FF, 0xF0000, False, 0x000FF),
        (0x0F000, 0x0F000, False, 0),
        (0xF00F0, 0x00000, False, 0x000F0),  # two runs of 4 ways: the lower one
    ],
)
def test_narrow(mask: int, taken: int, sparse: bool, expected: int) -> None:
    assert narrow(mask, taken, sparse) == expected


def test_parse_l3_reads_the_kernel_format_with_padding_and_other_resources() -> None:
    text = "    MB:0=100;1=100\n    L3:0=0ffff;1=fffff\n"
    assert parse_l3(text) == {"0": 0xFFFF, "1": 0xFFFFF}
    assert parse_l3("MB:0=100\n") is None


# ---- absent, or not enough ------------------------------------------------------------------


def test_without_resctrl_a_vm_starts_without_cache_ways_and_a_warning(tmp_path: Path) -> None:
    fs = FakeKernel(tmp_path, resctrl=False)
    call = Hook(fs)
    before = snapshot(fs)
    a = vm("a", 1, 4)
    assert start(call, a) == 0
    log = call.log()
    assert "cache_ways: resctrl is not available" in log
    assert "the VM starts without it" in log
    assert fs.read("/proc/irq/24/smp_affinity") == "d"  # the other steps are applied
    assert stop(call, a) == (0, 0)
    assert snapshot(fs) == before


def test_strict_refuses_to_start_without_resctrl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fs = FakeKernel(tmp_path, resctrl=False)
    call = Hook(fs)
    before = snapshot(fs)
    name, xml, _ = vm("a", 1, 4, strict=True)
    assert call(name, "prepare", "begin", xml) == 1
    err = capsys.readouterr().err
    assert err == (
        "rtlibvirt: a: strict isolation cannot be applied: cache_ways: resctrl is not "
        "available: the kernel or CPU has no cache allocation (no 'resctrl' in "
        "/proc/filesystems)\n"
    )
    assert snapshot(fs) == before
    assert call.state() is None
    assert call.stop(name, xml) == (0, 0)  # libvirt's calls after the refusal
    assert snapshot(fs) == before


def test_not_enough_free_ways(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fs = FakeKernel(tmp_path, cpus=8, resctrl=True)  # cache 0: CPUs 0-3
    call = Hook(fs)
    before = snapshot(fs)
    big = vm("big", 1, 16)
    assert start(call, big) == 0
    assert l3(fs, "rtlibvirt-big")["0"] == 0xFFFF0
    strict = vm("s", 2, 8, strict=True)
    assert call("s", "prepare", "begin", strict[1]) == 1
    err = capsys.readouterr().err
    assert "not enough free cache ways on L3 cache 0: 8 wanted, 4 of 20 free" in err
    # not strict: it starts, with a warning, without a group
    loose = vm("l", 2, 8)
    assert start(call, loose) == 0
    assert "l: no exclusive cache ways: not enough free cache ways on L3 cache 0" in call.log()
    assert all_groups(fs) == ["", "rtlibvirt-big"]
    assert fs.read("/proc/irq/24/smp_affinity") == "f9"  # CPUs 1 and 2 are isolated
    assert stop(call, loose) == (0, 0)
    assert stop(call, big) == (0, 0)
    assert snapshot(fs) == before


def test_no_free_clos_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fs = FakeKernel(tmp_path, resctrl=True, resctrl_mounted=True, num_closids=2)
    fs.add_group("admin", {"0": 0x000FF, "1": 0x000FF})
    call = Hook(fs)
    before = snapshot(fs)
    name, xml, _ = vm("a", 1, 4, strict=True)
    assert call(name, "prepare", "begin", xml) == 1
    assert "no free CLOS id: the CPU has 2 (num_closids) and 2 resctrl groups exist" in (
        capsys.readouterr().err
    )
    assert snapshot(fs) == before
    assert call.state() is None


def test_fewer_ways_than_the_cpu_minimum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fs = FakeKernel(tmp_path, resctrl=True, min_cbm_bits=2)
    call = Hook(fs)
    name, xml, _ = vm("a", 1, 1, strict=True)
    assert call(name, "prepare", "begin", xml) == 1
    assert "cache_ways 1 is below this CPU's minimum of 2" in capsys.readouterr().err
    assert not mounts.is_mounted(fs, RESCTRL, "resctrl")  # mounted for the check, unmounted after


def test_cdp_is_reported(tmp_path: Path) -> None:
    fs = FakeKernel(tmp_path, resctrl=True, resctrl_mounted=True)
    info = fs.path(f"{RESCTRL}/info/L3")
    info.rename(info.with_name("L3CODE"))
    problem = resctrl.read_info(fs)
    assert isinstance(problem, str) and "CDP" in problem


# ---- allocation ----------------------------------------------------------------------------


def test_a_group_with_exclusive_ways_cpus_and_vcpu_threads(tmp_path: Path) -> None:
    fs = FakeKernel(tmp_path, cpus=8, resctrl=True)  # not mounted: the hook mounts it
    call = Hook(fs)
    before = snapshot(fs)
    a, b = vm("a", 1, 4), vm("b", 2, 2)  # both on L3 cache 0
    c = vm("c", 5, 3)  # on cache 1
    for one in (a, b, c):
        assert start(call, one) == 0
    assert fs.mount_calls == 1
    assert l3(fs, "rtlibvirt-a") == {"0": 0xF0000, "1": 0x1FFFF}
    assert l3(fs, "rtlibvirt-b") == {"0": 0x0C000, "1": 0x1FFFF}
    assert l3(fs, "rtlibvirt-c") == {"0": 0x03FFF, "1": 0xE0000}
    assert l3(fs) == {"0": 0x03FFF, "1": 0x1FFFF}  # the default group keeps the rest
    assert fs.read(f"{RESCTRL}/rtlibvirt-a/cpus_list") == "1"
    assert fs.read(f"{RESCTRL}/rtlibvirt-a/tasks") == "1002"
    assert fs.read(f"{RESCTRL}/rtlibvirt-c/tasks") == "3002"
    assert fs.read(f"{RESCTRL}/cpus_list") == "0,3-4,6-7"
    # on each cache, the ways of a VM there are in no other group
    for name, cache in (("rtlibvirt-a", "0"), ("rtlibvirt-b", "0"), ("rtlibvirt-c", "1")):
        mine = fs.groups[name].masks[cache]
        others = [g.masks[cache] for n, g in fs.groups.items() if n != name]
        assert all(not mine & other for other in others), name
    assert stop(call, a) == (0, 0)
    # without A's ways the default group could have f3fff, which is not contiguous:
    # it gets the largest contiguous run that leaves B's ways alone
    assert l3(fs) == {"0": 0x03FFF, "1": 0x1FFFF}
    assert l3(fs, "rtlibvirt-b")["0"] == 0x0C000
    assert stop(call, b) == (0, 0)
    assert l3(fs) == {"0": 0xFFFFF, "1": 0x1FFFF}
    assert stop(call, c) == (0, 0)
    assert snapshot(fs) == before
    assert not mounts.is_mounted(fs, RESCTRL, "resctrl")
    assert call.state() is None


def test_groups_of_others_are_narrowed_and_given_back(tmp_path: Path) -> None:
    fs = FakeKernel(
        tmp_path, resctrl=True, resctrl_mounted=True, shareable_bits=0xC0000
    )  # two ways used by other hardware
    fs.add_group("admin", {"0": 0xFFF00, "1": 0x000FF})
    fs.write(f"{RESCTRL}/admin/cpus_list", "1,3")
    fs.add_group("locked", {"0": 0x000F0, "1": 0x00F00}, mode="exclusive")
    call = Hook(fs)
    before = snapshot(fs)
    a = vm("a", 1, 4)
    assert start(call, a) == 0
    assert l3(fs, "rtlibvirt-a")["0"] == 0x3C000  # below the shareable bits
    assert l3(fs, "admin")["0"] == 0x03F00
    assert l3(fs, "locked") == {"0": 0x000F0, "1": 0x00F00}  # exclusive: never touched
    assert fs.read(f"{RESCTRL}/admin/cpus_list") == "3"
    assert stop(call, a) == (0, 0)
    assert fs.read(f"{RESCTRL}/admin/cpus_list") == "1,3"
    assert snapshot(fs) == before
    assert mounts.is_mounted(fs, RESCTRL, "resctrl")  # it was mounted before: it stays


def test_a_hook_killed_while_making_the_group_is_undone(tmp_path: Path) -> None:
    fs = FakeKernel(tmp_path, resctrl=True)
    call = Hook(fs)
    before = snapshot(fs)
    name, xml, _ = vm("a", 1, 4)
    fs.kill_after(f"{RESCTRL}/rtlibvirt-a/", 1)  # dies after writing the schemata
    with pytest.raises(Killed):
        call(name, "prepare", "begin", xml)  # the group is made before QEMU starts
    assert "rtlibvirt-a" in fs.groups
    assert call.stop(name, xml) == (0, 0)
    assert snapshot(fs) == before
    assert call.state() is None


def test_two_vms_in_either_order_end_with_the_original_masks(tmp_path: Path) -> None:
    for order in ((0, 1), (1, 0)):
        root = tmp_path / f"o{order[0]}"
        fs = FakeKernel(root, resctrl=True, resctrl_mounted=True)
        fs.add_group("admin", {"0": 0xFFFFF, "1": 0xFFFFF})
        call = Hook(fs)
        before = snapshot(fs)
        vms = [vm("a", 1, 4), vm("b", 2, 4)]  # caches 0 and 1
        for one in vms:
            assert start(call, one) == 0
        stop(call, vms[order[0]])
        remaining = vms[order[1]]
        group = l3(fs, f"rtlibvirt-{remaining[0]}")
        cache = "0" if remaining[0] == "a" else "1"
        assert not l3(fs, "admin")[cache] & group[cache]
        assert not l3(fs)[cache] & group[cache]
        stop(call, remaining)
        assert snapshot(fs) == before

"""The rest of the real-time host recipe (issue 22): every item planned with its reason
from a host.yaml with only isolated_cpus, each key turning its item off, a guest profile
without the hypervisor's items, and the kernel refusing a value."""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtlibvirt.cli import cli
from rtlibvirt.errors import HostError
from rtlibvirt.hostprep.plan import build_plan
from rtlibvirt.hostprep.verify import verify as verify_plan
from tests.fakes.hostprep import Host
from tests.fakes.roots import make_tree, snapshot, write

ONLY = "isolated_cpus: 2-5\n"
RECIPE_ARGS = {
    "rcupdate.rcu_normal_after_boot": "1",
    "rcutree.nohz_full_patience_delay": "1000",
    "transparent_hugepage": "never",
    "cpufreq.default_governor": "performance",
    "kvm.nx_huge_pages": "off",
}
RECIPE_VALUES = {
    "/proc/sys/kernel/numa_balancing": "0",
    "/proc/sys/kernel/hung_task_timeout_secs": "600",
    "/sys/kernel/mm/transparent_hugepage/enabled": "never",
    "/sys/kernel/mm/ksm/run": "2",
    "/sys/module/kvm/parameters/nx_huge_pages": "N",
    "/sys/devices/system/cpu/cpufreq/policy3/scaling_governor": "performance",
    "/sys/devices/system/cpu/cpu3/power/energy_perf_bias": "0",
    "/sys/devices/virtual/workqueue/cpumask": "c3",
    "/sys/devices/virtual/workqueue/writeback/cpumask": "c3",
    "/sys/devices/virtual/workqueue/blkcg_punt_bio/cpumask": "c3",
}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("distro", ["debian", "ubuntu", "rhel"])
def test_only_isolated_cpus_yields_every_item_with_its_reason(
    fake_host: Callable[..., Host], distro: str
) -> None:
    host = fake_host(distro, ONLY, cpus=8)
    plan = host.plan()
    args = {a.key: a for a in plan.cmdline.args}
    for key, value in RECIPE_ARGS.items():
        assert args[key].value == value and args[key].why, key
    assert "iTLB multihit" in args["kvm.nx_huge_pages"].why  # the trade-off, like mitigations
    runtime = {c.path: c for c in plan.runtime}
    for path, value in RECIPE_VALUES.items():
        assert runtime[path].value == value and runtime[path].why, path
    files = {c.path: c.want.data.decode() for c in plan.files if c.want.kind == "file"}
    assert "nx_huge_pages=off" in files["/etc/modprobe.d/50-rtlibvirt.conf"]
    sysctl = files["/etc/sysctl.d/50-rtlibvirt.conf"]
    assert "-kernel.numa_balancing = 0" in sysctl
    assert "-kernel.hung_task_timeout_secs = 600" in sysctl
    notes = " ".join(text for _, text in plan.notes)
    assert "affected by iTLB multihit" in notes

    # applied on the fake host: every value as wanted, then everything back byte for byte
    before = snapshot(host.root)
    host.apply()
    rows = {r.what: r for r in verify_plan(host.plan(), host.effects())}
    for change in plan.runtime:
        assert rows[change.label].status == "ok", rows[change.label]
    assert (host.root / "sys/kernel/mm/transparent_hugepage/enabled").read_text() == (
        "always madvise [never]\n"
    )
    assert (host.root / "sys/devices/virtual/workqueue/writeback/cpumask").read_text() == "c3\n"
    host.revert()
    assert snapshot(host.root) == before


def test_each_key_turns_its_item_off(fake_host: Callable[..., Host]) -> None:
    host = fake_host(
        "debian",
        ONLY
        + "kvm_nx_huge_pages: auto\nrcu_normal_after_boot: false\ntransparent_hugepages: default\n"
        "numa_balancing: true\nksm: true\nhung_task_timeout_secs: null\ncpu_governor: default\n"
        "energy_perf_bias: default\nunbound_workqueues: default\n",
        cpus=8,
    )
    plan = host.plan()
    keys = {a.key for a in plan.cmdline.args}
    assert not keys & set(RECIPE_ARGS)
    paths = {c.path for c in plan.runtime}
    assert not paths & set(RECIPE_VALUES)
    files = {c.path: c.want.data.decode() for c in plan.files if c.want.kind == "file"}
    assert "nx_huge_pages" not in files["/etc/modprobe.d/50-rtlibvirt.conf"]
    assert "numa_balancing" not in files["/etc/sysctl.d/50-rtlibvirt.conf"]


def test_a_guest_profile_plans_nothing_of_the_hypervisor(fake_host: Callable[..., Host]) -> None:
    host = fake_host("debian", ONLY + "hugepages: {size: 1G, count: 4}\ncache_allocation: true\n")
    plan = host.plan()
    guest = dataclasses.replace(plan.host, hypervisor=False)
    guest_plan = build_plan(guest, plan.facts)
    keys = {a.key for a in guest_plan.cmdline.args}
    assert not {k for k in keys if k.startswith(("kvm", "hugepage", "default_hugepagesz"))}
    assert not keys & {"intel_iommu", "iommu", "rdt"}
    assert {"isolcpus", "transparent_hugepage", "rcupdate.rcu_normal_after_boot"} <= keys
    assert "/etc/modprobe.d/50-rtlibvirt.conf" not in {c.path for c in guest_plan.files}
    assert "/sys/module/kvm/parameters/nx_huge_pages" not in {c.path for c in guest_plan.runtime}


def test_rcutree_patience_only_where_the_kernel_has_it(fake_host: Callable[..., Host]) -> None:
    host = fake_host("debian", ONLY, cpus=8)
    (host.root / "sys/module/rcutree/parameters/nohz_full_patience_delay").unlink()
    plan = host.plan()
    assert "rcutree.nohz_full_patience_delay" not in {a.key for a in plan.cmdline.args}
    assert any("nohz_full_patience_delay: not added" in n for n in plan.cmdline.notes)


def test_a_governor_the_kernel_lacks_is_one_clear_error(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", "debian", cpus=4)
    for cpu in range(4):  # intel_pstate in active mode offers two governors
        write(
            root,
            f"/sys/devices/system/cpu/cpufreq/policy{cpu}/scaling_available_governors",
            "performance powersave\n",
        )
    spec = tmp_path / "host.yaml"
    spec.write_text("isolated_cpus: 2-3\ncpu_governor: schedutil\n")
    before = snapshot(root)
    code, out, err = run("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 2 and out == ""
    assert "cpu_governor" in err and "schedutil" in err and "performance, powersave" in err
    assert "Traceback" not in err
    assert snapshot(root) == before


@pytest.mark.parametrize("code", [errno.EINVAL, errno.EIO])
def test_a_mask_the_kernel_refuses_leaves_no_runtime_value_half_done(
    fake_host: Callable[..., Host], code: int
) -> None:
    host = fake_host("debian", ONLY, cpus=8)
    refused = "/sys/devices/virtual/workqueue/writeback/cpumask"
    host.refuse[refused] = code
    runtime_before = {
        p: (host.root / p.lstrip("/")).read_text()
        for p in [*RECIPE_VALUES, "/proc/sys/kernel/timer_migration"]
    }
    with pytest.raises(HostError) as caught:
        host.apply()
    message = caught.value.message
    assert "workqueue writeback" in message and "\n" not in message
    assert "put back" in message
    for path, text in runtime_before.items():
        assert (host.root / path.lstrip("/")).read_text() == text, path
    host.revert()  # the files written before the runtime step are journaled
    assert not (host.root / "etc/sysctl.d/50-rtlibvirt.conf").exists()

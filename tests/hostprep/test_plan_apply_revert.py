"""Plan changes nothing; apply then revert leaves the tree byte-identical; apply is
idempotent; an apply stopped after any number of changes still reverts; a changed
host.yaml updates the host."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from rtlibvirt.hostprep.apply import apply as apply_plan
from rtlibvirt.hostprep.journal import Journal
from rtlibvirt.hostprep.plan import preview
from rtlibvirt.hostprep.report import render_plan
from rtlibvirt.hostprep.verify import verify as verify_plan
from tests.fakes.hostprep import Host
from tests.fakes.roots import snapshot

DISTROS = ["debian", "ubuntu", "rhel"]


class Killed(BaseException):
    """Stands for SIGKILL: nothing in host-prep catches it."""


def kill_after(n: int) -> Callable[[str], None]:
    done: list[str] = []

    def before_change(what: str) -> None:
        if len(done) == n:
            raise Killed(what)
        done.append(what)

    return before_change


@pytest.mark.parametrize("distro", DISTROS)
def test_plan_changes_nothing(fake_host: Callable[..., Host], distro: str) -> None:
    host = fake_host(distro)
    before = snapshot(host.root)
    plan = host.plan()
    effects = host.effects(before_change=kill_after(0))  # any change would raise
    text = render_plan(plan, preview(plan, effects, Journal(effects)), effects, Journal(effects))
    assert "create /etc/sysctl.d/50-rtlibvirt.conf" in text
    assert snapshot(host.root) == before


@pytest.mark.parametrize("distro", DISTROS)
def test_apply_then_revert_is_byte_identical(fake_host: Callable[..., Host], distro: str) -> None:
    host = fake_host(distro)
    before = snapshot(host.root)
    host.apply()
    after = snapshot(host.root)
    assert after != before
    assert after["etc/sysctl.d/50-rtlibvirt.conf"][0] == "file"
    assert after["proc/sys/kernel/sched_rt_runtime_us"][2] == b"-1\n"
    assert "etc/systemd/system/multi-user.target.wants/irqbalance.service" not in after
    journal = json.loads(after["var/lib/rtlibvirt/host-prep/journal.json"][2])
    assert journal["runtime"] and journal["files"]
    host.revert()
    assert snapshot(host.root) == before
    # Revert again: nothing left to do, nothing changes.
    report = host.revert()
    assert report.lines == ["nothing to revert: no journal of host-prep changes on this host"]
    assert snapshot(host.root) == before


@pytest.mark.parametrize("distro", DISTROS)
def test_apply_twice_equals_apply_once(fake_host: Callable[..., Host], distro: str) -> None:
    host = fake_host(distro)
    host.apply()
    once = snapshot(host.root)
    commands = host.commands()
    counted = host.effects()
    report = apply_plan(host.plan(), counted, Journal(counted))
    assert report.lines == [], report.lines
    assert counted.changes == 0
    assert snapshot(host.root) == once
    assert host.commands() == commands + [
        c for c in host.commands()[len(commands) :] if "is-active" in c
    ]


def _changes_of_full_apply(host: Host) -> int:
    effects = host.effects()
    apply_plan(host.plan(), effects, Journal(effects))
    host.revert()
    return effects.changes


@pytest.mark.parametrize("distro", DISTROS)
def test_apply_killed_after_any_change_still_reverts(
    fake_host: Callable[..., Host], distro: str
) -> None:
    host = fake_host(distro, cpus=6)  # every change of the recipe, with fewer per-CPU values
    original = snapshot(host.root)
    total = _changes_of_full_apply(host)
    assert snapshot(host.root) == original
    assert total > 20
    for n in range(total):
        with pytest.raises(Killed):
            host.apply(before_change=kill_after(n))
        host.revert()
        assert snapshot(host.root) == original, f"killed after {n} of {total} changes"


@pytest.mark.parametrize("distro", ["debian", "rhel"])
def test_apply_killed_then_applied_again_reverts_to_the_original(
    fake_host: Callable[..., Host], distro: str
) -> None:
    host = fake_host(distro, cpus=6)
    original = snapshot(host.root)
    total = _changes_of_full_apply(host)
    for n in range(0, total, 5):
        with pytest.raises(Killed):
            host.apply(before_change=kill_after(n))
        host.apply()
        assert host.apply().lines == []
        host.revert()
        assert snapshot(host.root) == original, f"killed after {n} of {total} changes"


def test_a_changed_host_yaml_updates_the_host(fake_host: Callable[..., Host], write_host) -> None:
    host = fake_host("debian")
    original = snapshot(host.root)
    host.apply()
    smaller = write_host("isolated_cpus: 2-13\nidle: shallow\n", "smaller.yaml")
    report = host.apply(spec=smaller)
    now = snapshot(host.root)
    # wpa_supplicant and irqbalance are no longer to be disabled: their links are back.
    for link in (
        "etc/systemd/system/multi-user.target.wants/irqbalance.service",
        "etc/systemd/system/dbus-fi.w1.wpa_supplicant1.service",
    ):
        assert now[link] == original[link]
    assert "restored /etc/systemd/system/multi-user.target.wants/irqbalance.service" in report.lines
    dropin = now["etc/default/grub.d/99-rtlibvirt.cfg"][2].decode()
    assert "isolcpus=managed_irq,domain,2-13" in dropin and "idle=poll" not in dropin
    assert now["etc/rtlibvirt/host.yaml"][2] == smaller.read_bytes()
    host.revert()
    assert snapshot(host.root) == original


def test_runtime_only_touches_no_file(fake_host: Callable[..., Host]) -> None:
    host = fake_host(
        "debian",
        "isolated_cpus: 4\nhugepages: {size: 2M, count: 16}\nmachine_check_polling: false\n",
    )
    before = snapshot(host.root)
    report = host.apply(runtime_only=True)
    after = snapshot(host.root)
    changed = {p for p in after if after.get(p) != before.get(p)}
    assert {p for p in changed if not p.startswith("var/lib/rtlibvirt")} == {
        "proc/sys/kernel/sched_rt_runtime_us",
        "proc/sys/kernel/timer_migration",
        "proc/sys/kernel/nmi_watchdog",
        "proc/sys/vm/stat_interval",
        "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
        *(f"sys/devices/system/machinecheck/machinecheck{n}/check_interval" for n in range(14)),
        # the rest of the recipe: memory, frequency, workqueues
        "proc/sys/kernel/numa_balancing",
        "proc/sys/kernel/hung_task_timeout_secs",
        "sys/module/kvm/parameters/nx_huge_pages",
        "sys/kernel/mm/transparent_hugepage/enabled",
        "sys/kernel/mm/ksm/run",
        *(f"sys/devices/system/cpu/cpufreq/policy{n}/scaling_governor" for n in range(14)),
        *(f"sys/devices/system/cpu/cpu{n}/power/energy_perf_bias" for n in range(14)),
        "sys/devices/virtual/workqueue/cpumask",
        "sys/devices/virtual/workqueue/writeback/cpumask",
        "sys/devices/virtual/workqueue/blkcg_punt_bio/cpumask",
    }
    assert "set 2M hugepages 0 -> 16" in report.lines
    assert host.commands() == []
    host.revert()
    assert snapshot(host.root) == before


def test_revert_leaves_a_value_someone_else_changed(fake_host: Callable[..., Host]) -> None:
    host = fake_host("debian", "isolated_cpus: 4\n")
    host.apply(runtime_only=True)
    (host.root / "proc/sys/vm/stat_interval").write_text("5\n")
    report = host.revert()
    assert (host.root / "proc/sys/vm/stat_interval").read_text() == "5\n"
    assert any("changed by someone else" in w for w in report.warnings)
    assert (host.root / "proc/sys/kernel/timer_migration").read_text() == "1\n"


def test_rhel_services_are_stopped_and_started_again(fake_host: Callable[..., Host]) -> None:
    host = fake_host("rhel")
    host.apply()
    assert "systemctl stop irqbalance.service" in host.commands()
    assert not (host.root / "run/fake-active/irqbalance.service").exists()
    host.revert()
    assert "systemctl start irqbalance.service" in host.commands()
    assert (host.root / "run/fake-active/irqbalance.service").exists()


def test_verify_rows(fake_host: Callable[..., Host]) -> None:
    host = fake_host("debian")
    before = {r.what: r for r in verify_plan(host.plan(), host.effects())}
    assert before["cmdline isolcpus"].status == "missing"
    assert before["file /etc/sysctl.d/50-rtlibvirt.conf"].status == "missing"
    assert before["kernel.timer_migration"].status == "differs"
    host.apply()
    rows = verify_plan(host.plan(), host.effects())
    statuses = {r.what: r.status for r in rows}
    assert statuses["cmdline isolcpus"] == "reboot pending"
    assert statuses["kernel.timer_migration"] == "ok"
    assert statuses["file /etc/default/grub.d/99-rtlibvirt.cfg"] == "ok"
    # "Reboot": the running kernel now has the arguments of the boot entry.
    grub_cfg = (host.root / "boot/grub/grub.cfg").read_text()
    linux = next(line for line in grub_cfg.splitlines() if line.strip().startswith("linux"))
    (host.root / "proc/cmdline").write_text(" ".join(linux.split()[1:]) + "\n")
    rows = verify_plan(host.plan(), host.effects())
    assert [r for r in rows if r.drift] == []

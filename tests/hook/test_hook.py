"""The hook on a fake host: the multi-VM semantics and every fault of issue 3."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtlibvirt import hook
from rtlibvirt.domain import metadata
from rtlibvirt.hook import isolation, state
from rtlibvirt.hook import ops as hookops
from rtlibvirt.kernel.cpuset import parse_mask
from tests.fakes.hook import PLAIN_XML, Hook, domain_xml
from tests.fakes.host import IRQ_DEFAULT, WQ_UNBOUND, WQ_WRITEBACK, FakeKernel, Killed, snapshot

IRQS = (0, 1, 8, 9, 24, 25, 26, 27)
A_XML = domain_xml("a", [0, 1], [1])  # realtime vCPU 1 on host CPU 1
B_XML = domain_xml("b", [0, 2], [1])  # realtime vCPU 1 on host CPU 2


@pytest.fixture
def fs(tmp_path: Path) -> FakeKernel:
    return FakeKernel(tmp_path)


@pytest.fixture
def call(fs: FakeKernel) -> Hook:
    return Hook(fs)


def masks(fs: FakeKernel) -> dict[str, frozenset[int]]:
    """Every IRQ and workqueue mask, as CPU sets."""
    paths = [IRQ_DEFAULT, WQ_UNBOUND, WQ_WRITEBACK]
    paths += [f"/proc/irq/{n}/smp_affinity" for n in IRQS]
    return {p: parse_mask(fs.read(p)) for p in paths}


def assert_isolated(fs: FakeKernel, cpus: set[int]) -> None:
    for path, value in masks(fs).items():
        assert not value & cpus, f"{path} still holds CPU {value & cpus}"
        assert value, f"{path} is empty"


# ---- domains the hook leaves alone -----------------------------------------------------


def test_the_hook_and_metadata_agree_on_the_namespace_and_state_file() -> None:
    assert hook.NAMESPACE == metadata.NAMESPACE
    assert "/" + hook.STATE_FILE == state.STATE_FILE


@pytest.mark.parametrize("op", ["prepare", "started", "stopped", "release", "reconnect"])
def test_a_domain_without_metadata_is_left_alone(
    fs: FakeKernel, call: Hook, op: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(fs)
    assert call("plain", op, "begin", PLAIN_XML) == 0
    assert snapshot(fs) == before
    assert call.state() is None
    assert call.log() == ""
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("op", ["migrate", "restore", "attach", "start", "something-new"])
def test_other_operations_print_nothing_and_succeed(
    fs: FakeKernel, call: Hook, op: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(fs)
    assert call("a", op, "begin", A_XML) == 0
    assert capsys.readouterr() == ("", "")  # stdout would replace the domain XML
    assert snapshot(fs) == before


def test_a_vm_without_realtime_vcpus_changes_nothing(fs: FakeKernel, call: Hook) -> None:
    xml = domain_xml("nort", [0, 1], None)
    assert "<vcpusched" not in xml
    before = snapshot(fs)
    assert call("nort", "prepare", "begin", xml) == 0
    assert call("nort", "started", "begin", xml) == 0
    assert snapshot(fs) == before
    assert "nothing to isolate" in call.log()


# ---- one VM, then two, in any order ----------------------------------------------------


def test_one_vm_is_isolated_while_it_runs_and_everything_comes_back(
    fs: FakeKernel, call: Hook
) -> None:
    before = snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert_isolated(fs, {1})
    assert parse_mask(fs.read(WQ_UNBOUND)) == {0, 2, 3}
    st = call.state()
    assert st is not None and st["claims"]["a"]["phase"] == "running"
    assert st["originals"][IRQ_DEFAULT] == "f"
    log = call.log()
    # isolated at prepare, before QEMU starts: one line per step
    assert (
        "a prepare begin: isolating CPUs 1 (IRQs, workqueues, host tasks, kernel threads "
        "above the vCPUs (FIFO ksoftirqd 2, ktimers 3, rcu 4))" in log
    )
    assert "a prepare begin: irqs: 9 values: 9 changed" in log
    # the global mask and the 4 sysfs workqueues with a cpumask of their own
    assert "a prepare begin: workqueues: 5 values: 5 changed" in log
    assert "a started begin: irqs:" not in log  # nothing left to change at started
    assert "IRQ 24 affinity" not in log  # the detail is at debug level only
    assert "checked: vCPU 1 (thread 1002) runs fifo 1" in log
    assert call.stop("a", A_XML) == (0, 0)
    assert snapshot(fs) == before
    assert call.state() is None
    assert "every value is back to its original" in call.log()


@pytest.mark.parametrize("first", ["a", "b"])
def test_two_vms_with_overlapping_lifetimes_stopped_in_either_order(
    fs: FakeKernel, call: Hook, first: str
) -> None:
    # IRQ 8 may only run on CPU 1 (A's CPU): it must move to the housekeeping
    # CPUs while A runs, and come back to CPU 1 only.
    fs.write("/proc/irq/8/smp_affinity", "2")
    before = snapshot(fs)
    xmls = {"a": A_XML, "b": B_XML}
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert call.start("b", B_XML, {0: 0, 1: 2}, rt=[1]) == 0
    assert_isolated(fs, {1, 2})
    assert parse_mask(fs.read("/proc/irq/8/smp_affinity")) == {0, 3}

    assert call.stop(first, xmls[first]) == (0, 0)
    still = {"a": 1, "b": 2}["b" if first == "a" else "a"]
    freed = {"a": 1, "b": 2}[first]
    assert_isolated(fs, {still})
    assert freed in parse_mask(fs.read(IRQ_DEFAULT))
    # recomputed from the original {1}: without A's CPU in the way it is CPU 1 again
    expected_irq8 = {1} if first == "a" else {0, 2, 3}
    assert parse_mask(fs.read("/proc/irq/8/smp_affinity")) == expected_irq8

    last = "b" if first == "a" else "a"
    assert call.stop(last, xmls[last]) == (0, 0)
    assert snapshot(fs) == before
    assert call.state() is None


def test_stop_without_start_changes_nothing(fs: FakeKernel, call: Hook) -> None:
    before = snapshot(fs)
    assert call("a", "stopped", "end", A_XML) == 0
    assert call("a", "release", "end", A_XML) == 0
    assert snapshot(fs) == before
    assert call.state() is None
    assert fs.writes == []


def test_stop_of_one_vm_does_not_touch_another_running_one(fs: FakeKernel, call: Hook) -> None:
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    isolated = masks(fs)
    fs.writes.clear()
    assert call.stop("b", B_XML) == (0, 0)  # never started
    assert masks(fs) == isolated
    assert fs.writes == []


def test_undo_is_idempotent(fs: FakeKernel, call: Hook) -> None:
    before = snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert call.stop("a", A_XML) == (0, 0)
    fs.writes.clear()
    assert call("a", "release", "end", A_XML) == 0
    assert call("a", "stopped", "end", A_XML) == 0
    assert fs.writes == []
    assert snapshot(fs) == before


def test_start_twice_keeps_the_true_originals(fs: FakeKernel, call: Hook) -> None:
    before = snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    isolated = masks(fs)
    originals = call.state()["originals"]  # type: ignore[index]
    assert call("a", "prepare", "begin", A_XML) == 0
    assert call("a", "started", "begin", A_XML) == 0
    assert masks(fs) == isolated
    st = call.state()
    assert st is not None
    assert st["originals"] == originals
    assert list(st["claims"]) == ["a"]
    assert call.stop("a", A_XML) == (0, 0)
    assert snapshot(fs) == before


def test_a_failed_start_is_undone_by_release(fs: FakeKernel, call: Hook) -> None:
    """libvirt calls stopped/release after a start that failed after prepare."""
    before = snapshot(fs)
    assert call("a", "prepare", "begin", A_XML) == 0
    assert call.state()["claims"]["a"]["phase"] == "prepared"  # type: ignore[index]
    assert call.stop("a", A_XML) == (0, 0)
    assert snapshot(fs) == before
    assert call.state() is None


# ---- prepare refuses ---------------------------------------------------------------------


def test_prepare_refuses_a_vm_whose_cpus_another_running_vm_holds(
    fs: FakeKernel, call: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    capsys.readouterr()
    clash = domain_xml("c", [0, 1], [1])
    assert call("c", "prepare", "begin", clash) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("rtlibvirt: c: host CPU 1 already belongs to real-time VM 'a' (running)")
    st = call.state()
    assert st is not None and list(st["claims"]) == ["a"]
    # a stop of the refused VM (libvirt calls it) does not release A's CPUs
    assert call.stop("c", clash) == (0, 0)
    assert_isolated(fs, {1})


def test_a_vm_whose_qemu_is_gone_without_a_stop_call_is_released(
    fs: FakeKernel, call: Hook
) -> None:
    before = snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    from tests.fakes.host import remove_vm

    remove_vm(fs.root, "a", call.pids.pop("a"))  # libvirtd died; no stop hook ran
    clash = domain_xml("c", [0, 1], [1])
    assert call("c", "prepare", "begin", clash) == 0
    assert "VM 'a' (running, pid 1000) is gone without a stop call" in call.log()
    st = call.state()
    assert st is not None and list(st["claims"]) == ["c"]  # a's claim is gone, c isolates
    assert_isolated(fs, {1})
    assert call.stop("c", clash) == (0, 0)
    assert snapshot(fs) == before


def test_prepare_refuses_when_rt_group_scheduling_would_fail_libvirt(
    fs: FakeKernel, call: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    mounts = fs.read("/proc/mounts")
    fs.write("/proc/mounts", mounts + "\ncgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0")
    root = fs.path("/sys/fs/cgroup/cpu/machine")
    root.mkdir(parents=True)
    (root.parent / "cpu.rt_runtime_us").write_text("950000\n")
    (root / "cpu.rt_runtime_us").write_text("0\n")
    assert call("a", "prepare", "begin", A_XML) == 1
    err = capsys.readouterr().err
    assert "Cannot set scheduler parameters: Operation not permitted" in err
    assert 'remove "cpu" from cgroup_controllers in /etc/libvirt/qemu.conf' in err
    conf = fs.path("/etc/libvirt/qemu.conf")
    conf.parent.mkdir(parents=True)
    conf.write_text('# cgroup_controllers = [ "cpu" ]\ncgroup_controllers = [ "cpuset" ]\n')
    assert call("a", "prepare", "begin", A_XML) == 0


# ---- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("writes", [0, 3], ids=["before-any-write", "after-3-writes"])
@pytest.mark.parametrize("then", ["release", "started"])
def test_a_hook_killed_half_way_is_finished_or_undone_by_the_next_call(
    fs: FakeKernel, call: Hook, then: str, writes: int
) -> None:
    """prepare isolates; killed half-way, the shell entry lets the start go on (the
    next call, started, finishes the work) or libvirt gives up (release undoes it)."""
    before = snapshot(fs)
    fs.kill_after("/proc/irq/", writes)
    with pytest.raises(Killed):
        call("a", "prepare", "begin", A_XML)
    st = call.state()
    assert st is not None
    assert st["claims"]["a"]["phase"] == "prepared"
    # every original was on disk before the first write
    for irq in IRQS:
        assert st["originals"][f"/proc/irq/{irq}/smp_affinity"] == "f"
    changed = [p for p, v in masks(fs).items() if 1 not in v]
    assert len(changed) == writes  # killed after the state was saved, before the rest
    if then == "release":
        assert call.stop("a", A_XML) == (0, 0)
        assert snapshot(fs) == before
        assert call.state() is None
    else:
        call.qemu("a", {0: (frozenset({0}), "other", 0), 1: (frozenset({1}), "fifo", 1)})
        assert call("a", "started", "begin", A_XML) == 0
        assert_isolated(fs, {1})
        assert call.stop("a", A_XML) == (0, 0)
        assert snapshot(fs) == before


def test_a_hook_killed_during_undo_is_finished_by_the_next_call(fs: FakeKernel, call: Hook) -> None:
    before = snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    fs.kill_after("/proc/irq/", 2)
    with pytest.raises(Killed):
        call("a", "stopped", "end", A_XML)
    assert call.state() is not None  # originals of what is not restored yet
    assert call("a", "release", "end", A_XML) == 0
    assert snapshot(fs) == before
    assert call.state() is None


def test_the_per_value_detail_is_logged_when_debugging(fs: FakeKernel, call: Hook) -> None:
    flag = fs.path("/run/rtlibvirt/debug")
    flag.parent.mkdir(parents=True)
    flag.touch()
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert "a prepare begin: IRQ 24 affinity: 0-3 -> 0,2-3" in call.log()
    assert call.stop("a", A_XML) == (0, 0)
    assert "a stopped end: IRQ 24 affinity: (the hook's, not read) -> 0-3" in call.log()


def test_a_damaged_state_file_is_set_aside_and_rebuilt_from_the_journal(
    fs: FakeKernel, call: Hook
) -> None:
    before = snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    path = fs.path(state.STATE_FILE)
    path.write_text('{"format": 1, "claims": {"x": ')
    assert call.start("b", B_XML, {0: 0, 1: 2}, rt=[1]) == 0
    aside = list(path.parent.glob("state.json.damaged-*"))
    assert len(aside) == 1
    assert aside[0].read_text() == '{"format": 1, "claims": {"x": '
    assert "the state file was damaged" in call.log()
    assert "rebuilt from the journal" in call.log()
    st = call.state()
    assert st is not None and sorted(st["claims"]) == ["a", "b"]
    assert st["recovered"] and "rebuilt from the journal" in st["recovered"][0]
    assert_isolated(fs, {1, 2})
    assert call.stop("a", A_XML) == (0, 0)
    assert_isolated(fs, {2})
    assert call.stop("b", B_XML) == (0, 0)
    assert snapshot(fs) == before  # no original was lost


@pytest.mark.parametrize(
    "text",
    [
        "not json at all",
        '{"format": 99}',
        '{"format": 1, "claims": {"a": {"phase": "dancing"}}}',
        '{"format": 1, "originals": {"x": 1}}',
        "[]",
        "rtlibvirt-hook-state 2 00000000\n{}\n",
        "",
        "\0" * 100,
    ],
)
def test_any_unreadable_state_never_crashes_the_hook(fs: FakeKernel, call: Hook, text: str) -> None:
    path = fs.path(state.STATE_FILE)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert call("a", "release", "end", A_XML) == 0
    assert len(list(path.parent.glob("state.json.damaged-*"))) == 1
    assert "the state file was damaged" in call.log()


def test_irqs_that_refuse_writes_are_skipped_and_logged(tmp_path: Path) -> None:
    fs = FakeKernel(tmp_path, refuse_irqs=(9, 25))
    call = Hook(fs)
    before = snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert parse_mask(fs.read("/proc/irq/9/smp_affinity")) == {0, 1, 2, 3}
    assert 1 not in parse_mask(fs.read("/proc/irq/24/smp_affinity"))
    log = call.log()
    assert (
        "irqs: 9 values: 7 changed, 2 refused by the kernel and left alone "
        "(IRQ 9 affinity, IRQ 25 affinity)"
    ) in log
    assert (
        "Input/output error: the kernel does not let user space move this IRQ"
        in (
            call.state()["refused"]["/proc/irq/9/smp_affinity"]  # type: ignore[index]
        )
    )
    st = call.state()
    assert st is not None
    assert set(st["refused"]) == {"/proc/irq/9/smp_affinity", "/proc/irq/25/smp_affinity"}
    assert "/proc/irq/9/smp_affinity" not in st["originals"]
    # a second VM does not retry them
    fs.writes.clear()
    assert call.start("b", B_XML, {0: 0, 1: 2}, rt=[1]) == 0
    assert "/proc/irq/9/smp_affinity" not in [p for p, _ in fs.writes]
    assert call.stop("a", A_XML) == (0, 0)
    assert call.stop("b", B_XML) == (0, 0)
    assert snapshot(fs) == before
    assert call.state() is None  # refused entries are forgotten with the last VM


def test_a_domain_that_lost_its_metadata_is_still_undone_by_name(
    fs: FakeKernel, call: Hook
) -> None:
    before = snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    edited = PLAIN_XML.replace("<name>plain</name>", "<name>a</name>")
    assert call.stop("a", edited) == (0, 0)
    assert snapshot(fs) == before


def test_started_never_fails_even_on_an_internal_error(
    fs: FakeKernel, call: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(host: isolation.Host) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(isolation, "reconcile", broken)
    assert call("a", "prepare", "begin", A_XML) == 0
    for op in ("started", "reconnect", "stopped", "release"):
        assert call("a", op, "begin", A_XML) == 0
    assert "internal error: RuntimeError: a bug" in call.log()


def test_strict_prepare_refuses_on_an_internal_error(
    fs: FakeKernel, call: Hook, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object) -> list[str]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(isolation, "check", broken)
    assert call("a", "prepare", "begin", A_XML) == 0  # not strict: start without isolation
    strict = domain_xml("s", [0, 1], [1], isolation={"strict": True})
    assert call("s", "prepare", "begin", strict) == 1
    assert "internal error of the rtlibvirt hook: a bug" in capsys.readouterr().err


def test_reconnect_takes_a_running_vm_back_in(fs: FakeKernel, call: Hook) -> None:
    before = snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    fs.path(state.STATE_FILE).unlink()  # e.g. the hook was installed after the start
    fs.path(state.JOURNAL_FILE).unlink()
    assert call("a", "reconnect", "begin", A_XML) == 0
    st = call.state()
    assert st is not None and st["claims"]["a"]["phase"] == "running"
    assert st["claims"]["a"]["pid"] == 1000
    assert "taking the running VM into the state" in call.log()
    assert call.stop("a", A_XML) == (0, 0)
    # The originals were lost with the state file: what the hook saw at
    # reconnect is what it restores; the CPUs of the VM are no longer isolated.
    assert 1 not in parse_mask(fs.read(IRQ_DEFAULT))
    assert snapshot(fs) != before


def test_vcpu_thread_mismatches_are_logged(fs: FakeKernel, call: Hook) -> None:
    assert call("a", "prepare", "begin", A_XML) == 0
    call.qemu("a", {0: (frozenset({0}), "other", 0), 1: (frozenset({0, 1}), "other", 0)})
    assert call("a", "started", "begin", A_XML) == 0
    log = call.log()
    assert "vCPU thread mismatch: vCPU 1 (thread 1002) may run on CPUs 0-1, but is pinned to 1" in (
        log
    )
    assert "vCPU 1 (thread 1002) runs other 0, but <vcpusched> asks for fifo 1" in log


def test_machine_check_polling_is_off_while_a_vm_that_asks_runs(fs: FakeKernel, call: Hook) -> None:
    mc = "/sys/devices/system/machinecheck/machinecheck2/check_interval"
    before = snapshot(fs)
    off = domain_xml("m", [0, 1], [1], isolation={"machine_check_polling": False})
    assert call.start("b", B_XML, {0: 0, 1: 2}, rt=[1]) == 0
    assert fs.read(mc) == "300"  # B leaves it alone
    assert call.start("m", off, {0: 0, 1: 1}, rt=[1]) == 0
    assert fs.read(mc) == "0"
    assert call.stop("m", off) == (0, 0)
    assert fs.read(mc) == "300"
    assert call.stop("b", B_XML) == (0, 0)
    assert snapshot(fs) == before


def test_machine_check_polling_without_devices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fs = FakeKernel(tmp_path, machinecheck=False)
    call = Hook(fs)
    off = domain_xml("m", [0, 1], [1], isolation={"machine_check_polling": False})
    assert call("m", "prepare", "begin", off) == 0
    assert "no machine-check devices" in call.log()
    strict = domain_xml(
        "s", [0, 2], [1], isolation={"machine_check_polling": False, "strict": True}
    )
    assert call("s", "prepare", "begin", strict) == 1
    err = capsys.readouterr().err
    assert "strict isolation cannot be applied: machine_check_polling: this host has no" in err


def test_isolation_steps_that_are_off_are_not_applied(fs: FakeKernel, call: Hook) -> None:
    xml = domain_xml("q", [0, 1], [1], isolation={"irqs": False, "workqueues": False})
    before = snapshot(fs)
    assert call.start("q", xml, {0: 0, 1: 1}, rt=[1]) == 0
    assert snapshot(fs) == before


def test_reconcile_is_stable_once_applied(fs: FakeKernel, call: Hook) -> None:
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    fs.writes.clear()
    st = state.StateStore(fs)
    from rtlibvirt.hook.log import HookLog

    host = isolation.Host(fs, st.load(), HookLog(fs, "t"), st)
    isolation.reconcile(host)
    assert fs.writes == []
    assert isolation.verify(host) == []


def test_a_lost_state_file_loses_nothing(fs: FakeKernel, call: Hook) -> None:
    before = snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    fs.path(state.STATE_FILE).unlink()  # the journal has every original and the claim
    assert call("a", "reconnect", "begin", A_XML) == 0
    assert "taking the running VM into the state" not in call.log()
    assert call.stop("a", A_XML) == (0, 0)
    assert snapshot(fs) == before


def test_state_on_disk_is_valid_with_every_claim(fs: FakeKernel, call: Hook) -> None:
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    loaded = state.decode(fs.path(state.STATE_FILE).read_bytes())
    assert loaded.claims["a"].cpus == {1}
    assert loaded.claims["a"].tids == [1002]
    assert not list(fs.path(state.STATE_DIR).glob("*.tmp"))


def test_prepared_claims_expire(
    fs: FakeKernel, call: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert call("a", "prepare", "begin", A_XML) == 0
    clash = domain_xml("c", [0, 1], [1])
    assert call("c", "prepare", "begin", clash) == 1  # A is starting
    monkeypatch.setattr(hookops, "PREPARED_GRACE", 0.0)
    assert call("c", "prepare", "begin", clash) == 0  # A never came up


# ---- a /run that survives a reboot ------------------------------------------------------

BOOT_1 = "11111111-2222-4333-8444-555555555555"
BOOT_2 = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"


def set_boot(fs: FakeKernel, boot: str) -> None:
    """The kernel's /proc/sys/kernel/random/boot_id: a UUID and a newline."""
    path = fs.path(state.BOOT_ID)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(boot + "\n")


def test_a_state_left_by_an_earlier_boot_restores_nothing(fs: FakeKernel, call: Hook) -> None:
    """/run is a tmpfs on systemd hosts, but not everywhere (it is on ext4 on the machine
    these tests were written on). After a reboot the state's originals are values of a
    kernel that is gone: writing them back would undo what this boot set up."""
    from tests.fakes.host import remove_vm

    set_boot(fs, BOOT_1)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert_isolated(fs, {1})
    assert fs.path(state.BOOT_FILE).read_text() == BOOT_1
    # the reboot: QEMU is gone without a stop call, the kernel has a new boot id, and
    # this boot set IRQ 24 up on its own (irqaffinity=0 on the kernel command line)
    remove_vm(fs.root, "a", call.pids.pop("a"))
    set_boot(fs, BOOT_2)
    for path in masks(fs):
        fs.write(path, "f")  # the new kernel's defaults: every CPU
    fs.write("/proc/irq/24/smp_affinity", "1")
    seen = state.peek(fs)
    assert not seen.claims and not seen.originals
    assert "left by an earlier boot" in seen.recovered[0]
    assert call("b", "prepare", "begin", B_XML) == 0
    log = call.log()
    assert f"the state was left by an earlier boot ({BOOT_1}; this boot is {BOOT_2})" in log
    st = call.state()
    assert st is not None and list(st["claims"]) == ["b"]
    # this boot's IRQ 24 holds no CPU of b: untouched, and no original of it is kept
    assert "/proc/irq/24/smp_affinity" not in st["originals"]
    assert st["originals"]["/proc/irq/25/smp_affinity"] == "f"
    assert fs.path(state.BOOT_FILE).read_text() == BOOT_2
    aside = sorted(p.name for p in fs.path(state.STATE_DIR).iterdir() if "earlier-boot" in p.name)
    assert [n.split(".earlier-boot-")[0] for n in aside] == ["journal", "state.json"]
    assert call.stop("b", B_XML) == (0, 0)
    assert fs.read("/proc/irq/24/smp_affinity") == "1"  # not the earlier boot's "f"
    assert call.state() is None


def test_a_state_of_this_boot_or_without_a_boot_id_is_kept(fs: FakeKernel, call: Hook) -> None:
    set_boot(fs, BOOT_1)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    fs.path(state.BOOT_FILE).unlink()  # e.g. written by a version that kept none
    assert call.stop("a", A_XML) == (0, 0)
    assert "earlier boot" not in call.log()
    assert_isolated(fs, set())  # everything came back
    assert call.state() is None


def test_prepare_refuses_a_declared_partner_while_the_other_runs(
    fs: FakeKernel, call: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    """cpu.share_with: the VMs may pin the same CPUs because the hook keeps them apart."""
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    capsys.readouterr()
    partner = domain_xml("c", [0, 1], [1], share_with=["a"])
    assert call("c", "prepare", "begin", partner) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "host CPU 1 already belongs to real-time VM 'a'" in err
    assert "cpu.share_with" in err and "never run at the same time" in err
    assert call.stop("a", A_XML) == (0, 0)
    assert call("c", "prepare", "begin", partner) == 0  # once 'a' stopped, 'c' starts

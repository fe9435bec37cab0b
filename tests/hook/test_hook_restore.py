"""`rtlibvirt hook restore` and what `hook status` says about recoveries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtlibvirt.errors import InputError
from rtlibvirt.hook import install as hookinstall
from rtlibvirt.hook import state as hookstate
from tests.fakes.hook import Hook, domain_xml
from tests.fakes.host import FakeKernel, remove_vm, snapshot

A_XML = domain_xml("a", [0, 1], [1], isolation={"machine_check_polling": False})
B_XML = domain_xml("b", [0, 2], [1])


@pytest.fixture
def fs(tmp_path: Path) -> FakeKernel:
    return FakeKernel(tmp_path / "host")


def test_restore_after_libvirtd_died_puts_everything_back(fs: FakeKernel) -> None:
    call = Hook(fs)
    before = snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert call.start("b", B_XML, {0: 0, 1: 2}, rt=[1]) == 0
    assert snapshot(fs) != before
    for name in ("a", "b"):  # the VMs went with libvirtd: no stop hook ran
        remove_vm(fs.root, name, call.pids.pop(name))
    result = hookinstall.restore(fs)
    assert result.left == 0 and result.restored > 10
    assert result.released == ["a", "b"]
    assert any("irqs: 9 values: 9 restored" in m for m in result.messages)
    assert snapshot(fs) == before
    assert call.state() is None
    again = hookinstall.restore(fs)
    assert (again.restored, again.left, again.released) == (0, 0, [])


def test_restore_refuses_while_a_vm_runs(fs: FakeKernel) -> None:
    call = Hook(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    during = snapshot(fs)
    with pytest.raises(InputError, match=r"real-time VMs run with the hook's isolation \(a\)"):
        hookinstall.restore(fs)
    assert snapshot(fs) == during
    assert call.state() is not None and list(call.state()["claims"]) == ["a"]  # type: ignore[index]


def test_restore_takes_in_the_originals_of_a_state_the_old_hook_lost(fs: FakeKernel) -> None:
    """The bug of issue 9: a claim with CPU -1 made the old hook set its state aside,
    originals and all; the IRQs stayed narrowed until reboot."""
    before = snapshot(fs)
    narrowed = {f"/proc/irq/{n}/smp_affinity" for n in (0, 1, 8, 9, 24, 25, 26, 27)}
    for path in narrowed:
        fs.write(path, "d")
    old = {
        "format": 1,
        "claims": {"x": {"cpus": "-1", "phase": "running", "settings": {}}},
        "originals": {path: "f" for path in narrowed} | {"/etc/shadow": "root::0:0"},
    }
    path = fs.path(hookstate.STATE_FILE)
    path.parent.mkdir(parents=True)
    aside = path.with_name("state.json.corrupt-20260101T000000-1")
    aside.write_text(json.dumps(old))
    status = hookinstall.status(fs.root / "hooks", fs)
    assert status.set_aside == [str(aside)] and not status.ok
    result = hookinstall.restore(fs)
    assert result.folded == [str(aside)]
    assert result.restored == len(narrowed) and result.left == 0
    assert snapshot(fs) == before
    assert not fs.path("/etc/shadow").exists()  # not a file of the hook: never written
    assert not aside.exists() and aside.with_name(aside.name + ".restored").exists()
    assert hookinstall.status(fs.root / "hooks", fs).set_aside == []


def test_status_reports_a_recovery(fs: FakeKernel) -> None:
    call = Hook(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    fs.path(hookstate.STATE_FILE).write_text("garbage")
    assert call.start("b", B_XML, {0: 0, 1: 2}, rt=[1]) == 0
    status = hookinstall.status(fs.root / "hooks", fs)
    assert any("rebuilt from the journal" in line for line in status.recovered)
    assert len(status.set_aside) == 1
    assert not status.ok
    assert sorted(status.claims) == ["a", "b"]


def test_a_legacy_state_of_the_previous_hook_is_taken_over(fs: FakeKernel) -> None:
    """The hook upgraded while a VM runs: the format-1 state it left keeps working."""
    call = Hook(fs)
    before = snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    st = hookstate.peek(fs)
    legacy = {
        "format": 1,
        "claims": {
            "a": {
                "cpus": "1",
                "phase": "running",
                "pid": st.claims["a"].pid,
                "since": 0,
                "settings": {"irqs": True, "workqueues": True, "machine_check_polling": False},
            }
        },
        "originals": st.originals,
    }
    fs.path(hookstate.JOURNAL_FILE).unlink()
    fs.path(hookstate.STATE_FILE).write_text(json.dumps(legacy))
    assert sorted(hookstate.peek(fs).claims) == ["a"]
    assert call.stop("a", A_XML) == (0, 0)
    assert snapshot(fs) == before


def test_the_restore_command_on_this_machine(live_host: None) -> None:
    """`rtlibvirt hook restore` as a user runs it (on the live host: under the lock)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (run `make test`)")
    if hookstate.peek(hookstate.HostFS("/")).claims:
        pytest.skip("a real-time VM of someone else is isolated right now")
    rtlibvirt = str(Path(sys.executable).with_name("rtlibvirt"))
    done = subprocess.run([rtlibvirt, "hook", "restore"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "nothing to restore" in done.stdout or "restored" in done.stdout
    helped = subprocess.run(
        [rtlibvirt, "hook", "restore", "--help"], capture_output=True, text=True
    )
    assert "no real-time VM runs" in helped.stdout

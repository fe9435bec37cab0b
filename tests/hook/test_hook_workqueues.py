"""The workqueues step on a fake host: the global mask and every sysfs workqueue's own.

The fake host has the workqueues of tests/fakes/host.py (WORKQUEUES): four
unbound ones with a cpumask (one of them in a strict "cpu" affinity scope) and
a per-CPU one without; their ``/sys/bus/workqueue/devices`` links lead to
``/sys/devices/virtual/workqueue``, as in the kernel. A kill at every change,
for these files too, is tests/hook/test_hook_faults.py (its host is the same).
"""

from __future__ import annotations

import errno
import uuid
from pathlib import Path

import pytest

from rtlibvirt.kernel.cpuset import parse_mask
from tests.fakes.hook import Hook, domain_xml
from tests.fakes.host import (
    WORKQUEUES,
    WQ_BUS,
    WQ_DIR,
    WQ_UNBOUND,
    FakeKernel,
    add_workqueue,
    remove_workqueue,
    snapshot,
)

A_XML = domain_xml("a", [0, 1], [1])  # realtime vCPU 1 on host CPU 1
B_XML = domain_xml("b", [0, 2], [1])  # realtime vCPU 1 on host CPU 2
XML = {"a": A_XML, "b": B_XML}
RT_CPUS = {"a": {0: 0, 1: 1}, "b": {0: 0, 1: 2}}
UNBOUND_WQS = sorted(n for n, scope in WORKQUEUES.items() if scope is not None)
KCRYPTD = f"{WQ_BUS}/kcryptd-253:0/cpumask"


def own(name: str) -> str:
    return f"{WQ_BUS}/{name}/cpumask"


def cpus(fs: FakeKernel, path: str) -> frozenset[int]:
    return parse_mask(fs.read(path))


def start(call: Hook, name: str) -> None:
    assert call.start(name, XML[name], RT_CPUS[name], rt=[1]) == 0, call.log()


def stop(call: Hook, name: str) -> None:
    assert call.stop(name, XML[name]) == (0, 0), call.log()


@pytest.fixture
def fs(tmp_path: Path) -> FakeKernel:
    return FakeKernel(tmp_path)


@pytest.fixture
def call(fs: FakeKernel) -> Hook:
    return Hook(fs)


def test_every_sysfs_workqueue_loses_the_vm_cpus_and_gets_its_mask_back(
    fs: FakeKernel, call: Hook
) -> None:
    fs.write(KCRYPTD, "2")  # an admin put dm-crypt's work on CPU 1 only
    before = snapshot(fs)
    scopes = {k: v for k, v in before.items() if k.endswith(("affinity_scope", "affinity_strict"))}
    assert len(scopes) == 2 * len(UNBOUND_WQS)  # the fake's tree has them: they are compared
    start(call, "a")
    # kcryptd-253:0 has no CPU left without CPU 1: it gets the housekeeping CPUs
    for name in UNBOUND_WQS:
        assert cpus(fs, own(name)) == {0, 2, 3}, name
        # the same file, by the device's own path
        assert cpus(fs, f"{WQ_DIR}/{name}/cpumask") == {0, 2, 3}
    assert cpus(fs, WQ_UNBOUND) == {0, 2, 3}
    assert not fs.exists(own("ib-comp-wq"))  # per-CPU: nothing to move, nothing written
    assert not [p for p, _ in fs.writes if "ib-comp-wq" in p]
    # the affinity scopes are the workqueues' own business: never written
    assert not [p for p, _ in fs.writes if p.endswith(("affinity_scope", "affinity_strict"))]
    assert {k: fs.read(k) + "\n" for k in scopes} == scopes
    st = call.state()
    assert st is not None
    assert st["originals"][KCRYPTD] == "2"
    assert st["originals"][own("writeback")] == "f"
    assert "a prepare begin: workqueues: 5 values: 5 changed" in call.log()
    stop(call, "a")
    assert snapshot(fs) == before  # byte for byte, scopes included
    assert call.state() is None


def test_the_detail_names_each_workqueue(fs: FakeKernel, call: Hook) -> None:
    (fs.root / "run/rtlibvirt").mkdir(parents=True, exist_ok=True)
    (fs.root / "run/rtlibvirt/debug").touch()
    start(call, "a")
    log = call.log()
    assert "workqueue kcryptd-253:0 cpumask: 0-3 -> 0,2-3" in log
    assert "workqueue writeback cpumask: 0-3 -> 0,2-3" in log
    assert "unbound workqueue cpumask: 0-3 -> 0,2-3" in log


@pytest.mark.parametrize("first", ["a", "b"])
def test_two_vms_stopped_in_either_order_restore_exactly(
    fs: FakeKernel, call: Hook, first: str
) -> None:
    fs.write(KCRYPTD, "6")  # CPUs 1-2: one CPU of each VM
    fs.write(own("nvme-wq"), "4")  # CPU 2 only: B's
    before = snapshot(fs)
    start(call, "a")
    assert cpus(fs, KCRYPTD) == {2}
    assert cpus(fs, own("nvme-wq")) == {2}  # never held A's CPU: not written
    start(call, "b")
    assert cpus(fs, KCRYPTD) == {0, 3}  # nothing of 1-2 is left: the housekeeping CPUs
    assert cpus(fs, own("nvme-wq")) == {0, 3}
    assert cpus(fs, own("writeback")) == {0, 3}
    stop(call, first)
    running = "b" if first == "a" else "a"
    # recomputed from the originals, whoever came first
    assert cpus(fs, KCRYPTD) == ({2} if running == "a" else {1})
    assert cpus(fs, own("nvme-wq")) == ({2} if running == "a" else {0, 1, 3})
    assert cpus(fs, own("blkcg_punt_bio")) == ({0, 2, 3} if running == "a" else {0, 1, 3})
    stop(call, running)
    assert snapshot(fs) == before
    assert call.state() is None


@pytest.mark.parametrize("path", [WQ_UNBOUND, own("writeback"), KCRYPTD], ids=str)
def test_a_mask_changed_meanwhile_is_treated_like_the_global_one(tmp_path: Path, path: str) -> None:
    """Someone writes a mask while VMs run: each file of the step, the global mask
    included, goes the same way (the hook's next call recomputes it from the saved
    original; the last stop puts back the original from before the first start)."""

    def life(fs: FakeKernel, target: str) -> list[frozenset[int]]:
        call = Hook(fs)
        seen = []
        start(call, "a")
        seen.append(cpus(fs, target))
        fs.write(target, "8")  # an admin: CPU 3 only
        start(call, "b")
        seen.append(cpus(fs, target))
        stop(call, "a")
        seen.append(cpus(fs, target))
        stop(call, "b")
        seen.append(cpus(fs, target))
        assert call.state() is None
        return seen

    reference = FakeKernel(tmp_path / "global")
    fs = FakeKernel(tmp_path / "this")
    before = snapshot(fs)
    seen = life(fs, path)
    assert seen == life(reference, WQ_UNBOUND)
    assert seen == [{0, 2, 3}, {0, 3}, {0, 1, 3}, {0, 1, 2, 3}]  # the admin's CPU 3 is not kept
    assert snapshot(fs) == before  # the original from before the first start


@pytest.mark.parametrize(
    ("code", "why"),
    [
        (errno.EINVAL, "Invalid argument: the kernel does not let this workqueue's CPUs change"),
        (errno.EIO, "Input/output error: the kernel does not let user space change"),
    ],
    ids=["EINVAL", "EIO"],
)
@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_a_workqueue_the_kernel_refuses_is_named_and_left_alone(
    tmp_path: Path, code: int, why: str, strict: bool
) -> None:
    fs = FakeKernel(tmp_path, refuse_workqueues={"nvme-wq": code})
    call = Hook(fs)
    before = snapshot(fs)
    xml = domain_xml("a", [0, 1], [1], isolation={"strict": strict})
    assert call("a", "prepare", "begin", xml) == 0  # never a reason to refuse the start
    assert call("a", "started", "begin", xml) == 0
    assert cpus(fs, own("nvme-wq")) == {0, 1, 2, 3}  # as it was: nothing half done
    assert cpus(fs, own("writeback")) == {0, 2, 3}  # the others are moved
    lines = [ln for ln in call.log().splitlines() if "nvme-wq" in ln]
    assert len(lines) == 2, lines  # the reason, and the step's summary
    assert (
        "warning: a prepare begin: workqueue nvme-wq cpumask: the kernel refused 0,2-3 ("
        in lines[0]
    )
    assert why in lines[0] and lines[0].endswith("; left at 0-3 while real-time VMs run")
    assert (
        "workqueues: 5 values: 4 changed, 1 refused by the kernel and left alone "
        "(workqueue nvme-wq cpumask)" in lines[1]
    )
    st = call.state()
    assert st is not None
    assert own("nvme-wq") not in st["originals"] and own("nvme-wq") in st["refused"]
    # a second VM does not try again, nor log it again
    fs.writes.clear()
    start(call, "b")
    assert own("nvme-wq") not in [p for p, _ in fs.writes]
    assert sum("nvme-wq" in ln for ln in call.log().splitlines()) == 2
    stop(call, "a")
    stop(call, "b")
    assert snapshot(fs) == before
    assert call.state() is None  # the refusal is forgotten with the last VM


def test_a_workqueue_created_while_vms_run_is_taken_in_and_given_back(
    fs: FakeKernel, call: Hook
) -> None:
    before = snapshot(fs)
    start(call, "a")
    # a dm-crypt volume opened meanwhile: its workqueue starts on every CPU
    add_workqueue(fs.root, "kcryptd-253:1", "f", ("default (cache)", 0))
    new = own("kcryptd-253:1")
    assert cpus(fs, new) == {0, 1, 2, 3}
    start(call, "b")  # the next hook call takes it in
    assert cpus(fs, new) == {0, 3}
    assert call.state()["originals"][new] == "f"  # type: ignore[index]
    stop(call, "a")
    assert cpus(fs, new) == {0, 1, 3}
    stop(call, "b")
    assert cpus(fs, new) == {0, 1, 2, 3}
    remove_workqueue(fs.root, "kcryptd-253:1")
    assert snapshot(fs) == before
    assert call.state() is None


def test_a_workqueue_destroyed_while_a_vm_runs_is_not_missed(fs: FakeKernel, call: Hook) -> None:
    start(call, "a")
    remove_workqueue(fs.root, "nvme-wq")  # the NVMe controller went away
    stop(call, "a")
    assert call.state() is None  # nothing left to restore, nothing kept
    assert "error" not in call.log()


def test_bus_entries_that_are_no_workqueue_are_left_alone(
    fs: FakeKernel, call: Hook, tmp_path: Path
) -> None:
    """A name the kernel never makes, and a link that leads out of the root."""
    outside = Path(f"/tmp/rtl-wq-outside-{uuid.uuid4().hex}")
    outside.mkdir()
    try:
        (outside / "cpumask").write_text("f\n")
        bus = fs.root / WQ_BUS.lstrip("/")
        (fs.root / "sys/devices/virtual/workqueue/odd name").mkdir()
        (fs.root / "sys/devices/virtual/workqueue/odd name/cpumask").write_text("f\n")
        (bus / "odd name").symlink_to("../../../devices/virtual/workqueue/odd name")
        (bus / "escape").symlink_to("../" * 20 + str(outside).lstrip("/"))
        (bus / "absolute").symlink_to(str(outside))
        start(call, "a")
        assert (outside / "cpumask").read_text() == "f\n"  # never left the root
        assert (fs.root / "sys/devices/virtual/workqueue/odd name/cpumask").read_text() == "f\n"
        assert "/sys/bus/workqueue/devices: 1 entries whose name is no workqueue's" in call.log()
        written = [p for p, _ in fs.writes]
        assert not [p for p in written if "odd name" in p or "escape" in p or "absolute" in p]
        stop(call, "a")
        assert call.state() is None
    finally:
        (outside / "cpumask").unlink()
        outside.rmdir()


def test_the_fake_answers_like_this_machines_kernel(fs: FakeKernel) -> None:
    """What Linux 6.18 answered on this machine (2 CPUs) for its blkcg_punt_bio and global
    masks; here with the fake's 4 CPUs."""
    path = own("blkcg_punt_bio")
    fs.write(path, "0")  # taken, and read back as written
    assert fs.read(path) == "0"
    for text, code in (("zz", errno.EINVAL), ("1f", errno.EOVERFLOW)):
        for target in (path, WQ_UNBOUND):
            with pytest.raises(OSError) as caught:
                fs.write(target, text)
            assert caught.value.errno == code, (target, text)
    with pytest.raises(OSError) as caught:
        fs.write(WQ_UNBOUND, "0")
    assert caught.value.errno == errno.EINVAL


def test_an_empty_workqueue_mask_is_left_as_it_is(fs: FakeKernel, call: Hook) -> None:
    """The kernel takes an empty cpumask for a workqueue (its workers then follow the
    global mask, which the step narrows): nothing to take out, nothing to keep."""
    fs.write(own("nvme-wq"), "0")
    before = snapshot(fs)
    start(call, "a")
    start(call, "b")
    assert fs.read(own("nvme-wq")) == "0"
    assert own("nvme-wq") not in [p for p, _ in fs.writes[1:]]
    st = call.state()
    assert st is not None and own("nvme-wq") not in st["originals"]
    assert "nvme-wq" not in call.log()
    stop(call, "b")
    stop(call, "a")
    assert snapshot(fs) == before
    assert call.state() is None

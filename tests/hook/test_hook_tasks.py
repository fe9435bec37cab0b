"""The `tasks` step on fake hosts with processes and cpuset cgroups (v1 and v2).

The fake (tests/fakes/tasks.py) keeps the kernel's rules: v1 children within
their parents, a v1 write resets its tasks' affinity, v2 effective CPUs,
EINVAL for per-CPU kernel threads. Two VMs, every stop order, threads born
and gone during the run, and kills at every write: at the end every thread's
affinity and every group's CPUs are what they were.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rtlibvirt.hook import state as hookstate
from tests.fakes.hook import Hook, domain_xml
from tests.fakes.host import Killed, snapshot
from tests.fakes.tasks import TaskKernel, task_snapshot

A_XML = domain_xml("a", [0, 1], [1])
B_XML = domain_xml("b", [0, 2], [1])
OFF_XML = domain_xml("off", [0, 3], [1], isolation={"tasks": False})
ALL = frozenset({0, 1, 2, 3})


def build(root: Path, version: int | None) -> TaskKernel:
    fs = TaskKernel(root, cgroups=version)
    if version == 1:
        fs.add_cgroup("/system", ALL)
        fs.add_cgroup("/system/db", {1, 2, 3})
        fs.add_cgroup("/machine", ALL)
        fs.add_cgroup("/machine/qemu-7-other.libvirt-qemu", {1})
        host, db, libvirt = "/system", "/system/db", "/machine/qemu-7-other.libvirt-qemu"
    elif version == 2:
        fs.add_cgroup("/init.scope")
        fs.add_cgroup("/system.slice")
        fs.add_cgroup("/user.slice", ALL)
        fs.add_cgroup("/machine.slice")
        fs.add_cgroup("/machine.slice/machine-qemu-7-other.scope", {1})
        host, db, libvirt = (
            "/system.slice",
            "/user.slice",
            "/machine.slice/machine-qemu-7-other.scope",
        )
    else:
        host = db = libvirt = ""
    fs.add_process(1, "init", group="/init.scope" if version == 2 else "")
    fs.add_process(2, "kthreadd", kernel=True, ppid=0)
    fs.add_process(10, "ksoftirqd/1", kernel=True, per_cpu=True, cpus={1}, ppid=2)
    fs.add_process(11, "rcu_preempt", kernel=True, ppid=2)
    fs.add_process(100, "sshd", threads=(101, 102), group=host)
    fs.add_process(200, "postgres", threads=(201,), group=db, cpus={1, 2, 3})
    fs.set_own_affinity(201, {2, 3})
    fs.add_process(300, "pinned", cpus={1}, group=host)  # a user pinned it to CPU 1
    fs.add_process(400, "qemu-other", threads=(401,), group=libvirt, cpus={1})
    if version is None:  # without libvirt's cgroups, its pid file tells its QEMU
        (root / "run/libvirt/qemu").mkdir(parents=True, exist_ok=True)
        (root / "run/libvirt/qemu/other.pid").write_text("400\n")
    return fs


@pytest.fixture(params=[1, 2, None], ids=["cgroup-v1", "cgroup-v2", "no-cpuset"])
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> TaskKernel:
    return build(tmp_path, request.param)


def everything(fs: TaskKernel) -> dict[str, str]:
    return {**snapshot(fs), **task_snapshot(fs)}


def movable(fs: TaskKernel) -> list[int]:
    """Threads the step must move: not per-CPU kernel threads, not libvirt's."""
    return [tid for tid in fs.tasks if tid not in (10, 400, 401) and fs.tasks[tid].pid < 1000]


def assert_off(fs: TaskKernel, cpus: set[int]) -> None:
    for tid in movable(fs):
        assert not fs.affinity(tid) & cpus, (tid, fs.tasks[tid].comm, fs.affinity(tid))
        assert fs.affinity(tid), tid


def test_one_vm_moves_every_movable_thread_and_gives_everything_back(fs: TaskKernel) -> None:
    call = Hook(fs)
    before = everything(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert_off(fs, {1})
    assert fs.affinity(10) == {1}  # ksoftirqd/1: per-CPU, never touched
    assert fs.affinity(400) == {1} and fs.affinity(401) == {1}  # libvirt's
    qemu = call.pids["a"]
    assert "tasks:" in call.log() and "moved off CPU 1" in call.log()
    assert fs.affinity(201) == {2, 3}  # its own narrower mask, minus nothing
    assert fs.affinity(300) == {0, 2, 3}  # pinned to CPU 1 only: all housekeeping CPUs
    assert "cannot move" not in call.log()
    assert not [t for t in fs.tasks if fs.tasks[t].pid == qemu]  # QEMU is not in TaskKernel
    assert call.stop("a", A_XML) == (0, 0)
    assert everything(fs) == before
    assert call.state() is None


def test_the_cgroup_level_is_used_first(tmp_path: Path) -> None:
    fs = build(tmp_path / "v1", 1)
    call = Hook(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert fs.cpus_of["/system"] == {0, 2, 3}
    assert fs.cpus_of["/system/db"] == {2, 3}
    assert fs.cpus_of["/machine/qemu-7-other.libvirt-qemu"] == {1}  # libvirt's: never
    assert fs.cpus_of[""] == ALL  # the root cannot be written
    written = [path for path, _ in fs.writes if path.endswith("/cpuset.cpus")]
    db, system = (f"/sys/fs/cgroup/cpuset/{g}/cpuset.cpus" for g in ("system/db", "system"))
    assert written == [db, system]  # narrowed children first, as the kernel requires
    assert fs.affinity(100) == {0, 2, 3}  # moved by its cgroup: no write of its own
    assert not [p for p, _ in fs.writes if p.startswith("/proc/100/")]
    fs.writes.clear()
    assert call.stop("a", A_XML) == (0, 0)
    written = [path for path, _ in fs.writes if path.endswith("/cpuset.cpus")]
    assert written == [system, db]  # widened parents first
    assert fs.affinity(201) == {2, 3}  # reset by the v1 group write, then given back
    v2 = build(tmp_path / "v2", 2)
    call2 = Hook(v2)
    assert call2.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert v2.cpus_of["/system.slice"] == {0, 2, 3}
    assert v2.cpus_of["/user.slice"] == {0, 2, 3}
    assert v2.cpus_of["/init.scope"] == {0, 2, 3}
    assert v2.cpus_of["/machine.slice"] is None  # libvirt's: untouched
    assert call2.stop("a", A_XML) == (0, 0)
    assert v2.cpus_of["/system.slice"] is None  # empty again: its parent's CPUs


@pytest.mark.parametrize("first", ["a", "b"])
def test_two_vms_in_either_stop_order(fs: TaskKernel, first: str) -> None:
    call = Hook(fs)
    before = everything(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert call.start("b", B_XML, {0: 0, 1: 2}, rt=[1]) == 0
    assert_off(fs, {1, 2})
    assert fs.affinity(201) == {3}
    xml = {"a": A_XML, "b": B_XML}
    last = "b" if first == "a" else "a"
    assert call.stop(first, xml[first]) == (0, 0)
    assert_off(fs, {1} if last == "a" else {2})
    freed = 1 if first == "a" else 2
    assert freed in fs.affinity(100)  # the CPU of the VM that stopped is back
    assert call.stop(last, xml[last]) == (0, 0)
    assert everything(fs) == before


def test_threads_born_and_gone_during_the_run(fs: TaskKernel) -> None:
    call = Hook(fs)
    before = everything(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    fs.fork(100, 500, "sshd-child")  # inherits the moved mask
    fs.spawn_thread(100, 103)
    fs.fork(500, 600, "grandchild")
    fs.add_process(700, "own-mask", cpus={0}, ppid=1)  # sets its own mask at birth
    fs.exit(300)  # the pinned one exits during the run
    assert fs.affinity(500) == {0, 2, 3} and fs.affinity(103) == {0, 2, 3}
    assert call.start("b", B_XML, {0: 0, 1: 2}, rt=[1]) == 0
    assert not fs.affinity(500) & {1, 2}
    assert call.stop("a", A_XML) == (0, 0)
    assert call.stop("b", B_XML) == (0, 0)
    born = {tid: fs.affinity(tid) for tid in (500, 600, 103, 700)}
    # born during the run with the moved mask: the original of where they come from
    assert born == {500: ALL, 600: ALL, 103: ALL, 700: {0}}
    after = everything(fs)
    for tid in (103, 500, 600, 700):
        del after[f"task {tid}"], after[f"sched {tid}"]
    del before["task 300"], before["sched 300"]  # it exited: nothing to give back
    members = [k for k in after.keys() | before.keys() if k.endswith("/tasks")]
    for key in members:  # which threads are in a cgroup changed: they were born and died
        after.pop(key, None), before.pop(key, None)
    assert after == before
    assert call.state() is None


def test_tasks_off_leaves_every_thread_alone(fs: TaskKernel) -> None:
    call = Hook(fs)
    before = task_snapshot(fs)
    assert call.start("off", OFF_XML, {0: 0, 1: 3}, rt=[1]) == 0
    assert task_snapshot(fs) == before
    assert "host tasks" not in call.log()


def test_what_cannot_move_is_named_in_the_claim(fs: TaskKernel) -> None:
    fs.add_process(800, "dl-task", threads=(801,))  # in the root cgroup: moved one by one
    fs.refuse.add(801)  # e.g. a SCHED_DEADLINE thread: the kernel answers EBUSY
    call = Hook(fs)
    before = everything(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    st = call.state()
    assert st is not None
    [line] = st["claims"]["a"]["unmoved"]
    assert line.startswith("dl-task (thread 801) on CPU 1: ")
    assert "tasks: cannot move dl-task (thread 801): Device or resource busy" in call.log()
    assert call.stop("a", A_XML) == (0, 0)
    assert everything(fs) == before


@pytest.mark.parametrize("prefix", ["/proc/", "/sys/fs/cgroup/"])
def test_a_kill_at_any_move_loses_no_original(tmp_path: Path, prefix: str) -> None:
    for version in (1, 2):
        probe = build(tmp_path / f"count-{version}", version)
        counter = Hook(probe)
        assert counter("a", "prepare", "begin", A_XML) == 0  # the moves happen here
        total = sum(1 for path, _ in probe.writes if path.startswith(prefix))
        assert total > 0
        for at in range(total):
            fs = build(tmp_path / f"v{version}-{at}", version)
            call = Hook(fs)
            before = everything(fs)
            fs.kill_after(prefix, at)
            with pytest.raises(Killed):
                call("a", "prepare", "begin", A_XML)
            # the start goes on (the hook's own death never stops a VM), then stops
            call.qemu("a", {0: (frozenset({0}), "other", 0), 1: (frozenset({1}), "fifo", 1)})
            assert call("a", "started", "begin", A_XML) == 0, call.log()
            assert call.stop("a", A_XML) == (0, 0), call.log()
            assert everything(fs) == before, (version, at, call.log())
            assert call.state() is None


def test_restore_gives_threads_back(tmp_path: Path) -> None:
    from rtlibvirt.hook import install as hookinstall
    from tests.fakes.host import remove_vm

    fs = build(tmp_path, 1)
    call = Hook(fs)
    before = everything(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    remove_vm(fs.root, "a", call.pids.pop("a"))  # libvirtd died: no stop hook
    result = hookinstall.restore(fs)
    assert result.left == 0
    assert everything(fs) == before
    assert not hookstate.StateStore(fs).exists()


def test_rtlibvirt_status_shows_what_could_not_move(tmp_path: Path) -> None:
    from rtlibvirt.config.vm import validate_data
    from rtlibvirt.domain.render import render
    from rtlibvirt.fit import status
    from rtlibvirt.fit.host import gather
    from rtlibvirt.hook.state import PHASE_RUNNING, Claim, Settings, State, StateStore
    from rtlibvirt.virt import define
    from tests.fakes.libvirt_hosts import connection, host_uri
    from tests.fakes.sysfs import FakeSys

    fake = FakeSys(tmp_path).cpus("0-15")
    state = State()
    state.claims["rt"] = Claim(
        "rt",
        frozenset({2}),
        Settings({"tasks": True}),
        phase=PHASE_RUNNING,
        unmoved=["dl-task (thread 801) on CPU 2: Device or resource busy"],
    )
    store = StateStore(fake.fs)
    with store.locked():
        store.save(state)
    uri = host_uri("two-node-smt")
    spec = validate_data(
        {"name": "rt", "memory": "1GiB", "vcpus": 2, "cpu": {"pinning": [1, 2], "emulator": 0}}
    )
    with connection(uri) as conn:
        define.apply_xml(conn, render(spec))
        host = gather(conn, uri, fake.fs)
    hook = status.hook_isolation(host.fs)
    assert hook == {"rt": frozenset({2})}
    text = status.text(host, hook)
    assert (
        "  could not move off rt's CPUs: dl-task (thread 801) on CPU 2: Device or resource busy"
    ) in text.splitlines()
    assert status.to_json(host, hook)["hook_unmoved"] == {
        "rt": ["dl-task (thread 801) on CPU 2: Device or resource busy"]
    }

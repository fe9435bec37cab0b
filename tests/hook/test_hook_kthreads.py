"""The `kernel_threads` step on a fake PREEMPT_RT host (tests/fakes/tasks.py).

This machine's kernel has ``ksoftirqd/N`` but no ``ktimers/N``, ``rcuc/N`` or
``rcub/N`` (PREEMPT_RT only): the fake makes them as such a kernel does (names,
per-CPU binding, SCHED_FIFO 1, children of kthreadd, ``stat`` fields 40/41) and
answers ``sched_setscheduler`` with the kernel's checks. The live ``ksoftirqd/1``
is in test_hook_kthreads_live.py and the real libvirtd in
tests/daemon/test_hook_e2e.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rtlibvirt.errors import SpecError
from rtlibvirt.hook import install as hookinstall
from rtlibvirt.hook.isolation import kthreads
from rtlibvirt.kernel import procs
from tests.fakes.hook import Hook, domain_xml
from tests.fakes.host import remove_vm
from tests.fakes.tasks import TaskKernel, add_kernel_threads, task_snapshot

OTHER, FIFO = (0, 0), 1
A_XML = domain_xml("a", [0, 1], [1])  # priority 1: ksoftirqd 2, ktimers 3, rcu 4
B_XML = domain_xml(
    "b",
    [0, 2],
    [1],
    realtime_options={
        "priority": 10,
        "kernel_threads": {"ksoftirqd": 5, "ktimers": 6, "rcu": 7},
    },
)


def spec_xml(name: str, cpu: int, **realtime: object) -> str:
    return domain_xml(name, [0, cpu], [1], realtime_options=realtime)


@pytest.fixture
def fs(tmp_path: Path) -> TaskKernel:
    kernel = TaskKernel(tmp_path, cgroups=None)
    kernel.add_process(1, "init")
    add_kernel_threads(kernel, rt=True)
    return kernel


def pid(fs: TaskKernel, comm: str) -> int:
    return next(t.pid for t in fs.tasks.values() if t.comm == comm)


def sched(fs: TaskKernel, comm: str) -> tuple[int, int]:
    return fs.scheduling(pid(fs, comm))


def test_one_vm_raises_the_threads_of_its_cpu_in_tunes_order_and_gives_them_back(
    fs: TaskKernel,
) -> None:
    call = Hook(fs)
    before = task_snapshot(fs)
    assert call("a", "prepare", "begin", A_XML) == 0
    # at prepare, before QEMU exists: above the vCPU's FIFO 1
    assert sched(fs, "ksoftirqd/1") == (FIFO, 2)
    assert sched(fs, "ktimers/1") == (FIFO, 3)
    assert sched(fs, "rcuc/1") == (FIFO, 4)
    assert sched(fs, "rcub/0") == (FIFO, 4)  # its RCU node holds CPUs 0-3
    for cpu in (0, 2, 3):  # threads of CPUs no VM holds: untouched
        assert sched(fs, f"ksoftirqd/{cpu}") == OTHER
        assert sched(fs, f"rcuc/{cpu}") == (FIFO, 1)
    assert sched(fs, "migration/1") == (FIFO, 99)  # not one of ours
    state = call.state()
    assert state is not None
    keys = [k for k in state["originals"] if k.startswith("sched:")]
    assert len(keys) == 4
    assert (
        state["originals"][
            f"sched:{pid(fs, 'ksoftirqd/1')}@{fs.tasks[pid(fs, 'ksoftirqd/1')].start}"
        ]
        == "other 0"
    )
    assert state["claims"]["a"]["kthreads"] == {"ksoftirqd": 2, "ktimers": 3, "rcu": 4}
    log = call.log()
    assert "kernel_threads: 4 values: 4 changed" in log
    assert "kernel threads above the vCPUs (FIFO ksoftirqd 2, ktimers 3, rcu 4)" in log
    call.qemu("a", {0: (frozenset({0}), "other", 0), 1: (frozenset({1}), "fifo", 1)})
    calls = fs.sched_calls
    assert call("a", "started", "begin", A_XML) == 0
    assert fs.sched_calls == calls  # started: nothing new to raise
    assert call.stop("a", A_XML) == (0, 0)
    assert task_snapshot(fs) == before
    assert call.state() is None
    assert "kernel_threads: 4 values: 4 restored" in call.log()


@pytest.mark.parametrize("first", ["a", "b"])
def test_two_vms_the_highest_requirement_wins_in_either_stop_order(
    fs: TaskKernel, first: str
) -> None:
    call = Hook(fs)
    before = task_snapshot(fs)
    xml = {"a": A_XML, "b": B_XML}
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert call("b", "prepare", "begin", B_XML) == 0
    # b: vCPU priority 10 (the XML's) + its own levels
    assert sched(fs, "ksoftirqd/2") == (FIFO, 15)
    assert sched(fs, "ktimers/2") == (FIFO, 16)
    assert sched(fs, "rcuc/2") == (FIFO, 17)
    assert sched(fs, "ksoftirqd/1") == (FIFO, 2)  # a's CPU: a's requirement
    assert sched(fs, "rcub/0") == (FIFO, 17)  # both VMs' CPUs: the highest wins
    second = "b" if first == "a" else "a"
    assert call.stop(first, xml[first]) == (0, 0)
    if first == "a":
        assert sched(fs, "ksoftirqd/1") == OTHER and sched(fs, "rcuc/1") == (FIFO, 1)
        assert sched(fs, "rcub/0") == (FIFO, 17) and sched(fs, "ksoftirqd/2") == (FIFO, 15)
    else:
        assert sched(fs, "ksoftirqd/2") == OTHER and sched(fs, "ktimers/2") == (FIFO, 1)
        assert sched(fs, "rcub/0") == (FIFO, 4)  # down to a's, not to the original
        assert sched(fs, "ksoftirqd/1") == (FIFO, 2)
    assert call.stop(second, xml[second]) == (0, 0)
    assert task_snapshot(fs) == before
    assert call.state() is None


def test_a_priority_already_higher_is_never_lowered(fs: TaskKernel) -> None:
    fs.tasks[pid(fs, "ktimers/1")].priority = 50  # an admin's (or TuneD's) choice
    fs._render_process(pid(fs, "ktimers/1"))
    call = Hook(fs)
    before = task_snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert sched(fs, "ktimers/1") == (FIFO, 50)
    assert sched(fs, "ksoftirqd/1") == (FIFO, 2)
    assert call.stop("a", A_XML) == (0, 0)
    assert task_snapshot(fs) == before


def test_only_kernel_threads_and_never_a_process_that_takes_their_name(fs: TaskKernel) -> None:
    fs.add_process(900, "ksoftirqd/1", cpus={1})  # a user process: prctl(PR_SET_NAME)
    fs.add_process(901, "rcuc/1", cpus={1}, ppid=2)
    call = Hook(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert fs.scheduling(900) == OTHER and fs.scheduling(901) == OTHER
    assert sched(fs, "rcuc/1") == (FIFO, 4)  # the kernel's own


def test_a_recycled_thread_id_is_never_touched(fs: TaskKernel) -> None:
    call = Hook(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    tid = pid(fs, "rcuc/1")
    assert fs.scheduling(tid) == (FIFO, 4)
    fs.exit(tid)  # CPU 1 went offline and back: a new thread under the same id
    fs.add_process(tid, "rcuc/1", cpus={1}, ppid=2, kernel=True, per_cpu=True, policy=2, priority=7)
    assert call.stop("a", A_XML) == (0, 0)
    assert fs.scheduling(tid) == (2, 7)  # not "restored" to the old thread's original
    assert call.state() is None


def test_a_refusal_of_the_kernel_is_logged_and_the_vm_starts(fs: TaskKernel) -> None:
    fs.refuse_sched.add(pid(fs, "rcuc/1"))
    call = Hook(fs)
    before = task_snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert sched(fs, "rcuc/1") == (FIFO, 1) and sched(fs, "ksoftirqd/1") == (FIFO, 2)
    assert "refused by the kernel and left alone (rcuc/1 (thread" in call.log()
    assert call.stop("a", A_XML) == (0, 0)
    assert task_snapshot(fs) == before and call.state() is None


def test_a_deadline_thread_is_left_alone(fs: TaskKernel) -> None:
    tid = pid(fs, "ksoftirqd/1")
    fs.tasks[tid].policy = 6  # SCHED_DEADLINE: sched_setscheduler cannot set it back
    fs._render_process(tid)
    call = Hook(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    assert fs.scheduling(tid) == (6, 0)
    assert "ksoftirqd/1 (thread" in call.log() and "cannot be set back: left alone" in call.log()


def test_kernel_threads_false_leaves_them_alone(fs: TaskKernel) -> None:
    xml = spec_xml("off", 1, kernel_threads=False)
    call = Hook(fs)
    before = {tid: fs.scheduling(tid) for tid in fs.tasks}
    assert call.start("off", xml, {0: 0, 1: 1}, rt=[1]) == 0
    assert fs.sched_calls == 0
    assert {tid: fs.scheduling(tid) for tid in fs.tasks} == before
    assert fs.affinity(1) == {0, 2, 3}  # the other steps did run
    assert "kernel threads" not in call.log()


def test_no_room_above_the_vcpus_is_refused_at_validation_and_at_prepare(
    fs: TaskKernel,
) -> None:
    with pytest.raises(SpecError) as caught:
        spec_xml("p99", 1, priority=99)
    message = str(caught.value.problems[0].message)
    assert "99 leaves no room above the vCPUs" in message
    assert "rcuc/N and rcub/N would need SCHED_FIFO 102" in message
    with pytest.raises(SpecError) as caught:  # past 99 by one level
        spec_xml("p97", 1, priority=97, kernel_threads={"ksoftirqd": 1, "ktimers": 1, "rcu": 3})
    assert "would need SCHED_FIFO 100" in caught.value.problems[0].message
    assert "use a priority of at most 96" in str(caught.value.problems[0].hint)
    assert spec_xml("p97", 1, priority=97, kernel_threads={"ksoftirqd": 1, "ktimers": 1, "rcu": 2})
    assert spec_xml("p99", 1, priority=99, kernel_threads=False)
    # `virsh edit` raised the vCPU past the room the spec left: prepare refuses the start
    xml = spec_xml("edited", 1, priority=90)
    edited = xml.replace('priority="90"', 'priority="99"')
    assert edited != xml
    call = Hook(fs)
    before = task_snapshot(fs)
    assert call("edited", "prepare", "begin", edited) == 1
    assert "no room above them for the kernel threads" in call.log()
    assert "rcuc/N would need SCHED_FIFO 102, past the highest real-time priority 99" in call.log()
    assert task_snapshot(fs) == before and call.state() is None
    # started/reconnect never refuse (libvirt would kill the VM): logged, threads left alone
    call.qemu("edited", {0: (frozenset({0}), "other", 0), 1: (frozenset({1}), "fifo", 99)})
    assert call("edited", "reconnect", "begin", edited) == 0
    assert "the kernel threads are left alone" in call.log()
    assert fs.sched_calls == 0
    assert call.stop("edited", edited) == (0, 0)
    assert task_snapshot(fs) == before


def test_status_counts_and_restore_gives_back_the_raised_threads(fs: TaskKernel) -> None:
    call = Hook(fs)
    before = task_snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    status = hookinstall.status(fs.root / "hooks", fs)
    assert status.kernel_threads == 4 and status.unrestored >= 4
    remove_vm(fs.root, "a", call.pids.pop("a"))  # libvirtd died with the VM: no stop hook
    result = hookinstall.restore(fs)
    assert result.left == 0 and result.released == ["a"]
    assert any("kernel_threads: 4 values: 4 restored" in m for m in result.messages)
    assert task_snapshot(fs) == before
    assert hookinstall.status(fs.root / "hooks", fs).kernel_threads == 0


def test_the_kind_of_a_thread_is_a_full_match() -> None:
    assert kthreads.kind_of("ksoftirqd/12") == "ksoftirqd"
    assert kthreads.kind_of("ktimersoftd/3") == kthreads.kind_of("ktimers/3") == "ktimers"
    assert kthreads.kind_of("rcub/0") == kthreads.kind_of("rcuc/7") == "rcu"
    for comm in ("ksoftirqd/1x", "xksoftirqd/1", "rcu_preempt", "rcuc/", "ktimers/1\n"):
        assert kthreads.kind_of(comm) is None, comm


def test_sched_keys_and_values_are_full_matches() -> None:
    assert procs.parse_sched_key(procs.sched_key(15, 1234)) == (15, 1234)
    for key in ("sched:0@1", "sched:1@", "sched:1@2\n", "/proc/irq/1/smp_affinity", "sched:x@1"):
        assert procs.parse_sched_key(key) is None, key
    assert procs.parse_sched("fifo 99") == (1, 99) and procs.parse_sched("other 0") == (0, 0)
    for value in ("fifo 0", "fifo 100", "other 1", "deadline 0", "fifo 2 3", "rr  2"):
        assert procs.parse_sched(value) is None, value


def test_a_state_with_bad_thread_scheduling_does_not_validate() -> None:
    from rtlibvirt.hook.state import Claim, Invalid, State, apply_record

    good = {"format": 2, "originals": {"sched:24@31": "other 0"}}
    assert State.from_json(good).originals == {"sched:24@31": "other 0"}
    for key, value in (
        ("sched:24@31", "fifo 100"),  # past 99
        ("sched:24@31", "deadline 0"),  # cannot be set back
        ("sched:24@31", "other 5"),
        ("sched:0@31", "other 0"),  # no thread 0
        ("sched:24@31/../../etc/shadow", "other 0"),
    ):
        with pytest.raises(Invalid):
            State.from_json({"format": 2, "originals": {key: value}})
        with pytest.raises(Invalid):
            apply_record(State(), {"op": "orig", "path": key, "value": value})
    claim = {"cpus": "1", "phase": "running", "settings": {}}
    assert Claim.from_json("a", {**claim, "kthreads": {"rcu": 99}}).kthreads == {"rcu": 99}
    for bad in ({"rcu": 100}, {"rcu": 0}, {"rcu": True}, {"Bad Kind": 2}, ["rcu"]):
        with pytest.raises(Invalid):
            Claim.from_json("a", {**claim, "kthreads": bad})

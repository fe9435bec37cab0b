"""The `kernel_threads` step on this machine's real ``ksoftirqd/1``.

A claim on CPU 1 (as the hook makes for a VM whose FIFO-1 vCPU is pinned
there) raises the real ``ksoftirqd/1`` to SCHED_FIFO 2 with
``sched_setscheduler``, leaves ``ksoftirqd/0`` alone, and puts SCHED_OTHER back
when the claim goes. The step builds its own scan of /proc here (the tasks
step does not run). It holds the machine-wide lock (``live_host``) and puts
the thread back even when it fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rtlibvirt.hook.isolation import Host, kthreads
from rtlibvirt.hook.log import HookLog
from rtlibvirt.hook.state import PHASE_RUNNING, Claim, Settings, State, StateStore
from rtlibvirt.kernel import procs
from rtlibvirt.kernel.fs import HostFS


def kernel_thread(fs: HostFS, comm: str) -> int | None:
    for pid in procs.pids(fs):
        info = procs.stat(fs, pid)
        if info is not None and info.comm == comm and info.kernel_thread:
            return pid
    return None


def scheduling(pid: int) -> tuple[int, int]:
    return os.sched_getscheduler(pid), os.sched_getparam(pid).sched_priority


def test_the_real_ksoftirqd_of_the_vms_cpu_runs_above_the_vcpu_and_comes_back(
    live_host: None, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("sets a kernel thread's policy: needs root (run `make test`)")
    fs = HostFS("/")
    if not {0, 1} <= fs.cpus_online():
        pytest.skip("needs CPUs 0 and 1 online")
    one, zero = kernel_thread(fs, "ksoftirqd/1"), kernel_thread(fs, "ksoftirqd/0")
    assert one is not None and zero is not None, "this kernel has no ksoftirqd/0 and /1"
    original = scheduling(one)
    assert original == (os.SCHED_OTHER, 0), "ksoftirqd/1 is not SCHED_OTHER: someone raised it"
    other = scheduling(zero)
    claim = Claim(
        "rtl-kthreads-live",
        frozenset({1}),
        Settings({}),
        phase=PHASE_RUNNING,
        kthreads={"ksoftirqd": 2, "ktimers": 3, "rcu": 4},
    )
    state = State()
    state.claims[claim.name] = claim
    store = StateStore(HostFS(tmp_path))  # the journal in a temp folder, /proc live
    host = Host(fs, state, HookLog(HostFS(tmp_path), "live"), store)
    lock = store.locked()
    lock.__enter__()
    try:
        kthreads.STEP.reconcile(host, [claim])
        host.commit()
        assert scheduling(one) == (os.SCHED_FIFO, 2)
        assert scheduling(zero) == other  # CPU 0 is no VM's
        info = procs.stat(fs, one)
        assert info is not None and (info.policy, info.rt_priority) == (1, 2)  # stat agrees
        key = procs.sched_key(one, info.start)
        assert state.originals == {key: "other 0"}
        assert store.journal.path and b"other 0" in Path(store.journal.path).read_bytes()
        assert kthreads.STEP.verify(host, [claim]) == []

        del state.claims[claim.name]
        kthreads.STEP.reconcile(host, [])
        host.commit()
        assert scheduling(one) == original
        assert not state.originals and not store.exists()
        lines = "\n".join(text for _, text in host.log.lines)
        assert "kernel_threads: 1 values: 1 changed" in lines
        assert "kernel_threads: 1 values: 1 restored" in lines
    finally:
        if state.originals:  # put the thread back, whatever failed above
            state.claims.clear()
            kthreads.STEP.reconcile(host, [])
            host.commit()
        if scheduling(one) != original:
            os.sched_setscheduler(one, original[0], os.sched_param(original[1]))
        lock.__exit__(None, None, None)

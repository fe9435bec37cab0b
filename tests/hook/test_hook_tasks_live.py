"""The `tasks` step on this machine's real processes (cgroup v1, every task in the root cpuset).

Real sleepers allowed on every CPU, a process with threads, one that exits
during the run, one that forks during the run, and a stand-in for a real-time
VM's QEMU (a claim's pid): after the step, none of the host's may run on the
VM's CPU and the VM's threads are untouched; after the undo each has its
original affinity again, and the child born during the run gets its parent's.

This moves every movable thread of the live host off CPU 1 for a moment, as
the hook does at each start of a real-time VM: it holds the machine-wide lock
(``live_host``) and gives everything back even when it fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtlibvirt.hook.isolation import Host, tasks
from rtlibvirt.hook.log import HookLog
from rtlibvirt.hook.state import PHASE_RUNNING, Claim, Settings, State, StateStore
from rtlibvirt.kernel import procs
from rtlibvirt.kernel.fs import HostFS

THREADS = """
import threading, time
for _ in range(3):
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
print("ready", flush=True)
time.sleep(600)
"""
FORKER = """
import os, signal, sys, time
def fork(*_):
    pid = os.fork()
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    print(pid, flush=True)
signal.signal(signal.SIGUSR1, fork)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def spawn(code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, close_fds=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def thread_ids(pid: int) -> list[int]:
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))


def affinity(tid: int) -> frozenset[int]:
    return frozenset(os.sched_getaffinity(tid))


@pytest.fixture
def processes() -> Iterator[dict[str, subprocess.Popen[str]]]:
    everything = {0, 1}
    found: dict[str, subprocess.Popen[str]] = {
        "sleeper-1": subprocess.Popen(["sleep", "600"]),
        "sleeper-2": subprocess.Popen(["sleep", "600"]),
        "exits": subprocess.Popen(["sleep", "600"]),
        "threads": spawn(THREADS),
        "forker": spawn(FORKER),
        "vm": spawn(THREADS),  # plays the real-time VM's QEMU
    }
    for proc in found.values():
        for tid in thread_ids(proc.pid):
            os.sched_setaffinity(tid, everything)
    yield found
    for proc in found.values():
        proc.kill()
        proc.wait()


def test_real_processes_move_off_the_vms_cpu_and_come_back(
    live_host: None, tmp_path: Path, processes: dict[str, subprocess.Popen[str]]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("moves the threads of every process: needs root (run `make test`)")
    fs = HostFS("/")
    if not {0, 1} <= fs.cpus_online():
        pytest.skip("needs CPUs 0 and 1 online")
    vm = processes["vm"]
    settings = Settings({"tasks": True})
    claim = Claim("rtl-hook-live", frozenset({1}), settings, phase=PHASE_RUNNING, pid=vm.pid)
    state = State()
    state.claims[claim.name] = claim
    store = StateStore(HostFS(tmp_path))  # the journal in a temp folder, /proc live
    host = Host(fs, state, HookLog(HostFS(tmp_path), "live"), store)
    ours = {name: thread_ids(p.pid) for name, p in processes.items()}
    forked: int | None = None
    lock = store.locked()
    lock.__enter__()
    try:
        tasks.STEP.reconcile(host, [claim])
        host.commit()
        for name, tids in ours.items():
            want = {0, 1} if name == "vm" else {0}
            for tid in tids:
                assert affinity(tid) == want, (name, tid, affinity(tid))
        left = [line for line in tasks.remaining(host, [claim]) if "python" in line]
        assert not [line for line in left if any(f"thread {t})" in line for t in ours)]
        assert f"{tasks.NAME}:" in "\n".join(text for _, text in host.log.lines)
        assert state.tasks, "nothing journaled"

        processes["exits"].kill()  # one exits during the run
        processes["exits"].wait()
        forker = processes["forker"]
        forker.send_signal(signal.SIGUSR1)  # one forks during the run
        assert forker.stdout is not None
        forked = int(forker.stdout.readline())
        assert affinity(forked) == {0}  # it inherited the moved mask
        info = procs.stat(fs, forked)
        assert info is not None and state.tasks_since is not None
        assert info.start >= state.tasks_since

        del state.claims[claim.name]
        tasks.STEP.reconcile(host, [])
        host.commit()
        for name, tids in ours.items():
            if name == "exits":
                continue
            for tid in tids:
                assert affinity(tid) == {0, 1}, (name, tid)
        assert affinity(forked) == {0, 1}  # born during the run: its parent's original
        assert not state.tasks
        assert not store.exists()
    finally:
        if state.tasks:  # put every host thread back, whatever failed above
            state.claims.clear()
            tasks.STEP.reconcile(host, [])
            host.commit()
        lock.__exit__(None, None, None)
        if forked is not None:
            try:
                os.kill(forked, signal.SIGKILL)
                time.sleep(0.05)
            except ProcessLookupError:
                pass

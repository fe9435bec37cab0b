"""A fake host with processes, threads and cpuset cgroups, in the kernel's formats.

For the hook's ``tasks`` step, which this machine can exercise only on its
own root cpuset. :class:`TaskKernel` is a :class:`~tests.fakes.host.FakeKernel`
that also has

- processes and threads under ``/proc/PID/task/TID/`` with ``stat`` (flags in
  field 9, start time in field 22), ``status`` (``Cpus_allowed_list``) and
  ``comm``, and ``/proc/PID/cgroup`` (``N:cpuset:/path`` on v1, ``0::/path``
  on v2);
- a cpuset hierarchy, cgroup v1 (``/sys/fs/cgroup/cpuset``: ``cpuset.cpus``,
  ``cpuset.effective_cpus``, ``tasks``, ``cgroup.procs``) or v2
  (``/sys/fs/cgroup``: ``cpuset.cpus``, ``cpuset.cpus.effective``,
  ``cgroup.threads``, ``cgroup.procs``), that behaves like the kernel's:

  - v1: a group's CPUs stay within its parent's (a write that leaves its
    parent's CPUs fails with EACCES, one that leaves a child's CPUs out fails
    with EBUSY; ``validate_change()`` in kernel/cgroup/cpuset-v1.c), the root's
    ``cpuset.cpus`` cannot be written, and a write resets the affinity of
    every task of the group (and below) to the group's new CPUs;
  - v2: any CPUs may be written (empty: its parent's); a group's effective
    CPUs are its own within its parent's effective ones, and a task runs on
    the CPUs it asked for within its group's effective ones;
- ``sched_setaffinity`` through the thread's status file (as
  ``kernel.procs.set_affinity`` does on a fake tree): EINVAL for a thread with
  ``PF_NO_SETAFFINITY`` or a mask without a CPU of its cpuset, ESRCH for one
  that is gone;
- each thread's scheduling policy and real-time priority in ``stat`` fields 41
  and 40 (as ``sched_getscheduler``/``sched_getparam`` report them), and
  ``sched_setscheduler`` through that line (as ``kernel.procs.set_scheduler``
  does on a fake tree), with the kernel's checks (``__sched_setscheduler()``,
  kernel/sched/syscalls.c): EINVAL for an unknown policy or a priority outside
  1-99 for SCHED_FIFO/SCHED_RR (0 for the others), ESRCH for a thread that is
  gone, EPERM for the threads in ``refuse_sched``;
- :func:`add_kernel_threads`: the per-CPU kernel threads of a PREEMPT_RT
  kernel as it names and binds them (``ksoftirqd/N`` SCHED_OTHER, ``ktimers/N``
  and ``rcuc/N`` SCHED_FIFO 1, bound to CPU N; ``rcub/N`` SCHED_FIFO 1 on the
  CPUs of its RCU node), children of ``kthreadd``.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from rtlibvirt.kernel.cpuset import format_cpulist, parse_cpulist
from rtlibvirt.kernel.procs import PF_KTHREAD, PF_NO_SETAFFINITY
from tests.fakes.host import FakeKernel, _put

V1 = "/sys/fs/cgroup/cpuset"
V2 = "/sys/fs/cgroup"


class Task:
    def __init__(
        self, pid: int, tid: int, comm: str, user: frozenset[int], flags: int, start: int, ppid: int
    ) -> None:
        self.pid = pid
        self.tid = tid
        self.comm = comm
        self.user = user  # what it asked for (sched_setaffinity)
        self.flags = flags
        self.start = start
        self.ppid = ppid
        self.policy = 0  # SCHED_OTHER
        self.priority = 0  # rt_priority


class TaskKernel(FakeKernel):
    """FakeKernel + processes, threads and a cpuset hierarchy (``cgroups``: 1, 2 or None)."""

    def __init__(self, root: Path, *, cgroups: int | None = 1, cpus: int = 4, **kwargs: object):
        super().__init__(root, cpus=cpus, **kwargs)  # type: ignore[arg-type]
        self.version = cgroups
        self.tasks: dict[int, Task] = {}
        self.group_of: dict[int, str] = {}  # tid -> cgroup ("" = root)
        self.cpus_of: dict[str, frozenset[int] | None] = {}  # group -> cpuset.cpus (None: v2 empty)
        self.clock = 1000  # the start time of the next task, in ticks
        self.affinity_calls = 0
        self.refuse: set[int] = set()  # threads whose sched_setaffinity fails with EBUSY
        self.refuse_sched: set[int] = set()  # threads whose sched_setscheduler fails (EPERM)
        self.sched_calls = 0
        self._tick()
        if cgroups == 1:
            self._mount_line(f"cgroup {V1} cgroup rw,nosuid,nodev,noexec,relatime,cpuset 0 0")
        elif cgroups == 2:
            self._mount_line(f"cgroup2 {V2} cgroup2 rw,nosuid,nodev,noexec,relatime 0 0")
            _put(root, f"{V2}/cgroup.controllers", "cpuset cpu io memory pids")
            _put(root, f"{V2}/cgroup.subtree_control", "cpuset cpu")
        if cgroups is not None:
            self.cpus_of[""] = frozenset(range(cpus))
            self._render_groups()

    def _tick(self) -> None:
        """The clock moves on: /proc/uptime says the time of the next task's start."""
        self.clock += 1
        seconds = self.clock / os.sysconf("SC_CLK_TCK")
        _put(self.root, "/proc/uptime", f"{seconds:.2f} {seconds / 2:.2f}")

    def _mount_line(self, line: str) -> None:
        _put(self.root, "/proc/mounts", self.read_or("/proc/mounts", "") + "\n" + line)

    # ---- building the host -----------------------------------------------------------

    @property
    def cgroup_mount(self) -> str:
        return V1 if self.version == 1 else V2

    def add_cgroup(self, group: str, cpus: Iterable[int] | None = None) -> None:
        """A cgroup (``/system.slice``); v1 needs its CPUs, v2 may leave them empty."""
        assert group.startswith("/") and self.version is not None
        self.path(self.cgroup_mount + group).mkdir(parents=True, exist_ok=True)
        parent = group.rsplit("/", 1)[0]
        if self.version == 1:
            self.cpus_of[group] = frozenset(cpus) if cpus is not None else self.cpus_of[parent]
        else:
            self.cpus_of[group] = frozenset(cpus) if cpus is not None else None
        self._render_groups()

    def add_process(
        self,
        pid: int,
        comm: str = "sleep",
        *,
        threads: Iterable[int] = (),
        cpus: Iterable[int] | None = None,
        group: str = "",
        ppid: int = 1,
        kernel: bool = False,
        per_cpu: bool = False,
        start: int | None = None,
        policy: int = 0,
        priority: int = 0,
    ) -> None:
        """A process (and its other threads) allowed on ``cpus`` (default: every CPU)."""
        user = frozenset(cpus) if cpus is not None else frozenset(range(self.ncpus))
        flags = 0x40 | (PF_KTHREAD if kernel else 0) | (PF_NO_SETAFFINITY if per_cpu else 0)
        self._tick()
        begin = self.clock if start is None else start
        self._tick()
        for tid in (pid, *threads):
            self.tasks[tid] = Task(pid, tid, comm, user, flags, begin, ppid)
            self.tasks[tid].policy, self.tasks[tid].priority = policy, priority
            self.group_of[tid] = group
        self._render_process(pid)
        self._render_groups()

    def fork(self, parent: int, pid: int, comm: str = "child") -> None:
        """``parent`` forks ``pid`` now: same mask, same cgroup, a later start time.

        The child gets the mask its parent asked for (the kernel copies
        ``cpus_mask`` and, since 6.2, ``user_cpus_ptr``); it runs on it within
        its cgroup's CPUs.
        """
        task = self.tasks[parent]
        self.add_process(pid, comm, cpus=task.user, group=self.group_of[parent], ppid=task.pid)

    def spawn_thread(self, pid: int, tid: int) -> None:
        """Process ``pid`` starts thread ``tid`` now (it inherits the creator's mask)."""
        leader = self.tasks[pid]
        self._tick()
        self.tasks[tid] = Task(
            pid, tid, leader.comm, leader.user, leader.flags, self.clock, leader.ppid
        )
        self._tick()
        self.group_of[tid] = self.group_of[pid]
        self._render_process(pid)
        self._render_groups()

    def exit(self, pid: int) -> None:
        for tid in [t for t, task in self.tasks.items() if task.pid == pid]:
            del self.tasks[tid]
            del self.group_of[tid]
        shutil.rmtree(self.path(f"/proc/{pid}"), ignore_errors=True)
        self._render_groups()

    def affinity(self, tid: int) -> frozenset[int]:
        return self._actual(self.tasks[tid])

    def set_own_affinity(self, tid: int, cpus: Iterable[int]) -> None:
        """The thread calls sched_setaffinity itself (before the hook runs)."""
        self.tasks[tid].user = frozenset(cpus)
        self._render_process(self.tasks[tid].pid)

    # ---- the kernel's view ---------------------------------------------------------------

    def _effective(self, group: str) -> frozenset[int]:
        online = frozenset(range(self.ncpus))
        if group == "":
            return online
        parent = self._effective(group.rsplit("/", 1)[0])
        own = self.cpus_of.get(group)
        if self.version == 2:
            return (own & parent or parent) if own else parent
        return (own or frozenset()) & parent

    def _actual(self, task: Task) -> frozenset[int]:
        where = self._effective(self.group_of[task.tid]) if self.version else None
        if where is None:
            return task.user
        return task.user & where or where

    def _render_process(self, pid: int) -> None:
        leader = self.tasks.get(pid)
        if leader is None:
            return
        group = self.group_of[pid]
        if self.version == 1:
            cgroup = f"3:cpuset:{group or '/'}\n1:name=systemd:/\n0::/\n"
        elif self.version == 2:
            cgroup = f"0::{group or '/'}\n"
        else:
            cgroup = "0::/\n"
        _put(self.root, f"/proc/{pid}/cgroup", cgroup)
        _put(self.root, f"/proc/{pid}/comm", leader.comm)
        cmdline = b"" if leader.flags & PF_KTHREAD else f"/usr/bin/{leader.comm}\0".encode()
        self.path(f"/proc/{pid}/cmdline").write_bytes(cmdline)
        for task in [t for t in self.tasks.values() if t.pid == pid]:
            self._render_task(task)
        self._render_task(leader, f"/proc/{pid}")

    def _render_task(self, task: Task, base: str | None = None) -> None:
        base = base or f"/proc/{task.pid}/task/{task.tid}"
        cpus = format_cpulist(self._actual(task))
        _put(self.root, f"{base}/comm", task.comm)
        _put(
            self.root,
            f"{base}/status",
            f"Name:\t{task.comm}\nTgid:\t{task.pid}\nPid:\t{task.tid}\nPPid:\t{task.ppid}\n"
            f"Cpus_allowed_list:\t{cpus}\n",
        )
        fields = ["S", str(task.ppid)] + ["0"] * 48
        fields[9 - 3] = str(task.flags)
        fields[22 - 3] = str(task.start)
        fields[40 - 3] = str(task.priority)
        fields[41 - 3] = str(task.policy)
        _put(self.root, f"{base}/stat", f"{task.tid} ({task.comm}) " + " ".join(fields))

    def _render_groups(self) -> None:
        if self.version is None:
            return
        for group, own in self.cpus_of.items():
            directory = self.cgroup_mount + group
            members = sorted(t for t, g in self.group_of.items() if g == group)
            procs = sorted({self.tasks[t].pid for t in members})
            threads = "tasks" if self.version == 1 else "cgroup.threads"
            _put(self.root, f"{directory}/{threads}", "".join(f"{t}\n" for t in members))
            _put(self.root, f"{directory}/cgroup.procs", "".join(f"{p}\n" for p in procs))
            effective = "cpuset.effective_cpus" if self.version == 1 else "cpuset.cpus.effective"
            _put(self.root, f"{directory}/{effective}", format_cpulist(self._effective(group)))
            if group != "" or self.version == 1:
                text = format_cpulist(own) if own else ""
                _put(self.root, f"{directory}/cpuset.cpus", text)
        for pid in {t.pid for t in self.tasks.values()}:
            self._render_process(pid)

    # ---- writes ----------------------------------------------------------------------------

    def write(self, host_path: str, value: str) -> None:
        if host_path.endswith("/status") and host_path.startswith("/proc/"):
            self._kill_point(host_path)
            self._setaffinity(host_path, value)
            return
        if host_path.endswith("/stat") and host_path.startswith("/proc/"):
            self._kill_point(host_path)
            self._setscheduler(host_path, value)
            return
        cgroups = self.version is not None and host_path.startswith(self.cgroup_mount + "/")
        if cgroups and host_path.endswith("/cpuset.cpus"):
            self._kill_point(host_path)
            self._write_cpus(host_path, value.strip())
            self.writes.append((host_path, value.strip()))
            return
        super().write(host_path, value)

    def _setaffinity(self, host_path: str, text: str) -> None:
        self.affinity_calls += 1
        tid = _tid_of(host_path)
        task = self.tasks.get(tid)
        if task is None:
            raise ProcessLookupError(errno.ESRCH, os.strerror(errno.ESRCH))
        line = next(ln for ln in text.splitlines() if ln.startswith("Cpus_allowed_list:"))
        wanted = frozenset(parse_cpulist(line.split(":", 1)[1]))
        if task.flags & PF_NO_SETAFFINITY or not wanted:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), host_path)
        if tid in self.refuse:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), host_path)
        if self.version is not None and not wanted & self._effective(self.group_of[tid]):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), host_path)
        task.user = wanted
        if self.version == 1:
            task.user = wanted & self._effective(self.group_of[tid])
        self._render_process(task.pid)
        self.writes.append((host_path, format_cpulist(wanted)))

    def _setscheduler(self, host_path: str, line: str) -> None:
        """sched_setscheduler(tid, policy, {priority}), as procs.set_scheduler writes it."""
        self.sched_calls += 1
        tid = _tid_of(host_path)
        task = self.tasks.get(tid)
        if task is None:
            raise ProcessLookupError(errno.ESRCH, os.strerror(errno.ESRCH))
        fields = line.rpartition(")")[2].split()
        priority, policy = int(fields[37]), int(fields[38])
        realtime = policy in (1, 2)
        if policy not in (0, 1, 2, 3, 5) or not (
            1 <= priority <= 99 if realtime else priority == 0
        ):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), host_path)
        if tid in self.refuse_sched:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), host_path)
        task.policy, task.priority = policy, priority
        self._render_process(task.pid)
        self.writes.append((host_path, f"{policy} {priority}"))

    def scheduling(self, tid: int) -> tuple[int, int]:
        """(policy, priority) of a thread, as sched_getscheduler and sched_getparam say."""
        task = self.tasks[tid]
        return task.policy, task.priority

    def _write_cpus(self, host_path: str, text: str) -> None:
        group = host_path[len(self.cgroup_mount) : -len("/cpuset.cpus")]
        if group not in self.cpus_of:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), host_path)
        try:
            cpus = frozenset(parse_cpulist(text))
        except ValueError:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), host_path) from None
        online = frozenset(range(self.ncpus))
        if not cpus <= online:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), host_path)
        if self.version == 1:
            if group == "":
                raise OSError(errno.EACCES, os.strerror(errno.EACCES), host_path)
            parent = self.cpus_of[group.rsplit("/", 1)[0]] or frozenset()
            if not cpus <= parent:
                raise OSError(errno.EACCES, os.strerror(errno.EACCES), host_path)
            for child, own in self.cpus_of.items():
                if (
                    child.rsplit("/", 1)[0] == group
                    and child != group
                    and not (own or set()) <= cpus
                ):
                    raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), host_path)
            if not cpus and any(g == group for g in self.group_of.values()):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), host_path)
            self.cpus_of[group] = cpus
            # update_tasks_cpumask(): every task of the group and below gets the new CPUs
            for tid, where in self.group_of.items():
                if where == group or where.startswith(group + "/"):
                    self.tasks[tid].user = self._effective(where)
        else:
            self.cpus_of[group] = cpus or None
        self._render_groups()


def _tid_of(host_path: str) -> int:
    """The thread a /proc/PID[/task/TID]/FILE path names."""
    parts = host_path.split("/")
    return int(parts[4]) if len(parts) > 5 and parts[3] == "task" else int(parts[2])


def add_kernel_threads(
    fs: TaskKernel,
    *,
    rt: bool = True,
    first: int = 100,
    nodes: int = 1,
    only: Iterable[int] | None = None,
) -> dict[str, int]:
    """The per-CPU kernel threads of each CPU (``rt``: a PREEMPT_RT kernel's too), as
    the kernel makes them; returns comm -> pid. Pids from ``first`` on; ``only``: the
    per-CPU threads of these CPUs only (a smaller host for the fault tests)."""
    made: dict[str, int] = {}
    pid = first
    cpus = fs.ncpus

    def thread(comm: str, on: Iterable[int], per_cpu: bool, policy: int, prio: int) -> None:
        nonlocal pid
        fs.add_process(
            pid, comm, cpus=on, ppid=2, kernel=True, per_cpu=per_cpu, policy=policy, priority=prio
        )
        made[comm] = pid
        pid += 1

    if 2 not in fs.tasks:
        fs.add_process(2, "kthreadd", ppid=0, kernel=True)
    for cpu in range(cpus) if only is None else only:
        thread(f"cpuhp/{cpu}", [cpu], True, 0, 0)
        thread(f"migration/{cpu}", [cpu], True, 1, 99)
        thread(f"ksoftirqd/{cpu}", [cpu], True, 0, 0)
        if rt:
            thread(f"ktimers/{cpu}", [cpu], True, 1, 1)
            thread(f"rcuc/{cpu}", [cpu], True, 1, 1)
    if rt:
        per_node = -(-cpus // nodes)
        for node in range(nodes):
            thread(
                f"rcub/{node}",
                range(node * per_node, min(cpus, (node + 1) * per_node)),
                False,
                1,
                1,
            )
    return made


def task_snapshot(fs: TaskKernel) -> dict[str, str]:
    """Every thread's affinity and scheduling, every group's CPUs: what the hook may change."""
    found = {f"task {tid}": format_cpulist(fs.affinity(tid)) for tid in sorted(fs.tasks)}
    found |= {f"sched {tid}": "{} {}".format(*fs.scheduling(tid)) for tid in sorted(fs.tasks)}
    for group, own in sorted(fs.cpus_of.items()):
        found[f"cgroup {group or '/'}"] = format_cpulist(own) if own else ""
    return found

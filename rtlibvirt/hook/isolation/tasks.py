"""Host tasks: every movable host thread off the VM's CPUs while it runs.

What moves: user processes and unbound kernel threads, as ``tuna --isolate``
and TuneD's ``cpu-partitioning`` move them. What never moves:

- per-CPU kernel threads (``PF_NO_SETAFFINITY``: ksoftirqd/N, migration/N,
  kworker/N:M; the kernel refuses, and the workqueue step handles unbound
  workers);
- the threads of every QEMU libvirt runs (``/run/libvirt/qemu/*.pid``: this
  VM's, other real-time VMs', any VM's) and anything in libvirt's cgroups
  (``machine`` on cgroup v1, ``machine.slice`` with systemd): libvirt pins
  those itself.

Two levels, cheapest first:

1. **cgroups** (``kernel.cgroup``): the ``cpuset.cpus`` of the host's own
   groups, one write per group, inherited by every thread born in it. On
   cgroup v2 these are the top-level groups (``system.slice``, ``user.slice``,
   ``init.scope``, ...) where ``cpuset`` is enabled; on cgroup v1 every group
   of the cpuset hierarchy but the root (which cannot be written) and
   libvirt's, narrowed children first and widened parents first, as the
   kernel requires. A v1 group write resets the affinity of its tasks, so the
   affinities of those tasks are journaled first and put back after.
2. **threads** (``kernel.procs``): ``sched_setaffinity`` of each thread still
   on a VM's CPU (the root cgroup holds every task on a host without a cpuset
   hierarchy of its own, like this one): one system call each, no file write.

Each thread's original mask is journaled (with its start time, against pid
reuse) before it is changed; a cgroup's original ``cpuset.cpus`` like any
other file. When the last VM stops, every thread still alive gets its
original back; a thread born during the run that inherited a moved mask (it
has the same mask as its parent, or its process) gets its parent's original,
i.e. what it would have had without the hook. Threads that exited are
skipped. After ``started`` the step lists what it could not move, and why
(the claim keeps it for ``rtlibvirt status``).
"""

from __future__ import annotations

import errno
import os

from rtlibvirt.hook import threads as vcputhreads
from rtlibvirt.hook.isolation.base import (
    Host,
    Step,
    ValuePlan,
    converge,
    isolated_cpus,
    owned,
    shrink,
    verify_values,
)
from rtlibvirt.hook.state import Claim, TaskOriginal
from rtlibvirt.kernel import cgroup, procs
from rtlibvirt.kernel.cpuset import CpuListError, format_cpulist, parse_cpulist
from rtlibvirt.kernel.fs import HostFS

NAME = "tasks"
MAX_UNMOVED = 20  # threads named in the claim (and the log) that could not be moved
MAX_DEPTH = 16  # how far up the parents of a thread born during the run are followed


# ---- what may move -------------------------------------------------------------------


def excluded_pids(host: Host) -> set[int]:
    """Processes never touched: every QEMU of libvirt, every claim's QEMU, and the hook
    itself (it exits in a moment; confined to the housekeeping CPUs it would finish
    its work beside the VM's emulator thread there, which a start waits for)."""
    found = vcputhreads.qemu_pids(host.fs)
    found |= {c.pid for c in host.state.claims.values() if c.pid is not None}
    if host.fs.is_live:
        found.add(os.getpid())
    return found


class Thread:
    """A host thread as this step sees it."""

    __slots__ = ("cpus", "pid", "stat", "tid")

    def __init__(self, pid: int, tid: int, cpus: frozenset[int]) -> None:
        self.pid = pid
        self.tid = tid
        self.cpus = cpus
        self.stat: procs.Stat | None = None  # read only when needed


class Scan:
    """Every host thread that may move, with its cgroup's CPUs (one pass over /proc)."""

    def __init__(self, host: Host) -> None:
        fs = host.fs
        self.fs = fs
        self.hierarchy = cgroup.cpuset_hierarchy(fs)
        self.online = fs.cpus_online()
        excluded = excluded_pids(host)
        self.threads: dict[int, Thread] = {}
        self.where: dict[int, frozenset[int]] = {}  # pid -> CPUs of its cpuset cgroup
        self.libvirt: set[int] = set()  # pids in libvirt's cgroups
        self._effective: dict[str, frozenset[int]] = {}
        # pid -> its cpuset cgroup, read once per hook call: the step writes only
        # cpusets and affinities, which move no process to another group
        self._groups = host.memo.setdefault(NAME, {})
        for pid in procs.pids(fs):
            if pid in excluded:
                continue
            group = self._group(pid)
            if group is not None and cgroup.is_libvirt(group):
                self.libvirt.add(pid)
                continue
            self.where[pid] = self._cpus_of(group)
            for tid in procs.tids(fs, pid):
                cpus = procs.affinity(fs, pid, tid)
                if cpus is not None:
                    self.threads[tid] = Thread(pid, tid, cpus)

    def _group(self, pid: int) -> str | None:
        if self.hierarchy is None:
            return None
        if pid in self._groups:
            return self._groups[pid]
        key = "cpuset" if self.hierarchy.version == 1 else ""
        found = self._groups[pid] = procs.cgroup_of(self.fs, pid, key)
        return found

    def _cpus_of(self, group: str | None) -> frozenset[int]:
        if group is None or self.hierarchy is None or not cgroup.valid_group(group):
            return self.online
        if group == "/":
            group = ""
        found = self._effective.get(group)
        if found is None:
            text = cgroup.cpus(self.fs, self.hierarchy, group, effective=True)
            found = _cpus(text) if text is not None else None
            found = found or self.online
            self._effective[group] = found
        return found

    def stat(self, thread: Thread) -> procs.Stat | None:
        if thread.stat is None:
            thread.stat = procs.stat(self.fs, thread.pid, thread.tid)
        return thread.stat


def _cpus(text: str) -> frozenset[int] | None:
    try:
        return frozenset(parse_cpulist(text))
    except CpuListError:
        return None


# ---- level 1: cgroups ------------------------------------------------------------------


def host_groups(fs: HostFS, hierarchy: cgroup.Hierarchy) -> list[str]:
    """The host's groups whose ``cpuset.cpus`` the step may write, parents before children."""
    found: list[str] = []
    todo = [g for g in cgroup.children(fs, hierarchy, "") if not cgroup.is_libvirt(g)]
    while todo:
        group = todo.pop(0)
        if not fs.exists(hierarchy.file(group, cgroup.CPUS)):
            continue
        found.append(group)
        if hierarchy.version == 1 and group.count("/") < cgroup.MAX_DEPTH:
            todo[:0] = cgroup.children(fs, hierarchy, group)
    return found


def _group_path(hierarchy: cgroup.Hierarchy, group: str) -> str:
    return hierarchy.file(group, cgroup.CPUS)


def _describe(path: str) -> str:
    return f"cgroup {path.rsplit('/', 1)[0]} cpuset.cpus"


def _same(a: str, b: str) -> bool:
    return _cpus(a) == _cpus(b)


def _show(text: str) -> str:
    return text.strip() or "(its parent's)"


def cgroup_targets(
    host: Host, hierarchy: cgroup.Hierarchy, isolated: frozenset[int]
) -> dict[str, str | None]:
    """Group file -> wanted cpuset.cpus (None: its original), parents first."""
    fs, state = host.fs, host.state
    online = fs.cpus_online()
    wanted: dict[str, str | None] = {}
    if isolated:
        chosen: dict[str, frozenset[int]] = {}
        for group in host_groups(fs, hierarchy):
            path = _group_path(hierarchy, group)
            text = state.originals.get(path)
            if text is None:
                text = cgroup.cpus(fs, hierarchy, group)
            base = _cpus(text or "") if text is not None else None
            if base is None:
                continue
            parent = group.rsplit("/", 1)[0]
            ceiling = chosen.get(parent, online - isolated) if hierarchy.version == 1 else None
            if not base:  # v2: empty = its parent's CPUs
                base = online
            want = shrink(base, isolated, online)
            if ceiling is not None:
                want = (want & ceiling) or ceiling
            if not want:
                continue
            chosen[group] = want
            wanted[path] = format_cpulist(want)
    prefix = hierarchy.mount + "/"
    for path in owned(state, cgroup.owns):
        if path.startswith(prefix):
            wanted.setdefault(path, None)
    return wanted


def _plan(wanted: dict[str, str | None]) -> ValuePlan:
    return ValuePlan(NAME, wanted, same=_same, describe=_describe, show=_show)


def converge_groups(host: Host, scan: Scan, isolated: frozenset[int]) -> bool:
    """The host's cgroups to their wanted CPUs; True if any group was written."""
    hierarchy = scan.hierarchy
    if hierarchy is None:
        return False
    wanted = cgroup_targets(host, hierarchy, isolated)
    if not wanted:
        return False
    if hierarchy.version == 2:
        return converge(host, _plan(wanted)) > 0
    fs, state = host.fs, host.state
    # cgroup v1: a child's CPUs stay within its parent's. First widen, parents
    # first, to what the group has and will have; then set the final value,
    # children first. A write resets the affinity of the group's tasks: journal
    # those that differ from the group's CPUs, to put them back below.
    order = sorted(wanted, key=lambda p: p.count("/"))
    widen: dict[str, str | None] = {}
    for path in order:
        current = _cpus(fs.read_or(path, "")) or frozenset()
        final_text = wanted[path] if wanted[path] is not None else state.originals.get(path)
        final = _cpus(final_text or "") or frozenset()
        if not final <= current:
            widen[path] = format_cpulist(current | final)
    for path in order:
        _journal_group_tasks(host, scan, hierarchy, path)
    host.save()
    written = converge(host, _plan(widen)) if widen else 0
    written += converge(host, _plan({p: wanted[p] for p in reversed(order)}))
    return written > 0


def _journal_group_tasks(host: Host, scan: Scan, hierarchy: cgroup.Hierarchy, path: str) -> None:
    """Before a v1 group's write: the original affinity of its tasks that have their own."""
    group = path[len(hierarchy.mount) : -len(cgroup.CPUS) - 1]
    group_cpus = _cpus(cgroup.cpus(host.fs, hierarchy, group) or "") or frozenset()
    for tid in cgroup.ids(host.fs, hierarchy, group):
        thread = scan.threads.get(tid)
        if thread is None or tid in host.state.tasks or thread.cpus == group_cpus:
            continue
        _keep(host, scan, thread, thread.cpus)


# ---- level 2: threads ----------------------------------------------------------------


def _keep(host: Host, scan: Scan, thread: Thread, original: frozenset[int]) -> bool:
    """Journal a thread's original mask (before it changes); False if it is gone."""
    info = scan.stat(thread)
    if info is None:
        return False
    state = host.state
    if state.tasks_since is None:
        state.tasks_since = _now_ticks(host)
    original_task = TaskOriginal(thread.pid, info.start, original)
    state.tasks[thread.tid] = original_task
    host.store.journal.add(
        {
            "op": "task",
            "tid": thread.tid,
            "was": original_task.to_json(),
            "since": state.tasks_since,
        }
    )
    return True


def _drop(host: Host, tid: int) -> None:
    if host.state.tasks.pop(tid, None) is not None:
        host.store.journal.add({"op": "taskdone", "tid": tid})
        if not host.state.tasks:
            host.state.tasks_since = None


def _now_ticks(host: Host) -> int:
    """Now, in clock ticks since boot (the unit of a task's start time)."""
    uptime = host.fs.read_or("/proc/uptime", "").split()
    try:
        return int(float(uptime[0]) * procs.clock_ticks())
    except (IndexError, ValueError):
        return 0


def _journaled(host: Host, scan: Scan, thread: Thread) -> TaskOriginal | None:
    """The thread's journaled original, if the journal is about this very thread."""
    original = host.state.tasks.get(thread.tid)
    if original is None:
        return None
    info = scan.stat(thread)
    if info is None or info.start != original.start or thread.pid != original.pid:
        return None  # the tid was reused by another thread
    return original


def _inherited(host: Host, scan: Scan, thread: Thread, depth: int = 0) -> frozenset[int] | None:
    """For a thread born during the run with the mask of its parent: the parent's original.

    The parent of a thread is its process (its leader thread); of a process,
    its parent process. None when the thread was not born during the run, or
    did not inherit a moved mask (it set its own).
    """
    since = host.state.tasks_since
    info = scan.stat(thread)
    if since is None or info is None or info.start < since or depth > MAX_DEPTH:
        return None
    parent_tid = thread.pid if thread.tid != thread.pid else info.ppid
    parent = scan.threads.get(parent_tid)
    if parent is None or parent.cpus != thread.cpus:
        return None
    original = _journaled(host, scan, parent)
    if original is not None:
        return original.cpus
    return _inherited(host, scan, parent, depth + 1)


def _target(
    host: Host, scan: Scan, thread: Thread, isolated: frozenset[int]
) -> tuple[frozenset[int], frozenset[int] | None] | None:
    """(the mask ``thread`` should have, the original to journal first) or None: leave it."""
    original = _journaled(host, scan, thread)
    if original is None and thread.tid in host.state.tasks:
        _drop(host, thread.tid)  # a new thread under the tid of one that exited
    where = scan.where.get(thread.pid, scan.online)
    if original is not None:
        base, keep = original.cpus, None
    elif isolated and thread.cpus & isolated:
        info = scan.stat(thread)
        if info is None or not info.movable:
            return None  # a per-CPU kernel thread
        base = _inherited(host, scan, thread) or thread.cpus
        keep = base
    elif thread.cpus != where:
        # a thread born during the run with a moved mask: give it its parent's original
        inherited = _inherited(host, scan, thread)
        if inherited is None:
            return None
        base, keep = inherited, inherited
    else:
        return None
    if isolated:
        want = shrink(base, isolated, where)
        want = (want & where) or want
    else:
        want, keep = (base & where) or where, None
    return want, keep


def converge_threads(host: Host, scan: Scan, isolated: frozenset[int]) -> list[str]:
    """Every movable thread to its wanted mask; the threads that could not be moved."""
    log = host.log
    moving: list[tuple[Thread, frozenset[int]]] = []
    for thread in scan.threads.values():
        target = _target(host, scan, thread, isolated)
        if target is None:
            continue
        want, keep = target
        if want == thread.cpus:
            if not isolated:
                _drop(host, thread.tid)  # back already
            continue
        if keep is not None and not _keep(host, scan, thread, keep):
            continue  # it exited meanwhile
        moving.append((thread, want))
    host.save()  # every original journaled before the first move
    moved = 0
    unmoved: list[str] = []
    for thread, want in moving:
        try:
            procs.set_affinity(host.fs, thread.pid, thread.tid, want)
        except ProcessLookupError:
            _drop(host, thread.tid)  # it exited meanwhile
            continue
        except OSError as exc:
            info = scan.stat(thread)
            reason = exc.strerror or str(exc)
            if exc.errno == errno.EINVAL:
                reason += " (the kernel does not let it move there)"
            unmoved.append(f"{info.comm if info else '?'} (thread {thread.tid}): {reason}")
            continue
        log.debug(f"thread {thread.tid}: {format_cpulist(thread.cpus)} -> {format_cpulist(want)}")
        thread.cpus = want
        moved += 1
        if not isolated:
            _drop(host, thread.tid)
    if not isolated:
        for tid in [t for t in host.state.tasks if t not in scan.threads]:
            _drop(host, tid)  # exited (or now libvirt's): nothing to give back
    if moved or unmoved:
        done = "moved off CPU " + format_cpulist(isolated) if isolated else "given back their CPUs"
        tail = f"; {len(unmoved)} could not be" if unmoved else ""
        log.info(f"{NAME}: {moved} of {len(scan.threads)} host threads {done}{tail}")
    for line in unmoved[:MAX_UNMOVED]:
        log.warning(f"{NAME}: cannot move {line}")
    return unmoved


# ---- the step ---------------------------------------------------------------------------


def reconcile(host: Host, claims: list[Claim]) -> None:
    state = host.state
    host.scan = None
    isolated = isolated_cpus(claims)
    if not isolated and not state.tasks and not owned(state, cgroup.owns):
        return
    scan = Scan(host)
    if converge_groups(host, scan, isolated):
        scan = Scan(host)  # the group writes changed the threads' masks
    converge_threads(host, scan, isolated)
    host.scan = scan  # for the kernel-threads step (converge_threads kept it current)


def remaining(host: Host, claims: list[Claim]) -> list[str]:
    """Movable host threads still on the CPUs of ``claims``, and why (after ``started``)."""
    isolated = isolated_cpus(claims)
    if not isolated:
        return []
    scan = Scan(host)
    found = []
    for thread in scan.threads.values():
        if not thread.cpus & isolated:
            continue
        info = scan.stat(thread)
        if info is None or not info.movable:
            continue
        where = scan.where.get(thread.pid, scan.online)
        reason = (
            f"its cgroup allows only CPU {format_cpulist(where)}"
            if not where - isolated
            else "it (or a process it belongs to) set it back"
            if thread.tid in host.state.tasks
            else "it appeared after the move, or the kernel refused"
        )
        found.append(
            f"{info.comm} (thread {thread.tid}) on CPU {format_cpulist(thread.cpus & isolated)}: "
            f"{reason}"
        )
    return found


def verify(host: Host, claims: list[Claim]) -> list[str]:
    problems = []
    scan_hierarchy = cgroup.cpuset_hierarchy(host.fs)
    if scan_hierarchy is not None:
        wanted = cgroup_targets(host, scan_hierarchy, isolated_cpus(claims))
        problems += verify_values(host, _plan(wanted))
    left = remaining(host, claims)
    unmoved = left[:MAX_UNMOVED]
    for claim in claims:
        mine = [line for line in unmoved if _on(line, claim.cpus)]
        if claim.unmoved != mine:
            claim.unmoved = mine
            host.put_claim(claim)
    problems += [f"cannot move {line}" for line in left[:MAX_UNMOVED]]
    if len(left) > MAX_UNMOVED:
        problems.append(f"and {len(left) - MAX_UNMOVED} more threads")
    return problems


def _on(line: str, cpus: frozenset[int]) -> bool:
    text = line.split(" on CPU ", 1)[1].split(":", 1)[0]
    found = _cpus(text)
    return bool(found and found & cpus)


def check(host: Host, claim: Claim, others: list[Claim]) -> list[str]:
    if not host.fs.listdir("/proc"):
        return ["/proc cannot be read: host tasks cannot be moved"]
    return []


STEP = Step(
    NAME, wants=lambda settings: settings.tasks, check=check, reconcile=reconcile, verify=verify
)

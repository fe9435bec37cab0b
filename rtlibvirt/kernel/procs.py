"""Processes and threads as ``/proc`` shows them: the one parser of their files.

- ``/proc/PID/task/TID/`` per thread (``/proc/PID`` is the thread group);
- ``stat``: one line, ``PID (COMM) STATE PPID ...``; COMM may hold spaces and
  parentheses, so the fields after it are split after the *last* ``)``;
  field 9 is the task's ``flags`` (``PF_*``), 22 its start time in clock ticks
  since boot, 40 its real-time priority and 41 its scheduling policy
  (proc(5));
- ``status``: ``Key:\\tvalue`` lines, e.g. ``Cpus_allowed_list``;
- ``cgroup``: ``ID:CONTROLLERS:PATH`` lines, ``0::PATH`` for cgroup v2;
- ``cmdline``: NUL-separated arguments.

A thread's CPU affinity is read and set with ``sched_getaffinity(2)`` and
``sched_setaffinity(2)`` on the live host (one system call each, no file
write). On a tree rooted elsewhere (a test's fake host) the same calls read
``Cpus_allowed_list`` from the thread's ``status`` and write it back there.

A thread's scheduling policy and real-time priority are read from its
``stat`` (fields 41 and 40: the kernel's ``task->policy`` and
``task->rt_priority``, what ``sched_getscheduler(2)`` and ``sched_getparam(2)``
return), in the same read that gives its name, flags and start time, and set
with ``sched_setscheduler(2)``; on a fake tree :func:`set_scheduler` writes
them into the ``stat`` line.

Standard library only.
"""

from __future__ import annotations

import os
import re
import time

from rtlibvirt.kernel.cpuset import CpuListError, format_cpulist, parse_cpulist

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from rtlibvirt.kernel.fs import HostFS

# include/linux/sched.h
PF_KTHREAD = 0x00200000  # a kernel thread
PF_NO_SETAFFINITY = 0x04000000  # user space may not change its affinity (per-CPU kthreads)

# include/uapi/linux/sched.h
POLICIES = {0: "other", 1: "fifo", 2: "rr", 3: "batch", 5: "idle", 6: "deadline"}
POLICY_NUMBERS = {name: number for number, name in POLICIES.items()}
MAX_RT_PRIO = 99  # MAX_RT_PRIO - 1: the highest priority of SCHED_FIFO and SCHED_RR


class Stat:
    """The fields of a ``stat`` line that rtlibvirt uses."""

    __slots__ = ("comm", "flags", "policy", "ppid", "rt_priority", "start", "state")

    def __init__(
        self,
        comm: str,
        state: str,
        ppid: int,
        flags: int,
        start: int,
        rt_priority: int,
        policy: int,
    ) -> None:
        self.comm = comm
        self.state = state
        self.ppid = ppid
        self.flags = flags
        self.start = start  # clock ticks after boot
        self.rt_priority = rt_priority
        self.policy = policy

    @property
    def movable(self) -> bool:
        """May user space set this task's affinity (not a per-CPU kernel thread)?"""
        return not self.flags & PF_NO_SETAFFINITY

    @property
    def kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)

    @property
    def policy_name(self) -> str:
        return POLICIES.get(self.policy, str(self.policy))


def parse_stat(text: str) -> Stat | None:
    """A ``stat`` line; None when it is cut short or malformed."""
    head, paren, rest = text.rpartition(")")
    if not paren:
        return None
    comm = head.partition("(")[2]
    fields = rest.split()
    try:
        return Stat(
            comm,
            fields[0],
            int(fields[1]),
            int(fields[6]),
            int(fields[19]),
            int(fields[37]),
            int(fields[38]),
        )
    except (IndexError, ValueError):
        return None


def task_dir(pid: int, tid: int | None = None) -> str:
    return f"/proc/{pid}" if tid is None else f"/proc/{pid}/task/{tid}"


def pids(fs: HostFS) -> list[int]:
    """Every process (thread group) id, ascending."""
    return sorted(int(n) for n in fs.listdir("/proc") if n.isdigit())


def tids(fs: HostFS, pid: int) -> list[int]:
    """The thread ids of a process (empty when it is gone)."""
    return sorted(int(n) for n in fs.listdir(f"/proc/{pid}/task") if n.isdigit())


def stat(fs: HostFS, pid: int, tid: int | None = None) -> Stat | None:
    """The ``stat`` of a process or one of its threads; None when it is gone."""
    return parse_stat(fs.read_or(f"{task_dir(pid, tid)}/stat", ""))


def comm(fs: HostFS, pid: int, tid: int | None = None) -> str:
    return fs.read_or(f"{task_dir(pid, tid)}/comm", "")


def status(fs: HostFS, pid: int, tid: int | None = None) -> dict[str, str]:
    """The ``status`` file as key -> value (stripped); empty when the task is gone."""
    found = {}
    for line in fs.read_or(f"{task_dir(pid, tid)}/status", "").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            found[key] = value.strip()
    return found


def cmdline(fs: HostFS, pid: int) -> list[bytes]:
    """The arguments of a process; empty for a kernel thread or a process that is gone."""
    try:
        with open(fs.real(f"/proc/{pid}/cmdline"), "rb") as handle:
            data = handle.read()
    except OSError:
        return []
    return data.split(b"\0")[:-1] if data.endswith(b"\0") else data.split(b"\0")


def cgroups(fs: HostFS, pid: int) -> dict[str, str]:
    """Controller -> cgroup path of a process (``""`` is the cgroup v2 entry)."""
    found: dict[str, str] = {}
    for line in fs.read_or(f"/proc/{pid}/cgroup", "").splitlines():
        _, sep, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not (sep and sep2):
            continue
        if controllers == "":
            found[""] = path
        for name in controllers.split(","):
            if name:
                found[name] = path
    return found


def cgroup_of(fs: HostFS, pid: int, controller: str) -> str | None:
    """The cgroup path of a process in one hierarchy (``""``: cgroup v2)."""
    return cgroups(fs, pid).get(controller)


# ---- affinity ---------------------------------------------------------------------


def affinity(fs: HostFS, pid: int, tid: int) -> frozenset[int] | None:
    """The CPUs thread ``tid`` of process ``pid`` may run on; None when it is gone."""
    if fs.is_live:
        try:
            return frozenset(os.sched_getaffinity(tid))
        except OSError:  # ESRCH: exited
            return None
    text = status(fs, pid, tid).get("Cpus_allowed_list")
    if text is None:
        return None
    try:
        return frozenset(parse_cpulist(text))
    except CpuListError:
        return None


def set_affinity(fs: HostFS, pid: int, tid: int, cpus: frozenset[int]) -> None:
    """Let thread ``tid`` run on ``cpus`` only; the kernel's OSError as it came.

    The kernel answers EINVAL for a thread with ``PF_NO_SETAFFINITY`` or a mask
    without a CPU of its cpuset (``__sched_setaffinity()``, kernel/sched/core.c)
    and ESRCH for one that exited.
    """
    if fs.is_live:
        os.sched_setaffinity(tid, cpus)
        return
    path = f"{task_dir(pid, tid)}/status"
    text = _task_file(fs, path)
    lines = [
        f"Cpus_allowed_list:\t{format_cpulist(cpus)}" if ln.startswith("Cpus_allowed_list:") else ln
        for ln in text.splitlines()
    ]
    fs.write(path, "\n".join(lines))


def _task_file(fs: HostFS, path: str) -> str:
    """A file of a task on a fake tree; ESRCH (as the system call) when the task is gone."""
    try:
        return fs.read(path)
    except FileNotFoundError:
        raise ProcessLookupError(3, "No such process") from None


# ---- scheduling policy ------------------------------------------------------------


def set_scheduler(fs: HostFS, pid: int, tid: int, policy: int, priority: int) -> None:
    """``sched_setscheduler(2)`` of thread ``tid``; the kernel's OSError as it came.

    ESRCH: the thread exited; EINVAL: a priority outside the policy's range
    (1-99 for SCHED_FIFO and SCHED_RR, 0 for the others); EPERM: not allowed
    (``__sched_setscheduler()``, kernel/sched/syscalls.c). SCHED_OTHER keeps
    the thread's nice value. A SCHED_DEADLINE original cannot be set back
    this way (it needs ``sched_setattr(2)`` with its runtime and period).
    """
    if fs.is_live:
        os.sched_setscheduler(tid, policy, os.sched_param(priority))
        return
    path = f"{task_dir(pid, tid)}/stat"
    text = _task_file(fs, path)
    head, paren, rest = text.rstrip("\n").rpartition(")")
    fields = rest.split()
    if not paren or len(fields) < 39:
        raise ProcessLookupError(3, "No such process")
    fields[37], fields[38] = str(priority), str(policy)
    fs.write(path, f"{head}) {' '.join(fields)}")


# A thread's scheduling, as a value the hook keeps (state.json, journal): the thread is
# named by its id and start time, so that a recycled id is never taken for it.
_SCHED_KEY = re.compile(r"sched:([1-9][0-9]{0,9})@([0-9]{1,20})")
_SCHED_VALUE = re.compile(r"(other|batch|idle) 0|(fifo|rr) ([1-9][0-9]?)")


def sched_key(tid: int, start: int) -> str:
    """The key of thread ``tid`` (started at ``start`` ticks) in the hook's originals."""
    return f"sched:{tid}@{start}"


def parse_sched_key(key: str) -> tuple[int, int] | None:
    """(thread id, start time) of a :func:`sched_key`; None if ``key`` is not one."""
    m = _SCHED_KEY.fullmatch(key)
    return (int(m.group(1)), int(m.group(2))) if m else None


def owns_sched(key: str) -> bool:
    return _SCHED_KEY.fullmatch(key) is not None


def sched_text(policy: int, priority: int) -> str | None:
    """``fifo 2``, ``other 0``: a policy and priority as the hook keeps them (None: one
    it cannot set back, SCHED_DEADLINE or unknown)."""
    name = POLICIES.get(policy)
    text = f"{name} {priority}"
    return text if name is not None and _SCHED_VALUE.fullmatch(text) else None


def parse_sched(text: str) -> tuple[int, int] | None:
    """(policy, priority) of a :func:`sched_text`; None if it is not one."""
    if _SCHED_VALUE.fullmatch(text.strip()) is None:
        return None
    name, priority = text.split()
    return POLICY_NUMBERS[name], int(priority)


# ---- time -----------------------------------------------------------------------------


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def boot_time(fs: HostFS) -> float | None:
    """When the host booted, in epoch seconds.

    From ``/proc/uptime`` (10 ms steps) where it can, since ``/proc/stat``'s
    ``btime`` is rounded to the second.
    """
    uptime = fs.read_or("/proc/uptime", "").split()
    if uptime:
        try:
            return time.time() - float(uptime[0])
        except ValueError:
            pass
    for line in fs.read_or("/proc/stat", "").splitlines():
        if line.startswith("btime "):
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def start_time(fs: HostFS, pid: int) -> float | None:
    """When a process started, in epoch seconds; None if unknown."""
    info = stat(fs, pid)
    boot = boot_time(fs)
    if info is None or boot is None:
        return None
    return boot + info.start / clock_ticks()

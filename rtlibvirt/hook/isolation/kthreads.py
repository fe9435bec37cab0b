"""Kernel threads: the per-CPU kernel threads of the VM's CPUs above its vCPUs while it runs.

A SCHED_FIFO vCPU that never yields its CPU starves every thread of lower
priority bound to that CPU. Among them are kernel threads that must run
there: ``ksoftirqd/N`` (softirqs the interrupt path could not finish;
SCHED_OTHER), and on PREEMPT_RT kernels ``ktimers/N`` (``ktimersoftd/N`` before
Linux 6.x: timer softirqs), ``rcuc/N`` (RCU callbacks of CPU N) and
``rcub/N`` (RCU priority boosting, whose priority a preempted reader
inherits). Starved, they give latency spikes, RCU stall warnings and hung
hosts. TuneD's ``realtime-virtual-host`` runs them SCHED_FIFO above its
FIFO-1 vCPUs for good (``group.ksoftirqd=0:f:2``, ``group.ktimers=0:f:3``,
``group.rcuc=0:f:4``, ``group.rcub=0:f:4``); this step does the same, only while
a real-time VM runs and only on its CPUs: each such thread gets SCHED_FIFO at
the VM's highest vCPU priority plus ``cpu.realtime.kernel_threads`` (by
default 1, 2 and 3 levels: TuneD's order). With several VMs on a thread's
CPUs the highest requirement wins. A thread that already runs real-time at
least that high is left alone (a priority is never lowered).

Which threads: kernel threads (``PF_KTHREAD``: no user process can pass for
one by its name) whose name is one of the above and whose CPUs (its
affinity; for an ``rcub`` the tasks step moved, its affinity before that)
include a CPU of a running real-time VM that asks for it. Threads of other
CPUs are never touched. The tasks step's scan of ``/proc`` (which reads the
``stat`` of every thread on the VM's CPUs anyway) is reused when it ran in
the same hook call.

Each thread's policy and priority are kept in the state's originals under
``sched:TID@START`` (``kernel.procs``: the thread id and its start time)
*before* the first change, and set back at the last stop of the last VM
holding its CPUs; a thread whose id now names another thread (a different
start time) counts as gone and is never touched. A thread whose original is
SCHED_DEADLINE is left alone (``sched_setscheduler`` cannot set it back).
"""

from __future__ import annotations

import re

from rtlibvirt.hook.isolation import tasks
from rtlibvirt.hook.isolation.base import Host, Step, ValuePlan, forget_refused, owned, same_text
from rtlibvirt.hook.state import Claim
from rtlibvirt.kernel import procs
from rtlibvirt.kernel.fs import HostFS

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from collections.abc import Callable

NAME = "kernel_threads"

# comm -> kind (the key of cpu.realtime.kernel_threads); kernel names, full matches
KINDS = (
    (re.compile(r"ksoftirqd/[0-9]{1,5}"), "ksoftirqd"),
    (re.compile(r"(?:ktimers|ktimersoftd)/[0-9]{1,5}"), "ktimers"),
    (re.compile(r"(?:rcuc|rcub)/[0-9]{1,5}"), "rcu"),
)
_RT = (procs.POLICY_NUMBERS["fifo"], procs.POLICY_NUMBERS["rr"])
_FIFO = procs.POLICY_NUMBERS["fifo"]


def kind_of(comm: str) -> str | None:
    for pattern, kind in KINDS:
        if pattern.fullmatch(comm):
            return kind
    return None


def _wanting(claims: list[Claim]) -> list[Claim]:
    return [c for c in claims if c.kthreads]


# ---- reading and writing one thread's scheduling ------------------------------------


def _read(fs: HostFS, key: str) -> str | None:
    """The policy and priority of the thread ``key`` names; None if it is gone (or its id
    now belongs to another thread)."""
    found = procs.parse_sched_key(key)
    if found is None:
        return None
    tid, start = found
    info = procs.stat(fs, tid)
    if info is None or info.start != start:
        return None
    return procs.sched_text(info.policy, info.rt_priority)


def _write(fs: HostFS, key: str, value: str) -> None:
    found = procs.parse_sched_key(key)
    wanted = procs.parse_sched(value)
    if found is None or wanted is None:
        raise OSError(22, f"bad scheduling value {value!r} for {key}")
    tid, start = found
    info = procs.stat(fs, tid)
    if info is None or info.start != start:
        raise FileNotFoundError(2, "the thread is gone")
    try:
        procs.set_scheduler(fs, tid, tid, *wanted)
    except ProcessLookupError:
        raise FileNotFoundError(2, "the thread is gone") from None


def _show(value: str) -> str:
    parsed = procs.parse_sched(value)
    if parsed is None:
        return repr(value)
    policy, priority = parsed
    name = f"SCHED_{procs.POLICIES[policy].upper()}"
    return f"{name} {priority}" if policy in _RT else name


def _describer(fs: HostFS, names: dict[str, str]) -> Callable[[str], str]:
    def describe(key: str) -> str:
        found = procs.parse_sched_key(key)
        tid = found[0] if found else 0
        if key not in names:
            info = procs.stat(fs, tid) if tid else None
            names[key] = info.comm if info is not None else "a kernel thread"
        return f"{names[key]} (thread {tid}) scheduling"

    return describe


# ---- the plan ---------------------------------------------------------------------------


def _scan(host: Host) -> tasks.Scan:
    """The tasks step's scan of this hook call if it made one, else a scan of our own."""
    scan = host.scan
    return scan if isinstance(scan, tasks.Scan) else tasks.Scan(host)


def plan(host: Host, claims: list[Claim]) -> ValuePlan:
    state = host.state
    wanting = _wanting(claims)
    wanted: dict[str, str | None] = {}
    known: dict[str, str | None] = {}
    names: dict[str, str] = {}
    notes: list[str] = []
    if wanting:
        held: set[int] = set()
        for claim in wanting:
            held |= claim.cpus
        scan = _scan(host)
        for thread in scan.threads.values():
            if thread.tid != thread.pid:
                continue  # a kernel thread is a process of one thread
            moved = state.tasks.get(thread.tid)  # the tasks step moved it (an rcub)
            if not (thread.cpus | (moved.cpus if moved else frozenset())) & held:
                continue
            info = scan.stat(thread)
            if info is None or not info.kernel_thread:
                continue
            kind = kind_of(info.comm)
            if kind is None:
                continue
            mine = moved is not None and moved.pid == thread.pid and moved.start == info.start
            cpus = moved.cpus if moved is not None and mine else thread.cpus
            if not cpus & held:
                continue
            need = max(
                (c.kthreads[kind] for c in wanting if kind in c.kthreads and c.cpus & cpus),
                default=0,
            )
            if not need:
                continue
            key = procs.sched_key(thread.tid, info.start)
            names[key] = info.comm
            current = procs.sched_text(info.policy, info.rt_priority)
            known[key] = current
            base_text = state.originals.get(key, current)
            base = procs.parse_sched(base_text) if base_text is not None else None
            if base is None:
                if key not in state.originals:
                    notes.append(
                        f"{NAME}: {info.comm} (thread {thread.tid}) runs "
                        f"{procs.POLICIES.get(info.policy, info.policy)}, which cannot be "
                        "set back: left alone"
                    )
                continue
            if base[0] in _RT and base[1] >= need:
                continue  # already as high: never lowered (back to it if we raised it)
            wanted[key] = procs.sched_text(_FIFO, min(need, procs.MAX_RT_PRIO))
    else:
        forget_refused(state, procs.owns_sched)
    for key in owned(state, procs.owns_sched):
        wanted.setdefault(key, None)
    result = ValuePlan(
        NAME,
        wanted,
        same=same_text,
        describe=_describer(host.fs, names),
        show=_show,
        notes=notes,
        read=_read,
        write=_write,
    )
    result.known = known
    return result


def check(host: Host, claim: Claim, others: list[Claim]) -> list[str]:
    if claim.kthreads and not host.fs.listdir("/proc"):
        return ["/proc cannot be read: the kernel threads cannot be raised"]
    return []


STEP = Step(NAME, wants=lambda settings: True, check=check, plan=plan)

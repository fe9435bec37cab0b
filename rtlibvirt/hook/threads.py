"""QEMU's vCPU threads, as /proc shows them, and a check of libvirt's work.

libvirt writes the QEMU pid to ``/run/libvirt/qemu/NAME.pid``; QEMU names each
vCPU thread ``CPU n/KVM`` (``/proc/PID/task/TID/comm``). A thread's allowed
CPUs are in its ``status`` (``Cpus_allowed_list``) and its policy and
real-time priority in its ``stat`` (fields 41 and 40).

Standard library only.
"""

from __future__ import annotations

import re

from rtlibvirt.hook.domain import DomainInfo
from rtlibvirt.kernel.cpuset import CpuListError, format_cpulist, parse_cpulist
from rtlibvirt.kernel.fs import HostFS

PID_DIR = "/run/libvirt/qemu"
_VCPU_COMM = re.compile(r"^CPU (\d+)/KVM$")

# Linux scheduling policies (include/uapi/linux/sched.h)
POLICIES = {0: "other", 1: "fifo", 2: "rr", 3: "batch", 5: "idle", 6: "deadline"}


def qemu_pid(fs: HostFS, name: str) -> int | None:
    """The QEMU pid libvirt recorded for domain ``name``, if its process is alive."""
    text = fs.read_or(f"{PID_DIR}/{name}.pid", "").strip()
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if fs.exists(f"/proc/{pid}") else None


def is_qemu_of(fs: HostFS, pid: int, name: str) -> bool:
    """Is ``pid`` alive and the QEMU of domain ``name`` (``-name guest=NAME,...``)?"""
    try:
        cmdline = fs.path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    args = cmdline.split(b"\0")
    wanted = f"guest={name}".encode()
    return any(arg == wanted or arg.startswith(wanted + b",") for arg in args)


def vcpu_threads(fs: HostFS, pid: int) -> dict[int, int]:
    """vCPU id -> thread id of a QEMU process."""
    found: dict[int, int] = {}
    for tid in fs.listdir(f"/proc/{pid}/task"):
        if not tid.isdigit():
            continue
        comm = fs.read_or(f"/proc/{pid}/task/{tid}/comm", "")
        m = _VCPU_COMM.match(comm)
        if m:
            found[int(m.group(1))] = int(tid)
    return found


def thread_cpus(fs: HostFS, pid: int, tid: int) -> frozenset[int] | None:
    for line in fs.read_or(f"/proc/{pid}/task/{tid}/status", "").splitlines():
        if line.startswith("Cpus_allowed_list:"):
            try:
                return frozenset(parse_cpulist(line.split(":", 1)[1]))
            except CpuListError:
                return None
    return None


def thread_sched(fs: HostFS, pid: int, tid: int) -> tuple[str, int] | None:
    """(policy name, real-time priority) of a thread, from its stat line."""
    stat = fs.read_or(f"/proc/{pid}/task/{tid}/stat", "")
    # comm (field 2) may hold spaces and parentheses: fields 3.. follow the last ')'
    rest = stat.rpartition(")")[2].split()
    try:
        priority, policy = int(rest[37]), int(rest[38])
    except (IndexError, ValueError):
        return None
    return POLICIES.get(policy, str(policy)), priority


def check(fs: HostFS, pid: int, domain: DomainInfo) -> tuple[list[str], list[str]]:
    """Compare each realtime vCPU thread with the domain XML.

    Returns (what matches, mismatches), one line each.
    """
    threads = vcpu_threads(fs, pid)
    good: list[str] = []
    bad: list[str] = []
    if not threads:
        bad.append(f"QEMU (pid {pid}) has no 'CPU n/KVM' threads to check")
        return good, bad
    for vcpu in domain.realtime:
        tid = threads.get(vcpu.vcpu)
        if tid is None:
            bad.append(f"vCPU {vcpu.vcpu}: no 'CPU {vcpu.vcpu}/KVM' thread in QEMU (pid {pid})")
            continue
        where = f"vCPU {vcpu.vcpu} (thread {tid})"
        cpus = thread_cpus(fs, pid, tid)
        if vcpu.cpus is not None:
            if cpus != vcpu.cpus:
                have = "unknown" if cpus is None else format_cpulist(cpus)
                bad.append(
                    f"{where} may run on CPUs {have}, but is pinned to {format_cpulist(vcpu.cpus)}"
                )
            else:
                good.append(f"{where} on CPU {format_cpulist(cpus)}")
        sched = thread_sched(fs, pid, tid)
        if sched is None:
            bad.append(f"{where}: cannot read its scheduling policy")
            continue
        policy, priority = sched
        if policy != vcpu.policy or (vcpu.priority is not None and priority != vcpu.priority):
            want = f"{vcpu.policy} {vcpu.priority}" if vcpu.priority is not None else vcpu.policy
            bad.append(f"{where} runs {policy} {priority}, but <vcpusched> asks for {want}")
        else:
            good.append(f"{where} runs {policy} {priority}")
    return good, bad

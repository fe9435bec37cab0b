"""QEMU's vCPU threads, as /proc shows them, and a check of libvirt's work.

libvirt writes the QEMU pid to ``/run/libvirt/qemu/NAME.pid``; QEMU names each
vCPU thread ``CPU n/KVM`` (its ``comm``). A thread's allowed CPUs, policy and
real-time priority come from ``kernel.procs``.

Standard library only.
"""

from __future__ import annotations

import re

from rtlibvirt.hook.domain import Vcpu
from rtlibvirt.kernel import procs
from rtlibvirt.kernel.cpuset import format_cpulist
from rtlibvirt.kernel.fs import HostFS

PID_DIR = "/run/libvirt/qemu"
_VCPU_COMM = re.compile(r"CPU (\d+)/KVM")


def pid_file(name: str) -> str:
    """libvirt's pid file of domain ``name`` (a checked name: see ``domain.safe_name``)."""
    return f"{PID_DIR}/{name}.pid"


def qemu_pid(fs: HostFS, name: str) -> int | None:
    """The QEMU pid libvirt recorded for domain ``name``, if its process is alive."""
    text = fs.read_or(pid_file(name), "").strip()
    if not (text.isdigit() and text.isascii() and len(text) <= 10):
        return None
    pid = int(text)
    return pid if fs.exists(f"/proc/{pid}") else None


def qemu_pids(fs: HostFS) -> set[int]:
    """The pids of every QEMU libvirt runs (of any domain, real-time or not)."""
    found = set()
    for entry in fs.listdir(PID_DIR):
        if entry.endswith(".pid"):
            text = fs.read_or(f"{PID_DIR}/{entry}", "").strip()
            if text.isdigit() and text.isascii() and len(text) <= 10:
                found.add(int(text))
    return found


def is_qemu_of(fs: HostFS, pid: int, name: str) -> bool:
    """Is ``pid`` alive and the QEMU of domain ``name`` (``-name guest=NAME,...``)?"""
    wanted = f"guest={name}".encode()
    return any(arg == wanted or arg.startswith(wanted + b",") for arg in procs.cmdline(fs, pid))


def vcpu_threads(fs: HostFS, pid: int) -> dict[int, int]:
    """vCPU id -> thread id of a QEMU process."""
    found: dict[int, int] = {}
    for tid in procs.tids(fs, pid):
        m = _VCPU_COMM.fullmatch(procs.comm(fs, pid, tid))
        if m:
            found[int(m.group(1))] = tid
    return found


def thread_cpus(fs: HostFS, pid: int, tid: int) -> frozenset[int] | None:
    return procs.affinity(fs, pid, tid)


def thread_sched(fs: HostFS, pid: int, tid: int) -> tuple[str, int] | None:
    """(policy name, real-time priority) of a thread."""
    info = procs.stat(fs, pid, tid)
    return None if info is None else (info.policy_name, info.rt_priority)


def check(fs: HostFS, pid: int, realtime: list[Vcpu]) -> tuple[list[str], list[str]]:
    """Compare each realtime vCPU thread with the domain XML.

    Returns (what matches, mismatches), one line each.
    """
    threads = vcpu_threads(fs, pid)
    good: list[str] = []
    bad: list[str] = []
    if not threads:
        bad.append(f"QEMU (pid {pid}) has no 'CPU n/KVM' threads to check")
        return good, bad
    for vcpu in realtime:
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

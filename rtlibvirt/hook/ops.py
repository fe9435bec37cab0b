"""The hook's operations, for domains that carry rtlibvirt metadata (see ``hook``).

Every operation takes the state lock for its whole run, so that hook
processes of VMs starting and stopping at the same time take turns. Only
``prepare`` may exit non-zero; every other failure is logged and the hook exits
0, since libvirt kills the VM when ``started`` or ``reconnect`` fails.

Standard library only.
"""

from __future__ import annotations

import sys
import time

from rtlibvirt.hook import isolation
from rtlibvirt.hook import threads as vcputhreads
from rtlibvirt.hook.domain import DomainError, DomainInfo, parse
from rtlibvirt.hook.isolation import Host
from rtlibvirt.hook.log import HookLog
from rtlibvirt.hook.state import PHASE_PREPARED, PHASE_RUNNING, Claim, State, StateError, StateStore
from rtlibvirt.kernel import rtgroup
from rtlibvirt.kernel.cpuset import format_cpulist
from rtlibvirt.kernel.fs import HostFS

# A claim made at ``prepare`` whose QEMU never appeared counts as a start in
# progress for this long; after that it is stale (libvirt died mid-start).
PREPARED_GRACE = 600.0


class Refused(Exception):
    """``prepare`` refuses the start: one line for libvirt to show."""


def handle(fs: HostFS, name: str, op: str, subop: str, xml: str) -> int:
    log = HookLog(fs, f"{name} {op} {subop}")
    strict = False
    try:
        domain = _domain(log, xml)
        strict = domain is not None and domain.settings.strict
        if op == "prepare":
            return _prepare(fs, log, name, domain)
        if op == "started":
            _started(fs, log, name, domain)
        elif op == "reconnect":
            _started(fs, log, name, domain, reconnect=True)
        else:
            _stop(fs, log, name, managed=domain is not None)
        return 0
    except Refused as exc:
        message = f"rtlibvirt: {name}: {exc}"
        log.error(f"start refused: {exc}")
        sys.stderr.write(message + "\n")
        return 1
    except StateError as exc:
        log.error(str(exc))
        if op == "prepare" and strict:
            sys.stderr.write(f"rtlibvirt: {name}: {exc}\n")
            return 1
        return 0
    except Exception as exc:  # never let a bug kill a running VM
        import traceback

        log.error(f"internal error: {type(exc).__name__}: {exc}")
        for line in traceback.format_exc().splitlines():
            log.debug(line)
        if op == "prepare" and strict:
            sys.stderr.write(
                f"rtlibvirt: {name}: internal error of the rtlibvirt hook: {exc} "
                "(strict isolation: the VM is not started)\n"
            )
            return 1
        return 0
    finally:
        log.close()


def _domain(log: HookLog, xml: str) -> DomainInfo | None:
    if not xml:
        return None
    try:
        domain = parse(xml)
    except DomainError as exc:
        log.error(f"{exc}; no isolation for this VM")
        return None
    if not domain.managed:
        return None
    for note in domain.notes:
        log.warning(note)
    return domain


def _open(fs: HostFS, log: HookLog, store: StateStore) -> Host:
    state = store.load()
    if state.set_aside:
        log.error(
            f"the state file was unreadable and has been set aside as {state.set_aside}; "
            "values changed by earlier VMs cannot be restored from it"
        )
    return Host(fs, state, log, store)


# ---- liveness of claims --------------------------------------------------------------


def _alive(fs: HostFS, claim: Claim) -> bool:
    if claim.pid is not None:
        return vcputhreads.is_qemu_of(fs, claim.pid, claim.name)
    pid = vcputhreads.qemu_pid(fs, claim.name)
    if pid is not None and vcputhreads.is_qemu_of(fs, pid, claim.name):
        return True
    if claim.phase == PHASE_PREPARED:
        return time.time() - claim.since < PREPARED_GRACE
    return True  # running, but its pid was never known: only its stop releases it


def _prune(host: Host, keep: str | None = None) -> bool:
    """Drop claims of VMs whose QEMU is gone without a stop call; True if any."""
    stale = [
        c for n, c in sorted(host.state.claims.items()) if n != keep and not _alive(host.fs, c)
    ]
    for claim in stale:
        host.log.warning(
            f"VM {claim.name!r} ({claim.phase}, pid {claim.pid}) is gone without a stop call; "
            f"releasing its CPUs {format_cpulist(claim.cpus)}"
        )
        del host.state.claims[claim.name]
    if stale:
        host.save()
    return bool(stale)


def _conflicts(state: State, name: str, cpus: frozenset[int]) -> list[str]:
    return [
        f"host CPU {format_cpulist(c.cpus & cpus)} already belongs to real-time VM "
        f"{c.name!r} ({'running' if c.running else 'starting'})"
        for n, c in sorted(state.claims.items())
        if n != name and c.cpus & cpus
    ]


# ---- the operations ------------------------------------------------------------------


def _prepare(fs: HostFS, log: HookLog, name: str, domain: DomainInfo | None) -> int:
    if domain is None:
        return 0
    cpus = domain.cpus
    if not cpus:
        log.info("no pinned real-time vCPUs: nothing to isolate")
        return 0
    problem = rtgroup.diagnose(fs)
    if problem:
        raise Refused(f"{problem}; fix: {rtgroup.HINT}")
    store = StateStore(fs)
    with store.locked():
        host = _open(fs, log, store)
        if _prune(host, keep=name):
            isolation.reconcile(host)  # undo what the vanished VMs needed
        conflicts = _conflicts(host.state, name, cpus)
        if conflicts:
            raise Refused(
                "; ".join(conflicts) + ": stop that VM first, or pin this one to other CPUs"
            )
        old = host.state.claims.get(name)
        if old is not None:
            log.warning(f"replacing a leftover {old.phase} claim of this VM")
        claim = Claim(name, cpus, domain.settings, uuid=domain.uuid, phase=PHASE_PREPARED)
        if old is not None and old.settings == domain.settings and old.cpus == cpus:
            claim.cache = old.cache
        host.state.claims[name] = claim
        others = [c for n, c in sorted(host.state.claims.items()) if n != name]
        problems = isolation.check(host, claim, others)
        if problems and domain.settings.strict:
            del host.state.claims[name]
            host.save()
            isolation.reconcile(host)  # e.g. unmount a resctrl mounted for the check
            more = f" (and {len(problems) - 1} more, see the log)" if len(problems) > 1 else ""
            for p in problems:
                log.error(p)
            raise Refused(f"strict isolation cannot be applied: {problems[0]}{more}")
        for p in problems:
            log.warning(f"{p}; the VM starts without it")
        host.save()
        log.info(f"reserved CPUs {format_cpulist(cpus)} ({_describe(claim)})")
    return 0


def _started(
    fs: HostFS, log: HookLog, name: str, domain: DomainInfo | None, reconnect: bool = False
) -> None:
    if domain is None:
        return
    cpus = domain.cpus
    if not cpus:
        log.info("no pinned real-time vCPUs: nothing to isolate")
        return
    store = StateStore(fs)
    with store.locked():
        host = _open(fs, log, store)
        _prune(host, keep=name)
        for conflict in _conflicts(host.state, name, cpus):
            log.error(f"{conflict}; both are isolated, but they share CPUs")
        claim = host.state.claims.get(name)
        if claim is None:
            claim = Claim(name, cpus, domain.settings, uuid=domain.uuid)
            host.state.claims[name] = claim
            if reconnect:
                log.info("taking the running VM into the state")
        elif claim.cpus != cpus or claim.settings != domain.settings:
            claim.cpus, claim.settings, claim.cache = cpus, domain.settings, {}
        pid = vcputhreads.qemu_pid(fs, name)
        threads = vcputhreads.vcpu_threads(fs, pid) if pid is not None else {}
        claim.pid = pid
        claim.tids = [threads[v.vcpu] for v in domain.realtime if v.vcpu in threads]
        claim.phase = PHASE_RUNNING
        host.save()  # the claim is on disk before any value changes
        if pid is None:
            log.warning(f"no QEMU pid in /run/libvirt/qemu/{name}.pid: vCPU threads unknown")
        log.info(f"isolating CPUs {format_cpulist(cpus)} ({_describe(claim)})")
        isolation.reconcile(host)
        for problem in isolation.verify(host):
            log.warning(f"after applying: {problem}")
        if pid is not None:
            _check_threads(fs, log, pid, domain)
        host.save()


def _check_threads(fs: HostFS, log: HookLog, pid: int, domain: DomainInfo) -> None:
    good, bad = vcputhreads.check(fs, pid, domain)
    for line in good:
        log.info(f"checked: {line}")
    for line in bad:
        log.warning(f"vCPU thread mismatch: {line}")
    if any(" runs " in line for line in bad):
        problem = rtgroup.diagnose(fs)
        if problem:
            log.warning(f"{problem}; fix: {rtgroup.HINT}")


def _stop(fs: HostFS, log: HookLog, name: str, managed: bool) -> None:
    store = StateStore(fs)
    if not store.exists():
        return  # nothing was ever changed (or everything is restored)
    with store.locked():
        host = _open(fs, log, store)
        claim = host.state.claims.pop(name, None)
        if claim is None and not managed:
            return  # another domain (without metadata) stops: not ours
        if claim is not None:
            host.save()
            log.info(f"releasing CPUs {format_cpulist(claim.cpus)}")
        _prune(host)
        isolation.reconcile(host)
        host.save()
        if host.state.is_empty():
            if claim is not None:
                log.info("no real-time VM is left: every value is back to its original")
        elif not host.state.claims and host.state.originals:
            log.error(
                f"{len(host.state.originals)} values could not be restored; "
                "they stay in the state file and the next hook call tries again"
            )


def _describe(claim: Claim) -> str:
    s = claim.settings
    steps = []
    if s.irqs:
        steps.append("IRQs")
    if s.workqueues:
        steps.append("workqueues")
    if s.machine_check_off:
        steps.append("machine-check polling off")
    if s.cache_ways:
        steps.append(f"{s.cache_ways} cache ways")
    if s.strict:
        steps.append("strict")
    return ", ".join(steps) or "no isolation steps"

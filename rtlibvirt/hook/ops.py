"""The hook's operations, for domains that carry rtlibvirt metadata (see ``hook``).

Every operation takes the state lock for its whole run, so that hook
processes of VMs starting and stopping at the same time take turns. Only
``prepare`` may exit non-zero; every other failure is logged and the hook exits
0, since libvirt kills the VM when ``started`` or ``reconnect`` fails.

The metadata is untrusted input (see ``hook.domain``): ``prepare`` validates it
with vm.yaml's model and refuses the start, with one line, when it is invalid;
``started`` and ``reconnect`` then change nothing and log why; a stop always
releases what the hook holds under the domain's name, since that only puts
originals back.

Standard library only.
"""

from __future__ import annotations

import sys
import time

from rtlibvirt.domain import metadata
from rtlibvirt.hook import isolation
from rtlibvirt.hook import threads as vcputhreads
from rtlibvirt.hook.domain import (
    DomainError,
    DomainInfo,
    Validated,
    Vcpu,
    cpus_of,
    name_problem,
    no_room,
    parse,
    validated,
)
from rtlibvirt.hook.isolation import Host
from rtlibvirt.hook.log import HookLog, clip, escape
from rtlibvirt.hook.state import (
    PHASE_PREPARED,
    PHASE_RUNNING,
    Claim,
    Settings,
    State,
    StateError,
    StateStore,
)
from rtlibvirt.kernel import rtgroup
from rtlibvirt.kernel.cpuset import format_cpulist
from rtlibvirt.kernel.fs import HostFS

# A claim made at ``prepare`` whose QEMU never appeared counts as a start in
# progress for this long; after that it is stale (libvirt died mid-start).
PREPARED_GRACE = 600.0


class Refused(Exception):
    """``prepare`` refuses the start: one line for libvirt to show."""


class Unusable(Exception):
    """The domain's metadata (or name) cannot be used: nothing is changed for it."""


class Broken(Exception):
    """The domain carries rtlibvirt metadata, but it (or its name, or its XML) is unusable."""


def handle(fs: HostFS, name: str, op: str, subop: str, xml: str) -> int:
    log = HookLog(fs, f"{name} {op} {subop}")
    strict = False
    try:
        try:
            domain = _domain(log, xml, name)
        except Broken as exc:
            if op == "prepare":
                raise Refused(str(exc)) from None
            if op in ("started", "reconnect"):
                raise Unusable(str(exc)) from None
            _stop(fs, log, name, managed=True)  # a stop puts back what was changed for it
            return 0
        if op == "prepare":
            if domain is None:
                return 0
            try:
                checked = validated(fs, domain, fs.cpus_online())
            except DomainError as exc:
                raise Refused(str(exc)) from None
            strict = checked.settings.strict
            return _prepare(fs, log, name, domain, checked)
        if op in ("started", "reconnect"):
            if domain is not None:
                _started(fs, log, name, domain, reconnect=op == "reconnect")
        else:
            _stop(fs, log, name, managed=domain is not None)
        return 0
    except Refused as exc:
        log.error(f"start refused: {exc}")
        sys.stderr.write(escape(clip(f"rtlibvirt: {name}: {exc}", 1000)) + "\n")
        return 1
    except Unusable as exc:
        log.error(f"{exc}; nothing changed for this VM")
        return 0
    except StateError as exc:
        log.error(str(exc))
        if op == "prepare" and strict:
            sys.stderr.write(escape(clip(f"rtlibvirt: {name}: {exc}", 1000)) + "\n")
            return 1
        return 0
    except Exception as exc:  # never let a bug kill a running VM
        import traceback

        log.error(f"internal error: {type(exc).__name__}: {exc}")
        for line in traceback.format_exc().splitlines():
            log.debug(line)
        if op == "prepare" and strict:
            sys.stderr.write(
                escape(
                    clip(
                        f"rtlibvirt: {name}: internal error of the rtlibvirt hook: {exc} "
                        "(strict isolation: the VM is not started)",
                        1000,
                    )
                )
                + "\n"
            )
            return 1
        return 0
    finally:
        log.close()


def _domain(log: HookLog, xml: str, name: str) -> DomainInfo | None:
    """The domain, if it carries rtlibvirt metadata (None if not); Broken if unusable."""
    if not xml:
        return None
    try:
        domain = parse(xml)
    except DomainError as exc:
        if not metadata.has_metadata(xml):
            return None  # not ours: whatever is wrong with it is libvirt's business
        raise Broken(str(exc)) from None
    if not domain.managed:
        return None
    problem = name_problem(name)
    if problem is not None:
        raise Broken(f"domain {name!r}: {problem}")
    for note in domain.notes:
        log.warning(note)
    return domain


def _open(fs: HostFS, log: HookLog, store: StateStore) -> Host:
    state = store.load()
    for note in store.notes:
        log.error(note)
    return Host(fs, state, log, store)


# ---- liveness of claims --------------------------------------------------------------


def alive(fs: HostFS, claim: Claim) -> bool:
    if claim.pid is not None:
        return vcputhreads.is_qemu_of(fs, claim.pid, claim.name)
    pid = vcputhreads.qemu_pid(fs, claim.name)
    if pid is not None and vcputhreads.is_qemu_of(fs, pid, claim.name):
        return True
    if claim.phase == PHASE_PREPARED:
        return time.time() - claim.since < PREPARED_GRACE
    return True  # running, but its pid was never known: only its stop releases it


def prune(host: Host, keep: str | None = None) -> bool:
    """Drop claims of VMs whose QEMU is gone without a stop call; True if any."""
    stale = [c for n, c in sorted(host.state.claims.items()) if n != keep and not alive(host.fs, c)]
    for claim in stale:
        host.log.warning(
            f"VM {claim.name!r} ({claim.phase}, pid {claim.pid}) is gone without a stop call; "
            f"releasing its CPUs {format_cpulist(claim.cpus)}"
        )
        host.drop_claim(claim.name)
    return bool(stale)


def _conflicts(state: State, name: str, cpus: frozenset[int]) -> list[str]:
    return [
        f"host CPU {format_cpulist(c.cpus & cpus)} already belongs to real-time VM "
        f"{c.name!r} ({'running' if c.running else 'starting'})"
        for n, c in sorted(state.claims.items())
        if n != name and c.cpus & cpus
    ]


def _declared_partners(domain: DomainInfo, state: State, name: str, cpus: frozenset[int]) -> str:
    """The running VMs in the way that this VM's ``cpu.share_with`` names, for the refusal."""
    try:
        spec = metadata.parse_text(domain.meta_text or "")
    except metadata.MetadataError:
        return ""
    cpu = spec.get("cpu")
    names = cpu.get("share_with") if isinstance(cpu, dict) else None
    if not isinstance(names, list):
        return ""
    return ", ".join(
        repr(n)
        for n, c in sorted(state.claims.items())
        if n != name and c.cpus & cpus and n in names
    )


def _housekeeping(fs: HostFS, state: State, name: str, cpus: frozenset[int]) -> str | None:
    """Why taking ``cpus`` would leave the host without a housekeeping CPU; None if not."""
    online = fs.cpus_online()
    if not online:
        return None
    boot = fs.cpus_isolated()
    held: set[int] = set()
    for other, claim in state.claims.items():
        if other != name:
            held |= claim.cpus
    before = online - boot - held
    if before - cpus:
        return None
    must = sorted(before & cpus) or [min(online)]
    return (
        f"isolating CPU {format_cpulist(cpus)} would leave the host no housekeeping CPU: "
        f"CPU {format_cpulist(must)} must stay with the host (online: {format_cpulist(online)}; "
        f"held by other real-time VMs: {format_cpulist(held) or 'none'}; isolated at boot: "
        f"{format_cpulist(boot) or 'none'}); pin the real-time vCPUs to other CPUs"
    )


# ---- the operations ------------------------------------------------------------------


def _prepare(fs: HostFS, log: HookLog, name: str, domain: DomainInfo, checked: Validated) -> int:
    cpus = checked.cpus
    if not cpus:
        log.info("no pinned real-time vCPUs: nothing to isolate")
        return 0
    problem = rtgroup.diagnose(fs)
    if problem:
        raise Refused(f"{problem}; fix: {rtgroup.HINT}")
    kthreads = checked.kthread_priorities()
    room = no_room(kthreads)
    if room:
        raise Refused(room)
    settings = checked.settings
    store = StateStore(fs)
    with store.locked():
        host = _open(fs, log, store)
        if prune(host, keep=name):
            isolation.reconcile(host)  # undo what the vanished VMs needed
        conflicts = _conflicts(host.state, name, cpus)
        if conflicts:
            host.commit()
            declared = _declared_partners(domain, host.state, name, cpus)
            if declared:
                raise Refused(
                    "; ".join(conflicts) + f": this VM shares CPUs with {declared} "
                    "(cpu.share_with), so they never run at the same time: stop that VM first"
                )
            raise Refused(
                "; ".join(conflicts) + ": stop that VM first, or pin this one to other CPUs"
            )
        housekeeping = _housekeeping(fs, host.state, name, cpus)
        if housekeeping:
            host.commit()
            raise Refused(housekeeping)
        old = host.state.claims.get(name)
        if old is not None:
            log.warning(f"replacing a leftover {old.phase} claim of this VM")
        claim = Claim(
            name,
            cpus,
            settings,
            uuid=domain.uuid,
            phase=PHASE_PREPARED,
            meta=domain.meta,
            kthreads=kthreads,
        )
        if old is not None and old.settings == settings and old.cpus == cpus:
            claim.cache = old.cache
        host.put_claim(claim)
        others = [c for n, c in sorted(host.state.claims.items()) if n != name]
        problems = isolation.check(host, claim, others)
        if problems and settings.strict:
            host.drop_claim(name)
            isolation.reconcile(host)  # e.g. unmount a resctrl mounted for the check
            host.commit()
            more = f" (and {len(problems) - 1} more, see the log)" if len(problems) > 1 else ""
            for p in problems:
                log.error(p)
            raise Refused(f"strict isolation cannot be applied: {problems[0]}{more}")
        for p in problems:
            log.warning(f"{p}; the VM starts without it")
        host.put_claim(claim)  # with the cache ways check() reserved
        host.save()  # the claim is on disk before any value changes
        # Isolated now, before QEMU exists: none of the VM's threads ever runs
        # beside host work, and the hook's work does not compete with QEMU's
        # start-up on the housekeeping CPUs, as it does at started (where even
        # an empty hook's time varies from 4 to 70 ms on this 2-CPU machine).
        log.info(f"isolating CPUs {format_cpulist(cpus)} ({_describe(claim)})")
        isolation.reconcile(host)
        host.commit()
    return 0


def _started(
    fs: HostFS, log: HookLog, name: str, domain: DomainInfo, reconnect: bool = False
) -> None:
    store = StateStore(fs)
    with store.locked():
        host = _open(fs, log, store)
        claim = host.state.claims.get(name)
        if claim is not None and claim.meta == domain.meta and domain.realtime is not None:
            # the metadata prepare validated: its settings, the XML's pinning
            realtime: list[Vcpu] = domain.realtime
            settings: Settings = claim.settings
            kthreads = claim.kthreads
            online = fs.cpus_online()
            if online and not cpus_of(realtime) <= online:
                raise Unusable(f"CPU {format_cpulist(cpus_of(realtime) - online)} is not online")
        else:
            try:
                checked = validated(fs, domain, fs.cpus_online())
            except DomainError as exc:
                raise Unusable(str(exc)) from None
            realtime, settings = checked.realtime, checked.settings
            kthreads = checked.kthread_priorities()
            room = no_room(kthreads)
            if room:
                log.error(f"{room}; the kernel threads are left alone")
                kthreads = {}
        cpus = cpus_of(realtime)
        if not cpus:
            log.info("no pinned real-time vCPUs: nothing to isolate")
            return
        prune(host, keep=name)
        for conflict in _conflicts(host.state, name, cpus):
            log.error(f"{conflict}; both are isolated, but they share CPUs")
        # prepare isolated these CPUs with these settings already: say so only when not
        isolated = (
            claim is not None
            and claim.cpus == cpus
            and claim.settings == settings
            and claim.kthreads == kthreads
        )
        if claim is None:
            claim = Claim(
                name, cpus, settings, uuid=domain.uuid, meta=domain.meta, kthreads=kthreads
            )
            if reconnect:
                log.info("taking the running VM into the state")
        elif claim.cpus != cpus or claim.settings != settings:
            claim.cpus, claim.settings, claim.cache = cpus, settings, {}
        claim.kthreads = kthreads
        pid = vcputhreads.qemu_pid(fs, name)
        threads = vcputhreads.vcpu_threads(fs, pid) if pid is not None else {}
        claim.pid = pid
        claim.tids = [threads[v.vcpu] for v in realtime if v.vcpu in threads]
        claim.phase = PHASE_RUNNING
        claim.meta = domain.meta
        host.put_claim(claim)
        host.save()  # the claim is on disk before any value changes
        if pid is None:
            log.warning(f"no QEMU pid in {vcputhreads.pid_file(name)}: vCPU threads unknown")
        if not isolated:
            log.info(f"isolating CPUs {format_cpulist(cpus)} ({_describe(claim)})")
        isolation.reconcile(host)  # since prepare: only what changed (threads born, tids)
        problems = isolation.verify(host)
        for problem in problems[:20]:
            log.warning(f"after applying: {problem}")
        if len(problems) > 20:
            log.warning(f"after applying: {len(problems) - 20} more differences")
        if pid is not None:
            _check_threads(fs, log, pid, realtime)
        host.commit()


def _check_threads(fs: HostFS, log: HookLog, pid: int, realtime: list[Vcpu]) -> None:
    good, bad = vcputhreads.check(fs, pid, realtime)
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
        claim = host.drop_claim(name)
        if claim is None and not managed and not store.notes:
            return  # another domain (without metadata) stops: not ours
        if claim is not None:
            log.info(f"releasing CPUs {format_cpulist(claim.cpus)}")
        pruned = prune(host)
        if claim is None and host.state.claims and not (pruned or store.interrupted or store.notes):
            return  # e.g. release end after stopped end, which did it all (others run on)
        isolation.reconcile(host)
        host.commit()
        if host.state.is_empty():
            if claim is not None:
                log.info("no real-time VM is left: every value is back to its original")
        elif not host.state.claims and (host.state.originals or host.state.tasks):
            left = len(host.state.originals) + len(host.state.tasks)
            log.error(
                f"{left} values could not be restored; they stay in the state and the next "
                "hook call (or `rtlibvirt hook restore`) tries again"
            )


def _describe(claim: Claim) -> str:
    s = claim.settings
    steps = []
    if s.irqs:
        steps.append("IRQs")
    if s.workqueues:
        steps.append("workqueues")
    if s.tasks:
        steps.append("host tasks")
    if claim.kthreads:
        steps.append(
            "kernel threads above the vCPUs (FIFO "
            + ", ".join(f"{k} {p}" for k, p in sorted(claim.kthreads.items()))
            + ")"
        )
    if s.machine_check_off:
        steps.append("machine-check polling off")
    if s.cache_ways:
        steps.append(f"{s.cache_ways} cache ways")
    if s.strict:
        steps.append("strict")
    return ", ".join(steps) or "no isolation steps"

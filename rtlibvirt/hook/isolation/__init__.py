"""The isolation steps the hook applies while real-time VMs run.

One module per step: ``irq``, ``workqueue``, ``machinecheck``, ``resctrl``.
Each has the same functions:

- ``plan(host, claims)``: what the host should look like for the running VMs
  in ``claims`` that want this step (no claims: every value back to its
  original); computed from the saved originals, so the result depends only on
  who is running, never on the order in which VMs came and went;
- ``reconcile(host, claims)``: apply that plan, saving each value's original
  in the state (and the state on disk) *before* the first write to it; with
  no claims this is the step's undo;
- ``verify(host, claims)``: what on the live host differs from the plan.

and ``check(host, claim, others)``: why this step cannot be applied for a VM
about to start (used by ``prepare``: a refusal when the VM is ``strict``,
else a warning).

:func:`reconcile` runs every step; the hook calls it after each change of the
claims. Because it converges on the plan, a call that finds the work of a
killed predecessor half done simply finishes (or undoes) it.

Standard library only.
"""

from __future__ import annotations

from functools import lru_cache

from rtlibvirt.hook.log import HookLog
from rtlibvirt.hook.state import Claim, Settings, State, StateStore
from rtlibvirt.kernel.cpuset import CpuListError, format_cpulist, parse_mask
from rtlibvirt.kernel.fs import HostFS

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Protocol

    class Step(Protocol):
        NAME: str

        def wants(self, settings: Settings) -> bool: ...

        def check(self, host: Host, claim: Claim, others: list[Claim]) -> list[str]: ...

        def reconcile(self, host: Host, claims: list[Claim]) -> None: ...

        def verify(self, host: Host, claims: list[Claim]) -> list[str]: ...


class Host:
    """What a step works with: the host's files, the hook's state, the log."""

    __slots__ = ("fs", "log", "state", "store")

    def __init__(self, fs: HostFS, state: State, log: HookLog, store: StateStore) -> None:
        self.fs = fs
        self.state = state
        self.log = log
        self.store = store

    def save(self) -> None:
        self.store.save(self.state)


class ValuePlan:
    """Wanted values of plain kernel files: path -> value, or None = its original."""

    __slots__ = ("describe", "notes", "read", "same", "show", "step", "wanted")

    def __init__(
        self,
        step: str,
        wanted: dict[str, str | None],
        *,
        same: Callable[[str, str], bool],
        describe: Callable[[str], str],
        show: Callable[[str], str] = str,
        notes: Iterable[str] = (),
        read: Callable[[HostFS, str], str | None] | None = None,
    ) -> None:
        self.step = step
        self.read = read or _read
        self.wanted = wanted
        self.same = same
        self.describe = describe
        self.show = show
        self.notes = list(notes)


# ---- helpers shared by the steps that write masks ----------------------------


# A host has few distinct masks but hundreds of IRQs: parse each text once.
cached_mask = lru_cache(maxsize=256)(parse_mask)


def same_mask(a: str, b: str) -> bool:
    try:
        return cached_mask(a) == cached_mask(b)
    except CpuListError:
        return a.strip() == b.strip()


@lru_cache(maxsize=256)
def show_mask(value: str) -> str:
    try:
        cpus = cached_mask(value)
    except CpuListError:
        return repr(value)
    return format_cpulist(cpus) if cpus else "(none)"


def same_text(a: str, b: str) -> bool:
    return a.strip() == b.strip()


def isolated_cpus(claims: Iterable[Claim]) -> frozenset[int]:
    found: set[int] = set()
    for claim in claims:
        found |= claim.cpus
    return frozenset(found)


def shrink(
    base: frozenset[int], isolated: frozenset[int], online: frozenset[int]
) -> frozenset[int]:
    """``base`` without the isolated CPUs; all housekeeping CPUs if nothing is left."""
    return (base - isolated) or (online - isolated)


def owned(state: State, prefixes: tuple[str, ...]) -> list[str]:
    return sorted(p for p in state.originals if p.startswith(prefixes))


def forget_refused(state: State, prefixes: tuple[str, ...]) -> None:
    for path in [p for p in state.refused if p.startswith(prefixes)]:
        del state.refused[path]


def converge(host: Host, plan: ValuePlan) -> None:
    """Bring each file of ``plan`` to its wanted value; originals saved first."""
    fs, state, log = host.fs, host.state, host.log
    for note in plan.notes:
        log.warning(note)
    # 1. Save the original of every file about to change for the first time.
    live: dict[str, str | None] = {}
    new = False
    for path, want in plan.wanted.items():
        live[path] = plan.read(fs, path)
        current = live[path]
        if want is None or current is None or path in state.originals or path in state.refused:
            continue
        if not plan.same(current, want):
            state.originals[path] = current
            new = True
    if new:
        host.save()
    # 2. Write.
    dirty = False
    for path, want in plan.wanted.items():
        current = live[path]
        restoring = want is None
        target = state.originals.get(path) if restoring else want
        if target is None or (not restoring and path in state.refused):
            continue
        what = plan.describe(path)
        if current is None:
            if restoring:
                log.info(f"{what}: gone; nothing to restore")
                dirty |= state.originals.pop(path, None) is not None
            continue
        if plan.same(current, target):
            if restoring:
                dirty |= state.originals.pop(path, None) is not None
            continue
        try:
            fs.write(path, target)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if restoring:
                log.error(f"{what}: cannot restore {plan.show(target)}: {reason}")
                continue
            after = plan.read(fs, path)
            original = state.originals.get(path)
            if after is not None and (original is None or plan.same(after, original)):
                state.originals.pop(path, None)  # never changed: nothing to undo
                state.refused[path] = reason
                dirty = True
                log.warning(f"{what}: the kernel refused {plan.show(target)} ({reason}); skipped")
            else:
                log.error(f"{what}: cannot write {plan.show(target)}: {reason}")
            continue
        log.info(f"{what}: {plan.show(current)} -> {plan.show(target)}")
        if restoring:
            state.originals.pop(path, None)
            dirty = True
    if dirty:
        host.save()


def verify_values(host: Host, plan: ValuePlan) -> list[str]:
    """Files of ``plan`` whose live value is not the wanted one."""
    problems = []
    for path, want in plan.wanted.items():
        target = want if want is not None else host.state.originals.get(path)
        if target is None or path in host.state.refused:
            continue
        current = plan.read(host.fs, path)
        if current is None:
            continue
        if not plan.same(current, target):
            problems.append(
                f"{plan.describe(path)} is {plan.show(current)}, expected {plan.show(target)}"
            )
    return problems


def _read(fs: HostFS, path: str) -> str | None:
    try:
        return fs.read(path)
    except OSError:
        return None


# ---- all steps ---------------------------------------------------------------


def steps() -> list[Step]:
    from rtlibvirt.hook.isolation import irq, machinecheck, resctrl, workqueue

    return [irq, workqueue, machinecheck, resctrl]


def reconcile(host: Host) -> None:
    """Bring the host to what the running claims want, step by step."""
    running = host.state.running()
    for step in steps():
        claims = [c for c in running if step.wants(c.settings)]
        try:
            step.reconcile(host, claims)
        except OSError as exc:
            host.log.error(f"{step.NAME}: {exc.strerror or exc}")


def verify(host: Host) -> list[str]:
    running = host.state.running()
    problems = []
    for step in steps():
        claims = [c for c in running if step.wants(c.settings)]
        problems += [f"{step.NAME}: {p}" for p in step.verify(host, claims)]
    return problems


def check(host: Host, claim: Claim, others: list[Claim]) -> list[str]:
    """Why some requested step cannot be applied for ``claim`` (empty: all can)."""
    problems = []
    for step in steps():
        if step.wants(claim.settings):
            mine = [c for c in others if step.wants(c.settings)]
            problems += [f"{step.NAME}: {p}" for p in step.check(host, claim, mine)]
    return problems

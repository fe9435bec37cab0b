"""What every isolation step is built on: the host, value plans, and their convergence.

:class:`Host` bundles the host's files, the hook's state and the log;
:class:`ValuePlan` says which kernel file should hold which value (or go back
to its original); :func:`converge` brings the files there, saving each
original before its first change; :func:`verify_values` lists what differs.
:func:`mask_plan` is the one plan of the steps that take the VMs' CPUs out of
hex cpumasks (IRQs and workqueues).

Standard library only. This module imports no step, and the steps import it,
so there is no cycle with the package's ``__init__``.
"""

from __future__ import annotations

from functools import lru_cache

from rtlibvirt.hook.log import HookLog
from rtlibvirt.hook.state import Claim, Settings, State, StateStore
from rtlibvirt.kernel.cpuset import CpuListError, format_cpulist, format_mask, parse_mask
from rtlibvirt.kernel.fs import HostFS

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


class Host:
    """What a step works with: the host's files, the hook's state, the log.

    Every change of the state goes through the methods below, which record it
    in the journal too; :meth:`save` makes what was recorded durable, and a
    step calls it before each change of the host that a record announces.
    The snapshot is written once, at the end of the hook call (:meth:`commit`).
    """

    __slots__ = ("converged", "fs", "log", "memo", "scan", "state", "store")

    def __init__(self, fs: HostFS, state: State, log: HookLog, store: StateStore) -> None:
        self.fs = fs
        self.state = state
        self.log = log
        self.store = store
        # step name -> (the claims it converged for, its plan): verify() right after
        # reconcile() in the same call needs no second reading of thousands of files
        self.converged: dict[str, tuple[tuple[tuple[str, frozenset[int]], ...], ValuePlan]] = {}
        # what a step read once and may reuse within this hook call (e.g. each
        # process's cgroup, which no write of the hook changes)
        self.memo: dict[str, dict[int, str | None]] = {}
        # the tasks step's last scan of /proc in this call (a tasks.Scan), which the
        # kernel-threads step reuses: one scan of every thread per call, not two
        self.scan: object | None = None

    def save(self) -> None:
        """Write the journal of every recorded change before the next write to the host."""
        self.store.journal.flush()

    def commit(self) -> None:
        """The snapshot of the whole state, at the end of a hook call."""
        self.store.save(self.state)

    def keep_original(self, path: str, value: str) -> None:
        self.state.originals[path] = value
        self.store.journal.add({"op": "orig", "path": path, "value": value})

    def drop_original(self, path: str) -> bool:
        if self.state.originals.pop(path, None) is None:
            return False
        self.store.journal.add({"op": "done", "path": path})
        return True

    def put_claim(self, claim: Claim) -> None:
        """Add or update a claim (its new fields are journaled as a whole)."""
        self.state.claims[claim.name] = claim
        self.store.journal.add({"op": "claim", "name": claim.name, "claim": claim.to_json()})

    def drop_claim(self, name: str) -> Claim | None:
        claim = self.state.claims.pop(name, None)
        if claim is not None:
            self.store.journal.add({"op": "drop", "name": name})
        return claim

    def add_group(self, directory: str, owner: str) -> None:
        self.state.groups[directory] = owner
        self.store.journal.add({"op": "group", "path": directory, "owner": owner})

    def remove_group(self, directory: str) -> None:
        if self.state.groups.pop(directory, None) is not None:
            self.store.journal.add({"op": "ungroup", "path": directory})

    def set_mounted(self, mounted: bool) -> None:
        self.state.resctrl_mounted = mounted
        self.store.journal.add({"op": "mount" if mounted else "umount"})


class ValuePlan:
    """Wanted values of plain kernel files: path -> value, or None = its original."""

    __slots__ = (
        "blind",
        "describe",
        "explain",
        "known",
        "loud",
        "notes",
        "problems",
        "read",
        "same",
        "show",
        "step",
        "wanted",
        "write",
    )

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
        write: Callable[[HostFS, str, str], None] | None = None,
        explain: Callable[[OSError], str] | None = None,
        loud: bool = False,
    ) -> None:
        self.step = step
        # each refusal of the kernel gets a warning line of its own, naming the file and
        # why (a handful of workqueues); else a debug line (hundreds of managed IRQs)
        self.loud = loud
        self.read = read or _read
        self.write = write or _write
        self.explain = explain or _explain
        self.known: dict[str, str | None] = {}  # values read while planning: not read again
        # files whose wanted value differs from the one the last call left: they are
        # written without being read first (a 2,000-IRQ host: 2,000 reads less)
        self.blind: set[str] = set()
        self.problems: list[str] | None = None  # what converge could not do (None: not run)
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


def owned(state: State, owns: Callable[[str], bool]) -> list[str]:
    """The saved originals of one step's files (``owns`` tells them), sorted."""
    return sorted(p for p in state.originals if owns(p))


def forget_refused(state: State, owns: Callable[[str], bool]) -> None:
    """Forget the refusals of one step's files (its last VM stopped: try again next time)."""
    for path in [p for p in state.refused if owns(p)]:
        del state.refused[path]


def converge(host: Host, plan: ValuePlan) -> int:
    """Bring each file of ``plan`` to its wanted value; originals journaled first.

    Logs one line for the step (what changed, what was restored, what the
    kernel refused); the value of each file is a debug line. Returns how many
    files were written.
    """
    fs, state, log = host.fs, host.state, host.log
    for note in plan.notes:
        log.warning(note)
    # 1. Journal the original of every file about to change for the first time.
    live: dict[str, str | None] = {}
    known, blind = plan.known, plan.blind
    for path, want in plan.wanted.items():
        if path in blind and path in state.originals:
            live[path] = _BLIND  # it will change: no need to read it first
            continue
        live[path] = current = known[path] if path in known else plan.read(fs, path)
        if want is None or current is None or path in state.originals or path in state.refused:
            continue
        if not plan.same(current, want):
            host.keep_original(path, current)
    host.save()  # durable before the first write
    # 2. Write.
    changed = restored = gone = 0
    refused: list[str] = []
    failed: list[str] = []
    for path, want in plan.wanted.items():
        current = live[path]
        restoring = want is None
        target = state.originals.get(path) if restoring else want
        if target is None or (not restoring and path in state.refused):
            continue
        what = plan.describe(path)
        if current is None:
            if restoring and host.drop_original(path):
                gone += 1
                log.debug(f"{what}: gone; nothing to restore")
            continue
        if current is not _BLIND and plan.same(current, target):
            if restoring:
                host.drop_original(path)
            continue
        try:
            plan.write(fs, path, target)
        except FileNotFoundError:
            if restoring and host.drop_original(path):
                gone += 1
            continue
        except OSError as exc:
            reason = plan.explain(exc)
            if restoring:
                failed.append(f"{what}: cannot restore {plan.show(target)}: {reason}")
                continue
            after = plan.read(fs, path)
            original = state.originals.get(path)
            if after is not None and (original is None or plan.same(after, original)):
                host.drop_original(path)  # never changed: nothing to undo
                state.refused[path] = reason
                refused.append(what)
                line = f"{what}: the kernel refused {plan.show(target)} ({reason})"
                if plan.loud:
                    log.warning(f"{line}; left at {plan.show(after)} while real-time VMs run")
                else:
                    log.debug(f"{line}; skipped")
            else:
                failed.append(f"{what}: cannot write {plan.show(target)}: {reason}")
            continue
        shown = "(the hook's, not read)" if current is _BLIND else plan.show(current)
        log.debug(f"{what}: {shown} -> {plan.show(target)}")
        if restoring:
            host.drop_original(path)
            restored += 1
        else:
            changed += 1
    for line in failed:
        log.error(line)
    plan.problems = failed
    summary = []
    if changed:
        summary.append(f"{changed} changed")
    if restored:
        summary.append(f"{restored} restored")
    if gone:
        summary.append(f"{gone} gone (nothing to restore)")
    if refused:
        summary.append(f"{len(refused)} refused by the kernel and left alone ({_some(refused)})")
    if summary:
        log.info(f"{plan.step}: {len(plan.wanted)} values: {', '.join(summary)}")
    return changed + restored


_BLIND = "\0 not read"  # converge: a value not read because it is about to change
EMPTY = "\0 empty"  # mask_plan: an original that holds no CPU, left as it is


def _some(items: list[str], most: int = 3) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


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


def _write(fs: HostFS, path: str, value: str) -> None:
    fs.write(path, value)


def _explain(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _read(fs: HostFS, path: str) -> str | None:
    try:
        return fs.read(path)
    except OSError:
        return None


def mask_plan(
    host: Host,
    step: str,
    paths: Iterable[str],
    claims: list[Claim],
    *,
    owns: Callable[[str], bool],
    describe: Callable[[str], str],
    explain: Callable[[OSError], str] | None = None,
    loud: bool = False,
) -> ValuePlan:
    """The plan of hex cpumask files (IRQ affinities, workqueue cpumasks).

    Each file of ``paths`` should hold its original mask without the CPUs of
    the running ``claims`` (all housekeeping CPUs if nothing would be left);
    a file this step changed before and no longer wants (no claims, or the
    file is gone) goes back to its original. ``owns`` tells the step's files
    among the saved originals.
    """
    state, fs = host.state, host.fs
    isolated = isolated_cpus(claims)
    wanted: dict[str, str | None] = {}
    notes: list[str] = []
    known: dict[str, str | None] = {}
    online = fs.cpus_online()
    nbits = fs.nr_cpu_ids()
    before = state.hints.get(step)  # what the last call isolated for this step, if known
    blind: set[str] = set()
    previous: dict[str, str | None] = {}  # original text -> what the last call left
    if isolated:
        # thousands of IRQs share a handful of original masks: one answer per text
        answers: dict[str, str] = {}
        for path in paths:
            if path in state.refused:
                continue
            base_text = state.originals.get(path)
            if base_text is None:
                base_text = known[path] = _read(fs, path)
                if base_text is None:
                    continue  # gone meanwhile
            if base_text not in answers:
                try:
                    base = cached_mask(base_text)
                except CpuListError:
                    notes.append(f"{describe(path)}: cannot parse {base_text!r}; left alone")
                    continue
                # An empty mask holds no CPU to take out (a workqueue's own cpumask may be
                # empty: its workers follow the global mask, which this step narrows).
                want = shrink(base, isolated, online) if base else None
                answers[base_text] = format_mask(want, nbits) if want else ("" if base else EMPTY)
            answer = answers[base_text]
            if answer == EMPTY:
                continue
            if not answer:
                notes.append(f"{describe(path)}: no housekeeping CPU is online; left alone")
                continue
            wanted[path] = answer
    else:
        forget_refused(state, owns)
    for path in owned(state, owns):
        wanted.setdefault(path, None)  # no longer wanted (or the file is gone): restore
    if before is not None and before != isolated:
        for path, target in wanted.items():
            original = state.originals.get(path)
            if original is None:
                continue
            if original not in previous:
                try:
                    left = shrink(cached_mask(original), before, online) if before else None
                except CpuListError:
                    continue
                previous[original] = format_mask(left, nbits) if left else original
            last = previous[original]
            if last is not None and not same_mask(last, target if target is not None else original):
                blind.add(path)
    plan = ValuePlan(
        step,
        wanted,
        same=same_mask,
        describe=describe,
        show=show_mask,
        notes=notes,
        explain=explain,
        loud=loud,
    )
    plan.known = known
    plan.blind = blind
    state.hints[step] = isolated  # what this call leaves (saved with the snapshot)
    return plan


class Step:
    """One isolation step: its name, who wants it, its check, and how it converges.

    A step over plain kernel files gives ``plan`` (a :class:`ValuePlan` for the
    running claims that want it) and gets :meth:`reconcile` and :meth:`verify`
    from it; a step with more to do (resctrl makes and removes groups) gives
    its own ``reconcile`` and ``verify``.
    """

    __slots__ = ("_reconcile", "_verify", "check", "name", "plan", "wants")

    def __init__(
        self,
        name: str,
        *,
        wants: Callable[[Settings], bool],
        check: Callable[[Host, Claim, list[Claim]], list[str]],
        plan: Callable[[Host, list[Claim]], ValuePlan] | None = None,
        reconcile: Callable[[Host, list[Claim]], None] | None = None,
        verify: Callable[[Host, list[Claim]], list[str]] | None = None,
    ) -> None:
        self.name = name
        self.wants = wants
        self.check = check
        self.plan = plan
        self._reconcile = reconcile
        self._verify = verify

    def reconcile(self, host: Host, claims: list[Claim]) -> None:
        """Bring the host to this step's plan for ``claims`` (none: undo the step)."""
        if self._reconcile is not None:
            self._reconcile(host, claims)
        elif self.plan is not None:
            plan = self.plan(host, claims)
            converge(host, plan)
            host.converged[self.name] = (_key(claims), plan)

    def verify(self, host: Host, claims: list[Claim]) -> list[str]:
        """What on the live host differs from this step's plan.

        Right after :meth:`reconcile` in the same hook call, for the same claims:
        what that could not write (every other file was just read or written,
        and the kernel took the write); else every file is read again.
        """
        if self._verify is not None:
            return self._verify(host, claims)
        if self.plan is None:
            return []
        done = host.converged.get(self.name)
        if done is not None and done[0] == _key(claims) and done[1].problems is not None:
            return list(done[1].problems)
        return verify_values(host, self.plan(host, claims))


def _key(claims: list[Claim]) -> tuple[tuple[str, frozenset[int]], ...]:
    return tuple(sorted((c.name, c.cpus) for c in claims))

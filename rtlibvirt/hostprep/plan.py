"""The plan: what every host-prep module wants, and how it compares with the host.

Each module (``grub``, ``systemd``, ``services``, ``modprobe``, ``sysctl``,
``runtime``) only *describes* what it wants (files, runtime values, mounts,
grubby arguments, services to stop); :func:`build_plan` asks each in turn and
:func:`preview` compares the result with the host. Changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rtlibvirt.config.host import Resolved
from rtlibvirt.errors import HostError
from rtlibvirt.hostprep import cmdline, grub, modprobe, runtime, services, sysctl, systemd
from rtlibvirt.hostprep import tuned as tuned_notes
from rtlibvirt.hostprep.changes import FileChange, MountChange, Plan, RuntimeChange
from rtlibvirt.hostprep.effects import Effects, FileState
from rtlibvirt.hostprep.facts import HostFacts
from rtlibvirt.hostprep.journal import Journal

DEFAULT_PROGRAM = "/usr/local/bin/rtlibvirt"


@dataclass(frozen=True)
class PlanOptions:
    program: str
    need_bootloader: bool


@dataclass(frozen=True)
class Module:
    """One thing host-prep manages: its name and how it adds its changes to a plan."""

    name: str
    add: Callable[[Plan, PlanOptions], None]
    boot_time: bool  # skipped by --runtime-only: its changes take effect at boot


def _grub(plan: Plan, options: PlanOptions) -> None:
    try:
        grub.plan(plan, grub.detect(plan.facts, plan.cmdline.texts))
    except HostError as exc:
        if options.need_bootloader:
            raise
        # The rest of the plan stands: shown whole, applied on request (--skip-cmdline).
        plan.cmdline_problem = exc.message
        plan.note("boot loader", exc.message)


# Every module host-prep drives, in the order their changes are planned and shown.
MODULES: tuple[Module, ...] = (
    Module("grub", _grub, boot_time=True),
    Module("systemd", lambda plan, options: systemd.plan(plan, options.program), boot_time=True),
    Module("services", lambda plan, options: services.plan(plan), boot_time=True),
    Module("modprobe", lambda plan, options: modprobe.plan(plan), boot_time=False),
    Module("sysctl", lambda plan, options: sysctl.plan(plan), boot_time=False),
    Module("runtime", lambda plan, options: runtime.plan(plan), boot_time=False),
    Module("tuned", lambda plan, options: tuned_notes.plan(plan), boot_time=True),  # notes only
)


def build_plan(
    host: Resolved,
    facts: HostFacts,
    *,
    runtime_only: bool = False,
    program: str = DEFAULT_PROGRAM,
    need_bootloader: bool = True,
) -> Plan:
    """Everything host-prep would do for ``host``, from the facts alone. Changes nothing.

    HostError when the kernel arguments cannot reach a boot loader here, unless
    ``need_bootloader`` is false (verify: the running kernel is still checked).
    """
    cl = cmdline.plan(host, facts)
    plan = Plan(
        host=host,
        facts=facts,
        cmdline=cl,
        runtime_only=runtime_only,
        originals=facts.unit_originals,
    )
    for note in cl.notes:
        plan.note("kernel command line", note)
    options = PlanOptions(program=program, need_bootloader=need_bootloader)
    for module in MODULES:
        if not (runtime_only and module.boot_time):
            module.add(plan, options)
    return plan


@dataclass
class Preview:
    """What applying the plan would change on the host as it is now."""

    files: list[tuple[FileChange, FileState]] = field(default_factory=list)  # differing
    unchanged: list[FileChange] = field(default_factory=list)
    stale: list[dict[str, Any]] = field(default_factory=list)  # journal entries to restore
    stale_runtime: list[dict[str, Any]] = field(default_factory=list)
    grubby: list[list[str]] | None = None  # the grubby commands, if needed
    commands: list[list[str]] = field(default_factory=list)  # after the files
    stops: list[str] = field(default_factory=list)
    mounts: list[MountChange] = field(default_factory=list)
    runtime: list[tuple[RuntimeChange, str]] = field(default_factory=list)  # differing
    runtime_ok: list[tuple[RuntimeChange, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (topic, text), as the plan's

    @property
    def empty(self) -> bool:
        return not (
            self.files
            or self.stale
            or self.stale_runtime
            or self.grubby
            or self.commands
            or self.stops
            or self.mounts
            or any(change.writable for change, _ in self.runtime)
        )


def tree_bootloader(
    plan: Plan, effects: Effects, journal: Journal
) -> tuple[list[FileChange], list[str]]:
    """In a tree (no command is run) with grubby's boot loader: the boot-loader files as
    grubby would leave them, which apply writes itself, and notes; nothing elsewhere."""
    if plan.grubby is None or effects.commands or plan.runtime_only:
        return [], []

    def original(host_path: str) -> str | None:
        entry = journal.file_entry(host_path)
        if entry is None or entry.get("after") != journal.fingerprint(effects.state(host_path)):
            return None
        before = journal.pre_image(entry)
        return before.data.decode("utf-8", "replace") if before.kind == "file" else None

    return grub.tree_changes(effects.fs, plan.grubby.args, original)


def preview(plan: Plan, effects: Effects, journal: Journal) -> Preview:
    """Compare the plan with the host; HostError if a file in the way cannot be read."""
    out = Preview()
    tree, notes = tree_bootloader(plan, effects, journal)
    out.notes = [("boot loader", note) for note in notes]
    planned = {change.path for change in [*plan.files, *tree]}
    for change in [*plan.files, *tree]:
        _check_parents(effects, change.path)
        now = effects.state(change.path)
        if now.kind == "dir" and change.want.kind in ("file", "symlink"):
            raise HostError(
                f"{effects.fs.path(change.path)}: is a directory; host-prep would write a "
                "file there",
                "move it away, then run the command again",
            )
        if now.same_as(change.want):
            out.unchanged.append(change)
        else:
            out.files.append((change, now))
            for then in change.then:
                if list(then) not in out.commands:
                    out.commands.append(list(then))
    if not plan.runtime_only:
        for entry in journal.files:
            if entry.get("guarded") and plan.grubby is not None:
                continue
            # A folder we created stays while a planned file is in it; one that
            # systemctl removed (kind "dir") comes back unless its removal is planned.
            holds = entry["kind"] == "absent" and _holds_planned(entry["path"], planned)
            if entry["path"] not in planned and not holds:
                out.stale.append(entry)
                for argv in entry.get("then", []):
                    if argv not in out.commands:
                        out.commands.append(argv)
    for argv in journal.pending:
        if argv not in out.commands:
            out.commands.append(argv)
    if (
        plan.grubby is not None
        and effects.commands
        and (
            grub.grubby_needed(effects.fs, plan.grubby.args)
            or (journal.grubby or {}).get("args") not in (None, list(plan.grubby.args))
        )
    ):
        out.grubby = grub.grubby_apply_argvs(effects.fs, plan.grubby.args)
    if effects.commands:
        for unit in plan.stop_services:
            status, _ = effects.query(["systemctl", "is-active", "--quiet", unit])
            if status == 0:
                out.stops.append(unit)
    out.mounts = list(plan.mounts)
    wanted_paths = {change.path for change in plan.runtime}
    for value_change in plan.runtime:
        current = effects.read_value(value_change.path)
        if current is None:
            continue
        if current == value_change.value:
            out.runtime_ok.append((value_change, current))
        else:
            out.runtime.append((value_change, current))
    out.stale_runtime = [e for e in journal.runtime if e["path"] not in wanted_paths]
    return out


def _check_parents(effects: Effects, host_path: str) -> None:
    """HostError, before anything changes, if a parent of ``host_path`` cannot hold it.

    A missing parent is created by apply; one that is a file, or a link to
    nowhere in the root (``/etc/default/grub.d -> /gone``), is the tree's own
    business: host-prep does not guess where it should lead.
    """
    parent = os.path.dirname(host_path)
    while parent != "/":
        state = effects.state(parent)
        real = effects.fs.path(parent, follow=False)
        if state.kind == "symlink":
            try:
                resolved = effects.fs.path(parent)
            except OSError as exc:
                raise HostError(
                    f"{real}: a link to {state.target} that cannot be followed in "
                    f"{effects.fs.root}: {exc.strerror}",
                    "fix or remove the link, then run the command again",
                ) from None
            if not resolved.is_dir():
                raise HostError(
                    f"{real}: a link to {state.target}, which is not a directory in "
                    f"{effects.fs.root} (links are followed inside the root, as its own "
                    "system follows them)",
                    f"create {state.target} in the root, or remove the link",
                )
            return
        if state.kind == "file":
            raise HostError(
                f"{real}: a file where host-prep needs a directory for {host_path}",
                "move it away, then run the command again",
            )
        if state.kind == "dir":
            return
        parent = os.path.dirname(parent)


def _holds_planned(path: str, planned: set[str]) -> bool:
    """Whether ``path`` is a directory that a planned file lives in."""
    prefix = path.rstrip("/") + "/"
    return any(p.startswith(prefix) for p in planned)

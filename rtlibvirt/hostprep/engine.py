"""Plan, apply, verify and revert: the modules' changes, journaled in one place.

Each module (``grub``, ``systemd``, ``services``, ``modprobe``, ``sysctl``,
``runtime``) only *describes* what it wants (files, runtime values, mounts,
grubby arguments, services to stop). This module compares that with the host,
shows it, and makes it so: every change is recorded in the journal before it
is made, and ``revert`` undoes it from the journal alone (host.yaml is not
needed, and a reboot in between changes nothing).
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rtlibvirt.config.host import Resolved
from rtlibvirt.errors import HostError
from rtlibvirt.hostprep import cmdline, grub, modprobe, runtime, services, sysctl, systemd
from rtlibvirt.hostprep.changes import FileChange, MountChange, Plan, RuntimeChange
from rtlibvirt.hostprep.effects import Effects, FileState
from rtlibvirt.hostprep.facts import HostFacts
from rtlibvirt.hostprep.journal import Journal
from rtlibvirt.kernel import cpuset

DEFAULT_PROGRAM = "/usr/local/bin/rtlibvirt"
GRUB_DEFAULTS = "/etc/default/grub"


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
    cl = cmdline.plan(host)
    plan = Plan(host=host, facts=facts, cmdline=cl, runtime_only=runtime_only)
    for note in cl.notes:
        plan.note("kernel command line", note)
    if not runtime_only:
        try:
            grub.plan(plan, grub.detect(facts, cl.texts))
        except HostError as exc:
            if need_bootloader:
                raise
            plan.note("boot loader", exc.message)
        systemd.plan(plan, program)
        services.plan(plan)
    modprobe.plan(plan)
    sysctl.plan(plan)
    runtime.plan(plan)
    return plan


# ---- comparing the plan with the host ------------------------------------


@dataclass
class Preview:
    """What applying the plan would change on the host as it is now."""

    files: list[tuple[FileChange, FileState]] = field(default_factory=list)  # differing
    unchanged: list[FileChange] = field(default_factory=list)
    stale: list[dict[str, Any]] = field(default_factory=list)  # journal entries to restore
    stale_runtime: list[dict[str, Any]] = field(default_factory=list)
    grubby: list[str] | None = None  # the grubby command, if needed
    commands: list[list[str]] = field(default_factory=list)  # after the files
    stops: list[str] = field(default_factory=list)
    mounts: list[MountChange] = field(default_factory=list)
    runtime: list[tuple[RuntimeChange, str]] = field(default_factory=list)  # differing
    runtime_ok: list[tuple[RuntimeChange, str]] = field(default_factory=list)

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


def preview(plan: Plan, effects: Effects, journal: Journal) -> Preview:
    """Compare the plan with the host; HostError if a file in the way cannot be read."""
    out = Preview()
    planned = {change.path for change in plan.files}
    # A service's links removed by an earlier apply are still to stay removed.
    disabled = set(plan.host.services)
    planned |= {
        e["path"]
        for e in journal.files
        if e["kind"] == "symlink" and os.path.basename(e["target"]) in disabled
    }
    for change in plan.files:
        now = effects.state(change.path)
        if now.kind == "dir":
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
            if entry["path"] not in planned and not _holds_planned(entry["path"], planned):
                out.stale.append(entry)
                for argv in entry.get("then", []):
                    if argv not in out.commands:
                        out.commands.append(argv)
    for argv in journal.pending:
        if argv not in out.commands:
            out.commands.append(argv)
    if plan.grubby is not None and (
        grub.grubby_needed(effects.fs, plan.grubby.args)
        or (journal.grubby or {}).get("args") not in (None, list(plan.grubby.args))
    ):
        out.grubby = grub.grubby_apply_argv(plan.grubby.args)
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


def _holds_planned(path: str, planned: set[str]) -> bool:
    """Whether ``path`` is a directory that a planned file lives in."""
    prefix = path.rstrip("/") + "/"
    return any(p.startswith(prefix) for p in planned)


# ---- showing the plan ------------------------------------------------------


def _describe_state(state: FileState) -> str:
    if state.kind == "symlink":
        return f"symlink -> {state.target}"
    return state.kind


def diff(path: str, before: FileState, after: FileState) -> list[str]:
    """A unified diff of a file change (symlinks and removals described in a line)."""
    if before.kind == "file" and after.kind == "file":
        old = before.data.decode("utf-8", "replace").splitlines(keepends=True)
        new = after.data.decode("utf-8", "replace").splitlines(keepends=True)
        lines = list(difflib.unified_diff(old, new, path, path))
        if before.mode != after.mode:
            lines.append(f"  (mode {before.mode:04o} -> {after.mode:04o})\n")
        return [line if line.endswith("\n") else line + "\n" for line in lines]
    if after.kind == "file":
        new = after.data.decode("utf-8", "replace").splitlines(keepends=True)
        lines = list(difflib.unified_diff([], new, "/dev/null", path))
        return [line if line.endswith("\n") else line + "\n" for line in lines]
    if before.kind == "file" and after.kind == "absent":
        old = before.data.decode("utf-8", "replace").splitlines(keepends=True)
        lines = list(difflib.unified_diff(old, [], path, "/dev/null"))
        return [line if line.endswith("\n") else line + "\n" for line in lines]
    return [f"  {path}: {_describe_state(before)} -> {_describe_state(after)}\n"]


def render_plan(plan: Plan, pv: Preview, effects: Effects, journal: Journal) -> str:
    host, facts = plan.host, plan.facts
    vendor = {"intel": "Intel", "amd": "AMD"}[host.vendor]
    source = f"/proc/cpuinfo: {facts.vendor_id}" if facts.vendor_id else "cpu_vendor"
    present = cpuset.format_cpulist(facts.cpus_present) if facts.cpus_present else "unknown"
    out: list[str] = []
    add = out.append
    what = "runtime values only" if plan.runtime_only else "boot-time and runtime configuration"
    add(f"Host preparation for {host.source} ({what}), root {facts.fs.root}\n")
    add(f"  host          {facts.os_name}; {vendor} CPU ({source}); CPUs {present}\n")
    add(
        f"  CPUs          isolated {cpuset.format_cpulist(host.isolated)}, "
        f"housekeeping {cpuset.format_cpulist(host.housekeeping)}\n"
    )
    if plan.bootloader:
        add(f"  boot loader   {plan.bootloader}\n")
    notes = {topic: [t for p, t in plan.notes if p == topic] for topic, _ in plan.notes}

    if not plan.runtime_only:
        add("\nKernel command line (takes effect at the next boot):\n")
        width = max(len(a.text) for a in plan.cmdline.args)
        for arg in plan.cmdline.args:
            add(f"  {arg.text:<{width}}  {arg.why}\n")
        add("  left out, though real-time checklists often carry them:\n")
        for name, reason in plan.cmdline.left_out:
            add(f"    {name}: {reason}\n")
        for text in notes.pop("kernel command line", []):
            add(f"  note: {text}\n")

        add("\nFiles:\n")
        for change, now in pv.files:
            verb = (
                "create"
                if now.kind == "absent"
                else "remove"
                if change.want.kind == "absent"
                else "update"
            )
            when = " (at the next boot)" if change.reboot else ""
            add(f"  {verb} {change.path}: {change.why}{when}\n")
        for change in pv.unchanged:
            add(f"  unchanged {change.path}\n")
        for entry in pv.stale:
            add(f"  restore {entry['path']}: no longer planned, back to its original\n")
        for change, now in pv.files:
            add("\n")
            out.extend(diff(change.path, now, change.want))

    add("\nCommands:\n")
    commands = list(pv.commands)
    if pv.grubby:
        commands.insert(0, pv.grubby)
    commands += [["systemctl", "stop", unit] for unit in pv.stops]
    commands += [["mount", "-t", m.fstype, m.fstype, m.path] for m in pv.mounts]
    for argv in commands:
        add(f"  {grub.quote(argv)}\n")
    if not commands:
        add("  none\n")
    elif not effects.commands:
        add(f"  (listed only: with --root {facts.fs.root} no command is run)\n")
    if not plan.runtime_only and (host.services or host.missing_services):
        add("\nServices:\n")
        for unit in host.services:
            stop = ", stop now" if unit in pv.stops else ""
            add(f"  {unit}: disable{stop}\n")
        for text in notes.pop("services", []):
            add(f"  note: {text}\n")

    add("\nRuntime values (now; also at every boot by rtlibvirt-host.service):\n")
    if not effects.runtime:
        add(f"  (not written: with --root {facts.fs.root} only files change)\n")
    width = max([len(c.label) for c in plan.runtime] + [10])
    for value_change, current in pv.runtime:
        ro = "  (read-only here: not written)" if not value_change.writable else ""
        add(f"  {value_change.label:<{width}}  {current} -> {value_change.value}{ro}\n")
    for value_change, current in pv.runtime_ok:
        add(f"  {value_change.label:<{width}}  {current} (already)\n")
    for entry in pv.stale_runtime:
        add(f"  {entry['path']}: no longer planned, back to {entry['previous']}\n")
    for value_change in plan.runtime:
        if effects.read_value(value_change.path) is None:
            add(f"  {value_change.label:<{width}}  (absent under {facts.fs.root})\n")
    for mount in pv.mounts:
        add(f"  mount {mount.fstype} on {mount.path}: {mount.why}\n")
    if notes:
        add("\nNotes:\n")
        for topic, texts in notes.items():
            for text in texts:
                add(f"  {topic}: {text}\n")
    if not plan.runtime_only:
        reboot = [c.path for c, _ in pv.files if c.reboot]
        if reboot or pv.grubby:
            add(
                "\nNeeds a reboot: the kernel command line, systemd's CPUAffinity and the KVM "
                "module options take effect at the next boot.\n"
            )
    if pv.empty:
        add("\nThe host already matches; nothing to change.\n")
    return "".join(out)


# ---- apply -------------------------------------------------------------------


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def did(self, text: str) -> None:
        self.lines.append(text)

    def warn(self, text: str) -> None:
        self.warnings.append(text)


def apply(plan: Plan, effects: Effects, journal: Journal) -> Report:
    """Make the host match the plan, journaling every change before making it."""
    report = Report()
    journal.lock()
    try:
        pv = preview(plan, effects, journal)  # again, under the lock
        for entry in reversed(pv.stale):
            _restore_file(entry, effects, journal, report)
        for change, now in pv.files:
            _ensure_parents(change.path, effects, journal)
            journal.record_file(change.path, now, change.then)
            if effects.commands:
                for then in change.then:
                    journal.add_pending(list(then))
            effects.put(change.path, change.want)
            report.did(f"{'removed' if change.want.kind == 'absent' else 'wrote'} {change.path}")
        if plan.grubby is not None and pv.grubby is not None:
            _apply_grubby(plan.grubby.args, effects, journal, report)
        _run_pending(effects, journal, report)
        if pv.commands and not effects.commands:
            for argv in pv.commands:
                report.did(f"not run (--root): {grub.quote(argv)}")
        _restore_services(journal, effects, report, keep=set(plan.host.services))
        for unit in pv.stops:
            journal.record_service(unit, was_active=True)
            effects.run(["systemctl", "stop", unit])
            report.did(f"stopped {unit}")
        for unit in plan.host.services:
            if any(c.topic == f"service {unit}" for c, _ in pv.files):
                report.did(f"disabled {unit}")
        if effects.runtime:
            for mount in pv.mounts:
                journal.record_mount(mount.path, mount.fstype)
                effects.run(["mount", "-t", mount.fstype, mount.fstype, mount.path])
                report.did(f"mounted {mount.fstype} on {mount.path}")
            for entry in pv.stale_runtime:
                _restore_value(entry, effects, journal, report)
            for value_change, current in pv.runtime:
                _set_value(value_change, current, effects, journal, report)
        elif pv.runtime or pv.mounts:
            report.did(f"runtime values not written (--root {effects.fs.root})")
        if journal.exists and journal.empty():
            journal.remove()
    finally:
        journal.close()
    return report


def _ensure_parents(host_path: str, effects: Effects, journal: Journal) -> None:
    parent = os.path.dirname(host_path)
    if parent == "/" or effects.fs.path(parent).is_dir():
        return
    _ensure_parents(parent, effects, journal)
    journal.record_file(parent, FileState.absent(), ())
    effects.put(parent, FileState("dir", mode=0o755))


def _apply_grubby(
    args: tuple[str, ...], effects: Effects, journal: Journal, report: Report
) -> None:
    # grubby rewrites the boot entries and (--update-kernel=ALL, RHEL 9) GRUB_CMDLINE_LINUX
    # in /etc/default/grub: keep their originals, put back byte for byte on revert
    # unless edited since (then grubby --remove-args takes our arguments out).
    touched = [GRUB_DEFAULTS, *sorted(grub.bls_entries(effects.fs))]
    for path in touched:
        journal.record_file(path, effects.state(path), guarded=True)
    record = journal.grubby
    if record is None:
        journal.set_grubby(grub.grubby_record(effects.fs, args))
    elif record.get("args") != list(args):
        dropped = [a for a in record.get("args", []) if a not in args]
        if dropped and effects.commands:
            for argv in grub.grubby_revert_argvs(effects.fs, {**record, "args": dropped}, set()):
                effects.run(argv)
                report.did(f"ran {grub.quote(argv)}")
        journal.set_grubby({**record, "args": sorted(set(record.get("args", [])) | set(args))})
    argv = grub.grubby_apply_argv(args)
    if effects.commands:
        effects.run(argv)
        report.did(f"ran {grub.quote(argv)}")
    else:
        report.did(f"not run (--root): {grub.quote(argv)}")
    for path in touched:
        journal.set_after(path, effects.state(path))


def _run_pending(effects: Effects, journal: Journal, report: Report) -> None:
    if not effects.commands:
        return
    for argv in list(journal.pending):
        effects.run(argv)
        journal.done_pending(argv)
        report.did(f"ran {grub.quote(argv)}")


def _set_value(
    change: RuntimeChange, now: str, effects: Effects, journal: Journal, report: Report
) -> None:
    if not change.writable:
        report.warn(f"{change.label} is {now}, wanted {change.value}: read-only here, not set")
        return
    entry = journal.runtime_entry(change.path)
    previous = entry["previous"] if entry is not None else now
    journal.record_runtime(change.path, previous, change.value)
    effects.write_value(change.path, change.value)
    got = effects.read_value(change.path)
    report.did(f"set {change.label} {now} -> {change.value}")
    if got != change.value:
        report.warn(f"{change.label}: wrote {change.value} but the kernel now has {got}")


# ---- revert ------------------------------------------------------------------


def revert(effects: Effects, journal: Journal) -> Report:
    """Put back everything the journal recorded; idempotent; keeps what it could not undo."""
    report = Report()
    if not journal.exists:
        _remove_own_empty_dirs(effects, journal.own_dirs)
        report.did("nothing to revert: no journal of host-prep changes on this host")
        return report
    journal.lock()
    try:
        if effects.runtime:
            for entry in reversed(list(journal.runtime)):
                _restore_value(entry, effects, journal, report)
            for mount in reversed(list(journal.mounts)):
                _unmount(mount, effects, journal, report)
        elif journal.runtime or journal.mounts:
            report.warn(
                f"runtime values are not written with --root {effects.fs.root}: kept in the "
                "journal for a revert on the live host"
            )
        record = journal.grubby
        if record is not None:
            restorable = {
                e["path"]
                for e in journal.files
                if e.get("after") == journal.fingerprint(effects.state(e["path"]))
            }
            argvs = grub.grubby_revert_argvs(effects.fs, record, skip=restorable)
            if effects.commands:
                for argv in argvs:
                    effects.run(argv)
                    report.did(f"ran {grub.quote(argv)}")
            else:
                for argv in argvs:
                    report.did(f"not run (--root): {grub.quote(argv)}")
            journal.set_grubby(None)
        for entry in reversed(list(journal.files)):
            _restore_file(entry, effects, journal, report)
        _run_pending(effects, journal, report)
        if not effects.commands:
            for argv in list(journal.pending):
                report.did(f"not run (--root): {grub.quote(argv)}")
                journal.done_pending(argv)
        _restore_services(journal, effects, report, keep=set())
        if journal.empty():
            journal.remove()
            _remove_own_empty_dirs(effects, journal.own_dirs)
    finally:
        journal.close()
    return report


def _restore_file(
    entry: dict[str, Any], effects: Effects, journal: Journal, report: Report
) -> None:
    path = entry["path"]
    before = journal.pre_image(entry)
    now = effects.state(path)
    if before.kind == "absent" and now.kind == "dir":
        try:
            effects.put(path, FileState.absent())
            report.did(f"removed directory {path}")
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            report.warn(f"{path}: kept: host-prep created it, but it now holds other files")
    elif "after" in entry and journal.fingerprint(now) != entry["after"]:
        report.warn(f"{path}: kept as it is: edited since host-prep changed it")
    elif not now.same_as(before):
        for argv in entry.get("then", []):
            if effects.commands:
                journal.add_pending(argv)
            else:
                report.did(f"not run (--root): {grub.quote(argv)}")
        effects.put(path, before)
        if before.kind == "file":
            effects.set_owner(path, entry["uid"], entry["gid"])
        report.did(f"{'removed' if before.kind == 'absent' else 'restored'} {path}")
    for stray in _strays(effects, path):
        effects.put(stray, FileState.absent())
    journal.forget_file(path)
    journal.save()


def _strays(effects: Effects, host_path: str) -> Iterator[str]:
    """Temporary files an interrupted atomic write may have left beside ``host_path``."""
    parent, name = os.path.split(host_path)
    for entry in effects.fs.listdir(parent):
        if entry.startswith(f".{name}.") and entry.endswith(".tmp"):
            yield f"{parent}/{entry}"


def _restore_value(
    entry: dict[str, Any], effects: Effects, journal: Journal, report: Report
) -> None:
    path, previous, wanted = entry["path"], entry["previous"], entry["wanted"]
    now = effects.read_value(path)
    if now is None or now == previous:
        pass
    elif now == wanted:
        effects.write_value(path, previous)
        report.did(f"restored {path} {now} -> {previous}")
    else:
        report.warn(
            f"{path} is {now}: changed by someone else since host-prep set {wanted}; "
            f"left as it is (it was {previous})"
        )
    journal.forget_runtime(path)
    journal.save()


def _unmount(mount: dict[str, Any], effects: Effects, journal: Journal, report: Report) -> None:
    path = mount["path"]
    groups = [
        n
        for n in effects.fs.listdir(path)
        if effects.fs.path(f"{path}/{n}").is_dir() and n not in ("info", "mon_groups", "mon_data")
    ]
    if groups:
        report.warn(f"{path}: kept mounted: it holds groups ({', '.join(groups)}) in use")
    elif _is_mounted(effects, path):
        effects.run(["umount", path])
        report.did(f"unmounted {path}")
    journal.forget_mount(path)
    journal.save()


def _is_mounted(effects: Effects, path: str) -> bool:
    try:
        mounts = effects.fs.read("/proc/mounts")
    except OSError:
        return False
    return any(line.split()[1:2] == [path] for line in mounts.splitlines())


def _restore_services(journal: Journal, effects: Effects, report: Report, keep: set[str]) -> None:
    for entry in list(journal.services):
        unit = entry["unit"]
        if unit in keep:
            continue
        if entry.get("was_active") and effects.commands:
            effects.run(["systemctl", "start", unit])
            report.did(f"started {unit} again")
        journal.forget_service(unit)
        journal.save()


def _remove_own_empty_dirs(effects: Effects, own_dirs: tuple[str, ...]) -> None:
    """Our own journal directories, left empty by an apply stopped before its first record."""
    for own in own_dirs:
        path = effects.fs.path(own)
        with contextlib.suppress(OSError):
            if path.is_dir() and not any(path.iterdir()):
                effects.put(own, FileState.absent())


# ---- verify ------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    what: str
    wanted: str
    found: str
    status: str  # "ok", "reboot pending", "differs", "missing", "n/a"

    @property
    def drift(self) -> bool:
        return self.status not in ("ok", "n/a")


def verify(plan: Plan, effects: Effects) -> list[Row]:
    """The live host (or the tree) against the plan, one row per thing checked."""
    rows: list[Row] = []
    facts = plan.facts
    fs = facts.fs
    method = "grubby" if plan.grubby is not None else "grub-dropin" if plan.bootloader else None
    boot = grub.boot_entry_args(fs, method)
    live = cmdline.split_cmdline(facts.proc_cmdline) if facts.proc_cmdline is not None else None
    if not plan.runtime_only:
        for arg in plan.cmdline.args:
            in_live = live is not None and cmdline.present(arg, live)
            in_boot = boot is not None and cmdline.present(arg, boot)
            if in_live:
                found, status = "in /proc/cmdline", "ok"
            elif in_boot and live is not None:
                found, status = "in the boot entry, not in /proc/cmdline", "reboot pending"
            elif in_boot:
                found, status = "in the boot entry (no /proc/cmdline here)", "ok"
            else:
                have = cmdline.find(arg, live or boot or [])
                found = f"{have} instead" if have else "absent"
                status = "differs" if have else "missing"
            rows.append(Row(f"cmdline {arg.key}", arg.text, found, status))
        for change in plan.files:
            if change.topic.startswith("service "):
                continue
            now = effects.state(change.path)
            ok = now.same_as(change.want)
            status = "ok" if ok else "missing" if now.kind == "absent" else "differs"
            found = "as planned" if ok else _describe_state(now)
            wanted = "as planned" if change.want.kind == "file" else _describe_state(change.want)
            rows.append(Row(f"file {change.path}", wanted, found, status))
        for unit in plan.host.services:
            links = [link for link, _ in services.enable_links(plan, unit)]
            found = f"enabled ({', '.join(links)})" if links else "disabled"
            rows.append(Row(f"service {unit}", "disabled", found, "differs" if links else "ok"))
        if facts.systemd_running and effects.commands:
            for unit in plan.stop_services:
                code, state = effects.query(["systemctl", "is-active", unit])
                rows.append(
                    Row(f"service {unit}", "inactive", state, "ok" if code != 0 else "differs")
                )
    for value_change in plan.runtime:
        current = effects.read_value(value_change.path)
        if current is None:
            rows.append(Row(value_change.label, value_change.value, "absent", "n/a"))
        else:
            rows.append(
                Row(
                    value_change.label,
                    value_change.value,
                    current,
                    "ok" if current == value_change.value else "differs",
                )
            )
    for mount in plan.mounts:
        rows.append(Row(f"mount {mount.path}", mount.fstype, "not mounted", "missing"))
    return rows


def render_rows(rows: list[Row]) -> str:
    headers = ("WHAT", "WANTED", "FOUND", "STATUS")
    cells = [headers] + [
        (r.what, r.wanted, r.found, r.status.upper() if r.drift else r.status) for r in rows
    ]
    widths = [min(max(len(c[i]) for c in cells), 48) for i in range(3)]
    lines = []
    for cell in cells:
        parts = [cell[i].ljust(widths[i]) for i in range(3)] + [cell[3]]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"

"""Apply a plan: every change recorded in the journal before it is made."""

from __future__ import annotations

import contextlib
import os

from rtlibvirt.errors import HostError
from rtlibvirt.hostprep import grub, services
from rtlibvirt.hostprep.changes import Plan, RuntimeChange
from rtlibvirt.hostprep.effects import Effects, FileState
from rtlibvirt.hostprep.journal import Journal
from rtlibvirt.hostprep.plan import preview
from rtlibvirt.hostprep.report import Report
from rtlibvirt.hostprep.revert import restore_file, restore_services, restore_value, run_pending

GRUB_DEFAULTS = "/etc/default/grub"


def apply(plan: Plan, effects: Effects, journal: Journal) -> Report:
    """Make the host match the plan, journaling every change before making it."""
    report = Report()
    journal.lock()
    try:
        pv = preview(plan, effects, journal)  # again, under the lock
        for entry in reversed(pv.stale):
            restore_file(entry, effects, journal, report)
        for change, now in pv.files:
            if (
                change.want.kind == "absent"
                and now.kind == "dir"
                and effects.fs.listdir(change.path)
            ):
                report.warn(f"{change.path}: kept: systemctl would remove it, but it is not empty")
                continue
            _ensure_parents(change.path, effects, journal)
            journal.record_file(change.path, now, change.then, guarded=change.guarded)
            if effects.commands:
                for then in change.then:
                    journal.add_pending(list(then))
            effects.put(change.path, change.want)
            if change.guarded:
                journal.set_after(change.path, effects.state(change.path))
            report.did(f"{'removed' if change.want.kind == 'absent' else 'wrote'} {change.path}")
        if plan.grubby is not None and pv.grubby is not None:
            _apply_grubby(plan.grubby.args, effects, journal, report)
        run_pending(effects, journal, report)
        if pv.commands and not effects.commands:
            for argv in pv.commands:
                report.did(f"not run (--root): {grub.quote(argv)}")
        restore_services(journal, effects, report, keep=set(plan.host.services))
        for unit in pv.stops:
            journal.record_service(unit, was_active=True)
            effects.run(["systemctl", "stop", unit])
            report.did(f"stopped {unit}")
        if any(c.topic == services.TOPIC for c, _ in pv.files):
            for verb, units in (("disabled", plan.host.services), ("masked", plan.host.masks)):
                if units:
                    report.did(f"{verb} {', '.join(units)}")
        if effects.runtime:
            for mount in pv.mounts:
                journal.record_mount(mount.path, mount.fstype)
                effects.run(["mount", "-t", mount.fstype, mount.fstype, mount.path])
                report.did(f"mounted {mount.fstype} on {mount.path}")
            for entry in pv.stale_runtime:
                restore_value(entry, effects, journal, report)
            _set_values(pv.runtime, effects, journal, report)
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
    touched = [GRUB_DEFAULTS, grub.GRUBENV, *sorted(grub.bls_entries(effects.fs))]
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
    argvs = grub.grubby_apply_argvs(effects.fs, args)
    for argv in argvs:
        if effects.commands:
            effects.run(argv)
            report.did(f"ran {grub.quote(argv)}")
        else:
            report.did(f"not run (--root): {grub.quote(argv)}")
    for path in touched:
        journal.set_after(path, effects.state(path))
    if effects.commands:
        wrong = grub.grubby_check(effects.fs, args)
        if wrong:
            raise HostError(
                "grubby did not give every boot entry each kernel argument exactly once: "
                + "; ".join(wrong),
                "this grubby handles arguments differently from the versions host-prep knows; "
                "`rtlibvirt host-prep revert` puts the entries back (they are journaled)",
            )


def _set_values(
    changes: list[tuple[RuntimeChange, str]], effects: Effects, journal: Journal, report: Report
) -> None:
    """Set the runtime values; if the kernel refuses one, put back those set so far.

    A refused write (EINVAL: a cpumask or governor the kernel will not take; EIO)
    leaves no runtime value half done: the ones this call set are written back
    and forgotten, then one HostError names the value and the kernel's answer.
    """
    done: list[tuple[RuntimeChange, str, bool]] = []  # (change, value before, new record)
    for change, now in changes:
        fresh = journal.runtime_entry(change.path) is None
        try:
            if _set_value(change, now, effects, journal, report):
                done.append((change, now, fresh))
        except HostError as exc:
            if fresh:
                journal.forget_runtime(change.path)  # recorded, but never changed
            for undo, before, new in reversed(done):
                with contextlib.suppress(HostError):
                    effects.write_value(undo.path, before)
                    if new:
                        journal.forget_runtime(undo.path)
            journal.save()
            raise HostError(
                f"the kernel refused {change.label} = {change.value}: {exc.message}"
                + (
                    f"; the {len(done)} runtime value(s) set before it were put back"
                    if done
                    else ""
                ),
                _refused_hint(change),
            ) from None


def _refused_hint(change: RuntimeChange) -> str:
    if change.path.endswith("/cpumask"):
        return (
            "the kernel takes no cpumask without an online CPU, and some workqueues do not "
            "allow theirs to change; set `unbound_workqueues: default` to leave them alone"
        )
    if change.path.endswith("/scaling_governor"):
        return "choose a governor of scaling_available_governors, or `cpu_governor: default`"
    return "check the value against the kernel's documentation of that file"


def _set_value(
    change: RuntimeChange, now: str, effects: Effects, journal: Journal, report: Report
) -> bool:
    if not change.writable:
        report.warn(f"{change.label} is {now}, wanted {change.value}: read-only here, not set")
        return False
    entry = journal.runtime_entry(change.path)
    previous = entry["previous"] if entry is not None else now
    journal.record_runtime(change.path, previous, change.value)
    effects.write_value(change.path, change.value)
    got = effects.read_value(change.path)
    report.did(f"set {change.label} {now} -> {change.value}")
    if got != change.value:
        report.warn(f"{change.label}: wrote {change.value} but the kernel now has {got}")
    return True

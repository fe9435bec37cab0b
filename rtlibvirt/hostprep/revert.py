"""Revert: undo host-prep from the journal alone.

host.yaml is not needed, and a reboot in between changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import Any

from rtlibvirt.hostprep import grub
from rtlibvirt.hostprep.effects import Effects, FileState
from rtlibvirt.hostprep.journal import Journal
from rtlibvirt.hostprep.report import Report
from rtlibvirt.kernel import mounts


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
                restore_value(entry, effects, journal, report)
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
                for problem in grub.grubby_revert_check(effects.fs, record, restorable):
                    report.warn(problem)
            else:
                for argv in argvs:
                    report.did(f"not run (--root): {grub.quote(argv)}")
            journal.set_grubby(None)
        for entry in reversed(list(journal.files)):
            restore_file(entry, effects, journal, report)
        run_pending(effects, journal, report)
        if not effects.commands:
            for argv in list(journal.pending):
                report.did(f"not run (--root): {grub.quote(argv)}")
                journal.done_pending(argv)
        restore_services(journal, effects, report, keep=set())
        if journal.empty():
            journal.remove()
            _remove_own_empty_dirs(effects, journal.own_dirs)
    finally:
        journal.close()
    return report


def restore_file(entry: dict[str, Any], effects: Effects, journal: Journal, report: Report) -> None:
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
        if before.kind == "dir" and now.kind != "absent":
            effects.put(path, FileState.absent())
        effects.put(path, before)
        if before.kind in ("file", "dir"):
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


def restore_value(
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
    elif mounts.is_mounted(effects.fs, path):
        effects.run(["umount", path])
        report.did(f"unmounted {path}")
    journal.forget_mount(path)
    journal.save()


def restore_services(journal: Journal, effects: Effects, report: Report, keep: set[str]) -> None:
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


def run_pending(effects: Effects, journal: Journal, report: Report) -> None:
    if not effects.commands:
        return
    for argv in list(journal.pending):
        effects.run(argv)
        journal.done_pending(argv)
        report.did(f"ran {grub.quote(argv)}")

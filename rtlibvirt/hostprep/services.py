"""Services to stop and disable (irqbalance, thermald, ...), their previous state recorded.

Disabling is what ``systemctl disable`` does: removing every symlink to the
unit under ``/etc/systemd/system`` (``*.wants/``, ``*.requires/``, aliases).
Each symlink is journaled like a file, so revert re-creates exactly the links
that were there. Stopping needs a running systemd; where PID 1 is not systemd
the plan says so and the services are only disabled for the next boot.
"""

from __future__ import annotations

import os

from rtlibvirt.hostprep.changes import FileChange, Plan
from rtlibvirt.hostprep.effects import FileState

ETC_UNITS = "/etc/systemd/system"


def enable_links(plan_: Plan, unit: str) -> list[tuple[str, str]]:
    """(host path, target) of every symlink under /etc/systemd/system to ``unit``."""
    fs = plan_.facts.fs
    top = fs.path(ETC_UNITS)
    links: list[tuple[str, str]] = []
    for directory, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(directory, d))]):
            real = os.path.join(directory, name)
            if not os.path.islink(real):
                continue
            target = os.readlink(real)
            if os.path.basename(target) == unit:
                host = "/" + os.path.relpath(real, fs.root)
                links.append((host, target))
    return links


def plan(plan_: Plan) -> None:
    facts = plan_.facts
    for unit in plan_.host.missing_services:
        plan_.note("services", f"{unit}: not installed; skipped")
    for unit in plan_.host.services:
        links = enable_links(plan_, unit)
        if not links:
            plan_.note("services", f"{unit}: not enabled (no symlinks in {ETC_UNITS})")
        for link, target in links:
            plan_.files.append(
                FileChange(
                    link,
                    FileState.absent(),
                    f"disables {unit} (the symlink to {target}; what `systemctl disable` removes)",
                    f"service {unit}",
                    then=(("systemctl", "daemon-reload"),) if facts.systemd_running else (),
                )
            )
        if facts.systemd_running:
            plan_.stop_services.append(unit)
    if plan_.host.services and not facts.systemd_running:
        pid1 = facts.pid1 or "unknown"
        plan_.note(
            "services",
            f"systemd is not running as PID 1 here (PID 1 is {pid1!r}; no /run/systemd/system): "
            "the services are disabled for the next boot but not stopped now",
        )

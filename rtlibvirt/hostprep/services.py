"""Services to stop and disable or mask (irqbalance, thermald, ...), as systemd does it.

What disabling and masking change is systemd's own answer: ``systemctl
--root`` runs on a scratch copy of the root's unit folders (see
:func:`~rtlibvirt.hostprep.systemd.dry_run`), so that ``Also=`` units (a
service's socket and path units, which would start it again), aliases, every
instance of a template and the ``.wants/`` folders left empty go exactly as
``systemctl disable`` takes them. The copy starts from the tree as it was
before host-prep (the journal's originals put back), so the plan is always
"from the original to what host.yaml asks", and an earlier apply's removals
stay planned while their unit is still listed. Each link is journaled like a
file, so revert re-creates exactly the links that were there.

Stopping needs a running systemd; where PID 1 is not systemd the plan says so
and the services are only disabled for the next boot.
"""

from __future__ import annotations

from rtlibvirt.config.host import KSM_SERVICES
from rtlibvirt.hostprep import systemd
from rtlibvirt.hostprep.changes import FileChange, Plan

ETC_UNITS = systemd.CONFIG_DIR
TOPIC = "services"


def plan(plan_: Plan) -> None:
    facts, host = plan_.facts, plan_.host
    for unit in host.missing_services:
        plan_.note("services", f"{unit}: not installed; skipped")
    for unit in host.services:
        if unit in KSM_SERVICES and unit not in host.spec.disable_services:
            plan_.note(
                "services",
                f"{unit}: disabled for `ksm: false`: it would start KSM again (ksm/run 1)",
            )
    if not host.services and not host.masks:
        return
    run = plan_.unit_run  # the systemd module's run, with our own unit enabled
    if run is None:
        run = systemd.dry_run(
            facts.fs, disable=host.services, mask=host.masks, originals=plan_.originals
        )
    reload = (systemd.DAEMON_RELOAD,) if facts.systemd_running else ()
    verbs = " and ".join(
        f"`systemctl {verb} {' '.join(units)}`"
        for verb, units in (("disable", host.services), ("mask", host.masks))
        if units
    )
    for change in run.changes:
        if systemd.ours(change) or change.path == systemd.UNIT_PATH:
            continue  # planned by the systemd module
        if change.after.kind == "dir" and change.before.kind == "absent":
            continue  # a folder for a link: apply makes the parents it needs
        what = (
            "removes"
            if change.after.kind == "absent"
            else "creates"
            if change.before.kind == "absent"
            else "changes"
        )
        plan_.files.append(
            FileChange(change.path, change.after, f"what {verbs} {what}", TOPIC, then=reload)
        )
    for unit in host.services:
        state = run.states.get(unit, "")
        if state == "static":
            plan_.note(
                "services",
                f"{unit} is static (no [Install] section): disable changes nothing and other "
                "units still start it; list it in mask_services to keep it from starting",
            )
        elif state not in ("disabled", "masked", ""):
            plan_.note("services", f"{unit}: `systemctl is-enabled` says {state!r} after disable")
    if facts.systemd_running:
        plan_.stop_services.extend([*host.services, *host.masks])
    elif host.services or host.masks:
        pid1 = facts.pid1 or "unknown"
        plan_.note(
            "services",
            f"systemd is not running as PID 1 here (PID 1 is {pid1!r}; no /run/systemd/system): "
            "the services are disabled for the next boot but not stopped now",
        )


def is_enabled(plan_: Plan, unit: str) -> str:
    """``systemctl --root=ROOT is-enabled UNIT`` on the tree as it is now (offline)."""
    return systemd.is_enabled(plan_.facts.fs, unit)

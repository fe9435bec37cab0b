"""Verify: the live host (or tree) against the plan, one row per setting."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rtlibvirt.hostprep import cmdline, grub, services
from rtlibvirt.hostprep.changes import Plan
from rtlibvirt.hostprep.effects import Effects, FileState
from rtlibvirt.kernel import realtime


@dataclass(frozen=True)
class Row:
    """One line of the verify table (rendered by hostprep.report)."""

    what: str
    wanted: str
    found: str
    status: str  # "ok", "reboot pending", "differs", "missing", "n/a", "warning"

    @property
    def drift(self) -> bool:
        """Differs from host.yaml; a "warning" (a kernel that is not PREEMPT_RT) is
        not in host.yaml's hands and is shown, not counted."""
        return self.status not in ("ok", "n/a", "warning")


def describe_state(state: FileState) -> str:
    if state.kind == "symlink":
        return f"symlink -> {state.target}"
    return state.kind


def _method(plan: Plan) -> str | None:
    if plan.grubby is not None:
        return "grubby"
    return "grub-dropin" if plan.bootloader else None


def compared(plan: Plan, effects: Effects) -> str:
    """Which command line verify compares: the running kernel's, or (a tree) the configured."""
    if not effects.runtime:
        return f"the configured command line: {grub.configured_args(effects.fs, _method(plan))[1]}"
    return "the running kernel's /proc/cmdline, and the boot entry for a reboot pending"


_MACHINE_ID = re.compile(r"[0-9a-f]{32}-")  # entries are named MACHINE-ID-KERNEL.conf


def _other_entries(plan: Plan) -> list[Row]:
    """A tree's other boot entries (older kernels, rescue), which `grubby
    --update-kernel=ALL` and apply --root give the same arguments: one row."""
    fs = plan.facts.fs
    entries = grub.bls_entries(fs)
    default = grub.default_entry(fs)
    others = {e: o for e, o in entries.items() if e != default}
    if not others:
        return []
    args = plan.cmdline.texts
    wrong = []
    for entry, options in sorted(others.items()):
        problems = grub.entry_problems(options, args)
        name = _MACHINE_ID.sub("", entry.rsplit("/", 1)[-1].removesuffix(".conf"))
        if len(problems) == len(args) and all(p.endswith(" missing") for p in problems):
            wrong.append(f"{name}: none of them")
        elif problems:
            more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
            wrong.append(f"{name}: {problems[0]}{more}")
    what = f"the other boot entries ({len(others)})"
    if not wrong:
        return [Row(what, "the arguments above", "configured", "ok")]
    return [Row(what, "the arguments above", "; ".join(wrong), "differs")]


def verify(plan: Plan, effects: Effects) -> list[Row]:
    """The live host (or the tree) against the plan, one row per thing checked.

    On a tree (``--root``: no runtime value is written there) the kernel
    arguments are compared with the boot-loader files, not with a running
    kernel's /proc/cmdline, and runtime values are shown but not compared
    (rtlibvirt-host.service sets them when the tree boots).
    """
    rows: list[Row] = []
    facts = plan.facts
    fs = facts.fs
    tree = not effects.runtime
    method = _method(plan)
    boot = grub.boot_entry_args(fs, method)
    live = cmdline.split_cmdline(facts.proc_cmdline) if facts.proc_cmdline is not None else None
    if tree:
        configured, _ = grub.configured_args(fs, method)
        for arg in plan.cmdline.args if not plan.runtime_only else ():
            if configured is not None and cmdline.present(arg, configured):
                rows.append(Row(f"cmdline {arg.key}", arg.text, "configured", "ok"))
            else:
                have = cmdline.find(arg, configured or [])
                found = f"{have} instead" if have else "not configured"
                rows.append(
                    Row(f"cmdline {arg.key}", arg.text, found, "differs" if have else "missing")
                )
        if method == "grubby" and not plan.runtime_only:
            rows += _other_entries(plan)
    if not plan.runtime_only:
        for arg in plan.cmdline.args if not tree else ():
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
            if change.topic == services.TOPIC:
                continue
            now = effects.state(change.path)
            ok = now.same_as(change.want)
            status = "ok" if ok else "missing" if now.kind == "absent" else "differs"
            found = "as planned" if ok else describe_state(now)
            wanted = "as planned" if change.want.kind == "file" else describe_state(change.want)
            rows.append(Row(f"file {change.path}", wanted, found, status))
        pending = [
            c.path
            for c in plan.files
            if c.topic == services.TOPIC and not effects.state(c.path).same_as(c.want)
        ]
        for wanted, units in (("disabled", plan.host.services), ("masked", plan.host.masks)):
            for unit in units:
                state = services.is_enabled(plan, unit)
                ok = not pending and (state in (wanted, "static", "not installed") or not state)
                if pending:
                    state = f"{state or 'not disabled'}: {len(pending)} link(s) to change"
                rows.append(
                    Row(f"service {unit}", wanted, state or "unknown", "ok" if ok else "differs")
                )
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
        elif tree:
            shown = f"{current} (a tree: set at its boot)"
            rows.append(Row(value_change.label, value_change.value, shown, "n/a"))
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
        status = "n/a" if tree else "missing"
        rows.append(Row(f"mount {mount.path}", mount.fstype, "not mounted", status))
    rt, evidence = realtime.preempt_rt(fs)
    if rt is not None:
        found = "PREEMPT_RT" if rt else f"not PREEMPT_RT: {evidence}"
        rows.append(Row("kernel", "PREEMPT_RT", found, "ok" if rt else "warning"))
    return rows

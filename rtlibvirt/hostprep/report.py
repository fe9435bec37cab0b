"""host-prep's text output: the plan as file diffs and lists, and the verify table."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from rtlibvirt.hostprep import grub
from rtlibvirt.hostprep.changes import FileChange, Plan
from rtlibvirt.hostprep.effects import Effects, FileState
from rtlibvirt.hostprep.journal import Journal
from rtlibvirt.hostprep.plan import Preview
from rtlibvirt.hostprep.verify import Row, compared, describe_state, verify
from rtlibvirt.kernel import cpuset


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
    return [f"  {path}: {describe_state(before)} -> {describe_state(after)}\n"]


def render_plan(plan: Plan, pv: Preview, effects: Effects, journal: Journal) -> str:
    host, facts = plan.host, plan.facts
    vendor = {"intel": "Intel", "amd": "AMD"}[host.vendor]
    source = f"/proc/cpuinfo: {facts.vendor_id}" if facts.vendor_id else "cpu_vendor"
    present = cpuset.format_cpulist(facts.cpus_present) if facts.cpus_present else "unknown"
    out: list[str] = []
    add = out.append
    what = "runtime values only" if plan.runtime_only else "boot-time and runtime configuration"
    guest = host.guest is not None  # guest-prep: the same engine with the guest profile
    title = "Guest" if guest else "Host"
    add(f"{title} preparation for {host.source} ({what}), root {facts.fs.root}\n")
    add(f"  host          {facts.os_name}; {vendor} CPU ({source}); CPUs {present}\n")
    add(
        f"  CPUs          isolated {cpuset.format_cpulist(host.isolated)}, "
        f"housekeeping {cpuset.format_cpulist(host.housekeeping)}\n"
    )
    if plan.bootloader:
        tree = (
            " (a tree: host-prep writes what it would)"
            if plan.grubby and not effects.commands
            else ""
        )
        add(f"  boot loader   {plan.bootloader}{tree}\n")
    all_notes = [*plan.notes, *pv.notes]
    notes = {topic: [t for p, t in all_notes if p == topic] for topic, _ in all_notes}

    if not plan.runtime_only:
        if plan.cmdline_problem is None:
            add("\nKernel command line (takes effect at the next boot):\n")
        else:
            add(
                "\nKernel command line (NOT APPLIABLE here: no boot-loader tool host-prep "
                "knows; add these by hand, and `apply --skip-cmdline` applies the rest):\n"
                f"  why: {plan.cmdline_problem}\n"
            )
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
        commands[0:0] = pv.grubby
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

    at_boot = "from sysctl.d and rtlibvirt-guest.service" if guest else "by rtlibvirt-host.service"
    add(f"\nRuntime values (now; also at every boot {at_boot}):\n")
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
                "\nNeeds a reboot: the kernel command line, systemd's CPUAffinity and the "
                + ("kernel threads' priorities" if guest else "KVM module options")
                + " take effect at the next boot.\n"
            )
    if pv.empty:
        add(f"\nThe {'guest' if guest else 'host'} already matches; nothing to change.\n")
    return "".join(out)


def render_rows(rows: list[Row], width: int | None = None) -> str:
    """The verify table, its columns aligned whatever the values' lengths.

    ``width``: the terminal's; WHAT, WANTED and FOUND then share what STATUS leaves,
    the widest giving way first, and a longer value wraps inside its column (after a
    ``/``, a blank, a comma, ``=`` or ``.``). None (not a terminal: a pipe, a file): every column as
    wide as its longest value, one line per row, for grep and diff.
    """
    headers = ("WHAT", "WANTED", "FOUND", "STATUS")
    cells = [headers] + [
        (
            r.what,
            r.wanted,
            r.found,
            r.status.upper() if r.drift or r.status == "warning" else r.status,
        )
        for r in rows
    ]
    lengths = [[len(c[i]) for c in cells] for i in range(3)]
    widths = [max(col) for col in lengths]
    if width is not None:
        status = max(len(c[3]) for c in cells)
        widths = _fit(lengths, width - status - 3 * len(GAP), [len(h) for h in headers[:3]])
    lines = []
    for cell in cells:
        parts = [_wrap(cell[i], widths[i]) for i in range(3)]
        for k in range(max(len(p) for p in parts)):
            texts = [(p[k] if k < len(p) else "").ljust(widths[i]) for i, p in enumerate(parts)]
            lines.append(GAP.join([*texts, cell[3] if k == 0 else ""]).rstrip())
    return "\n".join(lines) + "\n"


GAP = "  "
MIN_COLUMN = 16


def _fit(lengths: list[list[int]], budget: int, floors: list[int]) -> list[int]:
    """Column widths that fit ``budget`` (``lengths``: each column's cell lengths).

    Each column first gets what 90 % of its cells need (a few long values wrap, not
    every row); the rest of the budget goes, step by step, where it unwraps the most
    cells per character. If even the 90 % do not fit, the widest column gives way
    first, none below MIN_COLUMN (nor its header): past that the table is wider than
    asked."""
    natural = [max(col) for col in lengths]
    if sum(natural) <= budget:
        return natural
    least = [min(n, max(MIN_COLUMN, f)) for n, f in zip(natural, floors, strict=True)]
    widths = [
        max(lo, sorted(col)[int(0.9 * (len(col) - 1))])
        for col, lo in zip(lengths, least, strict=True)
    ]
    while (spare := budget - sum(widths)) > 0:
        best: tuple[float, int, int] | None = None  # (cells unwrapped per character, column, width)
        for i, col in enumerate(lengths):
            for target in sorted({n for n in col if widths[i] < n <= widths[i] + spare}):
                gain = sum(1 for n in col if widths[i] < n <= target) / (target - widths[i])
                if best is None or gain > best[0]:
                    best = (gain, i, target)
        if best is None:  # nothing more fits whole: the spare goes to the longest cells
            i = max(range(len(widths)), key=lambda i: natural[i] - widths[i])
            widths[i] += min(spare, natural[i] - widths[i])
            break
        widths[best[1]] = best[2]
    while sum(widths) > budget:
        widest = max(range(len(widths)), key=lambda i: (widths[i] > least[i], widths[i]))
        if widths[widest] <= least[widest]:
            break
        widths[widest] -= 1
    return widths


_PIECES = re.compile(r"[^/ ,=.]*[/ ,=.]?")


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width``: broken after a ``/``, a blank, a comma,
    a ``=`` or a ``.`` where it can be, else cut."""
    if len(text) <= width:
        return [text]
    lines: list[str] = []
    line = ""
    for piece in _PIECES.findall(text):
        while len(piece) > width:  # longer than a line: cut
            if line:
                lines.append(line.rstrip())
                line = ""
            lines.append(piece[:width])
            piece = piece[width:]
        if len(line) + len(piece.rstrip()) > width:
            lines.append(line.rstrip())
            line = piece.lstrip()
        else:
            line += piece
    if line.strip():
        lines.append(line.rstrip())
    return lines


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def did(self, text: str) -> None:
        self.lines.append(text)

    def warn(self, text: str) -> None:
        self.warnings.append(text)


# ---- JSON forms (`host-prep plan|apply|verify|revert --json`, the Ansible module) ----


def _file_action(change: FileChange, now: FileState) -> str:
    if now.kind == "absent":
        return "create"
    return "remove" if change.want.kind == "absent" else "update"


def changes_json(plan: Plan, pv: Preview, effects: Effects) -> list[dict[str, Any]]:
    """Every change apply would make now, one object each, in the order apply makes them."""
    out: list[dict[str, Any]] = []
    for entry in pv.stale:
        out.append(
            {
                "kind": "file",
                "action": "restore",
                "path": entry["path"],
                "why": "no longer planned: back to its original",
                "reboot": False,
            }
        )
    for change, now in pv.files:
        out.append(
            {
                "kind": "file",
                "action": _file_action(change, now),
                "path": change.path,
                "why": change.why,
                "reboot": change.reboot,
                "diff": "".join(diff(change.path, now, change.want)),
            }
        )
    commands = list(pv.grubby or []) + list(pv.commands)
    for argv in commands:
        out.append({"kind": "command", "argv": list(argv), "run": effects.commands})
    for unit in pv.stops:
        out.append({"kind": "service", "action": "stop", "unit": unit})
    for mount in pv.mounts:
        out.append({"kind": "mount", "path": mount.path, "fstype": mount.fstype, "why": mount.why})
    for entry in pv.stale_runtime:
        out.append(
            {
                "kind": "runtime",
                "action": "restore",
                "path": entry["path"],
                "to": entry["previous"],
                "written": effects.runtime,
            }
        )
    for value_change, current in pv.runtime:
        out.append(
            {
                "kind": "runtime",
                "action": "set",
                "path": value_change.path,
                "label": value_change.label,
                "from": current,
                "to": value_change.value,
                "why": value_change.why,
                "written": effects.runtime and value_change.writable,
            }
        )
    return out


def effective(pv: Preview, effects: Effects) -> bool:
    """Whether applying ``pv`` changes something under this root.

    On a tree (``--root``) no command is run and no runtime value is written:
    those differences stay and must not make every apply look like a change.
    """
    if pv.files or pv.stale:
        return True
    if effects.commands and (pv.grubby or pv.commands or pv.stops):
        return True
    runtime = pv.mounts or pv.stale_runtime or any(c.writable for c, _ in pv.runtime)
    return bool(effects.runtime and runtime)


def reboot_needed(plan: Plan, pv: Preview) -> bool:
    """Would the planned changes take effect only at the next boot?"""
    if plan.runtime_only:
        return False
    return bool(pv.grubby) or any(change.reboot for change, _ in pv.files)


@dataclass
class PlanResult:
    """A plan compared with the host (``host-prep plan``), and what apply then did."""

    prepared: Any  # hostprep.api.Prepared
    preview: Preview
    applied: Report | None = None

    @property
    def changed(self) -> bool:
        """Would apply change anything here (a --root tree: files only)?"""
        return effective(self.preview, self.prepared.effects)

    @property
    def reboot_required(self) -> bool:
        """The changes need a reboot, or earlier ones still wait for one (``reboot pending``)."""
        if reboot_needed(self.prepared.plan, self.preview):
            return True
        if self.prepared.plan.runtime_only:
            return False
        rows = verify(self.prepared.plan, self.prepared.effects)
        return any(row.status == "reboot pending" for row in rows)

    def to_json(self) -> dict[str, Any]:
        plan: Plan = self.prepared.plan
        effects: Effects = self.prepared.effects
        host = plan.host
        return {
            "source": self.prepared.source,
            "root": str(effects.fs.root),
            "result": ("applied" if self.applied else "would change")
            if self.changed
            else "unchanged",
            "changed": self.changed,
            "dry_run": self.applied is None,
            "reboot_required": self.reboot_required,
            "runtime_only": plan.runtime_only,
            "isolated_cpus": sorted(host.isolated),
            "housekeeping_cpus": sorted(host.housekeeping),
            "bootloader": plan.bootloader or None,
            "cmdline_appliable": plan.cmdline_problem is None,
            "cmdline_problem": plan.cmdline_problem,
            "kernel_args": [{"arg": arg.text, "why": arg.why} for arg in plan.cmdline.args]
            if not plan.runtime_only
            else [],
            "changes": changes_json(plan, self.preview, effects),
            "done": list(self.applied.lines) if self.applied else [],
            "warnings": [p.render(self.prepared.source) for p in self.prepared.warnings]
            + (list(self.applied.warnings) if self.applied else []),
            "notes": [
                {"topic": topic, "text": text} for topic, text in [*plan.notes, *self.preview.notes]
            ],
        }


@dataclass
class VerifyResult:
    prepared: Any
    rows: list[Row]

    @property
    def drift(self) -> list[Row]:
        return [r for r in self.rows if r.drift]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.prepared.source,
            "root": str(self.prepared.effects.fs.root),
            "result": "differs" if self.drift else "matches",
            "matches": not self.drift,
            "reboot_required": any(r.status == "reboot pending" for r in self.rows),
            "rows": [
                {"what": r.what, "wanted": r.wanted, "found": r.found, "status": r.status}
                for r in self.rows
            ],
            "differ": len(self.drift),
            "cmdline_compared": compared(self.prepared.plan, self.prepared.effects),
            "notes": [{"topic": topic, "text": text} for topic, text in self.prepared.plan.notes],
        }


@dataclass
class RevertResult:
    report: Report
    changed: bool
    root: str

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "result": "reverted" if self.changed else "unchanged",
            "changed": self.changed,
            "done": list(self.report.lines),
            "warnings": list(self.report.warnings),
        }

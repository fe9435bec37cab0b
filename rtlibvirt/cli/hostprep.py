"""``rtlibvirt host-prep plan|apply|verify|revert``: the click commands, thin over
``hostprep.plan``, ``apply``, ``verify``, ``revert`` and ``report``.

Registered on the main ``rtlibvirt`` group by
``rtlibvirt/cli/__init__.py``; errors (RtlibvirtError) reach that group, which turns
them into a message and an exit status.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rtlibvirt.cli.options import CONTEXT, json_option
from rtlibvirt.errors import EXIT_DIFFERS, InputError

F = TypeVar("F", bound=Callable[..., Any])


def root_option(func: F) -> F:
    return click.option(
        "--root",
        metavar="DIR",
        default="/",
        show_default=True,
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="Operate on the tree DIR (an image, a test) instead of the live host: "
        "files only; no runtime value is written and no command is run.",
    )(func)


host_argument = click.argument(
    "host_file", metavar="HOST.yaml", type=click.Path(dir_okay=True, path_type=Path)
)


def _prepare(host_file: Path, root: Path, runtime_only: bool, need_bootloader: bool = True) -> Any:
    """Facts, validated spec, plan, effects and journal: nothing changed yet."""
    from rtlibvirt.hostprep import api

    prepared = api.prepare(
        root, host_file, runtime_only=runtime_only, need_bootloader=need_bootloader
    )
    for problem in prepared.warnings:
        click.echo(f"warning: {problem.render(prepared.source)}", err=True)
    return prepared


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


@click.group("host-prep", context_settings=CONTEXT)
def host_prep() -> None:
    """Prepare the host for real-time VMs from HOST.yaml, reversibly.

    Kernel command line (GRUB drop-in or grubby), systemd CPUAffinity, services,
    KVM module options, sysctl values, and a boot-time unit for the runtime
    values. Every change is journaled under /var/lib/rtlibvirt/host-prep/ first.

    \b
    Examples:
      rtlibvirt host-prep plan host.yaml          # what would change; changes nothing
      rtlibvirt host-prep apply host.yaml         # asks, then changes
      rtlibvirt host-prep verify host.yaml        # exit 0 matches, 3 drift
      rtlibvirt host-prep revert                  # everything back, byte for byte
      rtlibvirt host-prep plan host.yaml --root /srv/image
    """


@host_prep.command(context_settings=CONTEXT)
@host_argument
@root_option
@click.option("--runtime-only", is_flag=True, help="Only the runtime values (see apply).")
@json_option
def plan(host_file: Path, root: Path, runtime_only: bool, as_json: bool) -> None:
    """Show every change apply would make: file diffs, commands, runtime values.

    Changes nothing. --json prints one object: "changed" (would apply change
    anything), "reboot_required", and "changes" (each file, command, service,
    mount and runtime value apply would change).

    \b
    Examples:
      rtlibvirt host-prep plan host.yaml
      rtlibvirt host-prep plan host.yaml --json | jq -e .changed >/dev/null && echo "to do"
      rtlibvirt host-prep plan host.yaml --runtime-only
      rtlibvirt host-prep plan host.yaml --root /srv/image   # a tree; cpu_vendor if no /proc
    """
    show_plan(_prepare(host_file, root, runtime_only, need_bootloader=False), as_json)


def show_plan(prepared: Any, as_json: bool) -> None:
    """``plan``: host-prep's and guest-prep's."""
    from rtlibvirt.hostprep import api
    from rtlibvirt.hostprep.report import render_plan

    result = api.run_plan(prepared)
    if as_json:
        _echo_json(result.to_json())
        return
    click.echo(
        render_plan(prepared.plan, result.preview, prepared.effects, prepared.journal), nl=False
    )


@host_prep.command(context_settings=CONTEXT)
@host_argument
@root_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask before changing the host.")
@click.option(
    "--runtime-only",
    is_flag=True,
    help="Only the runtime values (sysctl, 2M hugepages, resctrl mount, machine-check "
    "polling, lapic_timer_advance_ns): no files. What rtlibvirt-host.service runs at boot.",
)
@click.option(
    "--skip-cmdline",
    is_flag=True,
    help="Where host-prep cannot set the kernel command line (no update-grub or grubby: "
    "the plan says so), apply everything else; the arguments are then yours to add by hand.",
)
@json_option
def apply(
    host_file: Path, root: Path, yes: bool, runtime_only: bool, skip_cmdline: bool, as_json: bool
) -> None:
    """Make the host match HOST.yaml (after showing the plan and asking).

    Every change is journaled before it is made; applying the same file again
    changes nothing; `rtlibvirt host-prep revert` undoes it all.

    --json (with --yes) prints one object instead: "result" applied or
    unchanged, "changed", "reboot_required", "changes" and what was "done".

    \b
    Examples:
      rtlibvirt host-prep apply host.yaml                  # shows the plan, asks
      rtlibvirt host-prep apply host.yaml --yes
      rtlibvirt host-prep apply host.yaml --yes --json | jq .reboot_required
      rtlibvirt host-prep apply host.yaml --runtime-only --yes
      rtlibvirt host-prep apply host.yaml --skip-cmdline   # no update-grub/grubby here
    """
    do_apply(
        lambda: _prepare(host_file, root, runtime_only, need_bootloader=not skip_cmdline),
        root,
        yes,
        runtime_only,
        as_json,
    )


def do_apply(
    prepare: Callable[[], Any],
    root: Path,
    yes: bool,
    runtime_only: bool,
    as_json: bool,
    command: str = "host-prep",
) -> None:
    """``apply``: host-prep's and guest-prep's (``prepare`` makes the Prepared)."""
    from rtlibvirt.hostprep import api
    from rtlibvirt.hostprep.report import render_plan

    if as_json and not yes:
        raise InputError("--json needs --yes: there is no question to answer in JSON")
    api.need_root(root)
    prepared = prepare()
    if as_json:
        _echo_json(api.run_apply(prepared).to_json())
        return
    planned = api.run_plan(prepared)
    pv = planned.preview
    quiet = yes and runtime_only  # rtlibvirt-host.service at boot: only what it did
    if not quiet:
        click.echo(render_plan(prepared.plan, pv, prepared.effects, prepared.journal), nl=False)
    machine = "guest" if command == "guest-prep" else "host"
    if not planned.changed:
        if quiet:
            click.echo(f"The {machine} already matches; nothing changed.")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise InputError(
                f"refusing to change the {machine} without --yes: standard input is not a terminal"
            )
        if not click.confirm("\nApply these changes?", default=False):
            click.echo("Nothing was changed.")
            return
    report = api.run_apply(prepared).applied
    if not quiet:
        click.echo()
    for line in report.lines if report else []:
        click.echo(f"  {line}")
    for warning in report.warnings if report else []:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"Applied. `rtlibvirt {command} verify` checks it; `rtlibvirt {command} revert` undoes it."
    )


@host_prep.command(context_settings=CONTEXT)
@host_argument
@root_option
@json_option
@click.pass_context
def verify(ctx: click.Context, host_file: Path, root: Path, as_json: bool) -> None:
    """Compare the host with HOST.yaml: a table; exit 0 when all matches, 3 on drift.

    "reboot pending": the boot entry has the argument but the running kernel
    (/proc/cmdline) does not yet. --json prints the rows as one object
    ("matches", "reboot_required", "rows"); the exit status is the same.

    \b
    Examples:
      rtlibvirt host-prep verify host.yaml && echo "host ready"
      rtlibvirt host-prep verify host.yaml --json | jq '.rows[] | select(.status != "ok")'
      rtlibvirt host-prep verify host.yaml --root /srv/image
    """
    do_verify(ctx, _prepare(host_file, root, False, need_bootloader=False), as_json)


def _terminal_width() -> int | None:
    """The terminal's width (COLUMNS first, at least 80), or None when standard output
    is not a terminal: then the verify table is not wrapped."""
    import shutil
    import sys

    if not sys.stdout.isatty():
        return None
    return max(80, shutil.get_terminal_size().columns)


def do_verify(ctx: click.Context, prepared: Any, as_json: bool) -> None:
    """``verify``: host-prep's and guest-prep's; exit 3 on drift."""
    from rtlibvirt.hostprep import api
    from rtlibvirt.hostprep.report import render_rows

    for topic, text in prepared.plan.notes:
        if topic in ("boot loader", "tuned"):
            click.echo(f"note: {text}", err=True)
    result = api.run_verify(prepared)
    rows, drift = result.rows, result.drift
    if not as_json:
        from rtlibvirt.hostprep.verify import compared

        click.echo(f"compared: {compared(prepared.plan, prepared.effects)}", err=True)
    if as_json:
        _echo_json(result.to_json())
        if drift:
            ctx.exit(EXIT_DIFFERS)
        return
    click.echo(render_rows(rows, _terminal_width()), nl=False)
    if any(r.what == "kernel" and r.status == "warning" for r in rows):
        from rtlibvirt.kernel.realtime import RT_KERNEL_HINT

        click.echo(f"warning: the kernel is not PREEMPT_RT: {RT_KERNEL_HINT}", err=True)
    pending = [r for r in drift if r.status == "reboot pending"]
    if drift:
        extra = f" ({len(pending)} waiting for a reboot)" if pending else ""
        click.echo(f"{len(drift)} of {len(rows)} differ{extra}", err=True)
        ctx.exit(EXIT_DIFFERS)
    click.echo(f"all {len(rows)} match", err=True)


@host_prep.command(context_settings=CONTEXT)
@root_option
@json_option
def revert(root: Path, as_json: bool) -> None:
    """Undo every host-prep change, from the journal: files byte for byte, services, values.

    Files host-prep created are removed, the boot loader is updated again,
    disabled services are enabled (and started if they ran). Needs no HOST.yaml;
    works after a reboot; running it again changes nothing.

    \b
    Examples:
      rtlibvirt host-prep revert
      rtlibvirt host-prep revert --root /srv/image
    """
    do_revert(root, as_json)


def do_revert(root: Path, as_json: bool) -> None:
    """``revert``: host-prep's and guest-prep's (one journal: a machine is a host or a guest)."""
    from rtlibvirt.hostprep import api

    result = api.run_revert(root)
    if as_json:
        _echo_json(result.to_json())
        return
    report = result.report
    for line in report.lines:
        click.echo(f"  {line}")
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if report.lines and not report.lines[0].startswith("nothing"):
        click.echo("Reverted.")

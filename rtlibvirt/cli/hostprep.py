"""``rtlibvirt host-prep plan|apply|verify|revert``: the click commands, thin over
``hostprep.plan``, ``apply``, ``verify``, ``revert`` and ``report``.

Registered on the main ``rtlibvirt`` group by
``rtlibvirt/cli/__init__.py``; errors (RtlibvirtError) reach that group, which turns
them into a message and an exit status.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rtlibvirt.cli.options import CONTEXT
from rtlibvirt.errors import EXIT_DIFFERS, HostError, InputError, RtlibvirtError
from rtlibvirt.kernel.fs import HostFS

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


def _live(root: Path) -> bool:
    return root.resolve() == Path("/")


def _program(live: bool) -> str:
    """The rtlibvirt that rtlibvirt-host.service runs at boot."""
    from rtlibvirt.hostprep.plan import DEFAULT_PROGRAM

    if not live:
        return DEFAULT_PROGRAM
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "rtlibvirt" and os.path.exists(argv0):
        return os.path.abspath(argv0)
    return shutil.which("rtlibvirt") or DEFAULT_PROGRAM


def _prepare(
    host_file: Path, root: Path, runtime_only: bool, need_bootloader: bool = True
) -> tuple[Any, Any, Any]:
    """Facts, validated spec, plan, effects and journal: nothing changed yet."""
    from rtlibvirt.config.host import load_host_spec
    from rtlibvirt.hostprep.effects import Effects
    from rtlibvirt.hostprep.facts import gather
    from rtlibvirt.hostprep.journal import Journal
    from rtlibvirt.hostprep.plan import build_plan

    fs = HostFS(root)
    live = _live(root)
    facts = gather(fs)
    host = load_host_spec(host_file, facts)
    for problem in host.warnings:
        click.echo(f"warning: {problem.render(host.source)}", err=True)
    plan = build_plan(
        host,
        facts,
        runtime_only=runtime_only,
        program=_program(live),
        need_bootloader=need_bootloader,
    )
    effects = Effects(fs, runtime=live, commands=live)
    return plan, effects, Journal(effects)


def _need_root(root: Path) -> None:
    if _live(root) and os.geteuid() != 0:
        raise HostError("changing the host needs root", "run it with sudo")


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
def plan(host_file: Path, root: Path, runtime_only: bool) -> None:
    """Show every change apply would make: file diffs, commands, runtime values.

    Changes nothing.

    \b
    Examples:
      rtlibvirt host-prep plan host.yaml
      rtlibvirt host-prep plan host.yaml --runtime-only
      rtlibvirt host-prep plan host.yaml --root /srv/image   # a tree; cpu_vendor if no /proc
    """
    from rtlibvirt.hostprep.plan import preview
    from rtlibvirt.hostprep.report import render_plan

    plan_, effects, journal = _prepare(host_file, root, runtime_only)
    click.echo(render_plan(plan_, preview(plan_, effects, journal), effects, journal), nl=False)


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
def apply(host_file: Path, root: Path, yes: bool, runtime_only: bool) -> None:
    """Make the host match HOST.yaml (after showing the plan and asking).

    Every change is journaled before it is made; applying the same file again
    changes nothing; `rtlibvirt host-prep revert` undoes it all.

    \b
    Examples:
      rtlibvirt host-prep apply host.yaml                  # shows the plan, asks
      rtlibvirt host-prep apply host.yaml --yes
      rtlibvirt host-prep apply host.yaml --runtime-only --yes
    """
    from rtlibvirt.hostprep.apply import apply as do_apply
    from rtlibvirt.hostprep.plan import preview
    from rtlibvirt.hostprep.report import render_plan

    _need_root(root)
    plan_, effects, journal = _prepare(host_file, root, runtime_only)
    pv = preview(plan_, effects, journal)
    quiet = yes and runtime_only  # rtlibvirt-host.service at boot: only what it did
    if not quiet:
        click.echo(render_plan(plan_, pv, effects, journal), nl=False)
    if pv.empty:
        if quiet:
            click.echo("The host already matches; nothing changed.")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise InputError(
                "refusing to change the host without --yes: standard input is not a terminal"
            )
        if not click.confirm("\nApply these changes?", default=False):
            click.echo("Nothing was changed.")
            return
    try:
        report = do_apply(plan_, effects, journal)
    except RtlibvirtError as exc:
        if effects.changes:
            exc.hint = (exc.hint + "\n  " if exc.hint else "") + (
                "some changes were made (and journaled): fix the cause and apply again, "
                "or undo them with `rtlibvirt host-prep revert`"
            )
        raise
    if not quiet:
        click.echo()
    for line in report.lines:
        click.echo(f"  {line}")
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        "Applied. `rtlibvirt host-prep verify` checks it; `rtlibvirt host-prep revert` undoes it."
    )


@host_prep.command(context_settings=CONTEXT)
@host_argument
@root_option
@click.pass_context
def verify(ctx: click.Context, host_file: Path, root: Path) -> None:
    """Compare the host with HOST.yaml: a table; exit 0 when all matches, 3 on drift.

    "reboot pending": the boot entry has the argument but the running kernel
    (/proc/cmdline) does not yet.

    \b
    Examples:
      rtlibvirt host-prep verify host.yaml && echo "host ready"
      rtlibvirt host-prep verify host.yaml --root /srv/image
    """
    from rtlibvirt.hostprep.report import render_rows
    from rtlibvirt.hostprep.verify import verify as do_verify

    plan_, effects, _journal = _prepare(host_file, root, False, need_bootloader=False)
    for topic, text in plan_.notes:
        if topic == "boot loader":
            click.echo(f"note: {text}", err=True)
    rows = do_verify(plan_, effects)
    click.echo(render_rows(rows), nl=False)
    drift = [r for r in rows if r.drift]
    pending = [r for r in drift if r.status == "reboot pending"]
    if drift:
        extra = f" ({len(pending)} waiting for a reboot)" if pending else ""
        click.echo(f"{len(drift)} of {len(rows)} differ{extra}", err=True)
        ctx.exit(EXIT_DIFFERS)
    click.echo(f"all {len(rows)} match", err=True)


@host_prep.command(context_settings=CONTEXT)
@root_option
def revert(root: Path) -> None:
    """Undo every host-prep change, from the journal: files byte for byte, services, values.

    Files host-prep created are removed, the boot loader is updated again,
    disabled services are enabled (and started if they ran). Needs no HOST.yaml;
    works after a reboot; running it again changes nothing.

    \b
    Examples:
      rtlibvirt host-prep revert
      rtlibvirt host-prep revert --root /srv/image
    """
    from rtlibvirt.hostprep.effects import Effects
    from rtlibvirt.hostprep.journal import Journal
    from rtlibvirt.hostprep.revert import revert as do_revert

    _need_root(root)
    live = _live(root)
    effects = Effects(HostFS(root), runtime=live, commands=live)
    report = do_revert(effects, Journal(effects))
    for line in report.lines:
        click.echo(f"  {line}")
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if report.lines and not report.lines[0].startswith("nothing"):
        click.echo("Reverted.")

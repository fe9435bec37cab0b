"""``rtlibvirt guest-prep plan|apply|verify|revert|cloud-init``: run inside the guest.

host-prep's commands with the guest profile: the command bodies are
``cli.hostprep``'s (``show_plan``, ``do_apply``, ``do_verify``, ``do_revert``),
the engine is ``hostprep`` with ``hostprep.profiles.guest``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rtlibvirt.cli.hostprep import do_apply, do_revert, do_verify, root_option, show_plan
from rtlibvirt.cli.options import CONTEXT, json_option

F = TypeVar("F", bound=Callable[..., Any])

vm_argument = click.argument(
    "vm_file", metavar="VM.yaml", type=click.Path(dir_okay=True, path_type=Path)
)


def _prepare(
    vm_file: Path,
    root: Path,
    runtime_only: bool,
    need_bootloader: bool = True,
    as_json: bool = False,
) -> Any:
    """The guest profile's plan (nothing changed yet); exit 0 when there is nothing to do
    (with --json, an object that says so, as the Ansible module's ``nothing_to_do``)."""
    from rtlibvirt.hostprep import api
    from rtlibvirt.hostprep.profiles.guest import NothingToDo

    try:
        prepared = api.prepare_guest(
            root, vm_file, runtime_only=runtime_only, need_bootloader=need_bootloader
        )
    except NothingToDo as exc:
        click.echo(str(exc), err=True)
        if as_json:
            click.echo(
                json.dumps({"nothing_to_do": str(exc), "changed": False, "reboot_required": False})
            )
        raise click.exceptions.Exit(0) from None
    for problem in prepared.warnings:
        click.echo(f"warning: {problem.render(prepared.source)}", err=True)
    return prepared


@click.group("guest-prep", context_settings=CONTEXT)
def guest_prep() -> None:
    """Prepare a real-time VM's guest from its VM.yaml, reversibly (run inside the guest).

    The guest half of the recipe, derived from the spec's real-time vCPUs:
    isolcpus, nohz_full, rcu_nocbs and irqaffinity on vCPU numbers (not host
    CPUs), systemd's CPUAffinity on the housekeeping vCPUs, the timer and RCU
    settings, sysctl values, services, and the guest's per-CPU kernel threads
    raised at each boot. Nothing that belongs to a hypervisor (no kvm.*, IOMMU,
    hugepages or cache allocation; idle=poll only with guest.idle_poll). It is
    host-prep's engine: the same journal under /var/lib/rtlibvirt/host-prep/,
    the same byte-exact revert. Needs no libvirt: `pip install rtlibvirt`.

    \b
    Examples:
      rtlibvirt guest-prep plan plc.yaml           # what would change; changes nothing
      rtlibvirt guest-prep apply plc.yaml          # asks, then changes; then reboot
      rtlibvirt guest-prep verify plc.yaml         # exit 0 matches, 3 drift
      rtlibvirt guest-prep revert                  # everything back, byte for byte
      rtlibvirt guest-prep cloud-init plc.yaml > user-data   # for new guests
    """


@guest_prep.command(context_settings=CONTEXT)
@vm_argument
@root_option
@json_option
def plan(vm_file: Path, root: Path, as_json: bool) -> None:
    """Show every change apply would make in this guest: file diffs, commands, values.

    Changes nothing. --json prints the same object as `host-prep plan --json`.

    \b
    Examples:
      rtlibvirt guest-prep plan plc.yaml
      rtlibvirt guest-prep plan plc.yaml --root /srv/guest-image
    """
    show_plan(_prepare(vm_file, root, False, as_json=as_json), as_json)


@guest_prep.command(context_settings=CONTEXT)
@vm_argument
@root_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask before changing the guest.")
@json_option
def apply(vm_file: Path, root: Path, yes: bool, as_json: bool) -> None:
    """Make this guest match VM.yaml's guest half (after showing the plan and asking).

    Every change is journaled before it is made; applying again changes
    nothing; `rtlibvirt guest-prep revert` undoes it all. Reboot afterwards.

    \b
    Examples:
      rtlibvirt guest-prep apply plc.yaml
      rtlibvirt guest-prep apply plc.yaml --yes --json | jq .reboot_required
    """
    do_apply(
        lambda: _prepare(vm_file, root, False, as_json=as_json),
        root,
        yes,
        False,
        as_json,
        "guest-prep",
    )


@guest_prep.command(context_settings=CONTEXT)
@vm_argument
@root_option
@json_option
@click.pass_context
def verify(ctx: click.Context, vm_file: Path, root: Path, as_json: bool) -> None:
    """Compare this guest with VM.yaml's guest half: exit 0 when all matches, 3 on drift.

    \b
    Examples:
      rtlibvirt guest-prep verify plc.yaml && echo "guest ready"
      rtlibvirt guest-prep verify plc.yaml --root /srv/guest-image
    """
    do_verify(ctx, _prepare(vm_file, root, False, need_bootloader=False, as_json=as_json), as_json)


@guest_prep.command(context_settings=CONTEXT)
@root_option
@json_option
def revert(root: Path, as_json: bool) -> None:
    """Undo every guest-prep change, from the journal: files byte for byte, services, values.

    Needs no VM.yaml; works after a reboot; running it again changes nothing.

    \b
    Examples:
      rtlibvirt guest-prep revert
      rtlibvirt guest-prep revert --root /srv/guest-image
    """
    do_revert(root, as_json)


@guest_prep.command("cloud-init", context_settings=CONTEXT)
@vm_argument
@click.option(
    "--root",
    metavar="DIR",
    default=None,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Plan on the guest image's tree DIR (its distribution, boot loader and units) "
    "instead of the smallest tree of --distro.",
)
@click.option(
    "--distro",
    type=click.Choice(["debian", "ubuntu", "rhel"]),
    default="debian",
    show_default=True,
    help="The guest's distribution family, without --root: GRUB drop-in and update-grub "
    "(debian, ubuntu) or grubby (rhel and its kin).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the user-data to FILE instead of standard output.",
)
def cloud_init(vm_file: Path, root: Path | None, distro: str, output: Path | None) -> None:
    """Print #cloud-config user-data that applies guest-prep's plan at first boot.

    The same plan as `guest-prep plan`: its files through write_files, its links
    and commands (the boot-loader update) through runcmd, the services through
    systemctl, then one reboot (power_state). For `virt-install --cloud-init
    user-data=FILE` or any NoCloud seed. Changes nothing here.

    \b
    Examples:
      rtlibvirt guest-prep cloud-init plc.yaml > user-data
      virt-install ... --cloud-init user-data=user-data
      rtlibvirt guest-prep cloud-init plc.yaml --distro rhel -o user-data
    """
    from rtlibvirt.hostprep import api
    from rtlibvirt.hostprep.profiles.guest import NothingToDo
    from rtlibvirt.kernel.files import atomic_write

    try:
        text, prepared = api.guest_cloud_init(vm_file, root, distro)
    except NothingToDo as exc:
        click.echo(str(exc), err=True)
        raise click.exceptions.Exit(0) from None
    for problem in prepared.warnings:
        click.echo(f"warning: {problem.render(prepared.source)}", err=True)
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write(output, text.encode("utf-8"), mode=0o600)
        click.echo(f"wrote {output}", err=True)

"""``rtlibvirt render``, ``define`` and ``schema``: a vm.yaml to a libvirt domain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from rtlibvirt.cli.options import (
    CONTEXT,
    allow_shared_option,
    connect_option,
    json_option,
    load_vm,
    no_host_check_option,
    spec_argument,
)


@click.command(context_settings=CONTEXT)
@spec_argument
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the XML to FILE instead of standard output.",
)
def render(spec_file: Path, output: Path | None) -> None:
    """Print the libvirt domain XML of VM.yaml. Needs no libvirt daemon.

    On standard error it points to `rtlibvirt guest-prep` for the guest half
    (the guest kernel's isolation of the realtime vCPUs), as `rtlibvirt probe`
    measures it.

    \b
    Examples:
      rtlibvirt render examples/plc.yaml
      rtlibvirt render examples/plc.yaml -o plc.xml && virsh define plc.xml
    """
    from rtlibvirt.domain.render import render as render_xml
    from rtlibvirt.kernel.files import atomic_write

    spec = load_vm(spec_file)
    xml = render_xml(spec)
    if output is None:
        click.echo(xml, nl=False)
    else:
        atomic_write(output, xml.encode("utf-8"), mode=0o644)
        click.echo(f"wrote {output}", err=True)
    _recommend_guest_cmdline(spec)


def _recommend_guest_cmdline(spec: Any) -> None:
    """On stderr, so that stdout stays the XML: guest-prep sets the guest half.

    Names only the vCPUs (the command line itself is guest-prep's: deriving it here
    would make every render import host-prep's engine).
    """
    from rtlibvirt.kernel.cpuset import format_cpulist

    rt = set(spec.realtime_vcpus)
    if rt and len(rt) < spec.vcpus:
        click.echo(
            f"inside the guest, `rtlibvirt guest-prep apply VM.yaml` isolates vCPUs "
            f"{format_cpulist(rt)} (its kernel command line, CPUAffinity, kernel threads: "
            "docs/guest.md)",
            err=True,
        )


@click.command(context_settings=CONTEXT)
@spec_argument
@connect_option
@click.option("--dry-run", is_flag=True, help="Show what would change (a diff); define nothing.")
@click.option(
    "--force",
    is_flag=True,
    help="Replace a same-named domain that rtlibvirt did not create (keeping its UUID).",
)
@click.option("--show-xml", is_flag=True, help="Also print the definition as libvirt stored it.")
@no_host_check_option
@allow_shared_option
@json_option
def define(
    spec_file: Path,
    uri: str,
    dry_run: bool,
    force: bool,
    show_xml: bool,
    no_host_check: bool,
    allow_shared: bool,
    as_json: bool,
) -> None:
    """Define VM.yaml's real-time domain in libvirt (or update it).

    Defining again after a change to VM.yaml updates the same domain: its UUID
    and generated MAC addresses are kept. A definition that is already the same
    (leaving out what libvirt fills in) is left alone: "up to date". The domain
    stays an ordinary libvirt domain: virsh and virt-manager start, stop and
    edit it as usual.

    First it checks the spec against the host (CPUs, isolation, other domains'
    pins, SMT siblings, NUMA, hugepages, PCI devices, RT group scheduling,
    libvirt networks):
    errors stop it, warnings are printed. `cpu.pinning: auto` and
    `cpu.emulator: auto` are resolved here, and the choice is shown. With a
    remote URI (qemu+ssh://...) the checks that need the host's kernel files
    cannot run; the output names them.

    --json prints one JSON object: "result" is defined, updated, replaced,
    unchanged (or refused, when the host checks found errors: exit 1), and
    "changed" says whether the definition differs (with --dry-run: would).

    \b
    Examples:
      rtlibvirt define examples/plc.yaml
      rtlibvirt define examples/plc.yaml --dry-run
      rtlibvirt define examples/plc.yaml -c test:///default --show-xml
      rtlibvirt define vm.yaml --dry-run --json | jq -e .changed && echo "would change"
    """
    from rtlibvirt.fit.fitting import HostCheckError
    from rtlibvirt.virt import connection as virt
    from rtlibvirt.virt import define as defining

    spec = load_vm(spec_file)
    with virt.connection(uri) as conn:
        try:
            outcome = defining.prepare(
                conn,
                uri,
                spec,
                force=force,
                host_check=not no_host_check,
                allow_shared=allow_shared,
            )
        except HostCheckError as exc:
            if as_json:
                click.echo(json.dumps(_refused_json(spec.name, uri, exc), indent=2))
            raise
        if not as_json:
            _print_host_step(outcome)
        if not dry_run:
            outcome = defining.commit(conn, outcome)
    if as_json:
        click.echo(json.dumps(outcome.to_json(), indent=2))
        return
    plan = outcome.plan
    if dry_run:
        _print_dry_run(outcome)
        return
    if not outcome.changed:
        click.echo(f"Domain {plan.name!r} on {plan.uri} is up to date; nothing changed.")
    else:
        verb = outcome.result.capitalize()
        click.echo(f"{verb} domain {plan.name!r} on {plan.uri}")
        assert outcome.stored is not None
        for line in defining.describe(outcome.stored):
            click.echo(f"  {line}")
        if plan.running:
            click.echo(
                f"note: {plan.name!r} is running; the new definition applies at its next start"
            )
    if show_xml and outcome.stored is not None:
        click.echo()
        click.echo(outcome.stored, nl=False)


def _print_host_step(outcome: Any) -> None:
    """The placement, the warnings, and the checks that could not run (on stderr)."""
    if outcome.placement_text:
        click.echo(f"auto placement: {outcome.placement_text}", err=True)
    for finding in outcome.findings:
        click.echo(finding.render(), err=True)
    if not outcome.plan.uri.startswith("test:"):  # the test driver has no kernel files at all
        for note in outcome.not_checked:
            click.echo(f"not checked: {note}", err=True)


def _refused_json(name: str, uri: str, exc: Any) -> dict[str, Any]:
    return {
        "name": name,
        "uri": uri,
        "result": "refused",
        "changed": False,
        "dry_run": True,
        "findings": [f.to_json() for f in exc.found],
        "error": exc.message,
    }


def _print_dry_run(outcome: Any) -> None:
    plan = outcome.plan
    if not plan.exists:
        click.echo(f"Would define new domain {plan.name!r} on {plan.uri}:")
        click.echo(plan.xml, nl=False)
    elif not outcome.diff:
        click.echo(f"Domain {plan.name!r} on {plan.uri} is up to date; nothing would change.")
        return
    else:
        click.echo(f"Would update domain {plan.name!r} on {plan.uri}:")
        click.echo(outcome.diff, nl=False)
    click.echo("(dry run: nothing was defined)", err=True)


@click.command(context_settings=CONTEXT)
def schema() -> None:
    """Print the JSON Schema of VM.yaml, for editors to validate and complete it.

    \b
    Example (VS Code with the YAML extension, first line of vm.yaml):
      rtlibvirt schema > vm.schema.json
      # yaml-language-server: $schema=./vm.schema.json
    """
    from rtlibvirt.config.vm import json_schema

    click.echo(json.dumps(json_schema(), indent=2))

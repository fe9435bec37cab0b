"""The commands that fit VMs to their host: ``check``, ``tune``, ``status``.

Registered on the ``cli`` group by ``cli/__init__.py``. ``define``'s host step
(placement for ``auto``, host checks) is ``virt.define.prepare``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from rtlibvirt.cli.options import (
    CONTEXT,
    allow_shared_option,
    connect_option,
    json_option,
    load_vm,
    no_host_check_option,
)
from rtlibvirt.errors import EXIT_DIFFERS, InputError
from rtlibvirt.fit.findings import summary

# ---- check ------------------------------------------------------------------------


def _is_spec_file(target: str) -> bool:
    path = Path(target)
    return path.is_file() or path.suffix in (".yaml", ".yml")


@click.command(context_settings=CONTEXT)
@click.argument("target", metavar="DOMAIN|VM.yaml")
@connect_option
@json_option
@allow_shared_option
def check(target: str, uri: str, as_json: bool, allow_shared: bool) -> None:
    """Report how ready a domain (or VM.yaml) is for real time on its host.

    Checks the host (CPUs that do not exist or are offline or not isolated,
    CPUs other domains pin, busy SMT siblings, NUMA locality, free hugepages,
    PCI devices and their IOMMU groups and drivers, RT group scheduling, the
    libvirt networks of its NICs) and
    what the domain itself lacks (pinning, FIFO vCPUs, balloon, USB, hugepages,
    locked memory, ...). Works on any domain, also one made in virt-manager.

    Exit status: 0 no findings, 3 findings, 1 or 2 when the check could not run.

    \b
    Examples:
      rtlibvirt check plc                  # a defined domain
      rtlibvirt check examples/plc.yaml    # a spec, before defining it
      rtlibvirt check plc --json
    """
    from rtlibvirt.fit.fitting import fit_domain, fit_spec
    from rtlibvirt.virt import connection as virt

    with virt.connection(uri) as conn:
        if _is_spec_file(target):
            spec = load_vm(Path(target))
            fitted = fit_spec(conn, uri, spec, readiness=True, allow_shared=allow_shared)
            subject = f"spec {target} (domain {spec.name!r})"
        else:
            fitted = fit_domain(conn, uri, target, allow_shared=allow_shared)
            subject = f"domain {target!r}"
    host = fitted.host
    if as_json:
        data = {
            "target": target,
            "uri": uri,
            "clean": not fitted.findings,
            "host": {
                "topology": host.topology.describe(),
                "isolated": sorted(host.isolated) if host.isolated is not None else None,
            },
            "placement": (
                {
                    "pinning": list(fitted.placement.pinning),
                    "emulator": list(fitted.placement.emulator),
                }
                if fitted.placement is not None
                else None
            ),
            "findings": [f.to_json() for f in fitted.findings],
            "skipped": fitted.skipped,
        }
        click.echo(json.dumps(data, indent=2))
    else:
        isolated = "unknown"
        if host.isolated is not None:
            from rtlibvirt.kernel.cpuset import format_cpulist

            isolated = format_cpulist(host.isolated) or "none"
        click.echo(f"Checking {subject} on {uri}")
        click.echo(f"  host: {host.topology.describe()}; isolated CPUs: {isolated}")
        if fitted.placement is not None:
            realtime = fitted.spec is None or bool(fitted.spec.realtime_vcpus)
            click.echo(f"  auto placement: {fitted.placement.describe(host.topology, realtime)}")
        for finding in fitted.findings:
            click.echo(finding.render())
        for note in fitted.skipped:
            click.echo(f"not checked: {note}")
        click.echo(
            "ready for real time: no findings" if not fitted.findings else summary(fitted.findings)
        )
    if fitted.findings:
        raise click.exceptions.Exit(EXIT_DIFFERS)


# ---- tune -------------------------------------------------------------------------


@click.command(context_settings=CONTEXT)
@click.argument("domain", metavar="DOMAIN")
@click.argument("tuning_file", metavar="TUNING.yaml", type=click.Path(path_type=Path))
@connect_option
@click.option("--dry-run", is_flag=True, help="Show the changes as a diff; change nothing.")
@no_host_check_option
@allow_shared_option
def tune(
    domain: str,
    tuning_file: Path,
    uri: str,
    dry_run: bool,
    no_host_check: bool,
    allow_shared: bool,
) -> None:
    """Make an existing domain real-time, keeping everything else in it.

    TUNING.yaml takes the `cpu`, `memory_backing`, `numa` and `isolation`
    sections of a vm.yaml (`cpu.pinning: auto` and `cpu.emulator: auto` work).
    Only the real-time parts change: pinning and FIFO scheduling, hugepages and
    locked memory, no balloon, no USB, PMU off, and rtlibvirt's metadata for the
    hook. Disks, NICs, graphics, the UUID and everything else stay; the domain
    stays editable in virt-manager.

    \b
    Examples:
      rtlibvirt tune win10 tuning.yaml --dry-run    # show the diff
      rtlibvirt tune win10 tuning.yaml
    """
    from rtlibvirt.config.tuning import load_tuning, spec_for
    from rtlibvirt.domain import diff as xmldiff
    from rtlibvirt.domain.edit import tune_xml
    from rtlibvirt.domain.facts import facts
    from rtlibvirt.fit.fitting import HostCheckError, place_spec
    from rtlibvirt.fit.host import gather
    from rtlibvirt.virt import connection as virt
    from rtlibvirt.virt import define as defining

    loaded = load_tuning(tuning_file)
    with virt.connection(uri) as conn:
        dom = virt.lookup(conn, domain)
        if dom is None:
            raise InputError(
                f"no domain named {domain!r} on {uri}; nothing was changed",
                "`virsh list --all` lists the domains",
            )
        current = virt.inactive_xml(dom)
        host = gather(conn, uri)
        spec, warnings = spec_for(loaded, defining.stored_facts(current, domain, uri))
        for problem in warnings:
            click.echo(f"warning: {problem.render(loaded.doc.source)}", err=True)
        spec, placement = place_spec(host, spec)
        new_xml = tune_xml(current, spec)
        if placement is not None:
            click.echo(
                f"auto placement: {placement.describe(host.topology, bool(spec.realtime_vcpus))}",
                err=True,
            )
        if not no_host_check:
            from rtlibvirt.fit.checks import host_findings

            result = host_findings(host, facts(new_xml), allow_shared=allow_shared)
            for finding in result.findings:
                if finding.severity != "error":
                    click.echo(finding.render(), err=True)
            errors = [f for f in result.findings if f.severity == "error"]
            if errors:
                raise HostCheckError(domain, errors, outcome="changed")
        if dry_run:
            diff = xmldiff.unified(
                current, new_xml, f"{domain} (current definition on {uri})", f"{domain} (tuned)"
            )
            if diff:
                click.echo(f"Would tune domain {domain!r} on {uri}:")
                click.echo(diff, nl=False)
                _kept(new_xml)
            else:
                click.echo(f"Domain {domain!r} on {uri} is already tuned; nothing would change.")
            click.echo("(dry run: nothing was changed)", err=True)
            return
        stored = defining.apply_xml(conn, new_xml)
        running = virt.is_active(dom)
    click.echo(f"Tuned domain {domain!r} on {uri}")
    for line in defining.describe(stored):
        click.echo(f"  {line}")
    _kept(stored)
    if running:
        click.echo(f"note: {domain!r} is running; the new definition applies at its next start")


def _kept(xml: str) -> None:
    """What tune left although it costs latency, and why (on stderr)."""
    from rtlibvirt.domain.facts import facts

    emulated = facts(xml).emulated
    if emulated:
        click.echo(
            f"kept: {', '.join(emulated)} (yours: tune changes only the real-time parts; "
            "they cost latency, see `rtlibvirt check` [emulated-devices] for how to remove them)",
            err=True,
        )


# ---- status -----------------------------------------------------------------------


@click.command(context_settings=CONTEXT)
@connect_option
@json_option
def status(uri: str, as_json: bool) -> None:
    """Show the host's CPUs and who holds them.

    NUMA nodes, cores and their SMT siblings, housekeeping and isolated CPUs,
    which domain's vCPU (FIFO or not) or emulator is pinned to each CPU
    (* marks running domains), free hugepages per node, and what the rtlibvirt
    hook isolates where it is in use.

    \b
    Examples:
      rtlibvirt status
      rtlibvirt status --json | jq '.cpus[] | select(.held_by != [])'
    """
    from rtlibvirt.fit import status as picture
    from rtlibvirt.fit.host import gather
    from rtlibvirt.virt import connection as virt

    with virt.connection(uri) as conn:
        host = gather(conn, uri)
    hook = picture.hook_isolation(host.fs)
    if as_json:
        click.echo(json.dumps(picture.to_json(host, hook), indent=2))
    else:
        click.echo(picture.text(host, hook), nl=False)

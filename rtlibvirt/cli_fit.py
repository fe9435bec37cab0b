"""The commands that fit VMs to their host: ``check``, ``tune``, ``status``.

Registered on the ``cli`` group at the end of ``cli.py``; also the host step of
``define`` (placement for ``auto``, host checks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .cli import CONTEXT, _load, connect_option
from .errors import EXIT_DIFFERS
from .findings import summary

allow_shared_option = click.option(
    "--allow-shared",
    is_flag=True,
    help="Allow CPUs that other defined domains pin (for domains that never run together).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


# ---- define's host step ---------------------------------------------------------


def fit_for_define(conn: Any, uri: str, spec: Any, *, host_check: bool, allow_shared: bool) -> Any:
    """Place ``auto`` CPUs and run the host checks; returns the placed spec.

    Prints the placement and the warnings; raises HostCheckError on errors.
    """
    from .fit import HostCheckError, fit_spec

    if not host_check and not spec.needs_placement:
        return spec
    fitted = fit_spec(conn, uri, spec, host_check=host_check, allow_shared=allow_shared)
    if fitted.placement is not None:
        click.echo(f"auto placement: {fitted.placement.describe(fitted.host.topology)}", err=True)
    for finding in fitted.findings:
        if finding.severity != "error":
            click.echo(finding.render(), err=True)
    if fitted.errors:
        raise HostCheckError(spec.name, fitted.errors)
    return fitted.spec


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
    PCI devices and their IOMMU groups and drivers, RT group scheduling) and
    what the domain itself lacks (pinning, FIFO vCPUs, balloon, USB, hugepages,
    locked memory, ...). Works on any domain, also one made in virt-manager.

    Exit status: 0 no findings, 3 findings, 1 or 2 when the check could not run.

    \b
    Examples:
      rtlibvirt check plc                  # a defined domain
      rtlibvirt check examples/plc.yaml    # a spec, before defining it
      rtlibvirt check plc --json
    """
    from . import virt
    from .fit import fit_domain, fit_spec

    with virt.connection(uri) as conn:
        if _is_spec_file(target):
            spec = _load(Path(target))
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
            from .cpuset import format_cpulist

            isolated = format_cpulist(host.isolated) or "none"
        click.echo(f"Checking {subject} on {uri}")
        click.echo(f"  host: {host.topology.describe()}; isolated CPUs: {isolated}")
        if fitted.placement is not None:
            click.echo(f"  auto placement: {fitted.placement.describe(host.topology)}")
        for finding in fitted.findings:
            click.echo(finding.render())
        for note in fitted.skipped:
            click.echo(f"not checked: {note}")
        click.echo(
            "ready for real time: no findings" if not fitted.findings else summary(fitted.findings)
        )
    if fitted.findings:
        raise click.exceptions.Exit(EXIT_DIFFERS)

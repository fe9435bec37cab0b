"""``rtlibvirt noise``: what still disturbs a real-time VM's host CPUs, by source, with the fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from rtlibvirt.cli.options import CONTEXT, connect_option, json_option
from rtlibvirt.errors import HostError, InputError


@click.command(context_settings=CONTEXT)
@click.argument("domains", nargs=-1, metavar="[DOMAIN]...")
@click.option("--cpus", metavar="LIST", help="Measure these host CPUs (a cpulist such as 1-3).")
@click.option(
    "--duration", default="10s", show_default=True, metavar="D", help="How long: 10s, 500ms, 5m."
)
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(path_type=Path),  # judged by _check_plot_file, in one line
    metavar="FILE.svg",
    help="Write an SVG of disturbances over time per CPU.",
)
@connect_option
@json_option
def noise(
    domains: tuple[str, ...],
    cpus: str | None,
    duration: str,
    plot_file: Path | None,
    uri: str,
    as_json: bool,
) -> None:
    """Show what disturbs the host CPUs of running real-time VMs, by source, with the fix.

    Traces the host CPUs of the named running domains' real-time vCPUs (of
    every running real-time VM when none is named, or the CPUs of --cpus) for
    --duration in a private tracefs instance, and attributes every interruption:
    device IRQs, softirqs, local timer interrupts and their hrtimers, IPIs,
    kernel work items and any thread other than the VM's own vCPU thread. Each
    source gets its count, total and longest time and a hint that names the
    fix. Needs root on the VM's host. Ctrl-C stops early and reports.

    \b
    Examples:
      rtlibvirt noise plc                   # the CPUs of plc's real-time vCPUs, 10 s
      rtlibvirt noise --cpus 1 --duration 5s
      rtlibvirt noise plc --json | jq '.cpus[].sources[0]'
    """
    from rtlibvirt.kernel.cpuset import CpuListError, parse_cpulist
    from rtlibvirt.kernel.fs import HostFS
    from rtlibvirt.noise import measure, report, tracefs

    seconds = measure.parse_duration(duration)
    wanted = None
    if cpus is not None:
        try:
            wanted = parse_cpulist(cpus)
        except CpuListError as exc:
            raise InputError(
                f"--cpus {cpus!r}: {exc}", "write a cpulist such as 1 or 2-3"
            ) from None
    if plot_file is not None:
        _check_plot_file(plot_file)
    fs = HostFS("/")
    if os.geteuid() != 0:
        raise HostError("rtlibvirt noise traces the kernel: it needs root", "run it with sudo")
    if wanted is not None and not domains:
        targets = measure.targets_of_cpus(fs, wanted)
    else:
        from rtlibvirt.fit.host import is_local
        from rtlibvirt.virt import connection as virt

        if not is_local(uri):
            raise InputError(
                f"rtlibvirt noise traces this host's kernel; {uri} is not local",
                "run it on the VM's host with -c qemu:///system",
            )
        with virt.connection(uri) as conn:
            facts, unreadable = measure.live_domains(virt.all_domains(conn))
        for name in sorted(unreadable):
            if name in domains:
                raise HostError(
                    f"cannot read the XML of {name!r}: {unreadable[name]}",
                    f"see `virsh dumpxml {name}`",
                )
            if not domains:
                click.echo(f"warning: {name!r} not measured: {unreadable[name]}", err=True)
        targets = measure.targets_of_domains(fs, facts, domains, uri)
        if wanted is not None:
            targets = measure.owners_on(targets, measure.check_cpus(fs, wanted))
    before = tracefs.state(fs)
    from rtlibvirt.probe.run import signals_interrupt

    with signals_interrupt():
        result = measure.run(targets, seconds, fs)
    after = tracefs.state(fs)
    if after != before:
        changed = sorted(k for k in before if before.get(k) != after.get(k))
        click.echo(
            f"warning: the host's tracing state changed during the run ({', '.join(changed)}): "
            "another tool traces too",
            err=True,
        )
    if plot_file is not None:
        title = "rtlibvirt noise: " + ", ".join(
            f"CPU {c.cpu}" + (f" ({c.domain})" if c.domain else "") for c in result.cpus
        )
        from rtlibvirt.kernel.files import atomic_write

        try:
            atomic_write(plot_file, report.svg(result, title).encode("utf-8"), mode=0o644)
        except OSError as exc:
            raise HostError(f"cannot write {plot_file}: {exc.strerror}") from None
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(report.text(result), nl=False)


def _check_plot_file(path: Path) -> None:
    """--plot FILE.svg is judged before the trace starts: an SVG name, in a folder that
    exists and where this user can create a file, and not something other than a file."""
    if path.suffix.lower() != ".svg":
        raise InputError(f"--plot {path}: the picture is written as SVG", "name it FILE.svg")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(
            f"--plot {path}: the folder {folder} does not exist", "create it, or name another file"
        )
    if path.is_symlink():
        raise InputError(
            f"--plot {path}: it is a symbolic link (noise runs as root and does not write "
            "through links)",
            "name the file itself",
        )
    if path.exists() and not path.is_file():
        raise InputError(f"--plot {path}: it exists and is not a regular file", "name a file")
    # can a file be created there? (an O_EXCL probe, removed at once: nothing is left)
    probe = folder / f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise InputError(
            f"--plot {path}: cannot create a file in {folder} ({exc.strerror})",
            "name a file in a folder you can write",
        ) from None
    os.unlink(probe)

"""``rtlibvirt probe``: measure the latency a VM really gets on this host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rtlibvirt.cli.options import CONTEXT, connect_option, json_option, load_vm
from rtlibvirt.errors import EXIT_DIFFERS, InputError

if TYPE_CHECKING:
    from rtlibvirt.config.vm import VmSpec
    from rtlibvirt.probe.run import Target


def _say(message: str) -> None:
    click.echo(f"probe: {message}", err=True)


@click.command(context_settings=CONTEXT)
@click.argument("target", metavar="VM.yaml|DOMAIN")
@connect_option
@click.option(
    "--duration",
    default="60s",
    show_default=True,
    metavar="TIME",
    help="How long cyclictest measures in each configuration (e.g. 10s, 5m, 1h).",
)
@click.option(
    "--baseline",
    is_flag=True,
    help="Also measure bare metal: the same cyclictest on the same host CPUs, the host "
    "isolated by the hook as for the VM.",
)
@click.option(
    "--compare",
    type=click.Choice(["untuned"]),
    help="Also measure the VM as virt-install makes it by default (no pinning, no FIFO, no "
    "hugepages, a balloon, no host isolation).",
)
@click.option(
    "--load",
    is_flag=True,
    help="Load the host's housekeeping CPUs with stress-ng during each measurement.",
)
@click.option(
    "--max-latency",
    type=click.IntRange(1, 10_000_000),
    metavar="US",
    help="Exit with status 3 when the VM's worst case exceeds US microseconds.",
)
@json_option
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.svg",
    help="Write the latency histograms of every configuration to an SVG picture.",
)
@click.option(
    "--virt-type",
    type=click.Choice(["kvm", "qemu"]),
    default="kvm",
    show_default=True,
    help="kvm, or qemu for TCG (software emulation: the flow works, the figures are not "
    "real-time figures).",
)
@click.option(
    "--guest-kernel",
    type=click.Choice(["rt", "standard"]),
    default="rt",
    show_default=True,
    help="Debian's PREEMPT_RT kernel (linux-image-rt-amd64) or its standard one.",
)
@click.option(
    "--kernel",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Boot this kernel instead of Debian's (e.g. your distribution's RT kernel).",
)
@click.option(
    "--initrd",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Boot this initramfs instead of rtlibvirt's (it must run the probe's init protocol).",
)
def probe(
    target: str,
    uri: str,
    duration: str,
    baseline: bool,
    compare: str | None,
    load: bool,
    max_latency: int | None,
    as_json: bool,
    plot: Path | None,
    virt_type: str,
    guest_kernel: str,
    kernel: Path | None,
    initrd: Path | None,
) -> None:
    """Measure the latency a VM gets: cyclictest in a probe guest with the VM's tuning.

    The probe guest has VM.yaml's (or the defined DOMAIN's) pinning, FIFO
    vCPUs, memory backing, NUMA placement, CPU model, clock, features and
    rtlibvirt metadata, so the installed hook isolates the host exactly as for
    the real VM; it boots a small Debian image (built on first use from
    linux-image-rt-amd64, busybox-static and rt-tests, and cached in
    /var/cache/rtlibvirt/probe), runs cyclictest on each realtime vCPU and
    powers off. The domain is transient and destroyed on every way out.
    The report is kept as /var/lib/rtlibvirt/probe/NAME.json
    ($RTLIBVIRT_PROBE_RESULTS), the newest of each VM, for the Cockpit page.

    \b
    Examples:
      rtlibvirt probe examples/plc.yaml --baseline --compare untuned --plot plc.svg
      rtlibvirt probe plc --duration 10m --max-latency 40      # a gate: exit 3 above 40 µs
      rtlibvirt probe vm.yaml --virt-type qemu --duration 10s  # TCG: no real-time figures

    Exit status: 0 measured, 1 the measurement failed, 2 invalid input,
    3 the worst case exceeds --max-latency.
    """
    from rtlibvirt.hook import install as hookinstall
    from rtlibvirt.probe import image as probeimage
    from rtlibvirt.probe import plot as probeplot
    from rtlibvirt.probe import report as probereport
    from rtlibvirt.probe import run as proberun
    from rtlibvirt.virt import connection as virt

    seconds = proberun.parse_duration(duration)
    if plot is not None and plot.suffix.lower() != ".svg":
        raise InputError(
            f"--plot {plot}: the picture is written as SVG",
            "name it FILE.svg (convert it to PNG with e.g. rsvg-convert if you need one)",
        )
    spec_file = Path(target)
    planned = None
    if spec_file.is_file() or spec_file.suffix in (".yaml", ".yml"):
        planned = _spec_target(spec_file, load_vm(spec_file))
    options = proberun.Options(
        duration_s=seconds,
        virt_type=virt_type,
        baseline=baseline,
        untuned=compare == "untuned",
        load=load,
    )
    if virt_type == "qemu":
        _say(f"warning: {proberun.TCG_WARNING}")
    with virt.connection(uri) as conn:
        proberun.ensure_local(conn)
        planned = planned or proberun.target_from_domain(conn, target)
        proberun.check_free(virt.all_domains(conn), planned)
        image = probeimage.ensure(
            guest_kernel, kernel=kernel, initrd=initrd, host=baseline, say=_say
        )
        for note in image.notes:
            _say(f"note: {note}")
        prober = proberun.Prober(
            conn=conn,
            target=planned,
            options=options,
            image=image,
            say=_say,
            hook_installed=hookinstall.status().installed,
        )
        with proberun.signals_interrupt():
            runs = prober.run()
    notes = list(planned.notes)
    if virt_type == "qemu":
        notes.append(proberun.TCG_WARNING)
    report = probereport.Report(
        source=planned.source,
        virt_type=virt_type,
        duration_s=seconds,
        image=image.description,
        guest_cmdline=" ".join(planned.guest_isolation),
        runs=tuple(runs),
        notes=tuple(notes),
        max_latency_us=max_latency,
    )
    if plot is not None:
        from rtlibvirt.kernel.files import atomic_write

        kind = "TCG, not real-time figures" if virt_type == "qemu" else "KVM"
        title = f"rtlibvirt probe of {planned.name} ({kind}): latency histogram"
        atomic_write(plot, probeplot.svg(runs, title).encode("utf-8"), mode=0o644)
        _say(f"wrote {plot}")
    _keep(planned.name, report.to_json())
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        for line in probereport.text(report):
            click.echo(line)
    if report.gate_failed:
        tuned = report.run(proberun.LABEL_TUNED)
        assert tuned is not None
        click.echo(
            f"probe: worst case {tuned.summary.max_us} µs exceeds --max-latency {max_latency} µs",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_DIFFERS)


def _keep(name: str, report: dict[str, object]) -> None:
    """Keep the result for the Cockpit page; a failure to keep it is a warning only."""
    from rtlibvirt.errors import HostError
    from rtlibvirt.probe import saved

    try:
        _say(f"kept the result in {saved.save(name, report)}")
    except HostError as exc:
        _say(f"warning: {exc.message}")


def _spec_target(path: Path, spec: VmSpec) -> Target:
    from rtlibvirt.domain.render import render
    from rtlibvirt.probe import run as proberun

    if spec.needs_placement:
        raise InputError(
            f"{path}: cpu.pinning or cpu.emulator is `auto`: the probe measures on the VM's "
            "host CPUs, which are chosen when it is defined",
            f"`rtlibvirt define {path}`, then `rtlibvirt probe {spec.name}`; or write the CPUs",
        )
    return proberun.plan_target(render(spec), str(path))

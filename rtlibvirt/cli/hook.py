"""``rtlibvirt hook install|uninstall|status``: the libvirt qemu hook's commands.

Thin click commands over ``hook.install``; registered on the main group by
``cli/__init__.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from rtlibvirt import __version__
from rtlibvirt.cli.options import CONTEXT, json_option
from rtlibvirt.errors import EXIT_DIFFERS

hooks_dir_option = click.option(
    "--hooks-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/etc/libvirt/hooks",
    show_default=True,
    metavar="DIR",
    help="libvirt's hook folder; the hook goes into DIR/qemu.d/.",
)


@click.group(context_settings=CONTEXT)
def hook() -> None:
    """The libvirt qemu hook that isolates the host while real-time VMs run.

    \b
    At each start of a VM defined by rtlibvirt, the hook moves host IRQs and
    unbound workqueues off the VM's CPUs (and, if the VM asks, gives it
    exclusive L3 cache ways and turns machine-check polling off); when the VM
    stops it undoes exactly that. See docs/hook.md.

    \b
    Examples:
      rtlibvirt hook install --restart
      rtlibvirt hook status
      rtlibvirt hook restore
      rtlibvirt hook uninstall
    """


@hook.command(context_settings=CONTEXT)
@hooks_dir_option
@click.option(
    "--restart",
    is_flag=True,
    help="Restart libvirtd (or virtqemud) through systemd so that it sees the hook; "
    "without systemd, say what to run.",
)
def install(hooks_dir: Path, restart: bool) -> None:
    """Install the hook as DIR/qemu.d/50-rtlibvirt.

    A hook of your own in DIR/qemu is never touched: libvirt (6.5 and later)
    runs it first, then every file in DIR/qemu.d/. The installed file runs this
    Python, so keep rtlibvirt installed where it is. libvirt looks for hooks
    only when the daemon starts: restart it once after the first install.

    \b
    Examples:
      rtlibvirt hook install
      rtlibvirt hook install --restart
    """
    from rtlibvirt.hook import install as hookinstall

    result = hookinstall.install(hooks_dir)
    if result.upgraded:
        click.echo(
            f"upgraded the rtlibvirt hook to {__version__} as {result.path} "
            f"(it was {result.upgraded})"
        )
    elif result.changed:
        click.echo(f"installed the rtlibvirt hook {__version__} as {result.path}")
    else:
        click.echo(f"the rtlibvirt hook {__version__} is already installed as {result.path}")
    if result.user_hook is not None:
        click.echo(f"note: {result.user_hook} (yours) is left alone; libvirt runs it first")
    status = hookinstall.status(hooks_dir)
    if restart and status.needs_restart is not False:
        click.echo(hookinstall.restart_daemon())
    elif status.needs_restart:
        daemon = status.daemon
        assert daemon is not None
        click.echo(
            f"{daemon.name} (pid {daemon.pid}) started before the hook was installed: restart it "
            "so that it sees the hook (`rtlibvirt hook install --restart`)"
        )
    if status.rt_problem:
        from rtlibvirt.kernel.rtgroup import HINT

        click.echo(f"warning: {status.rt_problem}\n  hint: {HINT}", err=True)


@hook.command(context_settings=CONTEXT)
@hooks_dir_option
@click.option(
    "--force",
    is_flag=True,
    help="Remove it even while real-time VMs are isolated (their isolation then stays "
    "until reboot).",
)
def uninstall(hooks_dir: Path, force: bool) -> None:
    """Remove the hook (DIR/qemu.d/50-rtlibvirt). Stop the real-time VMs first.

    \b
    Example:
      rtlibvirt hook uninstall
    """
    from rtlibvirt.hook import install as hookinstall

    if hookinstall.uninstall(hooks_dir, force=force):
        click.echo(f"removed {hooks_dir / hookinstall.HOOK_NAME}")
    else:
        click.echo(f"the rtlibvirt hook is not installed in {hooks_dir}")


@hook.command(context_settings=CONTEXT)
@hooks_dir_option
@json_option
@click.option(
    "--domain",
    metavar="NAME",
    help="With --json: also the hook's last log lines about domain NAME.",
)
@click.option(
    "--lines",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="How many of those log lines.",
)
def status(hooks_dir: Path, as_json: bool, domain: str | None, lines: int) -> None:
    """Is the hook installed, current and seen by libvirtd? What does it isolate now?

    Exit status 0 when everything is in order, 3 when something needs doing
    (not installed, another version, libvirtd must be restarted, ...).

    \b
    Examples:
      rtlibvirt hook status
      rtlibvirt hook status --json --domain plc   # with its last log lines
    """
    from rtlibvirt.hook import install as hookinstall

    st = hookinstall.status(hooks_dir)
    if as_json:
        import json

        from rtlibvirt.hook import log as hooklog

        data = st.to_json()
        if domain is not None:
            data["log_lines"] = {domain: hooklog.recent(hookinstall.host_fs(), domain, lines)}
        click.echo(json.dumps(data, indent=2))
        if not st.ok:
            raise click.exceptions.Exit(EXIT_DIFFERS)
        return
    echo = click.echo
    if not st.installed:
        echo(f"hook       not installed ({st.path} is missing); run `rtlibvirt hook install`")
    else:
        version = st.installed_version or "unknown version"
        state = (
            "current"
            if st.current
            else f"out of date: {st.stale}; run `rtlibvirt hook install` to upgrade"
        )
        echo(f"hook       installed: {st.path} (rtlibvirt {version}, {state})")
        python = st.python or "?"
        python_note = {
            True: "",
            None: " (cannot be checked as this user: run as root)",
            False: " (missing: reinstall)",
        }[st.python_ok]
        echo(f"python     {python}{python_note}")
        echo(f"installed  {_when(st.installed_at)}")
    if st.user_hook is not None:
        echo(f"own hook   {st.user_hook} (yours, runs first)")
    if st.daemon is None:
        echo("daemon     no libvirtd or virtqemud is running")
    else:
        d = st.daemon
        line = f"daemon     {d.name} (pid {d.pid}) started {_when(d.started)}"
        if st.needs_restart:
            line += ": started before the hook was installed, restart it to use the hook"
        elif st.installed:
            line += ": uses the hook"
        echo(line)
    if st.claims:
        echo("isolated   " + "; ".join(f"{name} ({what})" for name, what in st.claims.items()))
    else:
        echo("isolated   no real-time VM")
    if st.unrestored:
        note = " (no VM runs: they wait to be restored, see the log)" if not st.claims else ""
        echo(f"state      {st.state_file}: {st.unrestored} changed values to restore{note}")
        if st.kernel_threads:
            echo(
                f"threads    {st.kernel_threads} kernel threads raised above the vCPUs "
                "(SCHED_FIFO); their policy and priority come back at the last stop"
            )
    else:
        echo(f"state      {st.state_file}: no value changed")
    if st.state_problem:
        echo(f"state      {st.state_problem}")
    for line in st.recovered:
        echo(f"recovered  {line}")
    for path in st.set_aside:
        echo(
            f"state      a damaged state file was set aside: {path} "
            "(`rtlibvirt hook restore` takes in its originals once no VM runs)"
        )
    echo(f"log        {st.log}")
    if st.rt_problem:
        from rtlibvirt.kernel.rtgroup import HINT

        echo(f"warning    {st.rt_problem}\n  hint: {HINT}")
    if not st.ok:
        raise click.exceptions.Exit(EXIT_DIFFERS)


@hook.command(context_settings=CONTEXT)
def restore() -> None:
    """Put back every host value the hook changed, when no real-time VM runs.

    Normally each VM's stop hook does this. Use it after something went wrong:
    libvirtd died, the hook was uninstalled while VMs ran, or `hook status`
    reports a damaged state. IRQ affinities, workqueue cpumasks, machine-check
    intervals, resctrl groups, thread affinities and the scheduling of the kernel
    threads raised above the vCPUs go back to what they were
    before the first VM started, including the originals of damaged state files
    set aside earlier. Refused (exit 2) while a VM the hook isolates runs.

    \b
    Example:
      rtlibvirt hook restore
    """
    from rtlibvirt.errors import HostError
    from rtlibvirt.hook import install as hookinstall

    result = hookinstall.restore()
    for line in result.messages:
        click.echo(f"  {line}")
    if result.released:
        click.echo(f"released the claims of VMs that no longer run: {', '.join(result.released)}")
    for path in result.folded:
        click.echo(f"took in the originals of {path}")
    if result.left:
        raise HostError(
            f"{result.restored} values restored, {result.left} could not be "
            "(they stay in the state; see the lines above)",
            "run `rtlibvirt hook restore` again once the cause is fixed",
        )
    if result.restored:
        click.echo(f"restored {result.restored} values: the host is as before the first VM")
    else:
        click.echo("nothing to restore: the hook has no value changed")


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "at an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))

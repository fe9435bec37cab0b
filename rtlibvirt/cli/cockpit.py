"""``rtlibvirt cockpit install|uninstall``: the "Real-time" page in Cockpit.

Thin click commands over ``webui``; registered on the main group by
``cli/__init__.py``.
"""

from __future__ import annotations

from pathlib import Path

import click

from rtlibvirt.cli.options import CONTEXT

dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default="/usr/share/cockpit",
    show_default=True,
    metavar="DIR",
    help="Cockpit's package folder; the page goes into DIR/rtlibvirt/ "
    "(~/.local/share/cockpit for your user only).",
)


@click.group(context_settings=CONTEXT)
def cockpit() -> None:
    """The "Real-time" page in Cockpit, next to "Virtual machines".

    \b
    The page shows the host's CPUs and who holds them, each real-time VM's
    readiness and the hook's lines about it, the host's boot-time preparation,
    the last probe results, and measures and tunes VMs, all through this
    rtlibvirt's own --json output. See docs/cockpit.md.

    \b
    Examples:
      rtlibvirt cockpit install
      rtlibvirt cockpit install --dir ~/.local/share/cockpit
      rtlibvirt cockpit uninstall
    """


@cockpit.command(context_settings=CONTEXT)
@dir_option
def install(directory: Path) -> None:
    """Install the page as DIR/rtlibvirt/.

    The page runs this rtlibvirt (its absolute path is written into the page's
    config.json), so keep it installed where it is, and install again after
    moving it. A DIR/rtlibvirt/ that rtlibvirt did not install is never touched.
    Cockpit reads its packages when a session starts: log in again to see it.

    \b
    Examples:
      rtlibvirt cockpit install
      rtlibvirt cockpit install --dir ~/.local/share/cockpit
    """
    from rtlibvirt import webui

    result = webui.install(directory)
    what = "installed" if result.changed else "already installed:"
    click.echo(f"{what} the Cockpit page in {result.path} (it runs {result.command})")


@cockpit.command(context_settings=CONTEXT)
@dir_option
def uninstall(directory: Path) -> None:
    """Remove the page from DIR/rtlibvirt/: the files rtlibvirt installed, nothing else.

    \b
    Example:
      rtlibvirt cockpit uninstall
    """
    from rtlibvirt import webui

    removed = webui.uninstall(directory)
    if removed is None:
        click.echo(f"the Cockpit page is not installed in {directory}")
    else:
        click.echo(f"removed the Cockpit page from {removed}")

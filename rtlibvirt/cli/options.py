"""What every command module shares: click settings, options, spec loading.

Defined once here, so that cli/__init__.py (which imports the command modules to
register them) and those modules never import each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from rtlibvirt.errors import Problem

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEFAULT_URI = "qemu:///system"


def default_uri() -> str:
    """Like virsh: $LIBVIRT_DEFAULT_URI, else qemu:///system."""
    return os.environ.get("LIBVIRT_DEFAULT_URI") or DEFAULT_URI


def connect_option(func: F) -> F:
    return click.option(
        "-c",
        "--connect",
        "uri",
        metavar="URI",
        default=default_uri,
        show_default="$LIBVIRT_DEFAULT_URI, else qemu:///system",
        help="libvirt connection URI, as for virsh.",
    )(func)


spec_argument = click.argument(
    "spec_file", metavar="VM.yaml", type=click.Path(dir_okay=True, path_type=Path)
)
no_host_check_option = click.option(
    "--no-host-check", is_flag=True, help="Skip the checks against the host."
)
allow_shared_option = click.option(
    "--allow-shared",
    is_flag=True,
    help="Allow CPUs that other defined domains pin (for domains that never run together).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


def warn(problems: Sequence[Problem], source: str) -> None:
    for problem in problems:
        click.echo(f"warning: {problem.render(source)}", err=True)


def load_vm(path: Path) -> Any:
    """A valid VmSpec from a vm.yaml file; its warnings are printed."""
    from rtlibvirt.config.vm import load_spec

    loaded = load_spec(path)
    warn(loaded.warnings, loaded.source)
    return loaded.spec

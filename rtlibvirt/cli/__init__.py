"""The ``rtlibvirt`` command line: the only package that prints or exits.

Commands are thin: they call library modules and turn RtlibvirtErrors into one
message and an exit status (see ``errors``). ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import gc
import importlib
import os
from collections.abc import Sequence
from typing import Any

import click

from rtlibvirt import __version__
from rtlibvirt.cli.options import CONTEXT
from rtlibvirt.errors import EXIT_FAILURE, RtlibvirtError


class _Group(click.Group):
    """The top group: commands imported when used; errors become a message and an exit code.

    Each command's module is imported only when that command runs (or ``--help``
    lists them all), so that ``rtlibvirt render`` does not pay for host-prep's.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in COMMANDS:
            module, attr = COMMANDS[name].split(":")
            command = getattr(importlib.import_module(f"rtlibvirt.cli.{module}"), attr)
            self.add_command(command, name)
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """``--debug`` is the group's, but is taken after the command too (before ``--``)."""
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[1:end]:
            rest = [a for a in args[:end] if a != "--debug"]
            args = ["--debug", *rest, *args[end:]]
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib  # only for a mistyped command

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=2, cutoff=0.6)
            if close:
                ctx.fail(
                    f"No such command {name!r}. Did you mean "
                    + " or ".join(repr(c) for c in close)
                    + "?"
                )
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RtlibvirtError as exc:
            if _debug(ctx):
                import traceback  # only with --debug: it costs every command ~2 ms

                traceback.print_exc()
            click.echo(exc.render(), err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if _debug(ctx):
                raise
            click.echo(
                f"internal error: {type(exc).__name__}: {exc}\n"
                "  hint: this is a bug in rtlibvirt; run again with --debug and report the "
                "traceback",
                err=True,
            )
            ctx.exit(EXIT_FAILURE)


def _debug(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.params.get("debug")) or os.environ.get("RTLIBVIRT_DEBUG") == "1"


# ---- shared options, defined once -----------------------------------------


# ---- the commands ------------------------------------------------------------


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="rtlibvirt")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def cli(debug: bool) -> None:
    """Provision real-time KVM virtual machines with libvirt from short YAML files.

    \b
    Examples:
      rtlibvirt render examples/plc.yaml             # the domain XML, no libvirt needed
      rtlibvirt define examples/plc.yaml             # define it on qemu:///system
      rtlibvirt define examples/plc.yaml --dry-run   # show what would change
      rtlibvirt schema > vm.schema.json              # JSON Schema for editors

    Exit status: 0 success, 1 runtime or libvirt error, 2 invalid input or usage,
    3 a check or verify found differences.
    """


def main(argv: Sequence[str] | None = None) -> None:
    # The objects made so far (the interpreter's, click's) live until the process
    # exits: keep the garbage collector from scanning them again at every full
    # collection while the command imports and runs (5 ms of a 75 ms render here),
    # and let it collect the young ones every 10,000 new objects instead of 700
    # (the imports make tens of thousands that live as long: 1-2 ms more).
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    cli.main(args=list(argv) if argv is not None else None, prog_name="rtlibvirt")


# The commands: name -> "module:attribute" in rtlibvirt.cli, imported on first use.
COMMANDS = {
    "render": "vm:render",
    "define": "vm:define",
    "schema": "vm:schema",
    "hook": "hook:hook",
    "host-prep": "hostprep:host_prep",
    "guest-prep": "guestprep:guest_prep",
    "check": "fit:check",
    "tune": "fit:tune",
    "status": "fit:status",
    "probe": "probe:probe",
    "noise": "noise:noise",
    "cockpit": "cockpit:cockpit",
}

if __name__ == "__main__":  # pragma: no cover
    main()

"""The command line imports only what the command it runs needs.

Every command is a process of its own and users wait for it: `render` must
not pay for host-prep, libvirt or the host checks (bench/import_floor.py
measures the time; this checks which modules are loaded, which does not
depend on the machine's speed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from rtlibvirt.cli import COMMANDS, cli

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import contextlib, io, json, sys
from rtlibvirt.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules), "out": out.getvalue()}))
"""


def loaded(*argv: str) -> tuple[int, set[str], str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout.splitlines()[-1])
    return result["code"], set(result["modules"]), result["out"]


def test_every_command_is_registered_and_resolves() -> None:
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(COMMANDS)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command), name
        assert command.name == name


@pytest.mark.parametrize("spec", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_render_imports_nothing_it_does_not_use(spec: Path) -> None:
    code, modules, out = loaded("render", str(spec))
    assert code == 0 and out.startswith("<domain")
    unused = {
        "libvirt",
        "rtlibvirt.cli.fit",
        "rtlibvirt.cli.hook",
        "rtlibvirt.cli.hostprep",
        "rtlibvirt.fit",
        "rtlibvirt.hook",
        "rtlibvirt.hostprep",
        "rtlibvirt.virt",
        "traceback",
        "difflib",
        "importlib.resources",
        "zipfile",
        "xml.etree.ElementTree",
    }
    assert unused & modules == set()


def test_help_still_lists_every_command() -> None:
    code, _modules, out = loaded("--help")
    assert code == 0
    for name in COMMANDS:
        assert f"  {name} " in out

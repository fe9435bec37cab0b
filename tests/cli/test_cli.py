"""The command line itself: help, version, output files, errors and --debug."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from pytest_mock import MockerFixture

from rtlibvirt import __version__
from rtlibvirt.cli import cli
from tests.conftest import EXAMPLES


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def _commands() -> list[list[str]]:
    found: list[list[str]] = []

    def walk(group: object, prefix: list[str]) -> None:
        if not isinstance(group, click.Group):
            return
        ctx = click.Context(group)
        for name in group.list_commands(ctx):  # commands are imported lazily
            found.append([*prefix, name])
            walk(group.get_command(ctx, name), [*prefix, name])

    walk(cli, [])
    return found


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_command_has_help_with_examples(command: list[str]) -> None:
    code, out, _ = run(*command, "--help")
    assert code == 0
    assert "Example" in out, f"`rtlibvirt {' '.join(command)} --help` shows no example"


def test_version() -> None:
    code, out, _ = run("--version")
    assert code == 0 and out.strip() == f"rtlibvirt, version {__version__}"


def test_usage_errors_exit_2() -> None:
    assert run("render")[0] == 2
    assert run("nosuchcommand")[0] == 2
    assert run("define", str(EXAMPLES / "plc.yaml"), "--bogus")[0] == 2


def test_render_to_a_file(tmp_path: Path) -> None:
    out_file = tmp_path / "plc.xml"
    code, out, err = run("render", str(EXAMPLES / "plc.yaml"), "-o", str(out_file))
    assert code == 0 and out == ""
    assert f"wrote {out_file}" in err
    assert out_file.read_text().startswith("<domain")
    assert oct(out_file.stat().st_mode & 0o777) == "0o644"
    assert not list(tmp_path.glob(".plc.xml.*")), "no temp file left behind"


def test_internal_errors_have_no_traceback_but_debug_shows_it(mocker: MockerFixture) -> None:
    mocker.patch("rtlibvirt.domain.render.render", side_effect=RuntimeError("boom"))
    code, _, err = run("render", str(EXAMPLES / "plc.yaml"))
    assert code == 1
    assert "internal error: RuntimeError: boom" in err
    assert "--debug" in err and "Traceback" not in err

    result = CliRunner().invoke(cli, ["--debug", "render", str(EXAMPLES / "plc.yaml")])
    assert isinstance(result.exception, RuntimeError)


def test_debug_shows_traceback_of_expected_errors(tmp_path: Path) -> None:
    code, _, err = run("--debug", "render", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert "Traceback" in err and "no such file" in err


@pytest.mark.parametrize(
    "args",
    [
        ["render", "{missing}", "--debug"],
        ["render", "--debug", "{missing}"],
        ["hook", "status", "--debug", "--hooks-dir", "{missing}"],
    ],
)
def test_debug_is_taken_after_the_command_too(tmp_path: Path, args: list[str]) -> None:
    missing = str(tmp_path / "missing.yaml")
    code, _, err = run(*(a.format(missing=missing) for a in args))
    assert "No such option" not in err
    if args[0] == "render":
        assert code == 2 and "Traceback" in err and "no such file" in err


def test_after_double_dash_debug_is_an_argument(tmp_path: Path) -> None:
    code, _, err = run("render", "--", "--debug")
    assert code == 2 and "--debug: no such file" in err and "Traceback" not in err


def test_a_mistyped_command_names_the_one_meant() -> None:
    code, _, err = run("rendr", "x.yaml")
    assert code == 2
    assert "'rendr'" in err and "'render'" in err

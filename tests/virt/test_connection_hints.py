"""What `cannot connect` says: a non-root user is told it is permission, not a dead daemon."""

from __future__ import annotations

import libvirt
import pytest
from click.testing import CliRunner
from pytest_mock import MockerFixture

from rtlibvirt.cli import cli


class _Refused(libvirt.libvirtError):
    def __init__(self, message: str, code: int = libvirt.VIR_ERR_INTERNAL_ERROR) -> None:
        super().__init__(message)
        self._text, self._code = message, code

    def get_error_message(self) -> str:
        return self._text

    def get_error_code(self) -> int:
        return self._code


# what libvirt 9 said to a non-root user on the development VM (no D-Bus, polkit auth)
NO_BUS = "internal error: Unable to get system bus connection: Could not connect: No such file"


@pytest.mark.parametrize("args", [["status"], ["check", "plc"]])
def test_a_non_root_user_is_told_it_is_permission(mocker: MockerFixture, args: list[str]) -> None:
    mocker.patch("os.geteuid", return_value=1000)
    mocker.patch("libvirt.open", side_effect=_Refused(NO_BUS))
    result = CliRunner().invoke(cli, [*args, "-c", "qemu:///system"])
    assert result.exit_code == 1
    err = result.stderr
    assert "permission" in err and "qemu:///session" in err and "sudo" in err
    assert "is libvirtd running" not in err


def test_root_with_a_dead_daemon_is_told_to_start_it(mocker: MockerFixture) -> None:
    mocker.patch("os.geteuid", return_value=0)
    dead = "Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory"
    mocker.patch("libvirt.open", side_effect=_Refused(dead))
    result = CliRunner().invoke(cli, ["status", "-c", "qemu:///system"])
    assert result.exit_code == 1
    assert "is libvirtd running" in result.stderr and "permission" not in result.stderr

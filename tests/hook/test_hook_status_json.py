"""`hook status --json`: the status as one object, and with --domain the hook's lines about one VM
(what the Cockpit page shows under each VM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtlibvirt.cli import cli
from rtlibvirt.hook import install as hookinstall
from rtlibvirt.hook import log as hooklog
from rtlibvirt.kernel.fs import HostFS

LINES = [
    "2026-12-05T09:00:00+0000 rtlibvirt-hook[10] info: plc prepare begin: isolating CPUs 1",
    "2026-12-05T09:00:01+0000 rtlibvirt-hook[11] info: plc2 prepare begin: isolating CPUs 2",
    "2026-12-05T09:00:02+0000 rtlibvirt-hook[12] warning: plc started begin: 1 thread stays",
    "2026-12-05T09:00:03+0000 rtlibvirt-hook[13] info: other-plc stopped end: restored 3 values",
    "2026-12-05T09:00:04+0000 rtlibvirt-hook[14] info: plc\\x0aforged stopped end: restored",
    "a torn line without the hook's prefix plc prepare begin",
]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "root"
    log = root / "var/log/rtlibvirt/hook.log"
    log.parent.mkdir(parents=True)
    log.write_text("\n".join(LINES) + "\n")
    monkeypatch.setenv("RTLIBVIRT_HOST_ROOT", str(root))
    return root


def test_recent_lines_are_those_about_the_domain_only(root: Path) -> None:
    fs = HostFS(str(root))
    assert hooklog.recent(fs, "plc") == [LINES[0], LINES[2]]
    assert hooklog.recent(fs, "plc", limit=1) == [LINES[2]]
    # a name with a newline is matched as the hook writes it (escaped), never forging lines
    assert hooklog.recent(fs, "plc\nforged") == [LINES[4]]
    assert hooklog.recent(fs, "nothing") == []
    assert hooklog.recent(HostFS(str(root / "nowhere")), "plc") == []


def test_status_json_with_the_log_lines_of_a_domain(root: Path, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hookinstall.install(hooks)
    result = CliRunner().invoke(
        cli, ["hook", "status", "--hooks-dir", str(hooks), "--json", "--domain", "plc"]
    )
    data = json.loads(result.stdout)
    assert data["installed"] is True and data["current"] is True
    assert data["path"] == str(hooks / "qemu.d/50-rtlibvirt")
    assert data["claims"] == {}
    assert data["log_lines"] == {"plc": [LINES[0], LINES[2]]}
    # no daemon in the fake root: not everything is in order, exit 3 as the text form
    assert result.exit_code == (0 if data["ok"] else 3)


def test_status_json_when_not_installed(root: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["hook", "status", "--hooks-dir", str(tmp_path), "--json"])
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    assert data["installed"] is False and data["ok"] is False
    assert "log_lines" not in data

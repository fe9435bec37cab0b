"""`rtlibvirt cockpit install|uninstall`: the page and its config.json, never a folder of
someone else's, and uninstall removes only what install wrote."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtlibvirt import webui
from rtlibvirt.cli import cli


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_install_writes_the_page_and_the_path_of_this_rtlibvirt(tmp_path: Path) -> None:
    code, out, err = run("cockpit", "install", "--dir", str(tmp_path))
    assert code == 0, err
    folder = tmp_path / "rtlibvirt"
    assert out.startswith(f"installed the Cockpit page in {folder}")
    assert sorted(os.listdir(folder)) == sorted([*webui.FILES, "config.json"])
    config = json.loads((folder / "config.json").read_text())
    command = str(Path(sys.executable).with_name("rtlibvirt"))
    assert config["rtlibvirt"] == command and os.access(command, os.X_OK)
    assert config["installed_by"] == webui.MARKER
    assert config["files"] == sorted(webui.FILES)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["menu"]["index"]["label"] == "Real-time"
    for name, data in webui.page_files().items():
        assert (folder / name).read_bytes() == data
        assert (folder / name).stat().st_mode & 0o777 == 0o644
    # again: nothing changes
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    code, out, _ = run("cockpit", "install", "--dir", str(tmp_path))
    assert code == 0 and out.startswith("already installed:")
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_the_page_has_no_inline_script_or_style() -> None:
    """Cockpit's Content-Security-Policy forbids them: the page would not run."""
    page = webui.page_files()["index.html"].decode()
    assert page.count("<script") == page.count("<script src=") == 2
    assert "style=" not in page and "<style" not in page and "onclick" not in page
    script = webui.page_files()["rtlibvirt.js"].decode()
    assert "innerHTML" not in script and "eval(" not in script


def test_an_upgrade_replaces_changed_files_and_removes_those_gone(tmp_path: Path) -> None:
    webui.install(tmp_path)
    folder = tmp_path / "rtlibvirt"
    (folder / "rtlibvirt.js").write_text("// an older page\n")
    (folder / "old.js").write_text("// a file an older page had\n")
    config = json.loads((folder / "config.json").read_text())
    config["files"].append("old.js")
    config["files"].append("../escape")  # a damaged list never reaches outside
    (folder / "config.json").write_text(json.dumps(config))
    (tmp_path / "escape").write_text("stays")
    assert webui.install(tmp_path).changed
    assert (folder / "rtlibvirt.js").read_bytes() == webui.page_files()["rtlibvirt.js"]
    assert not (folder / "old.js").exists()
    assert (tmp_path / "escape").read_text() == "stays"


def test_a_folder_of_someone_else_is_never_touched(tmp_path: Path) -> None:
    folder = tmp_path / "rtlibvirt"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    for command in ("install", "uninstall"):
        code, out, err = run("cockpit", command, "--dir", str(tmp_path))
        assert code == 1 and out == ""
        assert err == (
            f"error: {folder} exists and was not installed by rtlibvirt (no config.json of "
            "ours); nothing was changed\n  hint: move it away, or pass another --dir\n"
        )
    assert os.listdir(folder) == ["manifest.json"]
    link = tmp_path / "other"
    link.mkdir()
    (link / "rtlibvirt").symlink_to(folder)
    code, _, err = run("cockpit", "install", "--dir", str(link))
    assert code == 1 and "is not a folder" in err


def test_uninstall_removes_only_what_install_wrote(tmp_path: Path) -> None:
    code, out, _ = run("cockpit", "uninstall", "--dir", str(tmp_path))
    assert code == 0 and out == f"the Cockpit page is not installed in {tmp_path}\n"
    webui.install(tmp_path)
    folder = tmp_path / "rtlibvirt"
    (folder / "mine.txt").write_text("an admin's note")
    code, out, _ = run("cockpit", "uninstall", "--dir", str(tmp_path))
    assert code == 0 and out == f"removed the Cockpit page from {folder}\n"
    assert os.listdir(folder) == ["mine.txt"]
    (folder / "mine.txt").unlink()
    webui.install(tmp_path)
    webui.uninstall(tmp_path)
    assert not folder.exists() and tmp_path.exists()


def test_an_unwritable_dir_is_one_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out, err = run("cockpit", "install", "--dir", str(blocker / "cockpit"))
    assert code == 1 and out == ""
    assert err.startswith(f"error: cannot install the Cockpit page in {blocker}/cockpit/rtlibvirt")
    assert "hint: run as root for /usr/share/cockpit" in err


@pytest.mark.parametrize("name", ["index.html", "rtlibvirt.js", "patternfly.css"])
def test_the_page_ships_in_the_package(name: str) -> None:
    assert webui.page_files()[name]

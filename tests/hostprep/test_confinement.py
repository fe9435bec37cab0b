"""host-prep --root DIR never reads or writes outside DIR, whatever links the tree holds.

Each tree points a link at a folder *outside* the root that exists on this
machine (it stands for the running host's /etc): the links are followed as
the tree's own system would follow them, inside the root, and the outside
folder stays byte for byte as it was. Revert restores the tree, links included.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtlibvirt.cli import cli
from tests.fakes.roots import RHEL_OS_RELEASE, make_tree, snapshot

SPEC = "isolated_cpus: 4\nhugepages: {size: 1G, count: 8}\n"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the root, shaped like the host's /etc, that nothing may touch."""
    top = tmp_path / "host-etc"
    for sub in ("default/grub.d", "sysctl.d", "modprobe.d", "systemd/system.conf.d", "lib"):
        (top / sub).mkdir(parents=True)
    (top / "sysctl.d/99-host.conf").write_text("vm.swappiness = 10\n")
    (top / "os-release").write_text('ID=debian\nPRETTY_NAME="the host"\n')
    return top


def inside(root: Path, path: Path) -> Path:
    """``path`` (absolute on this machine) as the root's own system sees it."""
    return root / str(path).lstrip("/")


def relink(root: Path, host_path: str, target: str) -> None:
    link = root / host_path.lstrip("/")
    if link.is_dir() and not link.is_symlink():
        for child in link.iterdir():
            child.unlink()
        link.rmdir()
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def apply_then_revert(root: Path, spec: Path, outside: Path) -> dict[str, object]:
    before, host_before = snapshot(root), snapshot(outside)
    code, _, err = run("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 0, err
    assert snapshot(outside) == host_before
    applied = snapshot(root)
    code, _out, err = run("host-prep", "revert", "--root", str(root))
    assert code == 0, err
    assert snapshot(outside) == host_before
    assert snapshot(root) == before
    return applied


@pytest.mark.parametrize(
    ("link", "dir_in_root"),
    [
        ("/etc/default/grub.d", "default/grub.d"),
        ("/etc/sysctl.d", "sysctl.d"),
        ("/etc/modprobe.d", "modprobe.d"),
        ("/etc/systemd/system.conf.d", "systemd/system.conf.d"),
    ],
)
@pytest.mark.parametrize("style", ["absolute", "climbing"])
def test_a_link_to_a_folder_outside_is_followed_inside(
    tmp_path: Path, outside: Path, link: str, dir_in_root: str, style: str
) -> None:
    root = make_tree(tmp_path / "root", "debian")
    target = outside / dir_in_root
    inside(root, target).mkdir(parents=True)  # the image's own copy of that folder
    if style == "absolute":
        relink(root, link, str(target))
    else:  # as many ".." as it takes to leave the root, and more
        relink(root, link, "../" * 30 + str(target).lstrip("/"))
    spec = tmp_path / "host.yaml"
    spec.write_text(SPEC)
    applied = apply_then_revert(root, spec, outside)
    written = [p for p in applied if p.startswith(str(target).lstrip("/") + "/")]
    assert written, f"nothing was written into the image's {target}"


def test_a_link_to_nowhere_in_the_root_is_refused_before_any_change(
    tmp_path: Path, outside: Path
) -> None:
    root = make_tree(tmp_path / "root", "debian")
    relink(root, "/etc/sysctl.d", str(outside / "sysctl.d"))  # absent inside the root
    spec = tmp_path / "host.yaml"
    spec.write_text(SPEC)
    before, host_before = snapshot(root), snapshot(outside)
    code, _out, err = run("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 1
    assert "is not a directory in" in err and "links are followed inside the root" in err
    assert "Traceback" not in err
    assert snapshot(root) == before and snapshot(outside) == host_before


def test_a_planned_file_that_is_a_link_outside_is_replaced_not_written_through(
    tmp_path: Path, outside: Path
) -> None:
    root = make_tree(tmp_path / "root", "debian")
    victim = outside / "sysctl.d/99-host.conf"
    relink(root, "/etc/sysctl.d/50-rtlibvirt.conf", str(victim))
    spec = tmp_path / "host.yaml"
    spec.write_text(SPEC)
    applied = apply_then_revert(root, spec, outside)
    assert applied["etc/sysctl.d/50-rtlibvirt.conf"][0] == "file"  # type: ignore[index]
    assert os.readlink(root / "etc/sysctl.d/50-rtlibvirt.conf") == str(victim)  # put back


def test_the_journal_folder_behind_a_link_stays_inside(tmp_path: Path, outside: Path) -> None:
    root = make_tree(tmp_path / "root", "debian")
    journal_home = outside / "lib"
    inside(root, journal_home).mkdir(parents=True)
    relink(root, "/var/lib", str(journal_home))
    spec = tmp_path / "host.yaml"
    spec.write_text(SPEC)
    before, host_before = snapshot(root), snapshot(outside)
    code, _, err = run("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 0, err
    assert snapshot(outside) == host_before
    assert (inside(root, journal_home) / "rtlibvirt/host-prep/journal.json").exists()
    code, _, err = run("host-prep", "revert", "--root", str(root))
    assert code == 0, err
    assert snapshot(root) == before and snapshot(outside) == host_before


def test_reads_follow_links_inside_the_root(tmp_path: Path, outside: Path) -> None:
    """An image whose /etc/os-release is an absolute link is read as the image, not the host."""
    root = make_tree(tmp_path / "root", "rhel")
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    (root / "usr/lib/os-release").write_text(RHEL_OS_RELEASE)
    (root / "etc/os-release").unlink()
    os.symlink("/usr/lib/os-release", root / "etc/os-release")
    spec = tmp_path / "host.yaml"
    spec.write_text(SPEC)
    code, out, err = run("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 0, err
    assert "Red Hat Enterprise Linux 9.4" in out


def test_a_link_loop_is_one_line(tmp_path: Path, write_host: Callable[..., Path]) -> None:
    root = make_tree(tmp_path / "root", "debian")
    relink(root, "/etc/sysctl.d", "/etc/sysctl.d")
    spec = write_host(SPEC)
    before = snapshot(root)
    code, _, err = run("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 1
    assert "Too many levels of symbolic links" in err and "Traceback" not in err
    assert snapshot(root) == before

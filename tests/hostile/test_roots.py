"""Hostile trees for `rtlibvirt host-prep apply|revert --root DIR`: links that lead out of
the tree, loops, endless files where small ones belong, files where folders belong.

Every case: a folder outside the tree (standing for the running host's /etc and
/var) stays byte for byte as it was; the command ends (exit 0, or exit 1 with a
message, never a traceback) with bounded memory; a refused apply changes nothing
in the tree; a done apply reverts byte for byte.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes.roots import make_tree, snapshot
from tests.hostile.runner import MAX_RSS_MIB, Ran, run

SPEC = "isolated_cpus: 4\nhugepages: {size: 1G, count: 8}\ndisable_services: [irqbalance]\n"


def link(root: Path, host_path: str, target: str) -> None:
    path = root / host_path.lstrip("/")
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        for child in sorted(path.rglob("*"), reverse=True):
            child.unlink() if not child.is_dir() or child.is_symlink() else child.rmdir()
        path.rmdir()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def mirror(root: Path, outside: Path, sub: str) -> str:
    """``outside/sub`` made inside the root too (the image's own copy); its absolute path."""
    (root / str(outside / sub).lstrip("/")).mkdir(parents=True, exist_ok=True)
    return str(outside / sub)


def loop_of_two(root: Path) -> None:
    link(root, "/etc/a", "/etc/b")
    link(root, "/etc/b", "/etc/a")
    link(root, "/etc/sysctl.d", "/etc/a")


def fifo_at(root: Path, host_path: str) -> None:
    path = root / host_path.lstrip("/")
    path.unlink()
    os.mkfifo(path)


def etc_elsewhere(root: Path, outside: Path) -> None:
    """/etc is an absolute link, to where the same path outside the tree is the host's."""
    inner = root / str(outside / "etc").lstrip("/")
    inner.parent.mkdir(parents=True, exist_ok=True)
    os.rename(root / "etc", inner)
    os.symlink(str(outside / "etc"), root / "etc")


Shape = Callable[[Path, Path], object]

TREES: dict[str, Shape] = {
    "grub.d-absolute": lambda r, o: link(r, "/etc/default/grub.d", mirror(r, o, "grub.d")),
    "grub.d-to-host-etc": lambda r, o: link(r, "/etc/default/grub.d", "/etc/default"),
    "sysctl.d-climbing": lambda r, o: link(
        r, "/etc/sysctl.d", "../" * 40 + mirror(r, o, "sysctl.d").lstrip("/")
    ),
    "modprobe.d-to-nowhere": lambda r, o: link(r, "/etc/modprobe.d", str(o / "modprobe.d")),
    "planned-file-links-out": lambda r, o: link(
        r, "/etc/sysctl.d/50-rtlibvirt.conf", str(o / "victim.conf")
    ),
    "planned-file-to-dev-zero": lambda r, o: link(
        r, "/etc/sysctl.d/50-rtlibvirt.conf", "/dev/zero"
    ),
    "journal-home-links-out": lambda r, o: link(r, "/var/lib", mirror(r, o, "var-lib")),
    "journal-dir-to-host": lambda r, o: link(r, "/var/lib/rtlibvirt", "/var/lib"),
    "unit-dir-links-out": lambda r, o: link(r, "/etc/systemd", mirror(r, o, "systemd")),
    "loop": lambda r, o: link(r, "/etc/modprobe.d", "/etc/modprobe.d"),
    "loop-of-two": lambda r, o: loop_of_two(r),
    "os-release-dev-zero": lambda r, o: link(r, "/etc/os-release", "/dev/zero"),
    "cpuinfo-dev-zero": lambda r, o: link(r, "/proc/cpuinfo", "/dev/zero"),
    "present-dev-zero": lambda r, o: link(r, "/sys/devices/system/cpu/present", "/dev/zero"),
    "os-release-fifo": lambda r, o: fifo_at(r, "/etc/os-release"),
    "modprobe.d-is-a-file": lambda r, o: (r / "etc/modprobe.d").write_text("not a folder\n"),
    "update-grub-links-to-host": lambda r, o: link(r, "/usr/sbin/update-grub", "/usr/bin/true"),
    "etc-absolute": lambda r, o: etc_elsewhere(r, o),
    "wants-links-out": lambda r, o: link(
        r, "/etc/systemd/system/multi-user.target.wants", mirror(r, o, "wants")
    ),
}


def check(ran: Ran) -> None:
    # 0 done; 1 the tree is not what host-prep can work on; 2 host.yaml lacks what this
    # tree does not say (cpu_vendor without a readable /proc/cpuinfo, ...)
    assert ran.code in (0, 1, 2), str(ran)
    assert "Traceback" not in ran.err and "internal error" not in ran.err, str(ran)
    assert ran.rss_mib < MAX_RSS_MIB, str(ran)


@pytest.mark.parametrize("shape", sorted(TREES))
def test_nothing_leaves_the_root(tmp_path: Path, shape: str) -> None:
    outside = tmp_path / "host"
    for sub in ("grub.d", "sysctl.d", "systemd", "var-lib", "wants"):
        (outside / sub).mkdir(parents=True)
    (outside / "victim.conf").write_text("vm.swappiness = 10\n")
    root = make_tree(tmp_path / "root", "debian")
    TREES[shape](root, outside)
    spec = tmp_path / "host.yaml"
    spec.write_text(SPEC)
    host_before, before = snapshot(outside), snapshot(root)

    ran = run("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    check(ran)
    assert snapshot(outside) == host_before, f"written outside the root\n{ran}"
    if ran.code != 0:
        assert ran.err.startswith("error: "), str(ran)
        assert snapshot(root) == before, f"a refused apply changed the tree\n{ran}"
        return
    reverted = run("host-prep", "revert", "--root", str(root))
    check(reverted)
    assert reverted.code == 0, str(reverted)
    assert snapshot(outside) == host_before
    assert snapshot(root) == before


def test_the_host_root_variable_reads_inside_the_tree(tmp_path: Path) -> None:
    """RTLIBVIRT_HOST_ROOT: an absolute link in the tree is the tree's, not this machine's."""
    root = tmp_path / "sysroot"
    cpu = root / "sys/devices/system/cpu"
    cpu.mkdir(parents=True)
    (cpu / "real-isolated").write_text("2-3\n")
    os.symlink("/sys/devices/system/cpu/real-isolated", cpu / "isolated")
    for name in ("online", "possible", "present"):
        (cpu / name).write_text("0-3\n")
    spec = tmp_path / "vm.yaml"
    spec.write_text(
        "name: rt\nmemory: 1GiB\nvcpus: 2\ncpu:\n  pinning: [2, 3]\n  emulator: 0\n"
        "  realtime: {vcpus: [1]}\nmemory_backing: {hugepages: none, locked: false}\n"
    )
    ran = run(
        "check",
        str(spec),
        "-c",
        "test:///default",
        "--json",
        env={"RTLIBVIRT_HOST_ROOT": str(root)},
    )
    assert ran.code in (0, 3), str(ran)
    assert '"isolated": [\n      2,\n      3\n    ]' in ran.out, ran.out[:3000]


def test_a_tree_cannot_forge_output_lines(tmp_path: Path) -> None:
    """Names and text from the tree reach the output only escaped."""
    root = make_tree(tmp_path / "root", "debian")
    release = root / "etc/os-release"
    release.write_text(
        release.read_text().replace(
            'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"',
            'PRETTY_NAME="Debian\x1b[2J\x1b]0;owned\x07"',
        )
    )
    spec = tmp_path / "host.yaml"
    spec.write_text(SPEC)
    ran = run("host-prep", "plan", str(spec), "--root", str(root))
    check(ran)
    assert ran.code == 0 and "\x1b" not in ran.out + ran.err
    assert "Debian\\x1b[2J" in ran.out
    wants = root / "etc/systemd/system/multi-user.target.wants"
    os.symlink("/lib/systemd/system/irqbalance.service", wants / "irq\nerror: forged.service")
    ran = run("host-prep", "plan", str(spec), "--root", str(root))
    check(ran)
    # systemctl leaves a link whose name is no unit's name alone; whatever is said of it
    # is said escaped
    assert "\nerror: forged" not in ran.out + ran.err

"""kernel.mounts: /proc/mounts and /proc/filesystems in the kernel's own format."""

from __future__ import annotations

from pathlib import Path

from rtlibvirt.kernel import mounts
from rtlibvirt.kernel.fs import HostFS

# As the kernel writes it: octal escapes for space, tab, newline and backslash.
TEXT = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
/dev/sda1 /mnt/my\\040disk\\011x\\012y\\134z ext4 rw 0 0
tmpfs /mnt/stack tmpfs rw 0 0
/dev/sdb1 /mnt/stack ext4 ro 0 0
garbage
"""


def test_parse_undoes_the_kernels_escapes_and_skips_garbage() -> None:
    found = mounts.parse(TEXT)
    assert len(found) == 8
    disk = found[5]
    assert disk.point == "/mnt/my disk\tx\ny\\z"
    assert disk.fstype == "ext4" and disk.options == ("rw",)


def test_the_last_mount_on_a_point_is_the_one_on_top(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/mounts").write_text(TEXT)
    fs = HostFS(tmp_path)
    top = mounts.at(fs, "/mnt/stack")
    assert top is not None and top.fstype == "ext4"
    assert mounts.is_mounted(fs, "/mnt/stack", "ext4")
    assert not mounts.is_mounted(fs, "/mnt/stack", "tmpfs")
    assert mounts.is_mounted(fs, "/mnt/my disk\tx\ny\\z")
    assert not mounts.is_mounted(fs, "/sys/fs/resctrl")


def test_cgroup_hierarchies(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/mounts").write_text(TEXT)
    fs = HostFS(tmp_path)
    assert mounts.cgroup_v1(fs, "cpu") == "/sys/fs/cgroup/cpu"
    assert mounts.cgroup_v1(fs, "cpuset") == "/sys/fs/cgroup/cpuset"
    assert mounts.cgroup_v1(fs, "memory") is None
    assert mounts.cgroup2(fs) == "/sys/fs/cgroup/unified"


def test_no_proc_mounts_means_nothing_mounted(tmp_path: Path) -> None:
    fs = HostFS(tmp_path)
    assert mounts.read(fs) == []
    assert mounts.filesystems(fs) == frozenset()


def test_filesystems() -> None:
    text = "nodev\tsysfs\nnodev\tcgroup2\n\text4\nnodev\tresctrl\n\n"
    assert mounts.parse_filesystems(text) == {"sysfs", "cgroup2", "ext4", "resctrl"}


def test_this_machines_mounts_parse() -> None:
    fs = HostFS("/")
    found = mounts.read(fs)
    assert any(m.point == "/proc" and m.fstype == "proc" for m in found)
    assert "proc" in mounts.filesystems(fs)

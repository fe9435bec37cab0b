"""``/proc/mounts`` and ``/proc/filesystems``: what is mounted where, and what can be.

The one parser of both files. ``/proc/mounts`` has one line per mount:
``SOURCE MOUNTPOINT FSTYPE OPTIONS 0 0``, where the kernel writes a space,
tab, newline and backslash inside a field as the octal escapes ``\\040``,
``\\011``, ``\\012`` and ``\\134`` (fs/proc_namespace.c, ``mangle()`` with
``" \\t\\n\\\\"``). When several file systems are mounted on one point, the last
line is the one on top (the one a path lookup sees).

``/proc/filesystems`` lists the file system types the running kernel knows,
one a line, ``nodev`` first for those without a block device.

Standard library only; paths go through a :class:`~rtlibvirt.kernel.fs.HostFS`.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from rtlibvirt.kernel.fs import HostFS

MOUNTS = "/proc/mounts"
FILESYSTEMS = "/proc/filesystems"
_ESCAPE = re.compile(r"\\([0-7]{3})")


class Mount:
    """One line of ``/proc/mounts``."""

    __slots__ = ("fstype", "options", "point", "source")

    def __init__(self, source: str, point: str, fstype: str, options: tuple[str, ...]) -> None:
        self.source = source
        self.point = point
        self.fstype = fstype
        self.options = options

    def __repr__(self) -> str:
        return f"Mount({self.source!r}, {self.point!r}, {self.fstype!r}, {self.options!r})"


def unescape(field: str) -> str:
    """A field of /proc/mounts with the kernel's octal escapes undone."""
    if "\\" not in field:
        return field
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse(text: str) -> list[Mount]:
    """Every mount of a ``/proc/mounts`` text, in the kernel's order; bad lines skipped."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        found.append(
            Mount(
                unescape(fields[0]),
                unescape(fields[1]),
                unescape(fields[2]),
                tuple(unescape(fields[3]).split(",")),
            )
        )
    return found


def read(fs: HostFS) -> list[Mount]:
    """The host's mounts; empty when ``/proc/mounts`` cannot be read."""
    return parse(fs.read_or(MOUNTS, ""))


def at(fs: HostFS, point: str, mounts: list[Mount] | None = None) -> Mount | None:
    """The file system on top at ``point``, or None when nothing is mounted there."""
    found = None
    for mount in read(fs) if mounts is None else mounts:
        if mount.point == point:
            found = mount
    return found


def is_mounted(fs: HostFS, point: str, fstype: str | None = None) -> bool:
    """Is something (of ``fstype``, if given) mounted at ``point``?"""
    mount = at(fs, point)
    return mount is not None and (fstype is None or mount.fstype == fstype)


def cgroup_v1(fs: HostFS, controller: str, mounts: list[Mount] | None = None) -> str | None:
    """Where the cgroup v1 hierarchy of ``controller`` (``cpu``, ``cpuset``) is mounted."""
    for mount in read(fs) if mounts is None else mounts:
        if mount.fstype == "cgroup" and controller in mount.options:
            return mount.point
    return None


def cgroup2(fs: HostFS, mounts: list[Mount] | None = None) -> str | None:
    """Where the cgroup v2 (unified) hierarchy is mounted, if it is."""
    for mount in read(fs) if mounts is None else mounts:
        if mount.fstype == "cgroup2":
            return mount.point
    return None


def parse_filesystems(text: str) -> frozenset[str]:
    """The file system types of a ``/proc/filesystems`` text."""
    return frozenset(line.split()[-1] for line in text.splitlines() if line.strip())


def filesystems(fs: HostFS) -> frozenset[str]:
    """File system types the running kernel supports; empty if unknown."""
    return parse_filesystems(fs.read_or(FILESYSTEMS, ""))

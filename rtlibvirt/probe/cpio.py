"""A reproducible initramfs: the kernel's "newc" cpio format, gzip-compressed.

The same members give the same bytes: members are written in path order,
every timestamp is 0, every owner is root, inode numbers count from 1, and
the gzip header carries no name and no time. Nothing here needs root: device
nodes are only a header (``c 5 1`` for ``/dev/console``), never ``mknod``.

The format is the one ``usr/gen_init_cpio.c`` writes and
``Documentation/driver-api/early-userspace/buffer-format.rst`` describes: a
110-byte ASCII header of 13 eight-digit hex fields after the magic ``070701``,
the NUL-terminated name, padding to 4 bytes, the data, padding to 4 bytes;
the archive ends with a member named ``TRAILER!!!``.
"""

from __future__ import annotations

import gzip
import io
import stat
from collections.abc import Iterable
from dataclasses import dataclass

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
MAX_NAME = 4096  # PATH_MAX: the kernel refuses longer names

# what a member is: a directory, a regular file, a symbolic link, a character device
DIR, FILE, SYMLINK, CHARDEV = "dir", "file", "symlink", "chardev"
_TYPE_BITS = {
    DIR: stat.S_IFDIR,
    FILE: stat.S_IFREG,
    SYMLINK: stat.S_IFLNK,
    CHARDEV: stat.S_IFCHR,
}
_KINDS = {bits: kind for kind, bits in _TYPE_BITS.items()}


class CpioError(ValueError):
    """A member that cannot be written (a bad path, mode or device number)."""


@dataclass(frozen=True)
class Member:
    """One entry of the archive; ``path`` is relative to the root, without a leading /."""

    path: str
    kind: str
    mode: int = 0o755  # permission bits only
    data: bytes = b""  # a file's content, or a symlink's target
    rdev: tuple[int, int] = (0, 0)  # major, minor of a device node

    def __post_init__(self) -> None:
        if self.kind not in _TYPE_BITS:
            raise CpioError(f"{self.path}: unknown member kind {self.kind!r}")
        check_path(self.path)
        if self.mode & ~0o7777:
            raise CpioError(f"{self.path}: mode {self.mode:o} has bits beyond 07777")
        if self.kind in (DIR, CHARDEV) and self.data:
            raise CpioError(f"{self.path}: a {self.kind} has no data")
        if self.kind == SYMLINK and not self.data:
            raise CpioError(f"{self.path}: a symbolic link needs a target")


def check_path(path: str) -> None:
    """A member path: relative, no empty, ``.`` or ``..`` parts, no NUL, bounded."""
    if not path or path.startswith("/") or "\0" in path or len(path) >= MAX_NAME:
        raise CpioError(f"{path!r} is not a relative path inside the archive")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise CpioError(f"{path!r} has an empty, '.' or '..' component")


def _header(
    ino: int, mode: int, nlink: int, size: int, name: bytes, rdev: tuple[int, int]
) -> bytes:
    fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    return MAGIC + b"".join(b"%08X" % value for value in fields)


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def archive(members: Iterable[Member]) -> bytes:
    """The uncompressed newc archive of ``members`` (sorted by path; duplicates refused)."""
    ordered = sorted(members, key=lambda m: m.path.encode("utf-8"))
    out = io.BytesIO()
    seen: set[str] = set()
    for ino, member in enumerate(ordered, start=1):
        if member.path in seen:
            raise CpioError(f"{member.path}: listed twice")
        seen.add(member.path)
        parent = member.path.rpartition("/")[0]
        if parent and parent not in seen:
            raise CpioError(f"{member.path}: its directory {parent} is not in the archive")
        name = member.path.encode("utf-8")
        mode = _TYPE_BITS[member.kind] | member.mode
        nlink = 2 if member.kind == DIR else 1
        head = _header(ino, mode, nlink, len(member.data), name, member.rdev)
        out.write(head + name + b"\0" + _pad(len(head) + len(name) + 1))
        out.write(member.data + _pad(len(member.data)))
    name = TRAILER.encode()
    head = _header(0, 0, 1, 0, name, (0, 0))
    out.write(head + name + b"\0" + _pad(len(head) + len(name) + 1))
    return out.getvalue()


def gzipped(data: bytes) -> bytes:
    """gzip without a file name or time stamp, so the bytes depend on ``data`` only."""
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return out.getvalue()


def read(data: bytes, limit: int = 100_000) -> list[Member]:
    """Parse an uncompressed newc archive back into members (for tests and checks)."""
    members: list[Member] = []
    offset = 0
    while len(members) < limit:
        head = data[offset : offset + 110]
        if len(head) < 110 or head[:6] != MAGIC:
            raise CpioError(f"no newc header at byte {offset}")
        fields = [int(head[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        rmajor, rminor = fields[9], fields[10]
        start = offset + 110
        name = data[start : start + namesize - 1].decode("utf-8")
        start += namesize
        start += -start % 4
        content = data[start : start + size]
        offset = start + size
        offset += -offset % 4
        if name == TRAILER:
            return members
        kind = _KINDS.get(stat.S_IFMT(mode))
        if kind is None:
            raise CpioError(f"{name}: a member of type {stat.S_IFMT(mode):o}, not one we write")
        members.append(Member(name, kind, stat.S_IMODE(mode), content, (rmajor, rminor)))
    raise CpioError(f"more than {limit} members")

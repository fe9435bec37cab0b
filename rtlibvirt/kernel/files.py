"""Files of our own: atomic writes (temp file, fsync, rename) and one exclusive lock.

A reader sees the old content or the new, never a mix; a crash leaves at most
a stray ``.NAME.*.tmp`` file beside the target, never a truncated file.

:func:`lock` is the one ``flock`` helper: the hook's state and host-prep's
journal both hold one, each with its own patience (the hook waits, host-prep
refuses at once). The kernel drops the lock when its holder dies.

Standard library only, and cheap to import (no ``tempfile``: the hook uses this
on every libvirt event).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from rtlibvirt.errors import RtlibvirtError


class LockBusy(Exception):
    """Another process held the lock for longer than the caller would wait."""


def lock(path: str | Path, timeout: float, *, directory: bool = False) -> int:
    """Hold an exclusive ``flock`` on ``path``; the open descriptor, to close when done.

    ``timeout`` is how long to wait for another holder, in seconds (0: not at
    all); then :class:`LockBusy`. A plain file is created (0600) if missing;
    with ``directory`` the lock is taken on an existing directory. Other
    failures raise OSError. Closing the descriptor releases the lock.
    """
    if directory:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EINTR):
                    raise
            if time.monotonic() >= deadline:
                raise LockBusy(str(path))
            time.sleep(0.005)
    except BaseException:
        os.close(fd)
        raise


def atomic_write(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically.

    Without ``mode``, an existing file keeps its permissions and a new one gets
    0644. Ownership of an existing file is kept where we are allowed to.
    """
    path = Path(path)
    directory = path.parent
    existing = None
    with contextlib.suppress(FileNotFoundError):
        existing = path.stat()
    # mkstemp's guarantee (a new, unguessable name, O_EXCL) without importing
    # tempfile, which costs the hook ~10 ms
    tmp = str(directory / f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if mode is not None:
            os.chmod(tmp, mode)
        elif existing is not None:
            os.chmod(tmp, existing.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.chown(tmp, existing.st_uid, existing.st_gid)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory: str | Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # pragma: no cover - e.g. a directory we may not open
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on dirs
        pass
    finally:
        os.close(fd)


def read_text(
    path: Path, error: type[RtlibvirtError], *, missing_ok: bool = False, kind: str = "a file"
) -> str | None:
    """A UTF-8 text file's content; any failure is one ``error`` line naming the path.

    With ``missing_ok`` a file that does not exist gives None instead.
    """
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return None
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not {kind}") from None
    except PermissionError:
        raise error(f"{path}: permission denied") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None

"""Files of our own: atomic writes (temp file, fsync, rename), one exclusive lock,
and bounded reads.

A reader sees the old content or the new, never a mix; a crash leaves at most
a stray ``.NAME.*.tmp`` file beside the target, never a truncated file.

:func:`lock` is the one ``flock`` helper: the hook's state and host-prep's
journal both hold one, each with its own patience (the hook waits, host-prep
refuses at once). The kernel drops the lock when its holder dies.

A read takes at most a limit of bytes (1 MiB unless told), never to the end of
an endless file.

Standard library only, and cheap to import (no ``tempfile``: the hook uses this
on every libvirt event).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from pathlib import Path  # not at run time: the hook does without pathlib (~2.5 ms)

    from rtlibvirt.errors import RtlibvirtError

PATH_MAX = 4096  # bytes in a path, with its terminating NUL (linux/limits.h)
READ_LIMIT = 1 << 20  # 1 MiB: every input and configuration file rtlibvirt reads is smaller


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


def atomic_write(
    path: str | Path, data: bytes, mode: int | None = None, *, durable: bool = True
) -> None:
    """Replace ``path`` with ``data`` atomically.

    Without ``mode``, an existing file keeps its permissions and a new one gets
    0644. Ownership of an existing file is kept where we are allowed to.
    ``durable`` (the default) fsyncs the file and its directory, so that the
    new content survives a power loss; ``durable=False`` is for files under
    /run that describe only the running kernel: other processes see the whole
    new file or the old one either way, and a kill of this process loses
    nothing that ``write`` returned.
    """
    path = os.fspath(path)
    directory, name = os.path.split(path)
    directory = directory or "."
    existing = None
    with contextlib.suppress(FileNotFoundError):
        existing = os.stat(path)
    # mkstemp's guarantee (a new, unguessable name, O_EXCL) without importing
    # tempfile, which costs the hook ~10 ms
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
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
    if durable:
        fsync_dir(directory)


def fsync_dir(directory: str | Path | int) -> None:
    """Make a rename or unlink in ``directory`` durable (a path, or an open
    descriptor of the directory, e.g. an O_PATH one)."""
    try:
        if isinstance(directory, int):
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=directory)
        else:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:  # pragma: no cover - e.g. a directory we may not open
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on dirs
        pass
    finally:
        os.close(fd)


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as a message shows it: as is, unless it holds a control character.

    A file name may hold a newline; printed raw it would forge a line of output.
    """
    text = os.fspath(path)
    if all(c.isprintable() for c in text):
        return text
    return ascii(text)[1:-1]


def read_bytes(
    path: str | os.PathLike[str],
    error: type[RtlibvirtError],
    *,
    limit: int,
    missing_ok: bool = False,
    kind: str = "a file",
    head: bool = False,
) -> bytes | None:
    """At most ``limit`` bytes of a file; more is one ``error`` line naming the path.

    Never reads to the end of an endless file (``/dev/zero``, a FIFO someone
    keeps writing into): it stops at ``limit + 1`` bytes. A FIFO is opened
    without waiting for a writer (none: it reads as empty). A directory, a
    path longer than PATH_MAX and any other failure are one ``error`` line.
    With ``head``, a longer file gives its first ``limit`` bytes instead.
    """
    shown = display_path(path)
    if len(os.fsencode(path)) >= PATH_MAX:
        raise error(f"{shown[:80]}...: the path is longer than {PATH_MAX - 1} bytes")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise error(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise error(f"{shown}: is a directory, not {kind}") from None
    except PermissionError:
        raise error(f"{shown}: permission denied") from None
    except OSError as exc:
        raise error(f"{shown}: cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{shown}: is a directory, not {kind}")
        if stat.S_ISREG(st.st_mode) and st.st_size > limit and not head:
            raise error(_too_large(shown, kind, limit))
        os.set_blocking(fd, True)  # a FIFO or a pipe: wait for its writer's data
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
        if size > limit:
            if head:
                return data[:limit]
            raise error(_too_large(shown, kind, limit))
        return data
    except OSError as exc:
        raise error(f"{shown}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def _too_large(shown: str, kind: str, limit: int) -> str:
    size = f"{limit // (1 << 20)} MiB" if limit % (1 << 20) == 0 else f"{limit} bytes"
    return f"{shown}: larger than {size}, which is far more than {kind} for rtlibvirt holds"


def read_text(
    path: Path,
    error: type[RtlibvirtError],
    *,
    missing_ok: bool = False,
    kind: str = "a file",
    limit: int = READ_LIMIT,
) -> str | None:
    """A UTF-8 text file's content (at most ``limit`` bytes); any failure is one
    ``error`` line naming the path.

    With ``missing_ok`` a file that does not exist gives None instead.
    """
    data = read_bytes(path, error, limit=limit, missing_ok=missing_ok, kind=kind)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{display_path(path)}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None

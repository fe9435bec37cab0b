"""Every change host-prep makes to a host goes through :class:`Effects`.

One place for file writes (atomic), removals, directories, symlinks, runtime
values (``/proc/sys``, ``/sys``) and commands, so that: paths are always under
the root; ``--root`` trees get files only (no runtime value, no command); and
tests can interrupt an apply after any number of changes (``before_change``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rtlibvirt.errors import HostError
from rtlibvirt.kernel import cpuset, files, realtime
from rtlibvirt.kernel.fs import HostFS

MAX_FILE = 16 << 20  # a file host-prep changes (and keeps the original of) is kilobytes


@dataclass(frozen=True)
class FileState:
    """What is at a path: nothing, a regular file (bytes, mode), a symlink or a directory."""

    kind: str  # "absent" | "file" | "symlink" | "dir"
    data: bytes = b""
    mode: int = 0o644
    target: str = ""

    @staticmethod
    def absent() -> FileState:
        return FileState("absent")

    @staticmethod
    def file(data: bytes, mode: int = 0o644) -> FileState:
        return FileState("file", data=data, mode=mode)

    @staticmethod
    def symlink(target: str) -> FileState:
        return FileState("symlink", target=target)

    def same_as(self, other: FileState) -> bool:
        if self.kind != other.kind:
            return False
        if self.kind == "file":
            return self.data == other.data and self.mode == other.mode
        if self.kind == "symlink":
            return self.target == other.target
        return True

    def describe(self) -> str:
        if self.kind == "file":
            return f"file, {len(self.data)} bytes, mode {self.mode:04o}"
        if self.kind == "symlink":
            return f"symlink to {self.target}"
        return self.kind


class CommandError(HostError):
    """A command host-prep ran failed."""


Runner = Callable[[Sequence[str]], "tuple[int, str, str]"]


def canonical_value(host_path: str, text: str) -> str:
    """A kernel value as host-prep plans and writes it (see Effects.read_value)."""
    if "[" in text:
        return realtime.selected(text)
    if host_path.endswith("/cpumask"):
        try:
            return cpuset.format_mask(cpuset.parse_mask(text))
        except cpuset.CpuListError:
            return text
    return text


def run_command(argv: Sequence[str]) -> tuple[int, str, str]:
    """Run a command: (status, standard output, standard error); CommandError if not found."""
    if shutil.which(argv[0]) is None:
        raise CommandError(
            f"{argv[0]}: command not found", "install it, or run the listed commands by hand"
        )
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
        )
    except OSError as exc:
        raise CommandError(f"{' '.join(argv)}: {exc.strerror}") from None
    return done.returncode, done.stdout, done.stderr


class Effects:
    """Changes to the host under ``fs.root``.

    ``runtime`` allows writes to kernel files and ``commands`` running
    commands; the CLI allows both only on the live host (root ``/``).
    ``before_change(description)`` is called before every change (tests use it
    to stop an apply part-way, as a kill would).
    """

    def __init__(
        self,
        fs: HostFS,
        *,
        runtime: bool,
        commands: bool,
        runner: Runner = run_command,
        before_change: Callable[[str], None] | None = None,
    ) -> None:
        self.fs = fs
        self.runtime = runtime
        self.commands = commands
        self.runner = runner
        self.before_change = before_change
        self.changes = 0

    def _change(self, what: str) -> None:
        if self.before_change is not None:
            self.before_change(what)
        self.changes += 1

    # ---- reading ---------------------------------------------------------

    def state(self, host_path: str) -> FileState:
        """What is at ``host_path`` now; HostError when it cannot be read."""
        shown = self.fs.path(host_path, follow=False)
        try:
            with self.fs.parent(host_path) as (parent, name):
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    return FileState.symlink(os.readlink(name, dir_fd=parent))
                if stat.S_ISDIR(st.st_mode):
                    return FileState("dir", mode=st.st_mode & 0o7777)
                if not stat.S_ISREG(st.st_mode):
                    raise HostError(f"{shown}: not a regular file")
                if st.st_size > MAX_FILE:
                    raise HostError(
                        f"{shown}: {st.st_size} bytes, larger than host-prep keeps a copy of "
                        f"({MAX_FILE >> 20} MiB)",
                        "move it away, then run the command again",
                    )
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                with os.fdopen(fd, "rb") as handle:
                    data = handle.read(MAX_FILE + 1)
                if len(data) > MAX_FILE:
                    raise HostError(f"{shown}: grew past {MAX_FILE >> 20} MiB while read")
                return FileState.file(data, st.st_mode & 0o7777)
        except (FileNotFoundError, NotADirectoryError):
            return FileState.absent()
        except OSError as exc:
            raise HostError(f"{shown}: cannot read: {exc.strerror}") from None

    def owner(self, host_path: str) -> tuple[int, int]:
        """(uid, gid) of what is at ``host_path`` (a link's own)."""
        with self.fs.parent(host_path) as (parent, name):
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        return st.st_uid, st.st_gid

    def read_value(self, host_path: str) -> str | None:
        """A kernel value (``/proc/sys/...``), stripped; None if the file does not exist.

        In the form it is written in: a selector's chosen word (``always [never]``
        -> ``never``), a cpumask without leading zeros (``0003`` -> ``3``), so that
        what is read compares with what is planned and can be written back.
        """
        try:
            text = self.fs.read(host_path).strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HostError(f"{self.fs.path(host_path)}: cannot read: {exc.strerror}") from None
        return canonical_value(host_path, text)

    # ---- changing --------------------------------------------------------
    # Every change is made relative to the parent directory's descriptor
    # (HostFS.parent): a link in the tree, even one put there meanwhile, never
    # takes a write out of the root. A file or link is replaced atomically (a
    # temp name in the same directory, fsync, rename), never written through.

    def put(self, host_path: str, want: FileState) -> None:
        """Make ``host_path`` be ``want`` (atomically, for files and symlinks)."""
        self._change(f"put {host_path}")
        try:
            parent, name = self.fs.open_parent(host_path)
        except FileNotFoundError:
            raise HostError(
                f"{self.fs.path(os.path.dirname(host_path))}: no such directory, "
                f"so {host_path} cannot be put there",
                "the tree changed under host-prep: create the folder, then run it again",
            ) from None
        try:
            if want.kind == "file":
                _replace(parent, name, want)
            elif want.kind == "symlink":
                tmp = f".{name}.rtlibvirt-link.tmp"
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=parent)
                os.symlink(want.target, tmp, dir_fd=parent)
                os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
                files.fsync_dir(parent)
            elif want.kind == "dir":
                os.mkdir(name, want.mode, dir_fd=parent)
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
                try:
                    os.fchmod(fd, want.mode)  # the mode as recorded, whatever the umask
                finally:
                    os.close(fd)
            else:
                _remove(parent, name)
        finally:
            os.close(parent)

    def set_owner(self, host_path: str, uid: int, gid: int) -> None:
        with contextlib.suppress(OSError), self.fs.parent(host_path) as (parent, name):
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)

    def remove_tree(self, host_path: str) -> None:
        """Remove a directory of our own (the journal) and everything in it."""
        with self.fs.parent(host_path) as (parent, name):
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return
            if not stat.S_ISDIR(st.st_mode):
                raise HostError(f"{self.fs.path(host_path, follow=False)}: not a directory")
            self._change(f"remove {host_path}")
            shutil.rmtree(name, dir_fd=parent)  # never follows a link inside
            files.fsync_dir(parent)

    def write_value(self, host_path: str, value: str) -> None:
        """Write a kernel value the way ``echo VALUE > FILE`` does."""
        if not self.runtime:  # pragma: no cover - callers check first
            raise HostError(f"refusing to write {host_path} outside the live host")
        self._change(f"write {host_path}")
        try:
            self.fs.write(host_path, value)
        except OSError as exc:
            raise HostError(
                f"cannot write {value!r} to {self.fs.path(host_path)}: {exc.strerror}"
            ) from None

    def run(self, argv: Sequence[str]) -> str:
        """Run a command that changes the host; CommandError when it fails."""
        if not self.commands:  # pragma: no cover - callers check first
            raise HostError(f"refusing to run {argv[0]} outside the live host")
        self._change(f"run {' '.join(argv)}")
        status, out, err = self.runner(argv)
        if status != 0:
            said = (err or out).strip().splitlines()
            raise CommandError(
                f"`{' '.join(argv)}` failed with status {status}"
                + (f": {said[-1]}" if said else "")
            )
        return out

    def query(self, argv: Sequence[str]) -> tuple[int, str]:
        """Run a command that only reads (``systemctl is-active``): (status, output)."""
        status, out, _err = self.runner(argv)
        return status, out.strip()


def _replace(parent: int, name: str, want: FileState) -> None:
    """Write a temp file beside ``name``, fsync it, rename it over ``name``.

    An existing file keeps its owner where we may; the mode is ``want.mode``.
    """
    tmp = f".{name}.{secrets.token_hex(4)}.tmp"
    existing = None
    with contextlib.suppress(FileNotFoundError):
        existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
    fd = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=parent,
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(want.data)
            handle.flush()
            os.fchmod(handle.fileno(), want.mode)
            if existing is not None and stat.S_ISREG(existing.st_mode):
                with contextlib.suppress(PermissionError):
                    os.fchown(handle.fileno(), existing.st_uid, existing.st_gid)
            os.fsync(handle.fileno())
        os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=parent)
        raise
    files.fsync_dir(parent)


def _remove(parent: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        os.rmdir(name, dir_fd=parent)  # only ever an empty directory we created
    else:
        os.unlink(name, dir_fd=parent)
    files.fsync_dir(parent)

"""Every change host-prep makes to a host goes through :class:`Effects`.

One place for file writes (atomic), removals, directories, symlinks, runtime
values (``/proc/sys``, ``/sys``) and commands, so that: paths are always under
the root; ``--root`` trees get files only (no runtime value, no command); and
tests can interrupt an apply after any number of changes (``before_change``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rtlibvirt.errors import HostError
from rtlibvirt.kernel.files import atomic_write, fsync_dir
from rtlibvirt.kernel.fs import HostFS


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
        path = self.fs.path(host_path)
        try:
            st = path.lstat()
        except FileNotFoundError:
            return FileState.absent()
        except OSError as exc:
            raise HostError(f"{path}: cannot read: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            return FileState.symlink(os.readlink(path))
        if stat.S_ISDIR(st.st_mode):
            return FileState("dir", mode=st.st_mode & 0o7777)
        if not stat.S_ISREG(st.st_mode):
            raise HostError(f"{path}: not a regular file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise HostError(f"{path}: cannot read: {exc.strerror}") from None
        return FileState.file(data, st.st_mode & 0o7777)

    def read_value(self, host_path: str) -> str | None:
        """A kernel value (``/proc/sys/...``), stripped; None if the file does not exist."""
        try:
            return self.fs.read(host_path).strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HostError(f"{self.fs.path(host_path)}: cannot read: {exc.strerror}") from None

    # ---- changing --------------------------------------------------------

    def put(self, host_path: str, want: FileState) -> None:
        """Make ``host_path`` be ``want`` (atomically, for files and symlinks)."""
        path = self.fs.path(host_path)
        self._change(f"put {host_path}")
        if want.kind == "file":
            atomic_write(path, want.data, mode=want.mode)
        elif want.kind == "symlink":
            tmp = path.with_name(f".{path.name}.rtlibvirt-link.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(want.target, tmp)
            os.replace(tmp, path)
            fsync_dir(path.parent)
        elif want.kind == "dir":
            path.mkdir(mode=want.mode)
        else:
            self._remove(path)

    def set_owner(self, host_path: str, uid: int, gid: int) -> None:
        with contextlib.suppress(OSError):
            os.chown(self.fs.path(host_path), uid, gid, follow_symlinks=False)

    @staticmethod
    def _remove(path: os.PathLike[str]) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(path)  # only ever an empty directory we created
        else:
            os.unlink(path)
        fsync_dir(os.path.dirname(os.fspath(path)))

    def remove_tree(self, host_path: str) -> None:
        """Remove a directory of our own (the journal) and everything in it."""
        path = self.fs.path(host_path)
        if path.exists():
            self._change(f"remove {host_path}")
            shutil.rmtree(path)

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

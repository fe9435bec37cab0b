"""Every access to /proc, /sys, /run (and /etc, for host-prep) goes through here.

A :class:`HostFS` is rooted: ``HostFS("/")`` is the live host, and
``HostFS(tmp_path)`` is a fake tree that a test has shaped like the kernel's
own files, or a mounted image (``host-prep --root``). Paths are always written
as on the host (``/proc/irq/5/smp_affinity``).

Under any root but ``/``, a path resolves the way the root's own system would
resolve it, and never leaves the root: a symlink is followed inside the root
(an absolute target is taken relative to it, as after chroot), ``..`` stops
at the root, and more than 40 links is ELOOP, as for the kernel. Without this,
``etc/default/grub.d -> /etc/default/grub.d`` in an image made host-prep write
into the running host's /etc. :meth:`HostFS.path` resolves a path for a read;
:meth:`HostFS.parent` opens the resolved parent directory, for changes made
relative to it (``*at()`` calls), so that a link swapped in meanwhile cannot
redirect a write either.

Standard library only: the hook uses this on every libvirt event.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import deque
from collections.abc import Iterator

from rtlibvirt.kernel import cpuset

TYPE_CHECKING = False  # pathlib (~2.5 ms with urllib and ipaddress) is imported only when asked for
if TYPE_CHECKING:
    from pathlib import Path

CPU_DIR = "/sys/devices/system/cpu"
PATH_MAX = 4096  # bytes in a path, with its NUL (linux/limits.h)
MAXSYMLINKS = 40  # links followed in one resolution before ELOOP (include/linux/namei.h)


def _normalized(path: str) -> str:
    """``str(Path(path))`` without pathlib: no empty or "." components, ".." kept
    (a symlink before it decides where it leads), two leading slashes kept."""
    lead = "//" if path.startswith("//") and not path.startswith("///") else "/"
    if not path.startswith("/"):
        lead = ""
    return lead + "/".join(n for n in path.split("/") if n not in ("", ".")) or "."


class HostFS:
    """The host's files under ``root``."""

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        # Plain strings: the hook reads and writes hundreds of files per call, and
        # pathlib costs ~10 us per path and ~2.5 ms to import.
        self._root = _normalized(os.fspath(root))
        self._prefix = self._root.rstrip("/")
        self._is_live = self._root == "/"
        # The live host needs no resolution of ours: the kernel's is the host's.
        self._live = os.path.realpath(self._root) == "/"

    def __repr__(self) -> str:
        return f"HostFS({self._root!r})"

    @property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self._root)

    @property
    def root_str(self) -> str:
        return self._root

    @property
    def is_live(self) -> bool:
        return self._is_live

    def path(self, host_path: str, *, follow: bool = True) -> Path:
        """The real path of ``host_path`` (which must be absolute) under the root.

        Symlinks are resolved inside the root; with ``follow=False`` the last
        component is not (for lstat, readlink, or replacing a link itself).
        """
        from pathlib import Path

        return Path(self._real(host_path, follow))

    def real(self, host_path: str, *, follow: bool = True) -> str:
        """:meth:`path` as a string, for code that must not import pathlib (the hook)."""
        return self._real(host_path, follow)

    def _real(self, host_path: str, follow: bool = True) -> str:
        _check(host_path)
        if self._live:
            return host_path
        return self._resolve(host_path, follow)

    def _resolve(self, host_path: str, follow: bool) -> str:
        """``host_path`` under the root, every symlink resolved inside it."""
        prefix = self._prefix
        todo = deque(host_path.split("/"))
        done: list[str] = []
        hops = 0
        while todo:
            name = todo.popleft()
            if name in ("", "."):
                continue
            if name == "..":
                if done:
                    done.pop()
                continue
            if not follow and not todo:
                done.append(name)  # the last component itself ("x/" and "x/." follow x)
                break
            here = f"{prefix}/{'/'.join(done)}/{name}" if done else f"{prefix}/{name}"
            try:
                st = os.lstat(here)
            except FileNotFoundError:
                # Not there (yet, for a file to create): what follows cannot be a
                # link; ".." past it fails, as in the kernel.
                rest = [n for n in todo if n not in ("", ".")]
                if ".." in rest:
                    raise FileNotFoundError(
                        errno.ENOENT, os.strerror(errno.ENOENT), host_path
                    ) from None
                done += [name, *rest]
                break
            if not stat.S_ISLNK(st.st_mode):
                if not stat.S_ISDIR(st.st_mode) and any(n != "" for n in todo):
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), host_path)
                done.append(name)
                continue
            hops += 1
            if hops > MAXSYMLINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), host_path)
            target = os.readlink(here)
            if target.startswith("/"):
                done = []  # absolute: from the root, as the root's own system reads it
            todo.extendleft(reversed(target.split("/")))
        return f"{prefix}/{'/'.join(done)}" if done else (prefix or "/")

    @contextlib.contextmanager
    def parent(self, host_path: str) -> Iterator[tuple[int, str]]:
        """``(fd, name)``: the resolved parent directory of ``host_path``, and its last name.

        The directory is opened one component at a time without following a
        link (``O_NOFOLLOW``; a link is read and resolved inside the root), so
        a change made relative to the descriptor (``os.open(name,
        dir_fd=fd)``, ``os.replace``, ``os.symlink``, ``os.mkdir``) stays in
        the root even if the tree is changed meanwhile. FileNotFoundError if
        the directory does not exist.
        """
        fd, name = self.open_parent(host_path)
        try:
            yield fd, name
        finally:
            os.close(fd)

    def open_parent(self, host_path: str) -> tuple[int, str]:
        """:meth:`parent` without the ``with``: the caller closes the descriptor."""
        _check(host_path)
        head, _, name = host_path.rstrip("/").rpartition("/")
        if name in ("", ".", ".."):
            raise OSError(errno.EINVAL, f"no file name in {host_path!r}")
        return self._open_dir(head or "/"), name

    def _open_dir(self, host_dir: str) -> int:
        flags = os.O_PATH | os.O_CLOEXEC
        root = os.open(self._prefix or "/", flags | os.O_DIRECTORY)
        chain = [root]  # the resolved directories, for ".."
        try:
            todo = deque(host_dir.split("/"))
            hops = 0
            while todo:
                name = todo.popleft()
                if name in ("", "."):
                    continue
                if name == "..":
                    if len(chain) > 1:
                        os.close(chain.pop())
                    continue
                fd = os.open(name, flags | os.O_NOFOLLOW, dir_fd=chain[-1])
                mode = os.fstat(fd).st_mode
                if stat.S_ISDIR(mode):
                    chain.append(fd)
                    continue
                if not stat.S_ISLNK(mode):
                    os.close(fd)
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), host_dir)
                try:
                    target = os.readlink("", dir_fd=fd)
                finally:
                    os.close(fd)
                hops += 1
                if hops > MAXSYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), host_dir)
                if target.startswith("/"):
                    while len(chain) > 1:
                        os.close(chain.pop())
                todo.extendleft(reversed(target.split("/")))
            return chain.pop()
        finally:
            for fd in chain:
                os.close(fd)

    def exists(self, host_path: str) -> bool:
        try:
            return os.path.exists(self._real(host_path))
        except OSError:  # as os.path.exists: ENOTDIR, ELOOP, ... are "no"
            return False

    def read(self, host_path: str) -> str:
        """The file's text without its trailing newline."""
        with open(self._real(host_path), encoding="utf-8") as handle:
            return handle.read().rstrip("\n")

    def read_or(self, host_path: str, default: str) -> str:
        try:
            return self.read(host_path)
        except OSError:
            return default

    def write(self, host_path: str, value: str) -> None:
        """Write a value the way ``echo VALUE > FILE`` does (one write of VALUE + newline).

        Kernel files take one value per write; an error of the write itself
        (EINVAL, EIO, EPERM) is raised as the OSError the kernel returned.
        """
        data = (value if value.endswith("\n") else value + "\n").encode("utf-8")
        fd = os.open(self._real(host_path), os.O_WRONLY | os.O_TRUNC)
        try:
            written = os.write(fd, data)
            if written != len(data):  # pragma: no cover - kernel files take one write
                raise OSError(errno.EIO, f"short write to {host_path}")
        finally:
            os.close(fd)

    def listdir(self, host_path: str) -> list[str]:
        """Entry names of a directory, sorted; empty when it does not exist."""
        try:
            return sorted(os.listdir(self._real(host_path)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def cpulist(self, host_path: str) -> frozenset[int] | None:
        """A cpulist file (``/sys/devices/system/cpu/online``); None if absent."""
        try:
            return frozenset(cpuset.parse_cpulist(self.read(host_path)))
        except OSError:
            return None

    # ---- CPUs, as the kernel lists them --------------------------------------

    def cpus_present(self) -> frozenset[int]:
        return self.cpulist(f"{CPU_DIR}/present") or frozenset()

    def cpus_online(self) -> frozenset[int]:
        return self.cpulist(f"{CPU_DIR}/online") or frozenset()

    def cpus_isolated(self) -> frozenset[int]:
        """CPUs isolated on the running kernel (``isolcpus=``); empty if none."""
        return self.cpulist(f"{CPU_DIR}/isolated") or frozenset()

    def cpus_nohz_full(self) -> frozenset[int]:
        return self.cpulist(f"{CPU_DIR}/nohz_full") or frozenset()

    def nr_cpu_ids(self) -> int:
        """Width of the kernel's cpumasks: highest possible CPU + 1."""
        possible = self.cpulist(f"{CPU_DIR}/possible") or self.cpus_present()
        return max(possible, default=0) + 1

    # ---- directories and mounts (resctrl groups, for the hook) ---------------
    # (what is mounted: kernel.mounts)
    # Kernel filesystems give mkdir, rmdir and mount their own meaning (a
    # resctrl group is made by mkdir); a fake tree of a test overrides these.

    def mkdir(self, host_path: str, mode: int = 0o755) -> None:
        os.mkdir(self._real(host_path, follow=False), mode)

    def rmdir(self, host_path: str) -> None:
        os.rmdir(self._real(host_path, follow=False))

    def mount(self, fstype: str, target: str) -> None:
        """``mount -t FSTYPE FSTYPE TARGET``; raises OSError on failure."""
        if not self.is_live:
            raise OSError(errno.EPERM, f"cannot mount {fstype} in the fake tree {self._root}")
        _run_mount(["mount", "-t", fstype, fstype, target])

    def umount(self, target: str) -> None:
        if not self.is_live:
            raise OSError(errno.EPERM, f"cannot unmount {target} in the fake tree {self._root}")
        _run_mount(["umount", target])


def _check(host_path: str) -> None:
    if not host_path.startswith("/"):
        raise ValueError(f"host paths are absolute: {host_path!r}")
    if len(host_path) >= PATH_MAX:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), host_path[:80])


def _run_mount(argv: list[str]) -> None:
    import subprocess

    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise OSError(exc.errno, f"{argv[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        message = done.stderr.strip() or f"exit status {done.returncode}"
        raise OSError(errno.EIO, f"{' '.join(argv)}: {message}")

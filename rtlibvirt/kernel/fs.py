"""Every access to /proc, /sys, /run (and /etc, for host-prep) goes through here.

A :class:`HostFS` is rooted: ``HostFS("/")`` is the live host, and
``HostFS(tmp_path)`` is a fake tree that a test has shaped like the kernel's
own files. Paths are always written as on the host (``/proc/irq/5/smp_affinity``).

Standard library only: the hook uses this on every libvirt event.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from rtlibvirt.kernel import cpuset

CPU_DIR = "/sys/devices/system/cpu"


class HostFS:
    """The host's files under ``root``."""

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(root)
        # plain strings for the hot paths: the hook reads and writes hundreds of
        # files per call, and pathlib costs ~10 us per path
        self._prefix = str(self.root).rstrip("/")

    def __repr__(self) -> str:
        return f"HostFS({str(self.root)!r})"

    @property
    def is_live(self) -> bool:
        return self.root == Path("/")

    def path(self, host_path: str) -> Path:
        """The real path of ``host_path`` (which must be absolute) under the root."""
        if not host_path.startswith("/"):
            raise ValueError(f"host paths are absolute: {host_path!r}")
        return self.root / host_path.lstrip("/")

    def _real(self, host_path: str) -> str:
        if not host_path.startswith("/"):
            raise ValueError(f"host paths are absolute: {host_path!r}")
        return self._prefix + host_path

    def exists(self, host_path: str) -> bool:
        return os.path.exists(self._real(host_path))

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
        os.mkdir(self.path(host_path), mode)

    def rmdir(self, host_path: str) -> None:
        os.rmdir(self.path(host_path))

    def mount(self, fstype: str, target: str) -> None:
        """``mount -t FSTYPE FSTYPE TARGET``; raises OSError on failure."""
        if not self.is_live:
            raise OSError(errno.EPERM, f"cannot mount {fstype} in the fake tree {self.root}")
        _run_mount(["mount", "-t", fstype, fstype, target])

    def umount(self, target: str) -> None:
        if not self.is_live:
            raise OSError(errno.EPERM, f"cannot unmount {target} in the fake tree {self.root}")
        _run_mount(["umount", target])


def _run_mount(argv: list[str]) -> None:
    import subprocess

    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise OSError(exc.errno, f"{argv[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        message = done.stderr.strip() or f"exit status {done.returncode}"
        raise OSError(errno.EIO, f"{' '.join(argv)}: {message}")

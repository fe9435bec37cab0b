"""The cpuset controller of cgroups: which CPUs the tasks of each group may use.

Two hierarchies exist (Documentation/admin-guide/cgroup-v1/cpusets.rst and
cgroup-v2.rst):

- **cgroup v1**: the ``cpuset`` hierarchy is mounted on its own (Debian
  without systemd: ``/sys/fs/cgroup/cpuset``). Each group has
  ``cpuset.cpus`` (a cpulist, always a subset of its parent's: a write that
  would leave a child's CPUs outside fails with EBUSY, so narrowing goes
  children first and widening parents first), ``cpuset.effective_cpus``,
  ``tasks`` (thread ids) and ``cgroup.procs`` (process ids). The root group's
  ``cpuset.cpus`` cannot be written. Changing ``cpuset.cpus`` resets the CPU
  affinity of every task in the group to the new set.
- **cgroup v2**: one unified hierarchy (``/sys/fs/cgroup`` under systemd);
  ``cpuset.cpus`` exists in a group once ``cpuset`` is enabled in its
  parent's ``cgroup.subtree_control``; it may be empty (then the group uses
  its parent's CPUs) and a child may name CPUs its parent lacks, as
  ``cpuset.cpus.effective`` is the intersection. ``cgroup.procs`` and
  ``cgroup.threads`` list its processes and threads.

libvirt keeps its VMs under ``machine`` (v1 without systemd) or
``machine.slice`` (systemd); rtlibvirt never writes those.

Standard library only.
"""

from __future__ import annotations

import re

from rtlibvirt.kernel import mounts

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from rtlibvirt.kernel.fs import HostFS

ROOT = "/sys/fs/cgroup"
CPUS = "cpuset.cpus"
LIBVIRT_GROUPS = frozenset({"machine", "machine.slice"})
# A cgroup directory name as systemd and libvirt make them (systemd escapes
# other bytes as \xNN): one path component, never "." or "..".
_COMPONENT = re.compile(r"[A-Za-z0-9_.:@+\\-]{1,255}")
MAX_DEPTH = 32


class Hierarchy:
    """Where the cpuset controller is, and in which version."""

    __slots__ = ("mount", "version")

    def __init__(self, version: int, mount: str) -> None:
        self.version = version
        self.mount = mount

    @property
    def effective(self) -> str:
        """The file of the CPUs a group really gets."""
        return "cpuset.effective_cpus" if self.version == 1 else "cpuset.cpus.effective"

    @property
    def threads(self) -> str:
        """The file that lists a group's thread ids."""
        return "tasks" if self.version == 1 else "cgroup.threads"

    def dir(self, group: str) -> str:
        """The directory of ``group`` (``""`` is the root, else ``/a/b``)."""
        return self.mount + group

    def file(self, group: str, name: str) -> str:
        return f"{self.mount}{group}/{name}"

    def __repr__(self) -> str:
        return f"Hierarchy(v{self.version}, {self.mount!r})"


def cpuset_hierarchy(fs: HostFS) -> Hierarchy | None:
    """The host's cpuset hierarchy: v1 where it is mounted, else v2 if it offers cpuset."""
    table = mounts.read(fs)
    v1 = mounts.cgroup_v1(fs, "cpuset", table)
    if v1 is not None:
        return Hierarchy(1, v1)
    v2 = mounts.cgroup2(fs, table)
    if v2 is not None and "cpuset" in fs.read_or(f"{v2}/cgroup.controllers", "").split():
        return Hierarchy(2, v2)
    return None


def valid_group(group: str) -> bool:
    """Is ``group`` (``/a/b``) a path of safe cgroup names?"""
    if group == "":
        return True
    parts = group.split("/")
    return (
        parts[0] == ""
        and 1 < len(parts) <= MAX_DEPTH + 1
        and all(_COMPONENT.fullmatch(p) is not None and p not in (".", "..") for p in parts[1:])
    )


def owns(path: str) -> bool:
    """Is ``path`` a ``cpuset.cpus`` file of a group under /sys/fs/cgroup?"""
    if not path.startswith(ROOT + "/") or not path.endswith("/" + CPUS):
        return False
    middle = path[len(ROOT) : -len(CPUS) - 1]
    return valid_group(middle) and middle != ""


def children(fs: HostFS, hierarchy: Hierarchy, group: str) -> list[str]:
    """The child groups of ``group`` (directories that are cgroups)."""
    base = hierarchy.dir(group)
    found = []
    for name in fs.listdir(base):
        child = f"{group}/{name}"
        if _COMPONENT.fullmatch(name) and fs.exists(f"{base}/{name}/cgroup.procs"):
            found.append(child)
    return found


def is_libvirt(group: str) -> bool:
    """Is ``group`` libvirt's (``/machine``, ``/machine.slice`` or below them)?"""
    parts = group.split("/")
    return len(parts) > 1 and parts[1] in LIBVIRT_GROUPS


def cpus(fs: HostFS, hierarchy: Hierarchy, group: str, effective: bool = False) -> str | None:
    """A group's ``cpuset.cpus`` (or effective CPUs) as the kernel prints it; None if absent."""
    name = hierarchy.effective if effective else CPUS
    try:
        return fs.read(hierarchy.file(group, name))
    except OSError:
        return None


def ids(fs: HostFS, hierarchy: Hierarchy, group: str, threads: bool = True) -> list[int]:
    """The thread (or process) ids in a group, as its ``tasks``/``cgroup.threads`` lists them."""
    name = hierarchy.threads if threads else "cgroup.procs"
    text = fs.read_or(hierarchy.file(group, name), "")
    return [int(t) for t in text.split() if t.isdigit()]

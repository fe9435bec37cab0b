"""The resctrl file system (Intel RDT, AMD PQoS): L3 cache allocation.

Mounted at ``/sys/fs/resctrl`` (``mount -t resctrl resctrl /sys/fs/resctrl``);
the directory exists on kernels with resctrl support, its ``info/`` only while
it is mounted. The root directory is the default control group; each other
directory (but ``info``, ``mon_groups``, ``mon_data``) is a control group made
by ``mkdir`` and removed by ``rmdir``, with

- ``schemata``: one line per resource, ``L3:<cache id>=<hex mask>;...`` (the
  capacity bit mask of the L3 ways the group may fill), ``MB:...`` etc.;
  a write changes only the caches it names;
- ``cpus_list``: the CPUs whose tasks use this group by default;
- ``tasks``: thread ids, one per write;
- ``mode``: ``shareable`` or ``exclusive``.

``info/L3/`` describes the hardware: ``cbm_mask`` (every way), ``min_cbm_bits``,
``num_closids`` (how many groups the CPU can tell apart), ``shareable_bits``
(ways other hardware uses), ``sparse_masks`` (non-contiguous masks allowed).
After a failed write ``info/last_cmd_status`` says why in words. With CDP the
L3 resource is split into ``L3CODE`` and ``L3DATA``.

This module reads and writes that interface; which ways go to whom is the
hook's policy (``rtlibvirt.hook.isolation.resctrl``). Standard library only.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from rtlibvirt.kernel.fs import HostFS

RESCTRL = "/sys/fs/resctrl"
INFO = f"{RESCTRL}/info"
INFO_L3 = f"{INFO}/L3"
LAST_STATUS = f"{INFO}/last_cmd_status"
PREFIX = f"{RESCTRL}/"
NOT_GROUPS = frozenset({"info", "mon_groups", "mon_data"})
GROUP_FILES = ("schemata", "cpus_list", "tasks", "mode")
# A group is a directory: one path component of printable ASCII, never "." or "..".
_GROUP_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,255}")


class Info:
    """``info/L3`` of the host."""

    __slots__ = ("cbm_mask", "closids", "min_bits", "nbits", "shareable", "sparse")

    def __init__(
        self, cbm_mask: int, min_bits: int, closids: int, shareable: int, sparse: bool
    ) -> None:
        self.cbm_mask = cbm_mask
        self.nbits = cbm_mask.bit_length()
        self.min_bits = max(min_bits, 1)
        self.closids = closids
        self.shareable = shareable
        self.sparse = sparse

    @property
    def width(self) -> int:
        """Hex digits of a mask, as the kernel prints them."""
        return (self.nbits + 3) // 4


def mounted(fs: HostFS) -> bool:
    """Is resctrl mounted? (``info/`` exists only then: one stat, no /proc/mounts read.)"""
    return fs.exists(INFO)


def read_info(fs: HostFS) -> Info | str:
    """The L3 allocation parameters, or why there are none."""
    if not fs.exists(INFO_L3):
        if fs.exists(f"{INFO}/L3CODE"):
            return (
                "resctrl is mounted with CDP (L3CODE/L3DATA); rtlibvirt handles plain L3 "
                "allocation only (mount it without -o cdp)"
            )
        return f"this host has no L3 cache allocation (no {INFO_L3})"
    try:
        cbm = int(fs.read(f"{INFO_L3}/cbm_mask"), 16)
        min_bits = int(fs.read(f"{INFO_L3}/min_cbm_bits"))
        closids = int(fs.read(f"{INFO_L3}/num_closids"))
        shareable = int(fs.read_or(f"{INFO_L3}/shareable_bits", "0") or "0", 16)
        sparse = fs.read_or(f"{INFO_L3}/sparse_masks", "0").strip() == "1"
    except (OSError, ValueError) as exc:
        return f"cannot read {INFO_L3}: {exc}"
    if cbm == 0:
        return f"{INFO_L3}/cbm_mask is empty"
    return Info(cbm, min_bits, closids, shareable, sparse)


def valid_group_name(name: str) -> bool:
    """Can ``name`` be a control group's directory (one safe path component)?"""
    return (
        _GROUP_NAME.fullmatch(name) is not None
        and name not in (".", "..")
        and name not in NOT_GROUPS
    )


def group_dir(name: str) -> str:
    """The directory of control group ``name`` ("" is the default group)."""
    if name == "":
        return RESCTRL
    if not valid_group_name(name):
        raise ValueError(f"{name!r} cannot be a resctrl group name")
    return f"{RESCTRL}/{name}"


def group_of(path: str) -> str | None:
    """The group name of a group's directory or file path ("" = default); None if not one."""
    if path == RESCTRL:
        return ""
    if not path.startswith(PREFIX):
        return None
    rest = path[len(PREFIX) :]
    if rest in GROUP_FILES:
        return ""
    name, _, leaf = rest.partition("/")
    if not valid_group_name(name) or (leaf and leaf not in GROUP_FILES):
        return None
    return name


def owns(path: str) -> bool:
    """Is ``path`` a group's directory, ``schemata`` or ``cpus_list`` under resctrl?"""
    if group_of(path) is None:
        return False
    return path.endswith(("/schemata", "/cpus_list")) or "/" not in path[len(PREFIX) :]


def ctrl_groups(fs: HostFS) -> list[str]:
    """Directories of the control groups, the default group (``/sys/fs/resctrl``) first."""
    found = [RESCTRL]
    for name in fs.listdir(RESCTRL):
        if name not in NOT_GROUPS and fs.exists(f"{RESCTRL}/{name}/schemata"):
            found.append(f"{RESCTRL}/{name}")
    return found


def parse_l3(text: str) -> dict[str, int] | None:
    """The L3 masks of a schemata file (or line): cache id -> mask; None if no L3 line.

    ValueError when a mask is not hexadecimal.
    """
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("L3:"):
            masks: dict[str, int] = {}
            for part in line[3:].split(";"):
                if "=" in part:
                    domain, _, mask = part.partition("=")
                    masks[domain.strip()] = int(mask.strip() or "0", 16)
            return masks
    return None


def l3_line(masks: dict[str, int], width: int) -> str:
    """``L3:0=ff0;1=fff``: the masks of each cache, as the kernel prints them."""
    ordered = sorted(masks.items(), key=lambda item: int(item[0]) if item[0].isdigit() else 0)
    return "L3:" + ";".join(f"{domain}={mask:0{width}x}" for domain, mask in ordered)


def read_l3_line(fs: HostFS, path: str) -> str | None:
    """The ``L3:...`` line of a schemata file (normalized), or None."""
    try:
        masks = parse_l3(fs.read(path))
    except (OSError, ValueError):
        return None
    if masks is None:
        return None
    return l3_line(masks, max((m.bit_length() + 3) // 4 for m in masks.values()) if masks else 1)


def same_l3(a: str, b: str) -> bool:
    try:
        return parse_l3(a) == parse_l3(b)
    except ValueError:
        return a.strip() == b.strip()


def show_l3(line: str) -> str:
    return line.strip()[3:] if line.strip().startswith("L3:") else line


def mode(fs: HostFS, directory: str) -> str:
    return fs.read_or(f"{directory}/mode", "shareable").strip()


def tasks(fs: HostFS, directory: str) -> set[str]:
    return set(fs.read_or(f"{directory}/tasks", "").split())


def last_status(fs: HostFS) -> str | None:
    """``info/last_cmd_status`` when it says something other than ``ok``."""
    status = fs.read_or(LAST_STATUS, "").strip()
    return status if status and status != "ok" else None


def cache_ids(fs: HostFS, cpus: frozenset[int]) -> set[str] | None:
    """The L3 cache ids of ``cpus``; None when sysfs does not say."""
    found: set[str] = set()
    for cpu in cpus:
        base = f"/sys/devices/system/cpu/cpu{cpu}/cache"
        ident = None
        for index in fs.listdir(base):
            if index.startswith("index") and fs.read_or(f"{base}/{index}/level", "") == "3":
                ident = fs.read_or(f"{base}/{index}/id", "").strip() or None
                break
        if ident is None:
            return None
        found.add(ident)
    return found

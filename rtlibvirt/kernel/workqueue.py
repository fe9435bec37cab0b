"""Workqueue cpumasks: where the kernel runs the work items of unbound workqueues.

``/sys/devices/virtual/workqueue/cpumask`` restricts every unbound workqueue
(``WQ_UNBOUND``, e.g. for writeback, crypto, dm). Each workqueue created with
``WQ_SYSFS`` is a device of the ``workqueue`` bus as well:
``/sys/bus/workqueue/devices/NAME`` (a link to
``/sys/devices/virtual/workqueue/NAME``); an unbound one has a ``cpumask`` of
its own there (``writeback``, ``blkcg_punt_bio``, ``nvme-wq``, ...), a per-CPU
one (``per_cpu`` 1) has none. All are kernel hex cpumasks.

How the kernel combines them (kernel/workqueue.c, Documentation/core-api/
workqueue.rst): a workqueue's workers run on its own cpumask within the global
one (``wqattrs_actualize_cpumask()``: their intersection, or the global mask
if they do not intersect), whatever its ``affinity_scope`` and
``affinity_strict``: the scope only groups the allowed CPUs into pods (a work
item starts in the pod of the CPU that queued it, or anywhere in the mask if
that pod has no allowed CPU), and a non-strict worker may be moved by the
scheduler only within the mask. So taking CPUs out of a workqueue's cpumask
keeps its work off them in every scope, and neither file needs to change.

What a write answers:

- the global mask: EINVAL without an online housekeeping CPU
  (``workqueue_set_unbound_cpumask()``);
- a workqueue's own: EINVAL for a mask that does not parse, and from
  ``apply_workqueue_attrs_locked()`` for a workqueue whose attributes may not
  change (an explicitly ordered one, on kernels that still forbid it);
  ENOMEM; EIO/EPERM where a security module or a virtualised /sys says no.
  It reads back what was written (within the possible CPUs), not the
  intersection with the global mask.

Per-CPU workqueues (``kworker/N:M``) cannot be moved.

Standard library only.
"""

from __future__ import annotations

import errno
import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from rtlibvirt.kernel.fs import HostFS

UNBOUND = "/sys/devices/virtual/workqueue/cpumask"
BUS = "/sys/bus/workqueue/devices"
WRITEBACK = f"{BUS}/writeback/cpumask"
FILES = (UNBOUND, WRITEBACK)  # what every kernel with sysfs has
# More WQ_SYSFS workqueues than any host has (a few dozen: one per NVMe, dm-crypt, ...)
MAX_WORKQUEUES = 1024
# A workqueue's name as sysfs shows it: printable ASCII without "/" (the kernel
# turns a "/" of a device name into "!"), at most WQ_NAME_LEN - 1 = 31 bytes in
# Linux 6.x (23 before); 63 leaves room. "." and ".." are never names.
_NAME = re.compile(r"[!-.0-~]{1,63}")
_OWN = re.compile(rf"{re.escape(BUS)}/([!-.0-~]{{1,63}})/cpumask")


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None and name not in (".", "..")


def own_mask(name: str) -> str:
    return f"{BUS}/{name}/cpumask"


def names(fs: HostFS) -> tuple[list[str], list[str]]:
    """The WQ_SYSFS workqueues that have a cpumask of their own, by name, and the
    entries of the bus left alone because their name is not a workqueue's."""
    found: list[str] = []
    odd: list[str] = []
    for name in sorted(fs.listdir(BUS))[:MAX_WORKQUEUES]:
        if not valid_name(name):
            odd.append(name)
        elif fs.exists(own_mask(name)):
            found.append(name)
    return found, odd


def paths(fs: HostFS) -> list[str]:
    """The cpumask files this host has: the global one, then each workqueue's own."""
    found = [UNBOUND] if fs.exists(UNBOUND) else []
    return found + [own_mask(name) for name in names(fs)[0]]


def owns(path: str) -> bool:
    """Is ``path`` a cpumask file of this interface (for paths read back from a state)?"""
    if path == UNBOUND:
        return True
    match = _OWN.fullmatch(path)
    return match is not None and match.group(1) not in (".", "..")


def name_of(path: str) -> str | None:
    """The workqueue whose own cpumask ``path`` is; None for the global mask."""
    match = _OWN.fullmatch(path)
    return match.group(1) if match else None


def describe(path: str) -> str:
    name = name_of(path)
    return "unbound workqueue cpumask" if name is None else f"workqueue {name} cpumask"


def explain(exc: OSError) -> str:
    """Why the kernel refused a cpumask, in words."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EINVAL:
        return (
            f"{reason}: the kernel does not let this workqueue's CPUs change, as for an ordered one"
        )
    if exc.errno in (errno.EIO, errno.EPERM, errno.EACCES):
        return f"{reason}: the kernel does not let user space change this workqueue's CPUs"
    return reason

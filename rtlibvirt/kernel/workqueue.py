"""Workqueue cpumasks: where the kernel runs the work items of unbound workqueues.

``/sys/devices/virtual/workqueue/cpumask`` restricts every unbound workqueue
(``WQ_UNBOUND``, e.g. for writeback, crypto, dm); ``/sys/bus/workqueue/devices/
writeback/cpumask`` is the writeback workqueue's own mask, which it keeps beside
the global one. Both are kernel hex cpumasks. The kernel answers EINVAL to a
mask without an online (housekeeping) CPU (``workqueue_set_unbound_cpumask()``
in kernel/workqueue.c). Per-CPU workqueues (``kworker/N:M``) cannot be moved.

Standard library only.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from rtlibvirt.kernel.fs import HostFS

UNBOUND = "/sys/devices/virtual/workqueue/cpumask"
WRITEBACK = "/sys/bus/workqueue/devices/writeback/cpumask"
FILES = (UNBOUND, WRITEBACK)


def paths(fs: HostFS) -> list[str]:
    """The cpumask files this host has."""
    return [path for path in FILES if fs.exists(path)]


def owns(path: str) -> bool:
    return path in FILES


def describe(path: str) -> str:
    return "unbound workqueue cpumask" if path == UNBOUND else "writeback workqueue cpumask"

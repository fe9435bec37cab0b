"""``/proc/irq``: the CPU affinity of each interrupt, and the default for new ones.

``/proc/irq/N/smp_affinity`` (one per IRQ) and ``/proc/irq/default_smp_affinity``
hold kernel hex cpumasks (see :mod:`rtlibvirt.kernel.cpuset`). A write is one
mask; the kernel refuses some:

- **EIO**, or **EPERM** since Linux 6.12: user space may not move this IRQ.
  ``write_irq_affinity()`` in kernel/irq/proc.c returns it when
  ``irq_can_set_affinity_usr()`` (kernel/irq/manage.c) is false: per-CPU and
  no-balancing IRQs, chips without ``irq_set_affinity``, and *managed* IRQs
  (multi-queue devices whose queue-to-CPU spread the kernel owns). Kernel
  commit eb29369fa543e ("genirq/proc: Change the return value for set affinity
  permission error") changed the errno from EIO to EPERM. Such an IRQ keeps its
  affinity whatever we write: a refusal, not an error.
- **EINVAL**: the mask holds no online CPU (and, for an IRQ, the architecture
  cannot pick one), or it is not a mask at all.

Standard library only.
"""

from __future__ import annotations

import errno

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from rtlibvirt.kernel.fs import HostFS

IRQ_DIR = "/proc/irq"
DEFAULT = f"{IRQ_DIR}/default_smp_affinity"
PREFIX = f"{IRQ_DIR}/"

# errnos with which the kernel says "this IRQ cannot be moved from user space"
REFUSED = frozenset({errno.EIO, errno.EPERM})


def affinity_path(irq: int) -> str:
    return f"{IRQ_DIR}/{irq}/smp_affinity"


def numbers(fs: HostFS) -> list[int]:
    """The IRQ numbers of the host, ascending."""
    return sorted(int(n) for n in fs.listdir(IRQ_DIR) if n.isdigit())


def paths(fs: HostFS) -> list[str]:
    """Every affinity file: the default first (when it exists), then each IRQ in order."""
    found = [affinity_path(n) for n in numbers(fs)]
    if fs.exists(DEFAULT):
        found.insert(0, DEFAULT)
    return found


def owns(path: str) -> bool:
    """Is ``path`` an affinity file of this interface (for paths read back from a state)?"""
    if path == DEFAULT:
        return True
    head, _, number = path[len(PREFIX) :].partition("/")
    return (
        path.startswith(PREFIX)
        and number == "smp_affinity"
        and head.isdigit()
        and head.isascii()
        and len(head) <= 10
    )


def describe(path: str) -> str:
    if path == DEFAULT:
        return "default IRQ affinity"
    return f"IRQ {path[len(PREFIX) :].partition('/')[0]} affinity"


def read(fs: HostFS, path: str) -> str | None:
    """An affinity mask as the kernel prints it; None when the IRQ is gone."""
    try:
        return fs.read(path)
    except OSError:
        return None


def write(fs: HostFS, path: str, mask: str) -> None:
    """Write a hex mask; the kernel's OSError as it came (see :func:`refused`)."""
    fs.write(path, mask)


def refused(exc: OSError) -> bool:
    """Is this the kernel's "user space may not move this IRQ" (EIO, EPERM)?"""
    return exc.errno in REFUSED


def explain(exc: OSError) -> str:
    """Why the kernel refused a write, in words."""
    reason = exc.strerror or str(exc)
    if refused(exc):
        return f"{reason}: the kernel does not let user space move this IRQ (managed or per-CPU)"
    if exc.errno == errno.EINVAL:
        return f"{reason}: no online CPU in the mask"
    return reason

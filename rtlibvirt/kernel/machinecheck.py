"""Machine-check polling: ``/sys/devices/system/machinecheck/machinecheckN/check_interval``.

x86 kernels poll each CPU's machine-check banks every ``check_interval``
seconds (default 300; 0 turns polling off). There is one device per CPU; a
kernel without machine-check support has no such directory.

Standard library only.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from rtlibvirt.kernel.fs import HostFS

MC_DIR = "/sys/devices/system/machinecheck"
PREFIX = f"{MC_DIR}/machinecheck"


def devices(fs: HostFS) -> list[str]:
    """The ``machinecheckN`` device names, by CPU number."""
    names = [d for d in fs.listdir(MC_DIR) if d.startswith("machinecheck")]
    names.sort(key=lambda d: int(d[len("machinecheck") :]) if d[12:].isdigit() else -1)
    return names


def interval_paths(fs: HostFS) -> list[str]:
    """The ``check_interval`` file of every device that has one."""
    found = [f"{MC_DIR}/{d}/check_interval" for d in devices(fs)]
    return [path for path in found if fs.exists(path)]


def owns(path: str) -> bool:
    if not path.startswith(PREFIX):
        return False
    number, _, leaf = path[len(PREFIX) :].partition("/")
    return leaf == "check_interval" and number.isdigit() and number.isascii() and len(number) <= 5


def describe(path: str) -> str:
    return f"{path.split('/')[-2]} check_interval"

"""CPU frequency: cpufreq policies, their governors, and the energy/performance bias.

``/sys/devices/system/cpu/cpufreq/policyN/scaling_governor`` is the governor
of the CPUs of policy N, ``scaling_available_governors`` the ones its driver
offers (intel_pstate and amd-pstate in active mode: performance and powersave
only). A host without a cpufreq driver (a VM, ``intel_pstate=disable`` without
acpi-cpufreq) has no policy. ``/sys/devices/system/cpu/cpuN/power/
energy_perf_bias`` (Intel's IA32_ENERGY_PERF_BIAS, 0 performance .. 15 power)
exists only where the CPU has it.

Standard library only.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from rtlibvirt.kernel.fs import HostFS

CPU_DIR = "/sys/devices/system/cpu"
CPUFREQ = f"{CPU_DIR}/cpufreq"
MAX_ENTRIES = 8192  # policies or CPUs looked at (kernel.cpuset's MAX_CPUS)
VALUE_LIMIT = 4096  # a sysfs value is at most a page


def read_small(fs: HostFS, host_path: str) -> str | None:
    """A sysfs value (at most a page), stripped; None when it cannot be read."""
    try:
        with open(fs.path(host_path), "rb") as handle:
            data = handle.read(VALUE_LIMIT + 1)
    except OSError:
        return None
    if len(data) > VALUE_LIMIT:
        return None
    return data.decode("utf-8", "replace").strip()


def _numbered(names: list[str], prefix: str) -> list[str]:
    found = [n for n in names if n.startswith(prefix) and n[len(prefix) :].isdigit()]
    found = [n for n in found if n.isascii() and len(n) <= len(prefix) + 5]
    found.sort(key=lambda n: int(n[len(prefix) :]))
    return found[:MAX_ENTRIES]


def policies(fs: HostFS) -> list[str]:
    """The ``policyN`` names that have a governor, by number."""
    return [
        name
        for name in _numbered(fs.listdir(CPUFREQ), "policy")
        if fs.exists(f"{CPUFREQ}/{name}/scaling_governor")
    ]


def governor_path(policy: str) -> str:
    return f"{CPUFREQ}/{policy}/scaling_governor"


def governors(fs: HostFS) -> dict[str, str]:
    """Each policy's governor now."""
    return {p: read_small(fs, governor_path(p)) or "unknown" for p in policies(fs)}


def available_governors(fs: HostFS) -> frozenset[str] | None:
    """The governors every policy offers; None without a cpufreq policy."""
    offered: frozenset[str] | None = None
    for policy in policies(fs):
        text = read_small(fs, f"{CPUFREQ}/{policy}/scaling_available_governors")
        words = frozenset((text or "").split())
        offered = words if offered is None else offered & words
    return offered


def epb_paths(fs: HostFS) -> list[str]:
    """The ``energy_perf_bias`` file of every CPU that has one."""
    cpus = _numbered(fs.listdir(CPU_DIR), "cpu")
    found = [f"{CPU_DIR}/{cpu}/power/energy_perf_bias" for cpu in cpus]
    return [path for path in found if fs.exists(path)]

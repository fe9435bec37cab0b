"""CPU sets: Linux cpulist strings, kernel hex masks, and their set algebra.

Pure functions on ``frozenset[int]``. The formats are the kernel's own:
- cpulist, as in ``/sys/devices/system/cpu/isolated`` or ``isolcpus=``:
  ``"0-3,8,10-15:2/4"`` (``a-b:used/group`` takes the first *used* CPUs of
  every group of *group* CPUs in ``a-b``);
- hex mask, as in ``/proc/irq/N/smp_affinity``: groups of 32 bits written as
  8 hex digits, separated by commas, most significant first
  (``"ff,ffffffff"``), the first group without leading zeros beyond the
  mask's width.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

CpuSet = frozenset[int]

#: The kernel's largest NR_CPUS (x86_64 MAXSMP): CPU numbers are 0-8191.
MAX_CPUS = 8192

# At most 5 digits a number: a longer one is out of range anyway, and is
# rejected before int() reads it.
_RANGE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5})(?::([0-9]{1,5})/([0-9]{1,5}))?)?")
_HEX = re.compile(r"[0-9a-fA-F]+")


class CpuListError(ValueError):
    """A cpulist or mask string that cannot be parsed."""


def parse_cpulist(text: str, limit: int = MAX_CPUS) -> list[int]:
    """Parse a cpulist into its CPUs, in the order written, without repeats.

    ``"2-5,8"`` -> ``[2, 3, 4, 5, 8]``. An empty or blank string is the
    empty list (the kernel writes an empty line for "no CPUs"). Every number
    is checked against ``limit`` (CPUs are ``0`` to ``limit - 1``) before a
    range is expanded, so the work and the result are bounded by ``limit``.
    """
    text = text.strip()
    if not text:
        return []
    cpus: list[int] = []
    seen: set[int] = set()
    budget = 4 * limit  # CPUs named in all, repeats included: overlapping ranges are bounded too
    for part in text.split(","):
        part = part.strip()
        m = _RANGE.fullmatch(part)
        if not m:
            if re.fullmatch(r"[0-9]+(?:-[0-9]+(?::[0-9]+/[0-9]+)?)?", part):
                raise CpuListError(f"{_short(part)!r}: CPU numbers go from 0 to {limit - 1}")
            raise CpuListError(
                f"{_short(part)!r} is not a CPU number or range "
                "(expected e.g. '3', '2-5' or '0-7:1/2')"
            )
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) is not None else first
        if last >= limit:
            raise CpuListError(
                f"{part!r}: CPU {last} is out of range; CPUs go from 0 to {limit - 1}"
            )
        if last < first:
            raise CpuListError(f"range {part!r} goes backwards; write it as {last}-{first}")
        used = int(m.group(3)) if m.group(3) is not None else 1
        group = int(m.group(4)) if m.group(4) is not None else 1
        if group == 0 or used == 0 or used > group:
            raise CpuListError(f"{part!r}: in a-b:used/group, 0 < used <= group is required")
        budget -= last - first + 1
        if budget < 0:
            raise CpuListError(
                f"{_short(text)!r} names more than {4 * limit} CPUs in all: "
                "write each CPU once, e.g. 2-5,8"
            )
        for cpu in range(first, last + 1):
            if (cpu - first) % group < used and cpu not in seen:
                seen.add(cpu)
                cpus.append(cpu)
    return cpus


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width] + "..."


def format_cpulist(cpus: Iterable[int]) -> str:
    """Format CPUs as the kernel's shortest cpulist: ``{0,1,2,5}`` -> ``"0-2,5"``."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse_mask(text: str) -> CpuSet:
    """Parse a kernel hex cpumask (``"3"``, ``"00000000,00000003"``) into CPUs."""
    compact = text.strip().replace(",", "")
    if compact.startswith(("0x", "0X")):
        compact = compact[2:]
    compact = compact.lstrip("0")
    if not compact:
        return frozenset()
    if len(compact) > MAX_CPUS // 4:
        raise CpuListError(f"{_short(text.strip())!r} is wider than {MAX_CPUS} CPUs")
    if not _HEX.fullmatch(compact):
        raise CpuListError(f"{_short(text.strip())!r} is not a hexadecimal CPU mask")
    value = int(compact, 16)
    return frozenset(bit for bit in range(value.bit_length()) if value >> bit & 1)


def format_mask(cpus: Iterable[int], nbits: int | None = None) -> str:
    """Format CPUs as the kernel prints a cpumask of ``nbits`` bits.

    Without ``nbits`` the mask is as wide as its highest CPU needs. The kernel
    accepts any width on write; the fixed width reproduces what it reads back.
    """
    value = 0
    for cpu in cpus:
        if cpu < 0:
            raise CpuListError(f"negative CPU number {cpu}")
        value |= 1 << cpu
    width = max(nbits if nbits is not None else value.bit_length(), 1)
    digits = format(value, "x").rjust((width + 3) // 4, "0")
    groups: list[str] = []
    while len(digits) > 8:
        groups.insert(0, digits[-8:])
        digits = digits[:-8]
    groups.insert(0, digits)
    return ",".join(groups)

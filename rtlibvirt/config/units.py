"""Sizes with units, as libvirt reads them: ``512MiB``, ``2GiB``, ``1G``, ``2GB``.

Binary units: ``K``/``KiB``, ``M``/``MiB``, ``G``/``GiB``, ``T``/``TiB`` (a
single letter is binary, as in libvirt's XML). Decimal units: ``KB``, ``MB``,
``GB``, ``TB``. A bare number is in MiB. Values are returned in KiB, libvirt's
unit for memory.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

KIB = 1
MIB = 1024
GIB = 1024 * 1024
TIB = 1024 * 1024 * 1024

_BYTES_PER_UNIT: dict[str, int] = {
    "B": 1,
    "K": 1024,
    "KIB": 1024,
    "KB": 1000,
    "M": 1024**2,
    "MIB": 1024**2,
    "MB": 1000**2,
    "G": 1024**3,
    "GIB": 1024**3,
    "GB": 1000**3,
    "T": 1024**4,
    "TIB": 1024**4,
    "TB": 1000**4,
}

# Full match; at most 30 digits and 8 letters, so that Decimal() never reads
# a 5,000-digit number. Only ASCII digits (\d would take other scripts' too).
_SIZE = re.compile(r"[ ]*([0-9]{1,30}(?:\.[0-9]{1,30})?)[ ]*([A-Za-z]{0,8})[ ]*")


class SizeError(ValueError):
    """A size that cannot be read."""


def parse_size_kib(value: str, default_unit: str = "MiB") -> int:
    """Parse ``"2GiB"`` into KiB (2097152). The result is a whole number of KiB."""
    m = _SIZE.fullmatch(value)
    if not m:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise SizeError(
            f"{shown!r} is not a size: write a number and a unit, e.g. 512MiB, 2GiB or 1G"
        )
    number, unit = m.group(1), m.group(2) or default_unit
    factor = _BYTES_PER_UNIT.get(unit.upper())
    if factor is None:
        raise SizeError(
            f"{value!r} has an unknown unit {unit!r}: use KiB, MiB, GiB or TiB "
            "(or K, M, G, T; KB, MB, GB, TB are powers of 1000)"
        )
    try:
        total_bytes = Decimal(number) * factor
    except InvalidOperation:  # pragma: no cover - the regex admits only numbers
        raise SizeError(f"{value!r} is not a number") from None
    kib = total_bytes / 1024
    if kib != kib.to_integral_value():
        raise SizeError(f"{value!r} is not a whole number of KiB")
    return int(kib)


def format_size_kib(kib: int) -> str:
    """The shortest exact binary form: 2097152 -> ``"2GiB"``, 1536 -> ``"1536KiB"``."""
    for unit, size in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB)):
        if kib and kib % size == 0:
            return f"{kib // size}{unit}"
    return f"{kib}KiB"


def hugepage_name(kib: int) -> str:
    """A hugepage size as vm.yaml and host.yaml name it: 2048 -> ``"2M"``, 1048576 -> ``"1G"``."""
    return {2 * MIB: "2M", GIB: "1G"}.get(kib) or format_size_kib(kib)

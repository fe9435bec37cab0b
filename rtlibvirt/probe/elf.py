"""What a dynamically linked ELF program needs: its interpreter and its DT_NEEDED libraries.

Just enough of the ELF format (``<elf.h>``) to copy a program and its shared
libraries into the probe's initramfs without running ``ldd`` (which would
run the program's interpreter on the host). 64-bit little-endian only, which
is all Debian's amd64 packages hold; every offset is checked against the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ = 0, 1, 5, 10
MAX_ENTRIES = 4096  # program headers or dynamic entries: far beyond any real file


class ElfError(ValueError):
    """Not an ELF file this module reads, or one whose tables point outside it."""


@dataclass(frozen=True)
class Linkage:
    interpreter: str | None  # PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2; None if static
    needed: tuple[str, ...]  # DT_NEEDED sonames, in file order


def _unpack(fmt: str, data: bytes, offset: int) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    if offset < 0 or offset + size > len(data):
        raise ElfError(f"a table entry at byte {offset} lies outside the file")
    return struct.unpack_from(fmt, data, offset)


def _cstring(data: bytes, offset: int) -> str:
    if offset < 0 or offset >= len(data):
        raise ElfError(f"a string at byte {offset} lies outside the file")
    end = data.find(b"\0", offset)
    if end < 0:
        raise ElfError(f"the string at byte {offset} has no terminating NUL")
    return data[offset:end].decode("utf-8", "replace")


def linkage(data: bytes) -> Linkage:
    """The interpreter and needed libraries of an ELF64 little-endian file."""
    if data[:4] != b"\x7fELF":
        raise ElfError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ElfError("not a 64-bit little-endian ELF file")
    (phoff,) = _unpack("<Q", data, 0x20)
    phentsize, phnum = _unpack("<HH", data, 0x36)
    if phnum > MAX_ENTRIES or phentsize < 56:
        raise ElfError(f"implausible program header table ({phnum} entries of {phentsize} bytes)")
    loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    interpreter = None
    dynamic: tuple[int, int] | None = None
    for index in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = _unpack(
            "<IIQQQQ", data, phoff + index * phentsize
        )
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_INTERP:
            interpreter = _cstring(data, p_offset)
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return Linkage(interpreter, ())

    def file_offset(vaddr: int) -> int:
        for start, offset, size in loads:
            if start <= vaddr < start + size:
                return offset + vaddr - start
        raise ElfError(f"address {vaddr:#x} is in no loaded segment")

    entries: list[tuple[int, int]] = []
    offset, size = dynamic
    for index in range(min(size // 16, MAX_ENTRIES)):
        tag, value = _unpack("<qQ", data, offset + 16 * index)
        if tag == DT_NULL:
            break
        entries.append((tag, value))
    strtab = next((v for t, v in entries if t == DT_STRTAB), None)
    if strtab is None:
        raise ElfError("a dynamic section without a string table")
    base = file_offset(strtab)
    needed = tuple(_cstring(data, base + v) for t, v in entries if t == DT_NEEDED)
    return Linkage(interpreter, needed)

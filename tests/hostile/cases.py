"""The inputs of the hostile suite: valid files, and ways to spoil each value in them.

A case is a file that is valid except at one place: the line of that place is
known, so the test can ask for "FILE:LINE: KEY:" in the message. Big inputs are
made here at run time; nothing big is stored in the repository.
"""

from __future__ import annotations

from dataclasses import dataclass

VM = """\
name: plc
memory: 2GiB
vcpus: 4
cpu:
  pinning: [2, 3, 4, 5]
  emulator: 0-1
  model: host-passthrough
  features: {{arch-capabilities: require}}
  realtime:
    vcpus: 1-3
    priority: 1
memory_backing:
  hugepages: 1G
devices:
  disks:
    - source: /var/lib/libvirt/images/plc.qcow2
  networks:
    - bridge: br0
      mac: 52:54:00:12:34:56
    - network: default
  hostdevs:
    - 0000:03:00.0
isolation:
  cache_ways: 0
"""

HOST = """\
isolated_cpus: 2-13
housekeeping_cpus: 0-1
hugepages: {{size: 1G, count: 8}}
disable_services: [irqbalance]
mask_services: []
extra_kernel_args: [console=ttyS0]
"""

TUNING = """\
cpu:
  pinning: [3, 2]
  emulator: 0
  model: host-passthrough
  realtime:
    vcpus: [1]
memory_backing:
  hugepages: none
  locked: false
"""


@dataclass(frozen=True)
class Spot:
    """A value in a base file: its line (1-based), its key path, and how it is written."""

    line: int
    key: str
    written: str  # the text on that line that a case replaces


VM_SPOTS = {
    "name": Spot(1, "name", "name: plc"),
    "memory": Spot(2, "memory", "memory: 2GiB"),
    "vcpus": Spot(3, "vcpus", "vcpus: 4"),
    "pinning": Spot(5, "cpu.pinning", "  pinning: [2, 3, 4, 5]"),
    "emulator": Spot(6, "cpu.emulator", "  emulator: 0-1"),
    "model": Spot(7, "cpu.model", "  model: host-passthrough"),
    "features": Spot(8, "cpu.features", "  features: {arch-capabilities: require}"),
    "rt-vcpus": Spot(10, "cpu.realtime.vcpus", "    vcpus: 1-3"),
    "priority": Spot(11, "cpu.realtime.priority", "    priority: 1"),
    "source": Spot(
        16, "devices.disks[0].source", "    - source: /var/lib/libvirt/images/plc.qcow2"
    ),
    "bridge": Spot(18, "devices.networks[0].bridge", "    - bridge: br0"),
    "mac": Spot(19, "devices.networks[0].mac", "      mac: 52:54:00:12:34:56"),
    "network": Spot(20, "devices.networks[1].network", "    - network: default"),
    "hostdev": Spot(22, "devices.hostdevs[0]", "    - 0000:03:00.0"),
    "cache-ways": Spot(24, "isolation.cache_ways", "  cache_ways: 0"),
}

HOST_SPOTS = {
    "isolated": Spot(1, "isolated_cpus", "isolated_cpus: 2-13"),
    "housekeeping": Spot(2, "housekeeping_cpus", "housekeeping_cpus: 0-1"),
    "hugepages": Spot(3, "hugepages.count", "hugepages: {size: 1G, count: 8}"),
    "service": Spot(4, "disable_services[0]", "disable_services: [irqbalance]"),
    "mask": Spot(5, "mask_services[0]", "mask_services: []"),
    "karg": Spot(6, "extra_kernel_args[0]", "extra_kernel_args: [console=ttyS0]"),
}

TUNING_SPOTS = {
    "pinning": Spot(2, "cpu.pinning", "  pinning: [3, 2]"),
    "emulator": Spot(3, "cpu.emulator", "  emulator: 0"),
    "model": Spot(4, "cpu.model", "  model: host-passthrough"),
    "rt-vcpus": Spot(6, "cpu.realtime.vcpus", "    vcpus: [1]"),
}


def base(text: str) -> str:
    return text.format()


def spoiled(text: str, spot: Spot, replacement: str) -> str:
    """The base file with the line of ``spot`` replaced."""
    lines = base(text).split("\n")
    assert lines[spot.line - 1] == spot.written, (lines[spot.line - 1], spot)
    lines[spot.line - 1] = replacement
    return "\n".join(lines)


def yaml_string(value: str) -> str:
    """``value`` as a YAML double-quoted scalar, every control character escaped."""
    out = []
    for char in value:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif (
            code < 0x20
            or 0x7F <= code <= 0x9F
            or code in (0x2028, 0x2029, 0xFEFF)
            or (0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069)
        ):
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


# Characters that must never reach XML, a file or a log line (issue 9, item 3).
CONTROL = {
    "newline-at-end": lambda v: v + "\n",  # what a `$` pattern let through
    "newline-inside": lambda v: v[:1] + "\n" + v[1:],
    "cr": lambda v: v + "\r",
    "tab": lambda v: v[:1] + "\t" + v[1:],
    "nul": lambda v: v + "\x00",
    "escape": lambda v: v + "\x1b[31m",
    "del": lambda v: v + "\x7f",
    "nel": lambda v: v + "\x85",
    "line-separator": lambda v: v + "\u2028",
    "bidi-override": lambda v: "\u202e" + v,
    "bom": lambda v: "\ufeff" + v,
}


def alias_bomb(levels: int = 9, width: int = 9, indent: str = "") -> list[str]:
    """The billion laughs, one line an anchor."""
    lines = [f"{indent}a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for n in range(1, levels):
        lines.append(f"{indent}a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * width) + "]")
    return lines

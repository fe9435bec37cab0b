"""The ``vm.yaml`` model: typed, frozen, validated, and its JSON Schema.

Loading happens in three steps, each reporting *every* problem it finds with
its key path and YAML line, and nothing later runs if one fails:

1. YAML syntax (``config.loader``);
2. shape: keys, types, ranges, formats (the models below, see ``config.model``);
3. meaning: the rules that tie keys together (``_check_semantics``).

The normalized spec (every default filled in) dumps to JSON that is itself a
valid ``vm.yaml``; it is what ``metadata`` stores in the domain XML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtlibvirt.config import units
from rtlibvirt.config.document import Document, KeyPath
from rtlibvirt.config.model import (
    CPU_LIST_SCHEMA,
    INVALID,
    Checker,
    Errors,
    Invalid,
    MappingOf,
    Model,
    Parser,
    Scalar,
    boolean,
    by_line,
    check_text,
    choice,
    cpu_list,
    cpus,
    describe,
    host_path,
    integer,
    json_pattern,
    list_of,
    matching,
    model,
    nested,
    optional,
    parse_model,
    setting,
    short,
    text,
)
from rtlibvirt.config.sysvalues import (
    EXTRA_ARGS_MAX,
    ISOLATION_ARGS,
    KERNEL_ARG,
    REPEATABLE_ARGS,
    SERVICE_NAME,
)
from rtlibvirt.errors import Problem, SpecError
from rtlibvirt.kernel.cpuset import format_cpulist

# --------------------------------------------------------------------------
# Value types: parse what users write, keep one normalized form.
# --------------------------------------------------------------------------

# Every pattern is matched with fullmatch(): "$" would also match before a
# final newline ("plc\n"). json_pattern() anchors them for the JSON Schema.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
_PCI = re.compile(
    r"(?:(?P<domain>[0-9a-fA-F]{1,4}):)?(?P<bus>[0-9a-fA-F]{1,2}):"
    r"(?P<slot>[0-9a-fA-F]{1,2})\.(?P<function>[0-7])"
)
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")
_IFNAME = re.compile(r"[A-Za-z0-9_.-][A-Za-z0-9_.:-]{0,14}")
_CPU_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CPU_FEATURE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_SIZE_TEXT = r"[ ]*[0-9]{1,30}(\.[0-9]{1,30})?[ ]*[A-Za-z]{0,8}[ ]*"

# The most memory libvirt takes: LLONG_MAX bytes (virMemoryMaxValue), in KiB;
# `virsh define` refuses one KiB more with "numerical overflow".
LIBVIRT_MAX_MEMORY_KIB = (2**63 - 1) // 1024
MAX_MEMORY_KIB = LIBVIRT_MAX_MEMORY_KIB // units.MIB * units.MIB  # whole MiB


def _memory(value: Any) -> int:
    if isinstance(value, bool):
        raise Invalid(f"expected a size such as 2GiB, got {describe(value)}")
    if isinstance(value, int):
        if value <= 0:
            raise Invalid(f"memory must be positive, got {value}")
        if value * units.MIB > MAX_MEMORY_KIB:
            raise Invalid(f"{value} MiB is more than libvirt takes: {_max_memory()}")
        return value * units.MIB
    if isinstance(value, str):
        try:
            kib = units.parse_size_kib(value)
        except units.SizeError as exc:
            raise Invalid(str(exc)) from None
        if kib <= 0:
            raise Invalid(f"memory must be positive, got {value!r}")
        if kib > MAX_MEMORY_KIB:
            raise Invalid(f"{short(value)} is more than libvirt takes: {_max_memory()}")
        if kib % units.MIB:
            mib = kib / units.MIB
            hint = ""
            if re.search(r"[KMGT]B\s*\Z", value, re.IGNORECASE):
                hint = " (KB, MB, GB and TB are powers of 1000; did you mean KiB, MiB, GiB, TiB?)"
            raise Invalid(f"{value!r} is {mib:.2f} MiB: memory must be a whole number of MiB{hint}")
        return kib
    raise Invalid(f"expected a size such as 2GiB, got {describe(value)}")


def _max_memory() -> str:
    return f"at most {MAX_MEMORY_KIB // units.MIB} MiB (about 8 EiB)"


MEMORY = Scalar(
    _memory,
    {
        "oneOf": [
            {"type": "string", "pattern": json_pattern(_SIZE_TEXT)},
            {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_MEMORY_KIB // units.MIB,
                "description": "MiB",
            },
        ],
    },
    dump=units.format_size_kib,
)


def _name(value: Any) -> str:
    string = check_text(value)
    if not NAME_RE.fullmatch(string):
        raise Invalid(
            f"{short(string)} is not a valid name: use 1-64 characters of A-Z a-z 0-9 _ . + -, "
            "starting with a letter or digit"
        )
    return string


NAME = Scalar(_name, {"type": "string", "pattern": json_pattern(NAME_RE)})


def normalize_pci_address(value: str) -> str:
    """``03:00.0`` -> ``0000:03:00.0``; raises ValueError when malformed."""
    m = _PCI.fullmatch(value.strip(" "))
    if not m:
        raise ValueError(
            f"{short(value)} is not a PCI address: expected DDDD:BB:SS.F or BB:SS.F, "
            "e.g. 0000:03:00.0 (see `lspci -D`)"
        )
    slot = int(m.group("slot"), 16)
    if slot > 0x1F:
        raise ValueError(f"{value!r}: PCI slot {slot:#x} is out of range 00-1f")
    domain = int(m.group("domain") or "0", 16)
    bus = int(m.group("bus"), 16)
    return f"{domain:04x}:{bus:02x}:{slot:02x}.{m.group('function')}"


def _pci(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a PCI address such as 0000:03:00.0, got {describe(value)}")
    try:
        return normalize_pci_address(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


PCI_ADDRESS = Scalar(_pci, {"type": "string", "pattern": json_pattern(_PCI)})


def _mac(value: Any) -> str:
    if not isinstance(value, str) or not _MAC.fullmatch(value):
        raise Invalid(f"expected a MAC address such as 52:54:00:12:34:56, got {describe(value)}")
    if int(value[:2], 16) & 1:
        raise Invalid(
            f"{value} is a multicast address; a NIC needs a unicast one "
            "(first byte even, e.g. 52:54:00:...)"
        )
    return value.lower()


MAC_ADDRESS = Scalar(_mac, {"type": "string", "pattern": json_pattern(_MAC)})


def _ifname(value: Any) -> str:
    string = check_text(value)
    if not _IFNAME.fullmatch(string):
        raise Invalid(
            f"{short(string)} is not a Linux interface name (1-15 characters, no spaces or '/')"
        )
    return string


BRIDGE_NAME = Scalar(_ifname, {"type": "string", "pattern": json_pattern(_IFNAME)})
CPU_MODEL = matching(_CPU_MODEL, "CPU model name", "host-passthrough, Skylake-Server")


def _feature_name(value: Any) -> str:
    string = check_text(value)
    if not _CPU_FEATURE.fullmatch(string):
        raise Invalid(f"{short(string)} is not a valid CPU feature name (e.g. arch-capabilities)")
    return string


AUTO = "auto"
MAX_VCPUS = 4096  # QEMU's largest maxcpus (q35 with x2APIC)
MAX_NUMA_NODE = 1023  # the kernel's MAX_NUMNODES is 1 << NODES_SHIFT, at most 1024
MAX_SHARE_WITH = 256  # domains in cpu.share_with (= domain.facts.MAX_SHARE_WITH)


def _cpus_or_auto(value: Any) -> tuple[int, ...] | str:
    if isinstance(value, str) and value.strip() == AUTO:
        return AUTO
    try:
        return cpu_list(value)
    except Invalid as exc:
        raise Invalid(f"{exc.message}; or write `auto` to let rtlibvirt choose host CPUs") from None


CPUS_OR_AUTO = Scalar(
    _cpus_or_auto,
    {
        "oneOf": [
            *CPU_LIST_SCHEMA["oneOf"],
            {"const": "auto", "description": "rtlibvirt chooses the host CPUs"},
        ]
    },
    dump=lambda value: value if value == AUTO else list(value),
)

# --------------------------------------------------------------------------
# The models: one table per section. Help texts become the JSON Schema's
# documentation.
# --------------------------------------------------------------------------


class _OrOff(Parser[Any]):
    """A section that is a mapping, ``true`` (its defaults) or ``false`` (off: None)."""

    def __init__(self, section: type[Model], off: str) -> None:
        self.section = section
        self.off = off  # what false does, for the error message

    def parse(self, value: Any, path: KeyPath, errors: Errors) -> Any:
        if value is True:
            return self.section()
        if value is False:
            return None
        if value is None:
            raise Invalid(f"expected a mapping, or false to {self.off}")
        return self.section.parse(value, path, errors)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [self.section.json_schema(), {"type": "boolean"}]}

    def dump(self, value: Model | None) -> Any:
        return False if value is None else value.dump()


@model
class KernelThreads(Model):
    """Per-CPU kernel threads raised above the vCPUs on their CPUs while the VM runs (the hook).

    Each is SCHED_FIFO, this many priority levels above the VM's highest vCPU
    priority; the defaults keep TuneD's realtime-virtual-host order.
    """

    ksoftirqd: int = setting(
        integer(1, 98), "ksoftirqd/N (softirqs): levels above the highest vCPU priority", default=1
    )
    ktimers: int = setting(
        integer(1, 98),
        "ktimers/N or ktimersoftd/N (timers; PREEMPT_RT kernels): levels above the vCPUs",
        default=2,
    )
    rcu: int = setting(
        integer(1, 98),
        "rcuc/N and rcub/N (RCU callbacks and boosting; PREEMPT_RT kernels): levels above "
        "the vCPUs",
        default=3,
    )


@model
class Realtime(Model):
    """Real-time scheduling of vCPU threads (libvirt ``<vcpusched>``)."""

    vcpus: tuple[int, ...] | None = setting(
        optional(cpus()), "vCPU ids scheduled real-time; default: every vCPU", default=None
    )
    policy: str = setting(choice("fifo", "rr"), "SCHED_FIFO or SCHED_RR", default="fifo")
    priority: int = setting(integer(1, 99), "real-time priority, 1-99", default=1)
    kernel_threads: KernelThreads | None = setting(
        _OrOff(KernelThreads, "leave the kernel threads alone"),
        "per-CPU kernel threads of the VM's CPUs the hook raises above the vCPUs while the "
        "VM runs (SCHED_FIFO); false: left alone",
        default_factory=KernelThreads,
    )


@model
class Topology(Model):
    """Guest CPU topology; sockets * cores * threads must equal ``vcpus``."""

    sockets: int = setting(integer(1, MAX_VCPUS), default=1)
    cores: int = setting(integer(1, MAX_VCPUS), default=1)
    threads: int = setting(integer(1, MAX_VCPUS), default=1)


@model
class Cpu(Model):
    """vCPU placement, scheduling and model."""

    pinning: tuple[int, ...] | str = setting(
        CPUS_OR_AUTO,
        "host CPU of each vCPU, in vCPU order; each host CPU used once; "
        "or `auto`: rtlibvirt chooses them when it defines the domain",
    )
    emulator: tuple[int, ...] | str = setting(
        CPUS_OR_AUTO,
        "host CPUs for QEMU's emulator and I/O threads; none of them may carry a realtime "
        "vCPU; or `auto`: housekeeping CPUs of the VM's node",
    )
    iothreads: int = setting(integer(0, 64), "number of I/O threads", default=0)
    realtime: Realtime | None = setting(
        _OrOff(Realtime, "turn real-time scheduling off"),
        "real-time scheduling of vCPUs; false turns it off",
        default_factory=Realtime,
    )
    model: str = setting(
        CPU_MODEL, "host-passthrough, host-model, or a named CPU model", default="host-passthrough"
    )
    topology: Topology | None = setting(
        optional(nested(Topology)), "default: 1 socket, one core per vCPU, 1 thread", default=None
    )
    features: dict[str, str] = setting(
        MappingOf(
            _feature_name,
            choice("require", "optional", "disable"),
            {"pattern": json_pattern(_CPU_FEATURE)},
        ),
        "CPU feature name -> require, optional or disable; host-passthrough CPUs require "
        "tsc-deadline unless it is listed here",
        default_factory=dict,
    )
    share_with: tuple[str, ...] = setting(
        list_of(NAME),
        "names of domains that may pin the same host CPUs because they never run at the "
        "same time (either side saying so is enough): define, check, tune, auto placement "
        "and status allow it, and the hook refuses to start one while another holds its "
        "realtime CPUs",
        default=(),
    )


@model
class Numa(Model):
    """Host NUMA placement of the guest's memory."""

    node: int | None = setting(
        optional(integer(0, MAX_NUMA_NODE)), "host NUMA node id", default=None
    )


@model
class MemoryBacking(Model):
    """How guest RAM is backed on the host."""

    hugepages: str = setting(choice("2M", "1G", "none"), "hugepage size, or none", default="1G")
    locked: bool = setting(boolean(), "lock guest memory in host RAM", default=True)
    nosharepages: bool = setting(boolean(), "no KSM page sharing", default=True)


@model
class Disk(Model):
    """A disk image file or block device."""

    source: str = setting(host_path(), "absolute path of an image file or a block device")
    bus: str = setting(choice("virtio", "sata", "scsi", "ide"), default="virtio")
    format: str | None = setting(
        optional(choice("raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc", "qed")),
        "default: qcow2 for *.qcow2 files, else raw",
        default=None,
    )
    readonly: bool = setting(boolean(), default=False)


@model
class Network(Model):
    """A NIC on a host bridge or a libvirt network (exactly one of the two)."""

    bridge: str | None = setting(optional(BRIDGE_NAME), "a host bridge", default=None)
    network: str | None = setting(optional(text()), "a libvirt network", default=None)
    model: str = setting(choice("virtio", "e1000e", "e1000", "rtl8139"), default="virtio")
    mac: str | None = setting(optional(MAC_ADDRESS), default=None)


@model
class Hostdev(Model):
    """A PCI device passed through with VFIO."""

    address: str = setting(PCI_ADDRESS, "DDDD:BB:SS.F or BB:SS.F")
    managed: bool = setting(
        boolean(), "libvirt binds the device to vfio-pci at start and back after", default=True
    )


class _HostdevItem(Parser[Hostdev]):
    """A hostdev: a PCI address string, or a mapping {address, managed}."""

    def parse(self, value: Any, path: KeyPath, errors: Errors) -> Hostdev:
        if isinstance(value, str):
            return Hostdev(address=_pci(value))
        return Hostdev.parse(value, path, errors)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [PCI_ADDRESS.schema(), Hostdev.json_schema()]}

    def dump(self, value: Hostdev) -> Any:
        return value.dump()


@model
class Devices(Model):
    """Disks, NICs and PCI passthrough devices."""

    disks: tuple[Disk, ...] = setting(list_of(nested(Disk)), default=())
    networks: tuple[Network, ...] = setting(list_of(nested(Network)), default=())
    hostdevs: tuple[Hostdev, ...] = setting(
        list_of(_HostdevItem()), "PCI addresses, or mappings {address, managed}", default=()
    )


@model
class Isolation(Model):
    """Host isolation that the rtlibvirt hook applies while the VM runs."""

    irqs: bool = setting(boolean(), "move movable host IRQs off the VM's CPUs", default=True)
    workqueues: bool = setting(
        boolean(),
        "take the VM's CPUs out of the unbound workqueue cpumasks (the global one and "
        "each sysfs workqueue's own)",
        default=True,
    )
    machine_check_polling: bool | None = setting(
        optional(boolean()),
        "false: machine-check polling off (interval 0) while the VM runs; unset: left alone",
        default=None,
    )
    cache_ways: int = setting(
        integer(0, 64), "exclusive L3 cache ways (resctrl); 0 = none", default=0
    )
    tasks: bool = setting(
        boolean(),
        "move host processes and movable kernel threads off the VM's CPUs (cgroup cpusets "
        "where the host has them, else each thread's affinity)",
        default=True,
    )
    strict: bool = setting(
        boolean(), "refuse to start when an isolation step cannot be applied", default=False
    )


@model
class GuestKthreads(Model):
    """The guest's per-CPU kernel threads, raised at boot (TuneD's realtime-virtual-guest)."""

    ksoftirqd: int = setting(
        integer(0, 98), "SCHED_FIFO priority of ksoftirqd/N (softirqs); 0: left alone", default=2
    )
    ktimers: int = setting(
        integer(0, 98),
        "SCHED_FIFO priority of ktimers/N (timer softirqs, PREEMPT_RT); 0: left alone",
        default=3,
    )
    rcuc: int = setting(
        integer(0, 98),
        "SCHED_FIFO priority of rcuc/N (RCU callbacks, PREEMPT_RT); 0: left alone",
        default=4,
    )
    rcub: int = setting(
        integer(0, 98),
        "SCHED_FIFO priority of rcub/N (RCU priority boosting, PREEMPT_RT); 0: left alone",
        default=4,
    )


@model
class Guest(Model):
    """Inside the guest: what ``rtlibvirt guest-prep`` adds to the guest half of the recipe."""

    extra_kernel_args: tuple[str, ...] = setting(
        list_of(KERNEL_ARG),
        "more guest kernel arguments; one with the name of a planned one replaces it",
        default=(),
    )
    disable_services: tuple[str, ...] = setting(
        list_of(SERVICE_NAME),
        "guest systemd units to stop and disable, as `systemctl disable` does, e.g. irqbalance",
        default=(),
    )
    mask_services: tuple[str, ...] = setting(
        list_of(SERVICE_NAME), "guest systemd units to stop and mask (`systemctl mask`)", default=()
    )
    idle_poll: bool = setting(
        boolean(),
        "idle=poll in the guest: idle vCPUs poll instead of halting (no wake-up exit, but "
        "each idle vCPU keeps its host CPU busy)",
        default=False,
    )
    kthreads: GuestKthreads = setting(
        nested(GuestKthreads),
        "priorities of the guest's per-CPU kernel threads, set at each boot",
        default_factory=GuestKthreads,
    )


@model
class VmSpec(Model):
    """A real-time VM: the contents of ``vm.yaml``."""

    name: str = setting(NAME, "domain name")
    memory: int = setting(MEMORY, "guest RAM: a size with a unit (512MiB, 2GiB, 1G) or MiB")
    vcpus: int = setting(integer(1, MAX_VCPUS), "number of vCPUs")
    cpu: Cpu = setting(nested(Cpu), "vCPU placement, scheduling and model")
    numa: Numa = setting(nested(Numa), "host NUMA placement", default_factory=Numa)
    memory_backing: MemoryBacking = setting(
        nested(MemoryBacking), "how guest RAM is backed", default_factory=MemoryBacking
    )
    machine: str = setting(choice("q35", "pc"), "QEMU machine type", default="q35")
    firmware: str = setting(choice("bios", "efi"), "guest firmware", default="bios")
    virt_type: str = setting(
        choice("kvm", "qemu"),
        "libvirt's domain type: kvm, or qemu (TCG: QEMU emulates the CPU in software, for "
        "hosts without KVM; a trial, not real time; host-passthrough becomes `maximum`)",
        default="kvm",
    )
    devices: Devices = setting(nested(Devices), default_factory=Devices)
    isolation: Isolation = setting(
        nested(Isolation), "what the hook isolates while the VM runs", default_factory=Isolation
    )
    guest: Guest = setting(
        nested(Guest), "inside the guest: `rtlibvirt guest-prep`", default_factory=Guest
    )

    # ---- derived views, used by render, the hook and checks -------------

    @property
    def realtime_vcpus(self) -> tuple[int, ...]:
        """vCPU ids with real-time scheduling (empty when it is off)."""
        rt = self.cpu.realtime
        if rt is None:
            return ()
        return rt.vcpus if rt.vcpus is not None else tuple(range(self.vcpus))

    @property
    def realtime_host_cpus(self) -> frozenset[int]:
        """ "The VM's CPUs": the host CPUs its realtime vCPUs are pinned to.

        Empty while ``cpu.pinning`` is ``auto`` (not yet placed).
        """
        pinning = self.cpu.pinning
        if not isinstance(pinning, tuple):
            return frozenset()
        return frozenset(pinning[v] for v in self.realtime_vcpus if v < len(pinning))

    @property
    def needs_placement(self) -> bool:
        """True while ``cpu.pinning`` or ``cpu.emulator`` is ``auto``."""
        return AUTO in (self.cpu.pinning, self.cpu.emulator)

    def placed(self, pinning: tuple[int, ...], emulator: tuple[int, ...]) -> VmSpec:
        """This spec with host CPUs chosen for ``auto`` (see ``placement``)."""
        return self.replace(cpu=self.cpu.replace(pinning=pinning, emulator=emulator))

    @property
    def topology(self) -> Topology:
        return self.cpu.topology or Topology(sockets=1, cores=self.vcpus, threads=1)

    @property
    def hugepage_kib(self) -> int | None:
        return {"2M": 2 * units.MIB, "1G": units.GIB, "none": None}[self.memory_backing.hugepages]

    def normalized(self) -> dict[str, Any]:
        """Every default filled in; JSON-ready and itself a valid vm.yaml."""
        data = self.dump()
        if self.cpu.realtime is None:
            data["cpu"]["realtime"] = False
        else:
            data["cpu"]["realtime"]["vcpus"] = list(self.realtime_vcpus)
        data["cpu"]["topology"] = self.topology.dump()
        for disk, raw in zip(self.devices.disks, data["devices"]["disks"], strict=True):
            raw["format"] = disk_format(disk)
        if self.guest == Guest():
            del data["guest"]  # domain metadata stays as before the section existed
        return data


MAX_RT_PRIORITY = 99
# cpu.realtime.kernel_threads key -> the threads it names (for messages)
KERNEL_THREAD_NAMES = {
    "ksoftirqd": "ksoftirqd/N",
    "ktimers": "ktimers/N (ktimersoftd/N)",
    "rcu": "rcuc/N and rcub/N",
}


def kernel_thread_priorities(vcpu_priority: int, offsets: KernelThreads) -> dict[str, int]:
    """Kind of kernel thread -> the SCHED_FIFO priority it needs above vCPUs at this priority
    (the hook's, and the spec check's; may exceed 99, which the check refuses)."""
    return {key: vcpu_priority + value for key, value in offsets.dump().items()}


def disk_format(disk: Disk) -> str:
    """The disk's format, from the spec or else from the file extension."""
    if disk.format is not None:
        return disk.format
    return "qcow2" if disk.source.lower().endswith(".qcow2") else "raw"


# --------------------------------------------------------------------------
# Loading and error reporting
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """A valid spec, the warnings found while checking it, and where it came from."""

    spec: VmSpec
    warnings: tuple[Problem, ...]
    source: str


def load_spec(path: str | Path) -> Loaded:
    """Read, validate and normalize a vm.yaml file; raise SpecError listing every problem."""
    from rtlibvirt.config.loader import load  # ruamel.yaml: only when a file is read

    return validate_document(load(path))


def validate_document(doc: Document) -> Loaded:
    """The spec, or SpecError with every problem: the shape's, and those of the rules that
    can be judged from the values that are valid (one run, not one round per kind)."""
    spec, problems = parse_model(doc, VmSpec, _missing_hint)
    check = Checker(doc)
    if spec is not INVALID:
        _check_semantics(spec, check)
        if _known(spec.guest):
            _check_guest(spec.guest, check)
    if problems:
        raise SpecError(doc.source, by_line([*problems, *check.errors]))
    check.raise_errors()
    return Loaded(spec=spec, warnings=tuple(check.warnings), source=doc.source)


def validate_data(data: Mapping[str, Any], source: str = "<spec>") -> VmSpec:
    """Validate already-parsed data (e.g. the spec stored in a domain's metadata)."""
    return validate_document(Document(source=source, data=dict(data))).spec


def json_schema() -> dict[str, Any]:
    """The JSON Schema of vm.yaml, for editors (``rtlibvirt schema``)."""
    schema = VmSpec.json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://rtlibvirt.org/schema/vm.json",
        "title": "rtlibvirt VM spec (vm.yaml)",
        **schema,
    }


def _missing_hint(path: KeyPath) -> str | None:
    hints: dict[KeyPath, str] = {
        ("name",): "add e.g. `name: plc`",
        ("memory",): "add e.g. `memory: 2GiB`",
        ("vcpus",): "add e.g. `vcpus: 4`",
        ("cpu",): "add a `cpu:` section with `pinning` and `emulator` (see examples/plc.yaml)",
        ("cpu", "pinning"): "list the host CPU of each vCPU, e.g. `pinning: [2, 3, 4, 5]`",
        ("cpu", "emulator"): "name housekeeping host CPUs for QEMU's own threads, "
        "e.g. `emulator: 0-1`",
    }
    if path[-1:] == ("source",):
        return "give the image path, e.g. `source: /var/lib/libvirt/images/plc.qcow2`"
    return hints.get(path)


def _known(*values: Any) -> bool:
    """None of ``values`` is INVALID (a value the shape check rejected)."""
    return all(value is not INVALID for value in values)


def _check_semantics(spec: VmSpec, check: Checker) -> None:
    """The rules that tie keys together."""
    error, warn = check.error, check.warn
    # ``spec`` may be partial (INVALID where the shape was wrong): each rule judges only
    # from valid values, so that one run reports every problem it can.
    cpu = spec.cpu
    cpu_ok = _known(cpu)
    n: int | None = spec.vcpus if _known(spec.vcpus) else None
    pinning = cpu.pinning if cpu_ok and isinstance(cpu.pinning, tuple) else None
    emulator = cpu.emulator if cpu_ok and isinstance(cpu.emulator, tuple) else None
    rt = cpu.realtime if cpu_ok else INVALID
    rt_vcpus: tuple[int, ...] | None = None  # None: cannot be told
    if rt is None:
        rt_vcpus = ()
    elif _known(rt) and _known(rt.vcpus):
        if rt.vcpus is not None:
            rt_vcpus = rt.vcpus
        elif n is not None:
            rt_vcpus = tuple(range(n))

    # cpu.pinning: one host CPU per vCPU, each used once.
    if pinning is not None and n is not None and len(pinning) != n:
        error(
            ("cpu", "pinning"),
            f"lists {len(pinning)} host CPU{'s' if len(pinning) != 1 else ''} but vcpus is {n}",
            f"give exactly one host CPU per vCPU ({n} in all), in vCPU order",
        )
    first_vcpu: dict[int, int] = {}
    for vcpu, host in enumerate(pinning or ()):
        if host in first_vcpu:
            error(
                check.item(("cpu", "pinning"), vcpu),
                f"host CPU {host} is used twice (vCPU {first_vcpu[host]} and vCPU {vcpu})",
                "give each vCPU a host CPU of its own",
            )
        else:
            first_vcpu[host] = vcpu

    if emulator is not None and not emulator:
        error(("cpu", "emulator"), "must name at least one host CPU", "or write `auto`")

    # cpu.realtime.vcpus: existing vCPUs only.
    if _known(rt) and rt is not None and _known(rt.vcpus) and rt.vcpus is not None:
        if not rt.vcpus:
            error(
                ("cpu", "realtime", "vcpus"),
                "is empty",
                "list the realtime vCPUs, or set `cpu.realtime: false` to turn it off",
            )
        for index, vcpu in enumerate(rt.vcpus):
            if n is not None and vcpu >= n:
                error(
                    check.item(("cpu", "realtime", "vcpus"), index),
                    f"vCPU {vcpu} does not exist: the VM has {n} vCPU{'s' if n != 1 else ''} "
                    f"(0-{n - 1})",
                    "realtime vCPU ids count from 0 and must be below `vcpus`",
                )

    # cpu.realtime.priority: room above it for the kernel threads the hook raises.
    if (
        _known(rt)
        and rt is not None
        and _known(rt.kernel_threads)
        and rt.kernel_threads is not None
        and _known(rt.priority, *rt.kernel_threads.dump().values())
    ):
        needed = kernel_thread_priorities(rt.priority, rt.kernel_threads)
        kind, top = max(needed.items(), key=lambda item: item[1])
        if top > MAX_RT_PRIORITY:
            error(
                ("cpu", "realtime", "priority"),
                f"{rt.priority} leaves no room above the vCPUs: the hook runs the kernel "
                f"threads of their CPUs above them, and {KERNEL_THREAD_NAMES[kind]} would "
                f"need SCHED_FIFO {top}, past the highest real-time priority "
                f"{MAX_RT_PRIORITY} (a vCPU that never yields starves them)",
                f"use a priority of at most {rt.priority - top + MAX_RT_PRIORITY}, lower "
                "`cpu.realtime.kernel_threads`, or set it to false to leave the kernel "
                "threads alone",
            )

    # cpu.emulator must not share a CPU with a realtime vCPU (pinning is in vCPU order,
    # so a list of the wrong length still tells where the first vCPUs go).
    if pinning is not None and emulator is not None and rt_vcpus is not None:
        for vcpu in rt_vcpus:
            if vcpu < len(pinning) and pinning[vcpu] in emulator:
                host = pinning[vcpu]
                error(
                    ("cpu", "emulator"),
                    f"shares host CPU {host} with realtime vCPU {vcpu}: a SCHED_FIFO vCPU on "
                    "the emulator's CPU starves QEMU's own threads and the guest never boots",
                    "pin the emulator to housekeeping CPUs that no realtime vCPU uses",
                )
    if n is not None and (pinning is None or len(pinning) == n):  # noqa: SIM102
        if rt_vcpus and set(rt_vcpus) == set(range(n)):
            warn(
                ("cpu", "realtime"),
                "every vCPU is real-time: a Linux guest needs one non-realtime vCPU for "
                "housekeeping and I/O (libvirt's kvm-realtime guide)",
                f"set `cpu.realtime.vcpus: {format_cpulist(range(1, n))}` to keep vCPU 0 "
                "non-realtime"
                if n > 1
                else "add a second vCPU for housekeeping",
            )

    # cpu.share_with: other domains, each once.
    share_with = cpu.share_with if cpu_ok and _known(cpu.share_with) else ()
    if len(share_with) > MAX_SHARE_WITH:
        error(("cpu", "share_with"), f"names {len(share_with)} domains: at most {MAX_SHARE_WITH}")
    seen_names: set[str] = set()
    for index, other in enumerate(share_with):
        if other == spec.name:
            error(
                check.item(("cpu", "share_with"), index),
                f"{other!r} is this VM itself",
                "list the other domains it may share host CPUs with",
            )
        elif other in seen_names:
            error(check.item(("cpu", "share_with"), index), f"{other!r} is listed twice")
        seen_names.add(other)

    if spec.virt_type == "qemu":
        warn(
            ("virt_type",),
            "qemu (TCG) emulates the guest CPU in software: the VM runs, but its latency "
            "says nothing about real time",
            "use `virt_type: kvm` on a host with KVM (/dev/kvm)",
        )

    # cpu.topology: product equals vcpus.
    t = cpu.topology if cpu_ok else None
    if t is not None and _known(t) and n is not None and _known(t.sockets, t.cores, t.threads):
        product = t.sockets * t.cores * t.threads
        if product != n:
            error(
                ("cpu", "topology"),
                f"sockets*cores*threads = {t.sockets}*{t.cores}*{t.threads} = {product}, "
                f"but vcpus is {n}",
                "make the product equal the number of vCPUs",
            )

    # memory: a whole number of hugepages.
    backing_ok = _known(spec.memory_backing) and _known(spec.memory_backing.hugepages)
    page = spec.hugepage_kib if backing_ok else None
    if page is not None and _known(spec.memory) and spec.memory % page:
        size = spec.memory_backing.hugepages
        error(
            ("memory",),
            f"{units.format_size_kib(spec.memory)} is not a multiple of the {size} hugepage size",
            f"use a multiple of {units.format_size_kib(page)}"
            + (", or `memory_backing.hugepages: 2M`" if size == "1G" else ""),
        )

    # devices.
    devices = spec.devices if _known(spec.devices) else Devices()
    disks = devices.disks if _known(devices.disks) else ()
    networks = devices.networks if _known(devices.networks) else ()
    hostdevs = devices.hostdevs if _known(devices.hostdevs) else ()
    for index, disk in enumerate(disks):
        path = ("devices", "disks", index)
        if disk.readonly and disk.bus in ("sata", "ide"):
            error(
                (*path, "readonly"),
                f"QEMU has no read-only {disk.bus.upper()} hard disks",
                "use `bus: virtio` or `bus: scsi` for a read-only disk",
            )
        if disk.bus == "ide" and spec.machine == "q35":
            error(
                (*path, "bus"),
                "the q35 machine has no IDE bus",
                "use `bus: sata` (or virtio), or `machine: pc`",
            )
    macs: dict[str, int] = {}
    for index, nic in enumerate(networks):
        path = ("devices", "networks", index)
        if (nic.bridge is None) == (nic.network is None):
            error(
                path,
                "needs exactly one of `bridge` or `network`"
                + (", not both" if nic.bridge is not None else ""),
                "e.g. `bridge: br0` for a host bridge, or `network: default` for a libvirt network",
            )
        if nic.mac is not None:
            if nic.mac in macs:
                error((*path, "mac"), f"MAC {nic.mac} is already used by networks[{macs[nic.mac]}]")
            macs[nic.mac] = index
    addresses: dict[str, int] = {}
    for index, dev in enumerate(hostdevs):
        if dev.address in addresses:
            error(
                ("devices", "hostdevs", index),
                f"PCI device {dev.address} is listed twice "
                f"(also hostdevs[{addresses[dev.address]}])",
                "pass each device once",
            )
        else:
            addresses[dev.address] = index


def _check_guest(guest: Guest, check: Checker) -> None:
    """The ``guest:`` section: arguments guest-prep derives, repeats, the command line's room."""
    keys: dict[str, int] = {}
    base = ("guest", "extra_kernel_args")
    # a list the shape check rejected is INVALID: judge only the valid ones
    args = guest.extra_kernel_args if _known(guest.extra_kernel_args) else ()
    for index, arg in enumerate(args):
        path = check.item(base, index)
        key = arg.split("=", 1)[0]
        if key in ISOLATION_ARGS:
            check.error(
                path,
                f"{short(arg)}: guest-prep derives {key} from cpu.realtime.vcpus; given here "
                "it would bypass the rules that keep a vCPU for the guest's own work",
                "set `cpu.realtime.vcpus` instead, and remove this argument",
            )
        elif key in keys and key not in REPEATABLE_ARGS:
            check.error(
                path,
                f"{key} is given twice (also guest.extra_kernel_args[{keys[key]}])",
                "give each kernel argument once",
            )
        keys.setdefault(key, index)
    total = len(" ".join(args))
    if total > EXTRA_ARGS_MAX:
        check.error(
            base,
            f"the extra arguments take {total} bytes: at most {EXTRA_ARGS_MAX}, so that the "
            "guest's command line stays within the kernel's 2048 bytes",
            "give fewer or shorter arguments",
        )
    disabled = set(guest.disable_services if _known(guest.disable_services) else ())
    for index, unit in enumerate(guest.mask_services if _known(guest.mask_services) else ()):
        if unit in disabled:
            check.error(
                check.item(("guest", "mask_services"), index),
                f"{unit} is in both disable_services and mask_services",
                "a masked unit is disabled too: list it in mask_services only",
            )

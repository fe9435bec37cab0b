"""VmSpec -> libvirt domain XML. Never imports libvirt.

Every decision (which element, which attribute value) is made here, in
:func:`context`; the jinja2 templates in ``xml_templates/`` only lay it out.
Autoescaping is on, and the result is parsed back with lxml before it leaves,
so the output is always well-formed and never carries markup from the spec.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from functools import cache
from typing import Any

import jinja2
from lxml import etree

from rtlibvirt import __version__
from rtlibvirt.config import units
from rtlibvirt.config.vm import AUTO, VmSpec, disk_format
from rtlibvirt.domain import metadata
from rtlibvirt.errors import InputError
from rtlibvirt.kernel.cpuset import format_cpulist

# libvirt's memlock limit for VFIO guests is RAM + 1 GiB (qemuDomainGetMemLockLimitBytes);
# the same margin is used as the hard_limit that libvirt advises next to <locked/>.
LOCKED_OVERHEAD_KIB = units.GIB
# The guest's timer: without the TSC-deadline mode of its local APIC a guest
# falls back to the APIC's one-shot mode (an MSR write and a divider, then
# the expiry computed from the bus clock: microseconds worse). libvirt's
# kvm-realtime guide and SEAPATH require it; cpu.features may say otherwise.
TSC_DEADLINE = "tsc-deadline"


def cpu_features(features: dict[str, str], mode: str | None) -> dict[str, str]:
    """The ``<feature>`` policies of a CPU in ``mode``: the spec's ``cpu.features``, and
    tsc-deadline required for host-passthrough unless the spec names it (``optional``
    or ``disable`` opt out): the guest then never silently loses its deadline timer."""
    if mode == "host-passthrough" and TSC_DEADLINE not in features:
        return {**features, TSC_DEADLINE: "require"}
    return dict(features)


_TARGET_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "ide": "hd"}


class RenderError(RuntimeError):
    """The template produced XML that does not parse: a bug in rtlibvirt."""


class Identity:
    """What an existing definition keeps across a redefine: UUID and NIC MACs.

    A plain class (not a dataclass, which compiles its methods at every start).
    """

    __slots__ = ("macs", "uuid")

    def __init__(self, uuid: str | None = None, macs: tuple[str | None, ...] = ()) -> None:
        self.uuid = uuid
        self.macs = macs

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and (self.uuid, self.macs) == (other.uuid, other.macs)

    def __hash__(self) -> int:
        return hash((self.uuid, self.macs))

    def __repr__(self) -> str:
        return f"Identity(uuid={self.uuid!r}, macs={self.macs!r})"


def disk_target(bus: str, index: int) -> str:
    """Linux-style disk names: vda..vdz, vdaa, ... (``index`` counts per prefix)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return _TARGET_PREFIX[bus] + letters


def context(spec: VmSpec, identity: Identity | None = None) -> dict[str, Any]:
    """Everything the templates need, already decided."""
    identity = identity or Identity()
    cpu = spec.cpu
    pinning, emulator_cpus = cpu.pinning, cpu.emulator
    if not isinstance(pinning, tuple) or not isinstance(emulator_cpus, tuple):
        which = "cpu.pinning" if pinning == AUTO else "cpu.emulator"
        raise InputError(
            f"{which} is `auto`: choosing host CPUs needs the libvirt host, which `render` "
            "does not read",
            "`rtlibvirt define VM.yaml --dry-run` shows the CPUs it would choose, "
            "or write the CPUs in VM.yaml",
        )
    rt_vcpus = spec.realtime_vcpus
    iothread_ids = list(range(1, cpu.iothreads + 1))

    emulator = set(emulator_cpus)
    dedicated = len(set(pinning)) == len(pinning) and not emulator & set(pinning)
    cpu_mode = cpu.model if cpu.model in ("host-passthrough", "host-model") else "custom"
    tcg = spec.virt_type == "qemu"
    if tcg and cpu_mode == "host-passthrough":
        cpu_mode = "maximum"  # TCG has no host CPU to pass through: every feature it emulates

    counters: dict[str, int] = {}
    disks = []
    virtio_disks = 0
    for disk in spec.devices.disks:
        prefix = _TARGET_PREFIX[disk.bus]
        index = counters.get(prefix, 0)
        counters[prefix] = index + 1
        iothread = None
        if disk.bus == "virtio" and iothread_ids:
            iothread = iothread_ids[virtio_disks % len(iothread_ids)]
            virtio_disks += 1
        block = disk.source.startswith("/dev/")
        disks.append(
            {
                "type": "block" if block else "file",
                "source_attr": "dev" if block else "file",
                "source": disk.source,
                "format": disk_format(disk),
                "bus": disk.bus,
                "target": disk_target(disk.bus, index),
                "readonly": disk.readonly,
                "iothread": iothread,
            }
        )
    scsi = any(d.bus == "scsi" for d in spec.devices.disks)

    interfaces = []
    for index, nic in enumerate(spec.devices.networks):
        mac = nic.mac
        if mac is None and index < len(identity.macs):
            mac = identity.macs[index]
        interfaces.append(
            {
                "type": "bridge" if nic.bridge is not None else "network",
                "source": nic.bridge if nic.bridge is not None else nic.network,
                "model": nic.model,
                "mac": mac,
            }
        )

    hostdevs = []
    for dev in spec.devices.hostdevs:
        domain, bus, slot_function = dev.address.split(":")
        slot, function = slot_function.split(".")
        hostdevs.append(
            {
                "managed": "yes" if dev.managed else "no",
                "domain": f"0x{domain}",
                "bus": f"0x{bus}",
                "slot": f"0x{slot}",
                "function": f"0x{function}",
            }
        )

    numa_node = spec.numa.node
    topology = spec.topology
    return {
        "name": spec.name,
        "uuid": identity.uuid,
        "meta": {
            "prefix": metadata.PREFIX,
            "namespace": metadata.NAMESPACE,
            "schema": metadata.SCHEMA_VERSION,
            "version": __version__,
        },
        "memory_kib": spec.memory,
        "hard_limit_kib": (
            spec.memory + LOCKED_OVERHEAD_KIB if spec.memory_backing.locked else None
        ),
        "hugepage_kib": spec.hugepage_kib,
        # The hugepage nodeset names *guest* NUMA cells: with numa.node the guest
        # has one cell (0), tied to the host node by <numatune><memnode>.
        "hugepage_nodeset": 0 if numa_node is not None else None,
        "locked": spec.memory_backing.locked,
        "nosharepages": spec.memory_backing.nosharepages,
        "vcpus": spec.vcpus,
        "iothreads": cpu.iothreads,
        "iothread_ids": iothread_ids,
        "vcpupins": [{"vcpu": v, "cpuset": host} for v, host in enumerate(pinning)],
        "emulator_cpuset": format_cpulist(emulator_cpus),
        "vcpusched": (
            {
                "vcpus": format_cpulist(rt_vcpus),
                "scheduler": cpu.realtime.policy,
                "priority": cpu.realtime.priority,
            }
            if cpu.realtime is not None and rt_vcpus
            else None
        ),
        "numa_node": numa_node,
        "machine": spec.machine,
        "firmware": spec.firmware,
        # KVM_HINTS_REALTIME: the guest may assume its vCPUs never share a host CPU.
        # (a KVM feature: TCG has none)
        "hint_dedicated": cpu_mode == "host-passthrough" and dedicated and not tcg,
        "virt_type": spec.virt_type,
        "cpu": {
            "mode": cpu_mode,
            "model": cpu.model,
            "topology": {
                "sockets": topology.sockets,
                "cores": topology.cores,
                "threads": topology.threads,
            },
            "features": [
                {"name": name, "policy": policy}
                for name, policy in sorted(cpu_features(cpu.features, cpu_mode).items())
            ],
            "numa_cell": (
                {"cpus": format_cpulist(range(spec.vcpus)), "memory_kib": spec.memory}
                if numa_node is not None
                else None
            ),
        },
        "disks": disks,
        "scsi_controller": {"iothread": iothread_ids[0] if iothread_ids else None}
        if scsi
        else None,
        "interfaces": interfaces,
        "hostdevs": hostdevs,
    }


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept between runs (keyed by the template's checksum)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = os.path.join(base, "rtlibvirt", f"jinja2-{__version__}")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError:
        return None  # a read-only home: compile every time
    if not os.access(directory, os.W_OK):
        return None
    return jinja2.FileSystemBytecodeCache(directory)


def _template_dir() -> str:
    """The folder of the templates: the ``rtlibvirt.xml_templates`` package (package data).

    Found through the package's ``__path__`` rather than importlib.resources,
    whose import (zipfile and friends) cost every render ~1.5 ms.
    """
    paths = list(getattr(importlib.import_module("rtlibvirt.xml_templates"), "__path__", ()))
    for entry in paths:
        if os.path.isfile(os.path.join(entry, "domain.xml.j2")):
            return str(entry)
    raise RenderError(f"the domain templates are missing from {paths}")  # pragma: no cover


@cache
def _environment() -> jinja2.Environment:
    directory = _template_dir()

    def load(name: str) -> tuple[str, str | None, Callable[[], bool]]:
        with open(os.path.join(directory, name), encoding="utf-8") as handle:
            return handle.read(), None, lambda: True

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        bytecode_cache=_bytecode_cache(),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_tree(spec: VmSpec, identity: Identity | None = None) -> etree._Element:
    """The domain as a parsed lxml tree, with the spec stored in its metadata."""
    text = _environment().get_template("domain.xml.j2").render(context(spec, identity))
    try:
        root = etree.fromstring(text.encode("utf-8"))
    except etree.XMLSyntaxError as exc:  # pragma: no cover - guarded by tests
        raise RenderError(f"the domain template produced malformed XML: {exc}") from exc
    element = root.find(f"metadata/{metadata.TAG}")
    if element is None:  # pragma: no cover - the template always has it
        raise RenderError("the domain template lost the rtlibvirt metadata element")
    element.text = metadata.spec_text(spec.normalized(), indent="      ")
    return root


def render(spec: VmSpec, identity: Identity | None = None) -> str:
    """The domain XML of ``spec`` as text."""
    return etree.tostring(render_tree(spec, identity), encoding="unicode") + "\n"

"""The host as the checks, placement and ``status`` see it.

Two sources, each for what it knows best:

- **libvirt** (works for any URI, remote too): the CPU and NUMA topology
  (``getCapabilities``: cells, CPUs, SMT siblings, which CPUs are online) and
  every domain defined on the host with its pinning. libvirt's test driver
  reports no NUMA cells for a custom host file; there the topology comes from
  its node info (nodes, sockets, cores, threads), numbered as Linux numbers an
  Intel host: first thread of every core, then the second threads
  (:func:`topology_from_nodeinfo`).
- **the kernel's files** (:class:`~rtlibvirt.kernel.fs.HostFS`), only when the
  libvirt host is this machine: isolated and nohz_full CPUs, free hugepages
  per node, PCI devices (IOMMU groups, driver bindings, NUMA node), cgroups and
  libvirt's own ``qemu.conf``. For a remote URI or libvirt's test driver these
  are unknown (None) and the checks that need them say they were skipped;
  ``RTLIBVIRT_HOST_ROOT`` points them at a fake tree in tests.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import field
from functools import cached_property
from urllib.parse import urlsplit

from rtlibvirt.domain.facts import DomainFacts, DomainXMLError, facts, merge_live
from rtlibvirt.errors import HostError, LibvirtError
from rtlibvirt.kernel import rtgroup
from rtlibvirt.kernel.cpuset import CpuListError, format_cpulist, parse_cpulist
from rtlibvirt.kernel.fs import HostFS
from rtlibvirt.kernel.rtgroup import RtGroupSched
from rtlibvirt.records import frozen_record
from rtlibvirt.virt import connection as virt

HOST_ROOT_ENV = "RTLIBVIRT_HOST_ROOT"
PCI_DIR = "/sys/bus/pci/devices"
NODE_DIR = "/sys/devices/system/node"


# HostCpu, Topology and PciDevice are plain classes, not dataclasses: every
# command that reads the host imports this module, and dataclasses compile their
# methods at import (0.3 ms a class); a 512-CPU host makes 512 HostCpus.
# HostModel is a frozen_record (rtlibvirt/records.py) for the same reason.


class HostCpu:
    __slots__ = ("id", "node", "online", "siblings")

    def __init__(self, id: int, node: int, siblings: frozenset[int], online: bool = True) -> None:
        self.id = id
        self.node = node
        self.siblings = siblings  # SMT threads of its core, itself included
        self.online = online

    def _key(self) -> tuple[int, int, frozenset[int], bool]:
        return (self.id, self.node, self.siblings, self.online)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostCpu) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"HostCpu(id={self.id}, node={self.node}, siblings={sorted(self.siblings)}, "
            f"online={self.online})"
        )


class Topology:
    """CPUs, NUMA nodes and SMT siblings of the host. Read-only."""

    def __init__(self, cpus: Mapping[int, HostCpu], source: str) -> None:
        self.cpus = cpus
        self.source = source  # where it came from, for messages

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Topology) and (self.cpus, self.source) == (
            other.cpus,
            other.source,
        )

    __hash__ = None  # type: ignore[assignment]  # holds a mapping, like the dataclass did

    def __repr__(self) -> str:
        return f"Topology({self.describe()}, from {self.source})"

    @cached_property
    def nodes(self) -> dict[int, frozenset[int]]:
        nodes: dict[int, set[int]] = {}
        for cpu in self.cpus.values():
            nodes.setdefault(cpu.node, set()).add(cpu.id)
        return {node: frozenset(cpus) for node, cpus in sorted(nodes.items())}

    @cached_property
    def online(self) -> frozenset[int]:
        return frozenset(c.id for c in self.cpus.values() if c.online)

    @cached_property
    def all(self) -> frozenset[int]:
        return frozenset(self.cpus)

    @cached_property
    def smt(self) -> bool:
        return any(len(c.siblings) > 1 for c in self.cpus.values())

    def siblings(self, cpu: int) -> frozenset[int]:
        """The CPUs of ``cpu``'s core (itself included)."""
        info = self.cpus.get(cpu)
        return info.siblings if info is not None else frozenset({cpu})

    def node_of(self, cpu: int) -> int | None:
        info = self.cpus.get(cpu)
        return info.node if info is not None else None

    def nodes_of(self, cpus: Iterable[int]) -> frozenset[int]:
        return frozenset(n for n in (self.node_of(c) for c in cpus) if n is not None)

    @cached_property
    def cores(self) -> dict[int, tuple[frozenset[int], ...]]:
        """node -> its cores (sibling sets), ordered by their lowest CPU."""
        result: dict[int, tuple[frozenset[int], ...]] = {}
        for node, cpus in self.nodes.items():
            seen: dict[frozenset[int], None] = {}
            for cpu in sorted(cpus):
                seen.setdefault(self.cpus[cpu].siblings & cpus, None)
            result[node] = tuple(seen)
        return result

    @cached_property
    def all_cores(self) -> tuple[frozenset[int], ...]:
        """Every core (sibling set), ordered by its lowest CPU."""
        seen: dict[frozenset[int], None] = {}
        for cpu in sorted(self.cpus):
            seen.setdefault(self.cpus[cpu].siblings, None)
        return tuple(seen)

    def cores_sorted_in(self, region: frozenset[int]) -> list[frozenset[int]]:
        """The cores that lie wholly inside ``region``, ordered by their lowest CPU."""
        return [core for core in self.all_cores if core <= region]

    def describe(self) -> str:
        n_nodes = len(self.nodes)
        threads = max((len(c.siblings) for c in self.cpus.values()), default=1)
        smt = f"{threads} threads per core" if threads > 1 else "no SMT"
        return (
            f"{len(self.cpus)} CPUs ({format_cpulist(self.cpus)}), "
            f"{n_nodes} NUMA node{'s' if n_nodes != 1 else ''}, {smt}"
        )


def topology_from_capabilities(xml: str) -> Topology | None:
    """The topology in a capabilities XML; None when it lists no NUMA cells."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise HostError(f"libvirt's capabilities XML is not well-formed: {exc}") from None
    cpus: dict[int, HostCpu] = {}
    for cell in root.findall("host/topology/cells/cell"):
        node = int(cell.get("id", "0"))
        for cpu in cell.findall("cpus/cpu"):
            cpu_id = int(cpu.get("id", "-1"))
            siblings_text = cpu.get("siblings")
            try:
                siblings = frozenset(parse_cpulist(siblings_text)) if siblings_text else None
            except CpuListError:
                siblings = None
            # libvirt omits the topology attributes of offline CPUs.
            online = cpu.get("socket_id") is not None
            cpus[cpu_id] = HostCpu(cpu_id, node, siblings or frozenset({cpu_id}), online)
    if not cpus:
        return None
    return Topology(cpus, "libvirt capabilities")


def topology_from_nodeinfo(info: list[int | str]) -> Topology:
    """A topology from virNodeGetInfo, for hosts whose capabilities list no cells.

    ``nodes * sockets * cores * threads`` CPUs, numbered as Linux numbers an
    Intel host: CPU ``t * C + c`` is thread ``t`` of core ``c`` (``C`` cores in
    all), node ``n`` holds cores ``n*S*K .. (n+1)*S*K - 1``; the first
    ``info[2]`` CPUs (libvirt's count of active CPUs) are online.
    """
    active, nodes, sockets, cores, threads = (int(x) for x in info[2:3] + info[4:8])
    nodes, sockets, cores, threads = (max(1, x) for x in (nodes, sockets, cores, threads))
    per_node = sockets * cores
    total_cores = nodes * per_node
    cpus: dict[int, HostCpu] = {}
    for core in range(total_cores):
        siblings = frozenset(t * total_cores + core for t in range(threads))
        for cpu in siblings:
            cpus[cpu] = HostCpu(cpu, core // per_node, siblings, cpu < active)
    return Topology(dict(sorted(cpus.items())), "libvirt node info (test driver)")


class PciDevice:
    """A PCI device as sysfs shows it."""

    __slots__ = ("address", "bridge", "driver", "group_members", "iommu_group", "numa_node")

    def __init__(
        self,
        address: str,
        driver: str | None,
        iommu_group: str | None,
        group_members: tuple[str, ...],
        numa_node: int | None,
        bridge: bool,
    ) -> None:
        self.address = address
        self.driver = driver
        self.iommu_group = iommu_group
        self.group_members = group_members
        self.numa_node = numa_node
        self.bridge = bridge

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PciDevice) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"PciDevice({self.address!r}, driver={self.driver!r}, group={self.iommu_group!r}, "
            f"node={self.numa_node}, bridge={self.bridge})"
        )


@frozen_record
class Network:
    """A libvirt network of the host, as ``virsh net-list --all`` shows it."""

    name: str
    active: bool
    autostart: bool


@frozen_record
class HostModel:
    """The libvirt host of one URI: its topology, its domains and, where they can be read,
    its kernel's files (isolated CPUs, hugepages, PCI devices, RT group scheduling)."""

    uri: str
    topology: Topology
    domains: tuple[DomainFacts, ...] = ()
    fs: HostFS | None = None
    isolated: frozenset[int] | None = None  # None: unknown
    nohz_full: frozenset[int] | None = None
    qemu: bool = False  # libvirt's QEMU driver: cgroups and qemu.conf apply
    # domains whose definitions could not be read: name -> why
    unreadable: dict[str, str] = field(default_factory=dict)
    # running domains with a new definition that waits for their next start
    pending: frozenset[str] = frozenset()
    # libvirt's networks by name; None: unknown (networks_unknown says why)
    networks: dict[str, Network] | None = None
    networks_unknown: str = "the host's libvirt networks were not read"

    @property
    def housekeeping(self) -> frozenset[int]:
        """Online CPUs that are not isolated (all of them when isolation is unknown)."""
        return self.topology.online - (self.isolated or frozenset())

    def others(self, name: str) -> tuple[DomainFacts, ...]:
        return tuple(d for d in self.domains if d.name != name)

    def domain(self, name: str) -> DomainFacts | None:
        return next((d for d in self.domains if d.name == name), None)

    # ---- the kernel's files; None when they cannot be read --------------------

    def free_hugepages(self, node: int, page_kib: int) -> int | None:
        """Free hugepages of ``page_kib`` on ``node``; None when unknown or unsupported."""
        if self.fs is None:
            return None
        text = self.fs.read_or(
            f"{NODE_DIR}/node{node}/hugepages/hugepages-{page_kib}kB/free_hugepages", ""
        )
        return int(text) if text.strip().isdigit() else None

    def pci(self, address: str) -> PciDevice | None:
        """The PCI device at ``address`` (``0000:03:00.0``); None when it does not exist."""
        if self.fs is None:
            return None
        base = f"{PCI_DIR}/{address}"
        if not self.fs.exists(base):
            return None
        driver = _link_name(self.fs, f"{base}/driver")
        group = _link_name(self.fs, f"{base}/iommu_group")
        members: tuple[str, ...] = ()
        if group is not None:
            members = tuple(self.fs.listdir(f"/sys/kernel/iommu_groups/{group}/devices"))
        node_text = self.fs.read_or(f"{base}/numa_node", "-1").strip()
        node = int(node_text) if node_text.lstrip("-").isdigit() else -1
        klass = self.fs.read_or(f"{base}/class", "").strip().lower()
        return PciDevice(
            address,
            driver,
            group,
            members,
            node if node >= 0 else None,
            bridge=klass.startswith("0x0604"),
        )

    def rt_group_sched(self) -> RtGroupSched | None:
        """RT group scheduling state; None when it is off or cannot be known."""
        if self.fs is None or not self.qemu:
            return None
        return rtgroup.probe(self.fs)


def _link_name(fs: HostFS, host_path: str) -> str | None:
    try:
        return os.path.basename(os.readlink(fs.path(host_path, follow=False)))
    except OSError:
        return None


def is_local(uri: str) -> bool:
    """True when ``uri`` names a hypervisor on this machine (not the test driver)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]
    return scheme not in ("test", "") and parts.hostname in (None, "", "localhost")


def host_fs(uri: str) -> HostFS | None:
    """The kernel files of the libvirt host at ``uri``, when they can be read from here."""
    root = os.environ.get(HOST_ROOT_ENV)
    if root:
        return HostFS(root)
    return HostFS("/") if is_local(uri) else None


# What a new definition of a running domain changes at its next start, for people.
_PENDING_PARTS = (
    "vcpus",
    "vcpupins",
    "emulatorpin",
    "iothreadpins",
    "sched",
    "memory_kib",
    "hugepages",
    "hugepage_kib",
    "locked",
    "memory_nodes",
    "memballoon",
    "metadata_text",
)


def _pending(definition: DomainFacts, live: DomainFacts) -> bool:
    """A running domain whose persistent definition differs from what runs, in what
    rtlibvirt sets: the new one waits for the next start."""
    return any(getattr(definition, part) != getattr(live, part) for part in _PENDING_PARTS)


def domain_facts(
    entries: Iterable[tuple[str, str, str | None]],
) -> tuple[tuple[DomainFacts, ...], dict[str, str], frozenset[str]]:
    """The domains' facts, the unreadable ones (name -> why), and the running domains
    whose new definition waits for their next start."""
    result: list[DomainFacts] = []
    unreadable: dict[str, str] = {}
    pending: set[str] = set()
    for name, definition, live in entries:
        try:
            record = facts(definition, active=live is not None)
            if live is not None:
                running = facts(live, active=True)
                if definition != live and _pending(record, running):
                    pending.add(name)
                record = merge_live(record, running)
        except DomainXMLError as exc:
            unreadable[name] = str(exc)
            continue
        result.append(record)
    return tuple(result), unreadable, frozenset(pending)


def gather(conn: object, uri: str, fs: HostFS | None = None, *, use_fs: bool = True) -> HostModel:
    """Read the host behind ``conn``: topology, domains, and (if local) kernel state."""
    topology = topology_from_capabilities(virt.capabilities(conn))
    if topology is None:
        topology = topology_from_nodeinfo(virt.node_info(conn))
    domains, unreadable, pending = domain_facts(virt.all_domains(conn))
    # A tree given by the caller (or RTLIBVIRT_HOST_ROOT) stands for a QEMU host.
    simulated = fs is not None or bool(os.environ.get(HOST_ROOT_ENV))
    if fs is None and use_fs:
        fs = host_fs(uri)
    try:
        networks: dict[str, Network] | None = {
            name: Network(name, active, autostart)
            for name, (active, autostart) in virt.networks(conn).items()
        }
        networks_unknown = ""
    except LibvirtError as exc:  # a driver without networks, or a user who may not list them
        networks, networks_unknown = None, exc.message
    isolated = nohz = None
    if fs is not None:
        isolated = fs.cpus_isolated()
        nohz = fs.cpus_nohz_full()
    return HostModel(
        uri=uri,
        topology=topology,
        domains=domains,
        fs=fs,
        isolated=isolated,
        nohz_full=nohz,
        qemu=urlsplit(uri).scheme.split("+")[0] == "qemu" or (simulated and fs is not None),
        unreadable=unreadable,
        pending=pending,
        networks=networks,
        networks_unknown=networks_unknown,
    )

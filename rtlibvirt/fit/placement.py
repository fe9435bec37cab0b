"""``cpu.pinning: auto`` and ``cpu.emulator: auto``: choose host CPUs for a VM.

The rules, in order:

1. **Never** a CPU that another defined domain pins a vCPU, the emulator or an
   I/O thread to (the emulator may share other domains' emulator CPUs), nor a
   CPU whose SMT sibling carries another domain's realtime vCPU.
2. **One NUMA node**: ``numa.node`` if given, else the node of the VM's PCI
   devices, else the node with the most free whole cores (ties: the lowest id),
   which spreads VMs and keeps room on every node for VMs that need a given
   one. A VM with neither may span nodes when no single node has room.
3. **Isolated CPUs first.** The *housekeeping set* is every online CPU the
   running kernel does not isolate; when it isolates none, it is the first core
   of each node. vCPUs go outside it (isolated CPUs), the emulator inside it.
   Only when that is the only way (a 2-CPU host) do non-realtime vCPUs go on
   housekeeping CPUs too, beside the host and the emulator, as
   ``examples/small.yaml`` does by hand; the placement says so. Realtime vCPUs
   never do.
4. **Whole cores** for realtime vCPUs on SMT hosts: the vCPU gets the core's
   first thread and its siblings stay idle. Other vCPUs prefer CPUs on cores
   that are already split, to keep whole cores for later realtime VMs.
5. **Stable**: CPUs are taken in ascending order, so the same host gives the
   same answer; and a VM being redefined keeps its current CPUs while they
   still satisfy these rules.

Pure functions of the topology, the isolated CPUs and the other domains.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rtlibvirt.domain.facts import DomainFacts
from rtlibvirt.errors import HostError
from rtlibvirt.fit.host import Topology
from rtlibvirt.kernel.cpuset import format_cpulist


class PlacementError(HostError):
    """The host has no room for the VM under the placement rules."""


@dataclass(frozen=True)
class Request:
    name: str
    vcpus: int
    realtime: frozenset[int]  # vCPU ids scheduled real-time
    pinning: tuple[int, ...] | None = None  # None: auto
    emulator: tuple[int, ...] | None = None  # None: auto
    node: int | None = None  # numa.node
    device_nodes: frozenset[int] = frozenset()  # NUMA nodes of the VM's PCI devices
    previous_pinning: tuple[int, ...] | None = None  # the current definition's, if any
    previous_emulator: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Placement:
    pinning: tuple[int, ...]
    emulator: tuple[int, ...]
    nodes: frozenset[int]
    isolated: bool  # every vCPU is on an isolated CPU
    whole_cores: bool  # every realtime vCPU has a core of its own
    kept: bool  # the previous placement was kept
    on_housekeeping: tuple[int, ...] = ()  # non-realtime vCPUs placed on housekeeping CPUs

    def describe(self, topology: Topology, realtime: bool = True) -> str:
        nodes = format_cpulist(self.nodes)
        where = f"NUMA node{'s' if len(self.nodes) != 1 else ''} {nodes}"
        what = []
        if self.isolated:
            what.append("isolated CPUs")
        if topology.smt and self.whole_cores and realtime:
            what.append("a whole core per realtime vCPU")
        detail = f" ({', '.join(what)})" if what else ""
        kept = "kept the current CPUs: " if self.kept else ""
        shared = ""
        if self.on_housekeeping:
            vcpus = self.on_housekeeping
            cpus = format_cpulist(self.pinning[v] for v in vcpus)
            one = len(vcpus) == 1
            shared = (
                f"; non-realtime vCPU{'' if one else 's'} {format_cpulist(vcpus)} "
                f"share{'s' if one else ''} housekeeping CPU{'' if one else 's'} {cpus} with the "
                "host and the emulator: this host has no other free CPU for "
                f"{'it' if one else 'them'}"
            )
        return (
            f"{kept}vCPUs {', '.join(f'{v}->{c}' for v, c in enumerate(self.pinning))} on "
            f"{where}{detail}; emulator on CPU{'s' if len(self.emulator) != 1 else ''} "
            f"{format_cpulist(self.emulator)}{shared}"
        )


@dataclass(frozen=True)
class _Pool:
    """What is free on the host, seen by one VM."""

    topology: Topology
    usable: frozenset[int]  # online, not pinned by others, not a sibling of others' RT vCPUs
    emulator_ok: frozenset[int]  # online, no other domain's vCPU, no sibling of others' RT
    housekeeping: frozenset[int]
    isolated: frozenset[int]


def _pool(
    topology: Topology, isolated: frozenset[int] | None, others: Sequence[DomainFacts]
) -> _Pool:
    online = topology.online
    pinned: set[int] = set()
    vcpu_pinned: set[int] = set()
    shadow: set[int] = set()
    for other in others:
        pinned |= other.pinned_cpu_set
        vcpu_pinned |= other.vcpu_cpu_set
        for cpu in other.realtime_cpu_set:
            shadow |= topology.siblings(cpu) - {cpu}
    iso = (isolated or frozenset()) & online
    if iso:
        housekeeping = online - iso
    else:
        housekeeping = (
            frozenset().union(*(cores[0] for cores in topology.cores.values() if cores)) & online
        )
    return _Pool(
        topology=topology,
        usable=frozenset(online - pinned - shadow),
        emulator_ok=frozenset(online - vcpu_pinned - shadow),
        housekeeping=frozenset(housekeeping),
        isolated=iso,
    )


def _whole_core_free(pool: _Pool, cpu: int, allowed: frozenset[int]) -> bool:
    return pool.topology.siblings(cpu) <= allowed


def _choose_vcpus(
    pool: _Pool,
    req: Request,
    region: frozenset[int],
    forbidden: frozenset[int],
    share_housekeeping: bool = False,
) -> tuple[int, ...] | None:
    """vCPU -> CPU inside ``region``; None when it does not fit.

    With ``share_housekeeping``, non-realtime vCPUs may also take housekeeping
    CPUs (after every free non-housekeeping one), the emulator's too.
    """
    candidates = (region & pool.usable) - pool.housekeeping - forbidden
    rt = sorted(req.realtime)
    others = [v for v in range(req.vcpus) if v not in req.realtime]
    chosen: dict[int, int] = {}
    taken: set[int] = set()
    # Realtime vCPUs: whole cores, first threads, ascending.
    if rt:
        cores = []
        for core in pool.topology.cores_sorted_in(region):
            if core <= candidates:
                cores.append(min(core))
        if len(cores) < len(rt):
            return None
        for vcpu, cpu in zip(rt, cores, strict=False):
            chosen[vcpu] = cpu
            taken |= pool.topology.siblings(cpu)
    # Other vCPUs: free CPUs, those on already split cores first.
    avail = frozenset(candidates - taken)
    rest = sorted(avail, key=lambda c: (_whole_core_free(pool, c, avail), c))
    if share_housekeeping:
        rest += sorted((region & pool.usable & pool.housekeeping) - taken)
    if len(rest) < len(others):
        return None
    for vcpu, cpu in zip(others, rest, strict=False):
        chosen[vcpu] = cpu
    return tuple(chosen[v] for v in range(req.vcpus))


def _choose_emulator(
    pool: _Pool,
    nodes: Iterable[int],
    pinning: Sequence[int],
    realtime: Iterable[int],
    beside_own_vcpus: bool = False,
) -> tuple[int, ...] | None:
    """Housekeeping CPUs for the emulator; with ``beside_own_vcpus`` it may share the
    CPUs of the VM's own non-realtime vCPUs (never a realtime vCPU's core)."""
    topology = pool.topology
    avoid = set() if beside_own_vcpus else set(pinning)
    for vcpu in realtime:
        avoid |= topology.siblings(pinning[vcpu])
    ok = (pool.housekeeping & pool.emulator_ok) - avoid
    for node in nodes:
        cpus = ok & topology.nodes.get(node, frozenset())
        if cpus:
            return tuple(sorted(cpus))
    return tuple(sorted(ok)) or None


def _roomiest_first(pool: _Pool, nodes: dict[int, frozenset[int]]) -> list[int]:
    """Node ids, the one with the most free whole cores (then CPUs) first; ties by id."""

    def room(node: int) -> tuple[int, int, int]:
        free = (nodes[node] & pool.usable) - pool.housekeeping
        cores = sum(1 for core in pool.topology.cores.get(node, ()) if core <= free)
        return (-cores, -len(free), node)

    return sorted(nodes, key=room)


def _fits_previous(
    pool: _Pool, req: Request, region: frozenset[int], forbidden: frozenset[int]
) -> bool:
    prev = req.previous_pinning
    if prev is None or len(prev) != req.vcpus or len(set(prev)) != len(prev):
        return False
    candidates = (region & pool.usable) - pool.housekeeping - forbidden
    if not set(prev) <= candidates:
        return False
    mine = set(prev)
    for vcpu in req.realtime:
        cpu = prev[vcpu]
        if not pool.topology.siblings(cpu) <= candidates:
            return False
        if (pool.topology.siblings(cpu) - {cpu}) & mine:
            return False
    return True


def place(
    topology: Topology,
    isolated: frozenset[int] | None,
    others: Sequence[DomainFacts],
    req: Request,
) -> Placement:
    """Choose host CPUs for ``req``; raises PlacementError with what is missing."""
    pool = _pool(topology, isolated, others)
    nodes = topology.nodes
    if req.node is not None and req.node not in nodes:
        raise PlacementError(
            f"cannot place {req.name!r}: numa.node {req.node} does not exist on this host "
            f"(nodes {format_cpulist(nodes)})",
            f"set `numa.node` to one of {format_cpulist(nodes)}",
        )
    if req.node is not None:
        candidates, strict = [req.node], True
    elif req.device_nodes:
        candidates, strict = sorted(req.device_nodes), True
    else:
        candidates, strict = _roomiest_first(pool, nodes), False

    forbidden = frozenset(req.emulator or ())
    if req.emulator is not None:
        # Realtime vCPUs keep off the emulator's cores too.
        forbidden = frozenset().union(*(topology.siblings(c) for c in req.emulator)) | forbidden

    pinning: tuple[int, ...] | None = req.pinning
    kept = False
    chosen_nodes: frozenset[int] = frozenset()
    if pinning is None:
        regions = [nodes[n] for n in candidates]
        if not strict and len(nodes) > 1:
            regions.append(topology.all)
        for region in regions:
            if _fits_previous(pool, req, region, forbidden):
                pinning, kept = req.previous_pinning, True
                chosen_nodes = topology.nodes_of(pinning or ())
                break
        if pinning is None:
            for region in regions:
                pinning = _choose_vcpus(pool, req, region, forbidden)
                if pinning is not None:
                    chosen_nodes = topology.nodes_of(pinning)
                    break
        if pinning is None and len(req.realtime) < req.vcpus:
            # The only way left: non-realtime vCPUs beside the host's housekeeping.
            for region in regions:
                pinning = _choose_vcpus(pool, req, region, forbidden, share_housekeeping=True)
                if pinning is not None:
                    chosen_nodes = topology.nodes_of(pinning)
                    break
        if pinning is None:
            message = _missing(pool, req, [nodes[n] for n in candidates], forbidden, others)
            raise PlacementError(message, _instead(topology, isolated, others, req))
    else:
        chosen_nodes = topology.nodes_of(pinning)

    emulator: tuple[int, ...] | None = req.emulator
    if emulator is None:
        prev = req.previous_emulator
        avoid = set(pinning) | set().union(
            *(topology.siblings(pinning[v]) for v in req.realtime if v < len(pinning))
        )
        if (
            prev
            and set(prev) <= (pool.housekeeping & pool.emulator_ok) - avoid
            and topology.nodes_of(prev) <= (chosen_nodes or topology.nodes_of(prev))
        ):
            emulator = tuple(sorted(prev))
        else:
            order = sorted(chosen_nodes) + [n for n in nodes if n not in chosen_nodes]
            emulator = _choose_emulator(pool, order, pinning, req.realtime)
            if emulator is None and req.pinning is None:
                emulator = _choose_emulator(pool, order, pinning, req.realtime, True)
        if emulator is None:
            raise PlacementError(
                f"cannot place the emulator of {req.name!r}: no housekeeping CPU is left "
                f"(housekeeping CPUs {format_cpulist(pool.housekeeping) or 'none'} all carry "
                "other domains' vCPUs or realtime siblings)",
                "free a housekeeping CPU, or give `cpu.emulator` explicitly",
            )
    rt_cpus = [pinning[v] for v in req.realtime if v < len(pinning)]
    on_housekeeping = tuple(
        v
        for v, cpu in enumerate(pinning)
        if req.pinning is None and v not in req.realtime and cpu in pool.housekeeping
    )
    return Placement(
        pinning=tuple(pinning),
        emulator=tuple(emulator),
        nodes=chosen_nodes,
        isolated=bool(pool.isolated) and set(pinning) <= pool.isolated,
        whole_cores=all(
            not ((topology.siblings(c) - {c}) & (set(pinning) | set(emulator))) for c in rt_cpus
        ),
        kept=kept,
        on_housekeeping=on_housekeeping,
    )


def _holders(others: Sequence[DomainFacts], cpus: Iterable[int]) -> list[str]:
    """Who pins each of ``cpus``: ``CPUs 2-3 by 'db'``, by domain."""
    wanted = set(cpus)
    held: dict[str, set[int]] = {}
    for other in others:
        mine = other.pinned_cpu_set & wanted
        if mine:
            held.setdefault(other.name, set()).update(mine)
    return [
        f"CPU{'s' if len(c) != 1 else ''} {format_cpulist(c)} by {name!r}"
        for name, c in sorted(held.items(), key=lambda item: min(item[1]))
    ]


def _instead(
    topology: Topology,
    isolated: frozenset[int] | None,
    others: Sequence[DomainFacts],
    req: Request,
) -> str:
    """What to write instead: the placement this host would give with no other domain,
    to share with them when they never run together; else fewer vCPUs."""
    try:
        if not others:
            raise PlacementError("no other domain holds a CPU")
        alone = place(topology, isolated, (), req)
    except PlacementError:
        return (
            f"this host has too few CPUs for {req.vcpus} vCPUs ({len(req.realtime)} realtime): "
            "give the VM fewer vCPUs, or fewer realtime ones"
        )
    sharing = sorted(
        {o.name for o in others if o.pinned_cpu_set & (set(alone.pinning) | set(alone.emulator))}
    )
    pins = ", ".join(str(c) for c in alone.pinning)
    text = (
        f"pin it yourself: `cpu.pinning: [{pins}]` and "
        f"`cpu.emulator: {format_cpulist(alone.emulator)}`"
    )
    if sharing:
        names = ", ".join(sharing)
        text += (
            f", which shares CPUs with {names}: if they never run at the same time, add "
            f"`cpu.share_with: [{names}]` (or --allow-shared for this run); otherwise free "
            f"CPUs (shrink or undefine {names})"
        )
    return text


def _missing(
    pool: _Pool,
    req: Request,
    regions: list[frozenset[int]],
    forbidden: frozenset[int],
    others: Sequence[DomainFacts] = (),
) -> str:
    """One line: what the best candidate region lacks."""
    n_rt = len(req.realtime)
    kind = "isolated" if pool.isolated else "non-housekeeping"
    best = None
    for region in regions:
        candidates = (region & pool.usable) - pool.housekeeping - forbidden
        cores = sum(1 for core in pool.topology.cores_sorted_in(region) if core <= candidates)
        score = (min(cores, n_rt) + min(len(candidates), req.vcpus), cores, len(candidates))
        if best is None or score > best[0]:
            best = (score, region, cores, candidates)
    assert best is not None
    _, region, cores, candidates = best
    held = _holders(others, (region & pool.topology.online) - pool.housekeeping - candidates)
    node = pool.topology.nodes_of(region)
    where = f"NUMA node {format_cpulist(node)}" if len(node) == 1 else "the host"
    needs = f"{req.vcpus} free {kind} CPUs"
    if n_rt and pool.topology.smt:
        needs += f" with {n_rt} whole cores for its realtime vCPUs"
    have = (
        f"{len(candidates)} (CPU{'s' if len(candidates) != 1 else ''} {format_cpulist(candidates)})"
        if candidates
        else "none"
    )
    if pool.topology.smt:
        have += f" and {cores} whole free core{'s' if cores != 1 else ''}"
    holders = f"; held: {', '.join(held)}" if held else ""
    return f"cannot place {req.name!r}: it needs {needs}, but {where} has {have}{holders}"


def previous_of(dom: DomainFacts | None) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """The current single-CPU pinning and emulator CPUs of a definition, if any."""
    if dom is None:
        return None, None
    pins: list[int] = []
    for vcpu in range(dom.vcpus):
        cpus = dom.vcpu_cpus(vcpu)
        if cpus is None or len(cpus) != 1:
            pins = []
            break
        pins.append(next(iter(cpus)))
    emulator = tuple(sorted(dom.emulatorpin)) if dom.emulatorpin else None
    return (tuple(pins) if pins else None), emulator

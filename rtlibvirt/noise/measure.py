"""``rtlibvirt noise``'s library: which CPUs, whose they are, the trace, the result.

:func:`targets_of_domains` and :func:`targets_of_cpus` turn the command's input
into :class:`Target` s (a host CPU, the real-time VM and vCPU that own it, and
the thread ids of that vCPU); :func:`run` traces them for a while and returns
a :class:`Measurement`: per CPU, disturbances and time lost per second and
the sources, each with its hint. The probe (rtlibvirt.probe.run) calls
:class:`Recording` (what :func:`run` drives) in its own loop, beside each
configuration.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rtlibvirt.domain.facts import DomainFacts, DomainXMLError, facts
from rtlibvirt.errors import HostError, InputError
from rtlibvirt.kernel.cpuset import format_cpulist
from rtlibvirt.kernel.fs import HostFS
from rtlibvirt.noise import events, hints, tracefs
from rtlibvirt.noise.attribute import BINS, Attribution, CpuNoise, Source

MAX_DURATION_S = 24 * 3600
METHOD = "tracepoints"


@dataclass(frozen=True)
class Target:
    cpu: int
    domain: str | None = None
    vcpu: int | None = None
    owners: frozenset[int] = frozenset()  # thread ids that are the CPU's owner, not noise


@dataclass
class SourceResult:
    kind: str
    name: str
    count: int
    time_us: float
    max_us: float
    hint: str
    pid: int | None = None
    irq: int | None = None

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "count": self.count,
            "time_us": round(self.time_us, 1),
            "max_us": round(self.max_us, 1),
            "hint": self.hint,
        }
        if self.pid is not None:
            found["pid"] = self.pid
        if self.irq is not None:
            found["irq"] = self.irq
        return found


@dataclass
class CpuResult:
    cpu: int
    domain: str | None
    vcpu: int | None
    disturbances_per_s: float
    us_lost_per_s: float
    sources: list[SourceResult]
    lost_events: int = 0
    timeline_count: list[int] = field(default_factory=list)  # disturbances per bin
    timeline_lost_us: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu,
            "domain": self.domain,
            "vcpu": self.vcpu,
            "disturbances_per_s": round(self.disturbances_per_s, 1),
            "us_lost_per_s": round(self.us_lost_per_s, 1),
            "lost_events": self.lost_events,
            "sources": [s.to_json() for s in self.sources],
        }


@dataclass
class Measurement:
    duration_s: float
    method: str
    cpus: list[CpuResult]
    requested_s: float
    interrupted: bool = False
    bin_s: float = 0.0
    missing_events: list[str] = field(default_factory=list)
    events: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "duration_s": round(self.duration_s, 3),
            "method": self.method,
            "interrupted": self.interrupted,
            "cpus": [c.to_json() for c in self.cpus],
        }


# ---- the input ------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """``10s``, ``500ms``, ``5m``, ``1h`` or plain seconds -> seconds (over 0, at most 24 h)."""
    value = text.strip().lower()
    factor = 1.0
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if value.endswith(suffix):
            value, factor = value[: -len(suffix)].strip(), scale
            break
    whole, dot, frac = value.partition(".")
    if not (whole.isdigit() or (dot and not whole)) or (frac and not frac.isdigit()):
        raise InputError(f"--duration {text!r} is not a duration", "write e.g. 10s, 500ms or 5m")
    if len(value) > 12 or not value.isascii():
        raise InputError(f"--duration {text!r} is not a duration", "write e.g. 10s, 500ms or 5m")
    seconds = float(value) * factor
    if not 0.01 <= seconds <= MAX_DURATION_S:
        raise InputError(
            f"--duration {text}: must be more than 0 and at most 24 h", "write e.g. 10s"
        )
    return seconds


def check_cpus(fs: HostFS, cpus: Iterable[int]) -> frozenset[int]:
    wanted = frozenset(cpus)
    if not wanted:
        raise InputError("--cpus names no CPU", "give a cpulist such as 1 or 2-3")
    present = fs.cpus_present()
    online = fs.cpus_online()
    missing = wanted - present
    if missing:
        raise InputError(
            f"CPU{'s' if len(missing) > 1 else ''} {format_cpulist(missing)} "
            f"{'do' if len(missing) > 1 else 'does'} not exist on this host",
            f"this host has CPUs {format_cpulist(present)}",
        )
    offline = wanted - online
    if offline:
        raise InputError(
            f"CPU {format_cpulist(offline)} is offline",
            f"bring it online (echo 1 > /sys/devices/system/cpu/cpu{min(offline)}/online) "
            f"or measure online CPUs: {format_cpulist(online)}",
        )
    return wanted


def targets_of_cpus(fs: HostFS, cpus: Iterable[int]) -> list[Target]:
    return [Target(cpu) for cpu in sorted(check_cpus(fs, cpus))]


def vcpu_tids(fs: HostFS, name: str) -> dict[int, int]:
    """vCPU -> thread id of a running domain's QEMU (empty when it cannot be found)."""
    from rtlibvirt.hook import threads
    from rtlibvirt.hook.domain import name_problem

    if name_problem(name) is not None:
        return {}
    pid = threads.qemu_pid(fs, name)
    return {} if pid is None else threads.vcpu_threads(fs, pid)


def live_domains(
    entries: Iterable[tuple[str, str, str | None]],
) -> tuple[list[DomainFacts], dict[str, str]]:
    """Each domain as it is now: a running domain from its live XML alone, the others
    from their definition; and the unreadable ones (name -> why).

    Not :func:`rtlibvirt.fit.host.domain_facts`, which merges a running domain's
    pending new definition into its live state (what the domain may claim after its
    next start): noise traces the CPUs its vCPUs are pinned to now.
    """
    found: list[DomainFacts] = []
    unreadable: dict[str, str] = {}
    for name, definition, live in entries:
        try:
            found.append(facts(live, active=True) if live is not None else facts(definition))
        except DomainXMLError as exc:
            unreadable[name] = str(exc)
    return found, unreadable


def targets_of_domains(
    fs: HostFS,
    domains: Sequence[DomainFacts],
    names: Sequence[str],
    uri: str,
) -> list[Target]:
    """The real-time vCPUs' host CPUs of the named running domains (all of them: none named)."""
    by_name = {d.name: d for d in domains}
    if names:
        chosen = []
        for name in names:
            dom = by_name.get(name)
            if dom is None:
                raise InputError(
                    f"no domain {name!r} on {uri}", "see `virsh list --all` for the names"
                )
            if not dom.active:
                raise InputError(
                    f"domain {name!r} is not running",
                    f"start it (virsh start {name}), or measure CPUs with --cpus",
                )
            if not dom.realtime_vcpus:
                raise InputError(
                    f"domain {name!r} has no real-time vCPUs (no FIFO or RR <vcpusched>)",
                    "measure its CPUs with --cpus, or give it real-time vCPUs (rtlibvirt tune)",
                )
            chosen.append(dom)
    else:
        chosen = [d for d in domains if d.active and d.realtime_vcpus]
        if not chosen:
            raise InputError(
                f"no real-time VM runs on {uri}",
                "name a running domain, or measure CPUs with --cpus LIST",
            )
    found: dict[int, Target] = {}
    for dom in sorted(chosen, key=lambda d: d.name):
        tids = vcpu_tids(fs, dom.name)
        if not tids:
            raise HostError(
                f"cannot find the vCPU threads of {dom.name!r} (its QEMU under /run/libvirt/qemu)",
                "rtlibvirt noise runs as root on the host of the VM",
            )
        for vcpu in dom.realtime_vcpus:
            cpus = dom.vcpu_cpus(vcpu)
            if not cpus:
                raise InputError(
                    f"{dom.name!r} vCPU {vcpu} is real-time but not pinned to host CPUs",
                    "pin it (rtlibvirt tune, or <vcpupin>), or measure CPUs with --cpus",
                )
            owner = frozenset({tids[vcpu]} if vcpu in tids else ())
            for cpu in sorted(cpus):
                prior = found.get(cpu)
                if prior is None:
                    found[cpu] = Target(cpu, dom.name, vcpu, owner)
                else:
                    found[cpu] = Target(cpu, prior.domain, prior.vcpu, prior.owners | owner)
    check_cpus(fs, found)
    return [found[cpu] for cpu in sorted(found)]


def owners_on(targets: Sequence[Target], cpus: Iterable[int]) -> list[Target]:
    """``--cpus`` with domains named: those CPUs, owned by the named VMs' vCPUs pinned there."""
    known = {t.cpu: t for t in targets}
    return [known.get(cpu, Target(cpu)) for cpu in sorted(cpus)]


# ---- the trace --------------------------------------------------------------------


def run(
    targets: Sequence[Target],
    duration_s: float,
    fs: HostFS | None = None,
    *,
    progress: Callable[[float], None] | None = None,
) -> Measurement:
    """Traces ``targets`` for ``duration_s`` seconds (less if interrupted: Ctrl-C)."""
    with Recording(targets, duration_s, fs) as recording:
        try:
            while True:
                left = recording.left_s()
                if left <= 0:
                    break
                time.sleep(min(tracefs.READ_EVERY_S, left))
                recording.poll()
                if progress is not None:
                    progress(recording.elapsed_s())
        except KeyboardInterrupt:
            recording.interrupted = True
        return recording.finish()


class Recording:
    """A trace of ``targets`` that the caller drives: :func:`run`'s loop, or the probe's,
    which polls its guest and the trace in one loop.

    Entering starts the trace; :meth:`poll` reads what the kernel holds (call it
    every :data:`tracefs.READ_EVERY_S` or so, the buffers are bounded); :meth:`finish`
    stops it at once (even before ``duration_s``) and returns the measurement;
    leaving removes the instance on every way out.
    """

    def __init__(
        self, targets: Sequence[Target], duration_s: float, fs: HostFS | None = None
    ) -> None:
        self.targets = list(targets)
        self.duration_s = duration_s
        self.fs = fs or HostFS("/")
        if not self.fs.is_live:
            raise HostError("rtlibvirt noise traces the running kernel; it cannot trace a tree")
        self.owners = {t.cpu: t.owners for t in self.targets}
        self.session = tracefs.Session(self.owners, events.EVENTS, self.fs)
        self.attribution: Attribution | None = None
        self.interrupted = False
        self._tail = b""
        self._end = 0

    def __enter__(self) -> Recording:
        self.session.__enter__()
        try:
            self.session.start()
        except BaseException:
            self.session.close()
            raise
        start = self.session.start_us
        self._end = start + int(self.duration_s * 1e6)
        self.attribution = Attribution(self.owners, start, self._end)
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    def left_s(self) -> float:
        return (self._end - tracefs.now_us()) / 1e6

    def elapsed_s(self) -> float:
        return (tracefs.now_us() - self.session.start_us) / 1e6

    def poll(self) -> None:
        assert self.attribution is not None
        self._tail = _feed(self.attribution, self.session.read(), self._tail)

    def finish(self) -> Measurement:
        """Stops the trace and attributes the rest; the instance goes on leaving."""
        attribution = self.attribution
        assert attribution is not None
        session = self.session
        session.stop()
        attribution.end = min(attribution.end, session.stop_us)
        tail = _feed(attribution, session.read(), self._tail)
        _feed(attribution, tail + b"\n", b"")
        self._tail = b""
        lost = session.lost()
        attribution.finish()
        duration = (attribution.end - attribution.start) / 1e6
        view = hints.view(self.fs)
        cpus = [_cpu_result(t, attribution.cpus[t.cpu], duration, lost, view) for t in self.targets]
        return Measurement(
            duration_s=duration,
            method=METHOD,
            cpus=cpus,
            requested_s=self.duration_s,
            interrupted=self.interrupted,
            bin_s=self.duration_s / BINS,
            missing_events=list(session.missing),
            events=attribution.events,
        )


def _feed(attribution: Attribution, data: bytes, tail: bytes) -> bytes:
    if not data:
        return tail
    data = tail + data
    cut = data.rfind(b"\n")
    if cut < 0:
        return data
    text = data[:cut].decode("utf-8", errors="replace")
    attribution.feed(events.parse(line) for line in text.split("\n") if line)
    return data[cut + 1 :]


def _cpu_result(
    target: Target, noise: CpuNoise, duration: float, lost: dict[int, int], view: hints.HostView
) -> CpuResult:
    per_s = 1 / duration if duration > 0 else 0.0
    ordered = sorted(noise.sources.values(), key=lambda s: (-s.time_us, -s.count, s.name))
    return CpuResult(
        cpu=target.cpu,
        domain=target.domain,
        vcpu=target.vcpu,
        disturbances_per_s=noise.disturbances * per_s,
        us_lost_per_s=noise.lost_us * per_s,
        sources=[_source(s, target, view) for s in ordered if s.count or s.time_us],
        lost_events=lost.get(target.cpu, 0),
        timeline_count=list(noise.bins_count),
        timeline_lost_us=list(noise.bins_lost),
    )


def _source(source: Source, target: Target, view: hints.HostView) -> SourceResult:
    return SourceResult(
        kind=source.kind,
        name=source.name,
        count=source.count,
        time_us=source.time_us,
        max_us=source.max_us,
        hint=hints.hint(source, target.cpu, view, target.domain),
        pid=source.pid,
        irq=source.irq,
    )

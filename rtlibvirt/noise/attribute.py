"""Events by CPU -> what took each CPU away from its owner, source by source.

Each measured CPU has an *owner*: the vCPU threads of the VM pinned there (or
nobody, with ``--cpus`` alone), and the idle task. Whatever else runs is
noise: an interrupt, softirq, timer, IPI or work item in any context, or a
thread that is not the owner. Per CPU, the events are replayed as a stack of
frames over the running thread; the time between two events belongs to the
frame on top (its *own* time), so that the sources' times add up to the
CPU's time lost without counting nested frames twice. A source's ``max_us``
is its longest single occurrence, nested frames included; a *disturbance*
is each time the CPU leaves its owner for noise (a frame entered over the
owner or idle, or a noise thread switched in).

Where a frame's name is decided by what ran inside it (the hrtimers behind a
local timer interrupt, the functions behind a function-call IPI), the name is
taken when the frame closes. Work items are frames of their kworker thread
and are kept with that thread while it sleeps.

Bounded: at most :data:`MAX_SOURCES` sources per CPU (the rest are folded into
one ``other threads`` source), :data:`MAX_DEPTH` frames, :data:`MAX_DETAILS`
function names per frame. Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rtlibvirt.noise.events import DETAIL, ENTER, EXIT, IGNORE, SWITCH, Event

MAX_SOURCES = 256
MAX_DEPTH = 16
MAX_DETAILS = 4
BINS = 100  # the timeline's resolution (the plot)

# Function-call IPI functions with a name users know (arch/x86/mm/tlb.c)
KNOWN_FUNCTIONS = {"flush_tlb_func": "TLB shootdown"}


@dataclass
class Source:
    kind: str
    name: str
    count: int = 0
    time_us: float = 0.0
    max_us: float = 0.0
    pid: int | None = None  # a thread's pid
    irq: int | None = None
    details: dict[str, int] = field(default_factory=dict)  # e.g. timer functions in a softirq


@dataclass
class Frame:
    kind: str
    name: str
    start: int
    arg: int = 0
    own: float = 0.0
    details: list[str] = field(default_factory=list)
    top_level: bool = False


@dataclass
class CpuNoise:
    cpu: int
    owners: frozenset[int]
    sources: dict[tuple[str, str], Source] = field(default_factory=dict)
    disturbances: int = 0
    lost_us: float = 0.0
    bins_count: list[int] = field(default_factory=lambda: [0] * BINS)
    bins_lost: list[float] = field(default_factory=lambda: [0.0] * BINS)
    # replay state
    last: int | None = None
    pid: int | None = None  # the running thread; None until known
    comm: str = ""
    run_start: int = 0
    run_top: bool = False
    frames: list[Frame] = field(default_factory=list)
    parked: dict[int, list[Frame]] = field(default_factory=dict)  # work frames of sleeping kworkers
    unmatched: int = 0

    def owned(self, pid: int | None) -> bool:
        return pid is None or pid == 0 or pid in self.owners


def _closes(event: Event, frame: Frame) -> bool:
    """Does exit ``event`` close ``frame``? (A timer-wheel exit names no function.)"""
    if frame.kind != event.kind:
        return False
    if event.kind == "timer" and not event.name:
        return frame.name != "local timer"
    return frame.name == event.name


class Attribution:
    """Replays events of the measured CPUs between ``start_us`` and ``end_us``."""

    def __init__(self, owners: Mapping[int, frozenset[int]], start_us: int, end_us: int) -> None:
        self.cpus = {cpu: CpuNoise(cpu, frozenset(pids)) for cpu, pids in owners.items()}
        self.start = start_us
        self.end = max(end_us, start_us + 1)
        self.span = self.end - self.start  # the timeline's (the end moves if stopped early)
        self.unparsed = 0
        self.events = 0

    # ---- the replay ------------------------------------------------------------

    def feed(self, events: Iterable[Event | None]) -> None:
        for event in events:
            if event is None:
                self.unparsed += 1
                continue
            if event.action == IGNORE:
                continue
            state = self.cpus.get(event.cpu)
            if state is None or event.ts_us < self.start or event.ts_us > self.end:
                continue
            self.events += 1
            self._event(state, event)

    def finish(self) -> None:
        """Closes the window: open frames and threads are counted up to its end."""
        for state in self.cpus.values():
            self._advance(state, self.end)
            while state.frames:
                self._pop(state, self.end)
            if state.pid is not None and not state.owned(state.pid):
                self._thread_done(state, self.end)

    def _bin(self, ts: int) -> int:
        return min(BINS - 1, max(0, (ts - self.start) * BINS // self.span))

    def _advance(self, state: CpuNoise, ts: int) -> None:
        last = state.last if state.last is not None else self.start
        state.last = max(last, ts)
        elapsed = ts - last
        if elapsed <= 0:
            return
        if state.frames:
            state.frames[-1].own += elapsed
        elif state.pid is not None and not state.owned(state.pid):
            self._source(
                state, "thread", self._thread_name(state), pid=state.pid
            ).time_us += elapsed
        else:
            return
        state.lost_us += elapsed
        state.bins_lost[self._bin(ts)] += elapsed

    def _thread_name(self, state: CpuNoise) -> str:
        return f"{state.comm} (pid {state.pid})"

    def _source(self, state: CpuNoise, kind: str, name: str, *, pid: int | None = None) -> Source:
        key = (kind, name)
        source = state.sources.get(key)
        if source is None:
            if len(state.sources) >= MAX_SOURCES:
                key = ("thread", "other threads") if kind == "thread" else (kind, f"other {kind}")
                source = state.sources.get(key)
                if source is None:
                    source = state.sources[key] = Source(*key)
                return source
            source = state.sources[key] = Source(kind, name, pid=pid)
        return source

    def _disturbed(self, state: CpuNoise, ts: int) -> None:
        state.disturbances += 1
        state.bins_count[self._bin(ts)] += 1

    def _event(self, state: CpuNoise, event: Event) -> None:
        if state.pid is None:  # the first event names the running task
            state.pid, state.comm = event.pid, event.comm
            state.run_start = self.start
            state.run_top = False
        self._advance(state, event.ts_us)
        if event.action == ENTER:
            if len(state.frames) >= MAX_DEPTH:
                state.unmatched += 1
                return
            top = not state.frames and state.owned(state.pid)
            if top:
                self._disturbed(state, event.ts_us)
            state.frames.append(
                Frame(event.kind, event.name, event.ts_us, event.arg, top_level=top)
            )
            if event.kind == "irq":
                state.frames[-1].details.append(event.text)
        elif event.action == EXIT:
            for depth in range(len(state.frames) - 1, -1, -1):
                if _closes(event, state.frames[depth]):
                    while len(state.frames) > depth:
                        self._pop(state, event.ts_us)
                    return
            state.unmatched += 1  # its entry was before the window or lost
        elif event.action == DETAIL:
            if state.frames and len(state.frames[-1].details) < MAX_DETAILS:
                frame = state.frames[-1]
                if event.name not in frame.details:
                    frame.details.append(event.name)
        elif event.action == SWITCH:
            self._switch(state, event)

    def _pop(self, state: CpuNoise, ts: int) -> None:
        frame = state.frames.pop()
        if frame.kind == "irq" and frame.name.isdigit():
            action = frame.details[0] if frame.details else "?"
            name = f"IRQ {frame.arg} {action}".rstrip()
            source = self._source(state, "irq", name)
            source.irq = frame.arg
        elif frame.name == "local timer":
            hrtimers = ", ".join(sorted(frame.details)) or "no hrtimer expired"
            source = self._source(state, "timer", f"local timer: {hrtimers}")
        elif frame.kind == "timer":
            source = self._source(state, "timer", f"timer: {frame.name}")
        elif frame.name == "function call":
            funcs = sorted(frame.details)
            shown = ", ".join(
                f"{f} ({KNOWN_FUNCTIONS[f]})" if f in KNOWN_FUNCTIONS else f for f in funcs
            )
            source = self._source(state, "ipi", f"function call: {shown or '?'}")
        else:
            source = self._source(state, frame.kind, frame.name)
            for detail in frame.details:
                if len(source.details) < MAX_DETAILS * 4 or detail in source.details:
                    source.details[detail] = source.details.get(detail, 0) + 1
        source.count += 1
        source.time_us += frame.own
        source.max_us = max(source.max_us, ts - max(frame.start, self.start))
        if (
            state.frames
            and frame.kind == "timer"
            and frame.name != "local timer"
            and state.frames[-1].kind == "softirq"
        ):
            # a timer-wheel callback: named in its softirq's details too
            parent = state.frames[-1]
            if len(parent.details) < MAX_DETAILS and frame.name not in parent.details:
                parent.details.append(frame.name)

    def _thread_done(self, state: CpuNoise, ts: int) -> None:
        source = self._source(state, "thread", self._thread_name(state), pid=state.pid)
        source.count += 1
        source.max_us = max(source.max_us, ts - state.run_start)

    def _switch(self, state: CpuNoise, event: Event) -> None:
        ts = event.ts_us
        # Interrupt frames cannot span a switch; work frames belong to their kworker.
        work = [f for f in state.frames if f.kind == "workqueue"]
        while state.frames and state.frames[-1].kind != "workqueue":
            self._pop(state, ts)
        if work and state.pid is not None:
            state.parked[state.pid] = state.frames
            state.frames = []
        was_noise = state.pid is not None and not state.owned(state.pid)
        if was_noise:
            self._thread_done(state, ts)
        state.pid, state.comm = event.arg, event.name
        state.run_start = ts
        state.frames = state.parked.pop(event.arg, [])
        if not state.owned(state.pid) and not was_noise:
            self._disturbed(state, ts)

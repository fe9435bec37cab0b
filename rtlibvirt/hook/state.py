"""The hook's state under ``/run/rtlibvirt/``: locked, journaled first, recoverable.

What it holds (:class:`State`):

- ``claims``: one per real-time VM the hook looks after, by domain name: its
  CPUs, its isolation settings (validated by ``config.vm``'s ``Isolation``
  model, the one definition), its QEMU pid and vCPU thread ids, its cache
  ways. A claim is made at ``prepare`` (phase ``prepared``: the CPUs are
  reserved and isolated before QEMU starts, so that the vCPUs never run beside
  host work) and becomes ``running`` at ``started``, which adds the QEMU pid
  and vCPU threads; ``stopped``/``release`` drop it.
- ``originals``: the value of every host file the hook has changed, read
  *before* the first change, and the scheduling policy and priority of every
  kernel thread it raised (``sched:TID@START``: the thread id and its start
  time, against id reuse). A value leaves this table only once it is back.
- ``tasks``: the original CPU affinity of every thread the hook moved.
- ``refused``: files whose write the kernel refused (e.g. an IRQ that cannot
  be moved); they are left alone until the last VM stops.
- ``groups``: the resctrl groups the hook created, and by whom;
  ``resctrl_mounted``: the hook mounted resctrl (and unmounts it at the end).

Two files keep it, so that no original is ever lost:

- ``journal`` (append-only): one line per event, ``CRC32 JSON``: an original
  read, a value restored, a claim made or dropped, a group made, a thread
  moved. Every original is in it (written) *before* the change it
  describes. A line whose checksum does not match (torn by a kill, edited by
  hand) is skipped and reported.
- ``state.json``: a snapshot of the whole state, replaced atomically at the end
  of each hook call, with the sequence number of the last journal line it
  holds and a checksum of its body.

Loading takes the snapshot and replays the journal lines after it. A snapshot
that is unreadable, fails its checksum, or holds anything that does not
validate is set aside (``state.json.damaged-*``, for inspection) and the whole
state is rebuilt from the journal: a damaged state costs nothing but the
``refused`` table. Nothing is saved that does not validate: every path must
belong to an isolation step's kernel interface and every value must parse as
that interface's format. When the state becomes empty (every value restored),
both files are removed.

:meth:`StateStore.locked` holds an exclusive ``flock`` (``kernel.files.lock``)
for the whole hook call, so that hook processes of VMs starting at the same
time run one after the other and lose no update. The files live in /run:
they go away at reboot together with every runtime value they describe.
That is also why nothing here is fsynced: what the journal and the snapshot
protect against is the death of a hook process (a kill, libvirt's timeout),
and a ``write`` that returned is in the kernel's page cache, where the next
process reads it, whether or not it reached the disk; a power loss resets
the IRQ affinities and the rest, and /run with them (tmpfs on systemd hosts).
An fsync cost ~1 ms each on a disk-backed /run, six of them per ``started``.

Standard library only (no dataclasses either: they cost the hook ~10 ms).
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from rtlibvirt.kernel import cgroup, files, irq, machinecheck, procs, resctrl, workqueue
from rtlibvirt.kernel.cpuset import CpuListError, format_cpulist, parse_cpulist
from rtlibvirt.kernel.fs import HostFS

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

STATE_DIR = "/run/rtlibvirt"
STATE_FILE = f"{STATE_DIR}/state.json"
JOURNAL_FILE = f"{STATE_DIR}/journal"
LOCK_FILE = f"{STATE_DIR}/lock"
# The boot the state belongs to: on a host whose /run survives a reboot (not a
# tmpfs), a state left by an earlier boot describes values that died with it.
BOOT_FILE = f"{STATE_DIR}/boot_id"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
_BOOT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FORMAT = 2
HEADER = "rtlibvirt-hook-state"
LOCK_TIMEOUT = 60.0  # seconds; libvirt waits for the hook meanwhile
MAX_FILE = 64 * 1024 * 1024  # a state of 32 VMs, 2,000 IRQs and 10,000 threads is ~2 MiB
MAX_VALUE = 4096  # the longest original we keep (a schemata line of 64 caches is ~1 KiB)

PHASE_PREPARED = "prepared"
PHASE_RUNNING = "running"

_SETTING_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_CACHE_ID = re.compile(r"[0-9]{1,5}")
_HEX = re.compile(r"[0-9a-f]{1,64}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_MASK = re.compile(r"[0-9a-fA-F]{1,8}(?:,[0-9a-fA-F]{8}){0,255}")


class StateError(Exception):
    """The state cannot be locked, read or written."""


class Invalid(ValueError):
    """A part of the state (or of a journal line) that does not validate."""


# ---- what may be in a state --------------------------------------------------------


def owned_path(path: str) -> bool:
    """Does ``path`` belong to an isolation step (the only files the hook ever writes)?"""
    return (
        irq.owns(path)
        or workqueue.owns(path)
        or machinecheck.owns(path)
        or resctrl.owns(path)
        or cgroup.owns(path)
        or procs.owns_sched(path)
    )


def valid_value(path: str, value: str) -> bool:
    """Is ``value`` in the format of ``path``'s kernel file (so that writing it back is sane)?"""
    if len(value) > MAX_VALUE or "\0" in value:
        return False
    try:
        if irq.owns(path) or workqueue.owns(path):
            # a kernel cpumask with a CPU in it; a regular expression, not parse_mask:
            # a state holds thousands of them and each call validates them all
            return _MASK.fullmatch(value.strip()) is not None and value.strip("0,\n") != ""
        if machinecheck.owns(path):
            return value.strip().isdigit() and value.strip().isascii()
        if procs.owns_sched(path):
            return procs.parse_sched(value) is not None
        if path.endswith("/schemata"):
            return resctrl.parse_l3(value) is not None
        if path.endswith(("/cpus_list", "/cpuset.cpus")):
            return _cpus(value) is not None
    except (CpuListError, ValueError):
        return False
    return False


def _cpus(text: str) -> frozenset[int] | None:
    """A cpulist (parse_cpulist checks the range before it expands); None if it is not one."""
    if len(text) > MAX_VALUE:
        return None
    try:
        return frozenset(parse_cpulist(text))
    except CpuListError:
        return None


def _need(condition: bool, what: str) -> None:
    if not condition:
        raise Invalid(what)


def _int(value: Any, what: str, low: int = 0, high: int = 2**62) -> int:
    _need(
        isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
        f"{what} must be an integer {low}-{high}",
    )
    return int(value)


def _str(value: Any, what: str, limit: int = MAX_VALUE) -> str:
    _need(isinstance(value, str) and len(value) <= limit, f"{what} must be a string")
    return str(value)


# ---- the settings of a claim ---------------------------------------------------------


class Settings:
    """A VM's ``isolation`` settings, as ``config.vm.Isolation.dump()`` gave them.

    A read-only view: the keys, their types, defaults and bounds are defined
    once, by the ``Isolation`` model that validated them (see
    ``hook.domain.validate``); this class only carries the validated values
    between hook calls without importing the model (~15 ms a call).
    """

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = dict(values)

    @classmethod
    def from_model(cls, isolation: Any) -> Settings:
        """From a validated ``config.vm.Isolation``."""
        return cls(isolation.dump())

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._values[key]
        except KeyError:
            pass
        # A claim saved by an older hook lacks a newer setting: its default,
        # from the one definition (imported only in that case).
        from rtlibvirt.config.vm import Isolation

        defaults = Isolation().dump()
        if key not in defaults:
            raise AttributeError(f"isolation has no setting {key!r}")
        self._values[key] = defaults[key]
        return defaults[key]

    @property
    def machine_check_off(self) -> bool:
        return self._values.get("machine_check_polling") is False

    def to_json(self) -> dict[str, Any]:
        return dict(sorted(self._values.items()))

    @classmethod
    def from_json(cls, data: Any) -> Settings:
        """Settings read back from the state or journal (written by :meth:`to_json`)."""
        _need(isinstance(data, dict) and len(data) <= 64, "settings must be a mapping")
        for key, value in data.items():
            _need(
                isinstance(key, str) and _SETTING_KEY.fullmatch(key) is not None,
                "settings keys must be names",
            )
            _need(
                value is None or (isinstance(value, bool | int) and -(2**31) < value < 2**31),
                f"setting {key} must be true, false, null or a small integer",
            )
        return cls(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and self._values == other._values

    def __hash__(self) -> int:  # pragma: no cover - not used as a key
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self) -> str:
        return f"Settings({self.to_json()!r})"


# ---- claims ------------------------------------------------------------------------


class Claim:
    """One real-time VM that the hook looks after."""

    __slots__ = (
        "cache",
        "cache_error",
        "cpus",
        "kthreads",
        "meta",
        "name",
        "phase",
        "pid",
        "settings",
        "since",
        "tids",
        "unmoved",
        "uuid",
    )

    def __init__(
        self,
        name: str,
        cpus: frozenset[int],
        settings: Settings,
        *,
        uuid: str | None = None,
        phase: str = PHASE_PREPARED,
        pid: int | None = None,
        since: float | None = None,
        tids: list[int] | None = None,
        cache: dict[str, int] | None = None,
        cache_error: str | None = None,
        meta: str | None = None,
        unmoved: list[str] | None = None,
        kthreads: dict[str, int] | None = None,
    ) -> None:
        self.name = name
        self.cpus = frozenset(cpus)
        self.settings = settings
        self.uuid = uuid
        self.phase = phase
        self.pid = pid
        self.since = time.time() if since is None else since
        self.tids = list(tids or [])
        # resctrl: cache id -> capacity bit mask of this VM's exclusive ways
        self.cache = dict(cache or {})
        self.cache_error = cache_error
        # SHA-256 of the metadata text validated for this claim (see hook.domain)
        self.meta = meta
        # host threads that stayed on this VM's CPUs after started, and why
        self.unmoved = list(unmoved or [])
        # kind of per-CPU kernel thread -> the SCHED_FIFO priority it needs on this
        # VM's CPUs (above its vCPUs); empty: leave them alone
        self.kthreads = dict(kthreads or {})

    @property
    def running(self) -> bool:
        return self.phase == PHASE_RUNNING

    def to_json(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "cpus": format_cpulist(self.cpus),
            "phase": self.phase,
            "pid": self.pid,
            "since": round(self.since, 3),
            "settings": self.settings.to_json(),
            "tids": self.tids,
            "cache": {domain: format(mask, "x") for domain, mask in sorted(self.cache.items())},
            "cache_error": self.cache_error,
            "meta": self.meta,
            "unmoved": self.unmoved,
            "kthreads": dict(sorted(self.kthreads.items())),
        }

    @classmethod
    def from_json(cls, name: str, data: Any) -> Claim:
        _need(isinstance(data, dict), f"claim {name!r} is not a mapping")
        what = f"claim {name!r}"
        phase = data.get("phase")
        _need(phase in (PHASE_PREPARED, PHASE_RUNNING), f"{what} has an unknown phase")
        cpus = _cpus(_str(data.get("cpus", ""), f"{what}: cpus"))
        _need(cpus is not None, f"{what}: cpus is not a cpulist")
        pid = data.get("pid")
        if pid is not None:
            pid = _int(pid, f"{what}: pid", 1, 2**22)
        tids = data.get("tids") or []
        _need(isinstance(tids, list) and len(tids) <= 4096, f"{what}: tids must be a list")
        tids = [_int(t, f"{what}: tids", 1, 2**22) for t in tids]
        cache = data.get("cache") or {}
        _need(isinstance(cache, dict) and len(cache) <= 256, f"{what}: cache must be a mapping")
        for domain, mask in cache.items():
            _need(
                _CACHE_ID.fullmatch(str(domain)) is not None
                and isinstance(mask, str)
                and _HEX.fullmatch(mask) is not None,
                f"{what}: cache must map cache ids to hex masks",
            )
        since = data.get("since", 0.0)
        _need(
            isinstance(since, int | float) and not isinstance(since, bool) and since >= 0,
            f"{what}: since must be a number",
        )
        cache_error = data.get("cache_error")
        if cache_error is not None:
            cache_error = _str(cache_error, f"{what}: cache_error")
        uuid = data.get("uuid")
        if uuid is not None:
            uuid = _str(uuid, f"{what}: uuid", 64)
        meta = data.get("meta")
        if meta is not None:
            meta = _str(meta, f"{what}: meta", 64)
            _need(_DIGEST.fullmatch(meta) is not None, f"{what}: meta is not a digest")
        unmoved = data.get("unmoved") or []
        _need(
            isinstance(unmoved, list)
            and len(unmoved) <= 64
            and all(isinstance(u, str) and len(u) <= 512 for u in unmoved),
            f"{what}: unmoved must be a list of strings",
        )
        kthreads = data.get("kthreads") or {}
        _need(
            isinstance(kthreads, dict)
            and len(kthreads) <= 8
            and all(_SETTING_KEY.fullmatch(str(k)) for k in kthreads),
            f"{what}: kthreads must map kinds of kernel threads to priorities",
        )
        for kind, prio in kthreads.items():
            _int(prio, f"{what}: kthreads {kind}", 1, procs.MAX_RT_PRIO)
        return cls(
            name,
            cpus or frozenset(),
            Settings.from_json(data.get("settings")),
            uuid=uuid,
            phase=str(phase),
            pid=pid,
            since=float(since),
            tids=tids,
            cache={str(k): int(str(v), 16) for k, v in cache.items()},
            cache_error=cache_error,
            meta=meta,
            unmoved=list(unmoved),
            kthreads={str(k): int(v) for k, v in kthreads.items()},
        )


def valid_name(name: Any) -> bool:
    """Can ``name`` be a claim's (a domain's) name? See ``hook.domain.name_problem``."""
    return (
        isinstance(name, str)
        and 0 < len(name.encode("utf-8", "surrogatepass")) <= 200
        and "/" not in name
        and not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name)
    )


class TaskOriginal:
    """A thread the hook moved: its process, its start time (against pid reuse), its mask."""

    __slots__ = ("cpus", "pid", "start")

    def __init__(self, pid: int, start: int, cpus: frozenset[int]) -> None:
        self.pid = pid
        self.start = start
        self.cpus = cpus

    def to_json(self) -> list[Any]:
        return [self.pid, self.start, format_cpulist(self.cpus)]

    @classmethod
    def from_json(cls, data: Any) -> TaskOriginal:
        _need(isinstance(data, list) and len(data) == 3, "a task original is [pid, start, cpus]")
        cpus = _cpus(_str(data[2], "task cpus"))
        _need(bool(cpus), "task cpus must be a non-empty cpulist")
        return cls(
            _int(data[0], "task pid", 1, 2**22), _int(data[1], "task start"), cpus or frozenset()
        )


# ---- the state ---------------------------------------------------------------------


class State:
    """The hook's whole state."""

    def __init__(self) -> None:
        self.claims: dict[str, Claim] = {}
        self.originals: dict[str, str] = {}
        self.tasks: dict[int, TaskOriginal] = {}  # thread id -> what it was
        self.tasks_since: int | None = None  # boot ticks when the first thread was moved
        self.refused: dict[str, str] = {}
        self.groups: dict[str, str] = {}  # resctrl group directory -> owning domain name
        self.resctrl_mounted = False
        self.recovered: list[str] = []  # what was recovered from the journal, and when
        self.seq = 0  # the last journal sequence number this state holds
        self.journal_at = 0  # the journal's size (bytes) when this snapshot was written
        # step -> the CPUs it was last converged to isolate: a hint that saves reading
        # files that are about to change (not journaled: losing it costs only reads)
        self.hints: dict[str, frozenset[int]] = {}

    def is_empty(self) -> bool:
        return not (
            self.claims
            or self.originals
            or self.tasks
            or self.refused
            or self.groups
            or self.resctrl_mounted
        )

    def isolating(self) -> list[Claim]:
        """The claims the host is isolated for: every VM from its ``prepare`` on."""
        return [c for _, c in sorted(self.claims.items())]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "seq": self.seq,
            "journal_at": self.journal_at,
            "hints": {k: format_cpulist(v) for k, v in sorted(self.hints.items())},
            "claims": {name: claim.to_json() for name, claim in sorted(self.claims.items())},
            "originals": dict(sorted(self.originals.items())),
            "tasks": {str(tid): t.to_json() for tid, t in sorted(self.tasks.items())},
            "tasks_since": self.tasks_since,
            "refused": dict(sorted(self.refused.items())),
            "groups": dict(sorted(self.groups.items())),
            "resctrl_mounted": self.resctrl_mounted,
            "recovered": self.recovered,
        }

    @classmethod
    def from_json(cls, data: Any) -> State:
        """A state read back; :class:`Invalid` when any part of it does not validate."""
        _need(isinstance(data, dict), "the state is not a JSON object")
        _need(data.get("format") == FORMAT, f"unknown state format (expected {FORMAT})")
        state = cls()
        state.seq = _int(data.get("seq", 0), "seq")
        state.journal_at = _int(data.get("journal_at", 0), "journal_at")
        hints = data.get("hints", {})
        _need(isinstance(hints, dict) and len(hints) <= 16, "hints is not a mapping")
        for step, text in hints.items():
            cpus = _cpus(_str(text, "a hint")) if _SETTING_KEY.fullmatch(str(step)) else None
            _need(cpus is not None, "hints must map step names to cpulists")
            state.hints[str(step)] = cpus or frozenset()
        claims = data.get("claims", {})
        _need(isinstance(claims, dict), "claims is not a mapping")
        for name, claim in claims.items():
            _need(valid_name(name), f"claim name {name!r} is not a domain name")
            state.claims[name] = Claim.from_json(name, claim)
        for key in ("originals", "refused", "groups"):
            table = data.get(key, {})
            _need(isinstance(table, dict), f"{key} is not a mapping")
            for path, value in table.items():
                _need(
                    isinstance(path, str) and owned_path(path),
                    f"{key}: {path!r} is no file of the hook",
                )
                _need(isinstance(value, str), f"{key}: the value of {path} is not a string")
                if key == "originals":
                    _need(valid_value(path, value), f"originals: {path} holds {value!r}")
                elif key == "groups":
                    _need(valid_name(value), f"groups: {path} has a bad owner")
            setattr(state, key, dict(table))
        tasks = data.get("tasks", {})
        _need(isinstance(tasks, dict), "tasks is not a mapping")
        for tid, original in tasks.items():
            _need(isinstance(tid, str) and tid.isdigit() and len(tid) <= 10, "bad task id")
            state.tasks[int(tid)] = TaskOriginal.from_json(original)
        since = data.get("tasks_since")
        state.tasks_since = None if since is None else _int(since, "tasks_since")
        mounted = data.get("resctrl_mounted", False)
        _need(isinstance(mounted, bool), "resctrl_mounted is not a boolean")
        state.resctrl_mounted = mounted
        recovered = data.get("recovered", [])
        _need(
            isinstance(recovered, list)
            and len(recovered) <= 64
            and all(isinstance(r, str) and len(r) <= 1024 for r in recovered),
            "recovered is not a list of strings",
        )
        state.recovered = list(recovered)
        return state


# ---- the journal ---------------------------------------------------------------------


def _line(record: dict[str, Any]) -> str:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return f"{zlib.crc32(body.encode('utf-8')):08x} {body}\n"


def apply_record(state: State, record: Any) -> None:
    """Replay one journal record onto ``state``; :class:`Invalid` if it does not validate."""
    _need(isinstance(record, dict), "a record is a mapping")
    op = record.get("op")
    if op == "orig":
        path, value = record.get("path"), record.get("value")
        _need(isinstance(path, str) and owned_path(path), "orig: not a file of the hook")
        _need(isinstance(value, str) and valid_value(path, value), "orig: bad value")
        state.originals.setdefault(path, value)  # the first value ever seen is the original
    elif op == "done":
        path = record.get("path")
        _need(isinstance(path, str), "done: no path")
        state.originals.pop(path, None)
    elif op == "claim":
        name = record.get("name")
        _need(valid_name(name), "claim: bad name")
        state.claims[name] = Claim.from_json(name, record.get("claim"))
    elif op == "drop":
        state.claims.pop(str(record.get("name")), None)
    elif op == "group":
        path, owner = record.get("path"), record.get("owner")
        _need(isinstance(path, str) and resctrl.owns(path) and valid_name(owner), "bad group")
        state.groups[path] = owner
    elif op == "ungroup":
        state.groups.pop(str(record.get("path")), None)
    elif op == "mount":
        state.resctrl_mounted = True
    elif op == "umount":
        state.resctrl_mounted = False
    elif op == "task":
        tid = _int(record.get("tid"), "task: tid", 1, 2**22)
        state.tasks.setdefault(tid, TaskOriginal.from_json(record.get("was")))
        since = record.get("since")
        if since is not None and state.tasks_since is None:
            state.tasks_since = _int(since, "task: since")
    elif op == "taskdone":
        state.tasks.pop(_int(record.get("tid"), "taskdone: tid", 1, 2**22), None)
        if not state.tasks:
            state.tasks_since = None
    else:
        raise Invalid(f"unknown journal record {op!r}")


def parse_journal(data: bytes) -> tuple[list[tuple[int, dict[str, Any]]], int, bool]:
    """(sequence number, record) of every intact line, how many lines were damaged,
    and whether the last line was cut short (a kill while it was written)."""
    records: list[tuple[int, dict[str, Any]]] = []
    damaged = 0
    torn = bool(data) and not data.endswith(b"\n")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for index, raw in enumerate(lines):
        crc, _, body = raw.partition(b" ")
        try:
            if len(crc) != 8 or int(crc, 16) != zlib.crc32(body):
                raise Invalid("checksum")
            record = json.loads(body)
            seq = _int(record.get("seq") if isinstance(record, dict) else None, "seq")
        except (ValueError, RecursionError):
            if not (torn and index == len(lines) - 1):
                damaged += 1
            continue
        records.append((seq, record))
    return records, damaged, torn


class Journal:
    """The append-only journal: records are buffered, then written by :meth:`flush`."""

    def __init__(self, path: str, seq: int = 0) -> None:
        self.path = path
        self.seq = seq
        self.pending: list[str] = []
        self.lines = 0  # lines in the file (for compaction)
        self.size = 0  # bytes in the file

    def add(self, record: dict[str, Any]) -> None:
        self.seq += 1
        self.pending.append(_line({**record, "seq": self.seq}))

    def flush(self) -> None:
        """Write what is pending (before the change it announces): once this returns,
        any later process reads it, even if this one is killed in the next instant."""
        if not self.pending:
            return
        data = "".join(self.pending).encode("utf-8")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except FileNotFoundError:  # the state folder is made by StateStore.locked()
            os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
            fd = os.open(self.path, flags, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        self.lines += len(self.pending)
        self.size += len(data)
        self.pending = []

    def rewrite(self, state: State) -> None:
        """Replace the journal (atomically) by the records that rebuild ``state``."""
        self.pending = []
        for record in records_of(state):
            self.add(record)
        data = "".join(self.pending).encode("utf-8")
        files.atomic_write(self.path, data, mode=0o600, durable=False)
        self.lines = len(self.pending)
        self.size = len(data)
        self.pending = []


def records_of(state: State) -> list[dict[str, Any]]:
    """Journal records from which :func:`apply_record` rebuilds ``state`` (but ``refused``)."""
    records: list[dict[str, Any]] = [
        {"op": "orig", "path": path, "value": value}
        for path, value in sorted(state.originals.items())
    ]
    records += [
        {"op": "task", "tid": tid, "was": t.to_json(), "since": state.tasks_since}
        for tid, t in sorted(state.tasks.items())
    ]
    records += [{"op": "group", "path": p, "owner": o} for p, o in sorted(state.groups.items())]
    if state.resctrl_mounted:
        records.append({"op": "mount"})
    records += [
        {"op": "claim", "name": name, "claim": claim.to_json()}
        for name, claim in sorted(state.claims.items())
    ]
    return records


# ---- the store -------------------------------------------------------------------------


class StateStore:
    """The state of a host (rooted, like every /run path)."""

    def __init__(self, fs: HostFS) -> None:
        self.fs = fs
        # strings, not pathlib's paths: the hook does not import pathlib (~2.5 ms)
        self.path = fs.real(STATE_FILE)
        self.lock_path = fs.real(LOCK_FILE)
        self.journal = Journal(fs.real(JOURNAL_FILE))
        self.boot_path = fs.real(BOOT_FILE)
        self._rewrite = False  # the journal must be rewritten from the state at the next save
        self.notes: list[str] = []  # what the last load recovered (for the log)
        self.interrupted = False  # the last load found the work of a call that died half-way

    def exists(self) -> bool:
        return os.path.exists(self.path) or os.path.exists(self.journal.path)

    @contextmanager
    def locked(self, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """Hold the exclusive lock (waiting up to ``timeout`` seconds)."""
        os.makedirs(os.path.dirname(self.lock_path), mode=0o755, exist_ok=True)
        try:
            fd = files.lock(self.lock_path, timeout)
        except files.LockBusy:
            raise StateError(
                f"another rtlibvirt hook has held {self.lock_path} for over {timeout:.0f} s"
            ) from None
        except OSError as exc:
            raise StateError(f"cannot lock {self.lock_path}: {exc.strerror}") from None
        try:
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def load(self) -> State:
        """The state: the snapshot plus the journal after it, or the journal alone.

        A damaged snapshot is set aside and the state rebuilt from the journal;
        what was recovered is in ``State.recovered``. Call under the lock.
        """
        data = _read(self.path)
        raw_journal = _read(self.journal.path) or b""
        notes: list[str] = []
        boot = boot_id(self.fs)
        if boot is not None:
            earlier = self._earlier_boot(boot) if data is not None or raw_journal else None
            if earlier is not None:
                aside = self._set_aside_earlier_boot()
                notes.append(
                    f"the state was left by an earlier boot ({earlier}; this boot is {boot}): "
                    f"its values did not survive the reboot, so nothing of it is restored; "
                    f"set aside as {aside}"
                )
                data, raw_journal = None, b""
            if _read(self.boot_path) != boot.encode():
                # before any journal line of this boot (this is the start of a call)
                os.makedirs(os.path.dirname(self.boot_path), mode=0o755, exist_ok=True)
                files.atomic_write(self.boot_path, boot.encode(), mode=0o600, durable=False)
        self.journal.lines = raw_journal.count(b"\n")
        self.journal.size = len(raw_journal)
        state: State | None = None
        if data is not None:
            try:
                state = decode(data)
            except Invalid as exc:
                aside = self._set_aside()
                notes.append(
                    f"the state file was damaged ({exc}); set aside as {aside} and "
                    f"rebuilt from the journal"
                )
        tail = None
        if state is not None and 0 < state.journal_at <= len(raw_journal):
            # the snapshot holds the journal up to journal_at: read only what follows
            tail = parse_journal(raw_journal[state.journal_at :])
            if tail[1] or (tail[0] and tail[0][0][0] != state.seq + 1):
                tail = None  # not the journal the snapshot knew (compacted since?): all of it
        records, damaged, _torn = tail if tail is not None else parse_journal(raw_journal)
        base = state.seq if state is not None else -1
        if state is None:
            state = State()
        bad = 0
        replayed = 0
        for seq, record in records:
            if seq > base:
                replayed += 1
                try:
                    apply_record(state, record)
                except Invalid:
                    bad += 1
        # journal lines after the snapshot: the call that wrote them died before its end
        self.interrupted = replayed > 0
        if damaged or bad:
            notes.append(f"{damaged + bad} journal lines were damaged and skipped")
        state.seq = max([state.seq, *(seq for seq, _ in records)])
        self.journal.seq = state.seq
        self.notes = notes
        if notes:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            state.recovered = [*state.recovered, *(f"{stamp} {n}" for n in notes)][-64:]
        # After a damage, or when the journal went missing beside a snapshot, the
        # journal is rewritten so that it holds the whole state again.
        self._rewrite = bool(notes) or (not raw_journal and not state.is_empty())
        return state

    def _earlier_boot(self, boot: str) -> str | None:
        """The boot id the state on disk was written under, if it is not ``boot``
        (None: this boot's, or unknown: a state from before boot ids were kept)."""
        saved = _read(self.boot_path)
        if saved is None:
            return None
        text = saved.decode("ascii", "replace").strip()
        return None if text == boot else escape_id(text)

    def _set_aside_earlier_boot(self) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        moved = []
        for path in (self.path, self.journal.path):
            aside = f"{path}.earlier-boot-{stamp}-{os.getpid()}"
            with suppress(FileNotFoundError):
                os.replace(path, aside)
                moved.append(aside)
        return " and ".join(moved) or "nothing"

    def _set_aside(self) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = f"{self.path}.damaged-{stamp}-{os.getpid()}"
        os.replace(self.path, aside)
        return aside

    def set_aside_files(self) -> list[str]:
        """Damaged state files set aside so far (for ``hook status``)."""
        try:
            folder, name = os.path.split(self.path)
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        prefixes = (f"{name}.damaged-", f"{name}.corrupt-")
        return sorted(
            os.path.join(folder, n)
            for n in names
            if n.startswith(prefixes) and not n.endswith(".restored")
        )

    def save(self, state: State) -> None:
        """Flush the journal and write the snapshot; remove both when the state is empty."""
        if state.is_empty():
            self.journal.pending = []
            for path in (self.path, self.journal.path):
                with suppress(FileNotFoundError):
                    os.unlink(path)
            self.journal.lines = 0
            return
        live = len(state.originals) + len(state.tasks) + len(state.claims) + len(state.groups)
        unjournaled = self.journal.lines == 0 and not self.journal.pending  # state made by hand
        if (
            self._rewrite
            or unjournaled
            or self.journal.lines + len(self.journal.pending) > 2 * live + 256
        ):
            self.journal.rewrite(state)  # compaction (or a recovery): the live records only
            self._rewrite = False
        else:
            self.journal.flush()
        state.seq = self.journal.seq
        state.journal_at = self.journal.size
        files.atomic_write(self.path, encode(state), mode=0o600, durable=False)


def boot_id(fs: HostFS) -> str | None:
    """The kernel's id of this boot; None where the tree has none (fake hosts)."""
    try:
        with open(fs.real(BOOT_ID), "rb") as handle:
            text = handle.read(64).decode("ascii", "replace").strip()
    except OSError:
        return None
    return text if _BOOT_ID.fullmatch(text) else None


def escape_id(text: str) -> str:
    """A boot id read back from a file, safe to quote in a log line."""
    text = text[:40]
    return text if _BOOT_ID.fullmatch(text) else repr(text)


def _read(path: object) -> bytes | None:
    try:
        with open(str(path), "rb") as handle:
            data = handle.read(MAX_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE:
        raise StateError(f"{path} is larger than {MAX_FILE // (1024 * 1024)} MiB")
    return data


def encode(state: State) -> bytes:
    body = json.dumps(state.to_json(), separators=(",", ":")).encode("utf-8")
    return f"{HEADER} {FORMAT} {zlib.crc32(body):08x}\n".encode() + body + b"\n"


def decode(data: bytes) -> State:
    """A snapshot's state; :class:`Invalid` if it is damaged or does not validate."""
    if data.lstrip()[:1] == b"{":
        return _legacy(data)
    head, _, body = data.partition(b"\n")
    parts = head.split()
    _need(len(parts) == 3 and parts[0] == HEADER.encode(), "no state header")
    _need(parts[1] == str(FORMAT).encode(), f"unknown state format (expected {FORMAT})")
    body = body[:-1] if body.endswith(b"\n") else body
    _need(int(parts[2], 16) == zlib.crc32(body), "its checksum does not match (edited by hand?)")
    try:
        return State.from_json(json.loads(body))
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, Invalid):
            raise
        raise Invalid(str(exc)) from None


def _legacy(data: bytes) -> State:
    """A state file of rtlibvirt before the journal (format 1, plain JSON), validated.

    A hook upgraded while VMs run finds one: its claims' settings are checked
    by the ``Isolation`` model, its originals like any other; the next save
    writes it in the current format, journal included.
    """
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"not JSON: {exc}") from None
    _need(isinstance(raw, dict) and raw.get("format") == 1, "unknown state format")
    from rtlibvirt.config.model import Errors
    from rtlibvirt.config.vm import Isolation

    claims = raw.get("claims", {})
    _need(isinstance(claims, dict), "claims is not a mapping")
    for claim in claims.values():
        _need(isinstance(claim, dict), "a claim is not a mapping")
        errors = Errors()
        try:
            isolation = Isolation.parse(claim.get("settings") or {}, ("settings",), errors)
        except ValueError as exc:  # config.model.Invalid: not a mapping
            raise Invalid(f"a claim's settings do not validate: {exc}") from None
        _need(not errors.found, "a claim's settings do not validate")
        claim["settings"] = Settings.from_model(isolation).to_json()
    raw["format"] = FORMAT
    return State.from_json(raw)


def fold_set_aside(store: StateStore, state: State, keep: Callable[[str, str], None]) -> list[str]:
    """Take the originals of set-aside state files that ``state`` lacks (``hook restore``).

    A set-aside file is damaged, so each of its originals is taken only if its
    path is a file of the hook and its value has that file's format; ``keep``
    records it (and journals it). Returns the files read.
    """
    folded = []
    for path in store.set_aside_files():
        data = _read(path) or b""
        if not data.lstrip().startswith(b"{"):
            data = data.partition(b"\n")[2]  # our header; its checksum failed
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError):
            folded.append(path)
            continue
        table = raw.get("originals") if isinstance(raw, dict) else None
        if isinstance(table, dict):
            for key, value in sorted(table.items()):
                if (
                    isinstance(key, str)
                    and isinstance(value, str)
                    and key not in state.originals
                    and owned_path(key)
                    and valid_value(key, value)
                ):
                    keep(key, value)
        folded.append(path)
    return folded


def peek(fs: HostFS) -> State:
    """The state as it is on disk, read without the lock and without setting anything aside.

    For readers outside the hook (``rtlibvirt hook status``, ``rtlibvirt status``);
    a damaged snapshot is rebuilt from the journal in memory. Raises
    StateError when neither can be read.
    """
    store = StateStore(fs)
    data = _read(store.path)
    raw = _read(store.journal.path) or b""
    boot = boot_id(fs)
    earlier = store._earlier_boot(boot) if boot is not None and (data or raw) else None
    if earlier is not None:
        stale = State()
        stale.recovered = [f"the state on disk was left by an earlier boot ({earlier}): ignored"]
        return stale
    state: State | None = None
    problem = None
    if data is not None:
        try:
            state = decode(data)
        except (Invalid, ValueError) as exc:
            problem = str(exc)
    if state is None:
        if problem is not None and not raw:
            raise StateError(f"{store.path} is unreadable: {problem}")
        state = State()
        base = -1
    else:
        base = state.seq
    records, _damaged, _torn = parse_journal(raw)
    for seq, record in records:
        if seq > base:
            try:
                apply_record(state, record)
            except Invalid:
                continue
    if problem is not None:
        state.recovered = [*state.recovered, f"the state file is damaged ({problem})"]
    return state


def isolated_by_vm(fs: HostFS | None = None) -> dict[str, frozenset[int]] | None:
    """Domain name -> the host CPUs the hook isolates for it now (running or starting VMs).

    An empty mapping when no VM is isolated; None when the state cannot be read.
    Never raises.
    """
    try:
        state = peek(fs or HostFS("/"))
    except StateError:
        return None
    return {claim.name: claim.cpus for claim in state.isolating()}


def unmoved_by_vm(fs: HostFS | None = None) -> dict[str, list[str]]:
    """Domain name -> the host threads the hook could not move off its CPUs.

    Empty when there are none or the state cannot be read. Never raises.
    """
    try:
        state = peek(fs or HostFS("/"))
    except StateError:
        return {}
    return {claim.name: list(claim.unmoved) for claim in state.isolating() if claim.unmoved}

"""The hook's state: one JSON file under ``/run/rtlibvirt/``, locked and atomic.

What it holds:

- ``claims``: one per real-time VM the hook looks after, by domain name: its
  CPUs, its isolation settings, its QEMU pid and vCPU thread ids, its cache
  ways. A claim is made at ``prepare`` (phase ``prepared``: the CPUs are
  reserved, nothing is changed yet) and becomes ``running`` at ``started``;
  ``stopped``/``release`` drop it.
- ``originals``: the value of every host file the hook has changed, read
  *before* the first change and saved (fsync, rename) before the write. A
  value leaves this table only once it is back to its original.
- ``refused``: files whose write the kernel refused (e.g. an IRQ that cannot
  be moved); they are left alone until the last VM stops.
- ``groups``: the resctrl groups the hook created, and by whom;
  ``resctrl_mounted``: the hook mounted resctrl (and unmounts it at the end).

The file lives in /run, so it goes away at reboot together with every runtime
value it describes. :meth:`StateStore.locked` holds an exclusive ``flock`` on
a separate lock file for the whole hook call, so that hook processes of VMs
starting at the same time run one after the other and lose no update.

A state file that cannot be read is renamed aside (``state.json.corrupt-*``)
and reported; the hook goes on with an empty state and never crashes on it.

Standard library only (no dataclasses either: they cost the hook ~10 ms).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rtlibvirt.kernel import files
from rtlibvirt.kernel.cpuset import format_cpulist, parse_cpulist
from rtlibvirt.kernel.fs import HostFS

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for the hook)
if TYPE_CHECKING:
    from typing import Any

STATE_DIR = "/run/rtlibvirt"
STATE_FILE = f"{STATE_DIR}/state.json"
LOCK_FILE = f"{STATE_DIR}/lock"
FORMAT = 1
LOCK_TIMEOUT = 60.0  # seconds; libvirt waits for the hook meanwhile

PHASE_PREPARED = "prepared"
PHASE_RUNNING = "running"


class StateError(Exception):
    """The state cannot be locked, read or written."""


class Settings:
    """A VM's ``isolation`` section, with the defaults filled in."""

    __slots__ = ("cache_ways", "irqs", "machine_check_polling", "strict", "workqueues")

    def __init__(
        self,
        irqs: bool = True,
        workqueues: bool = True,
        machine_check_polling: bool | None = None,
        cache_ways: int = 0,
        strict: bool = False,
    ) -> None:
        self.irqs = irqs
        self.workqueues = workqueues
        self.machine_check_polling = machine_check_polling
        self.cache_ways = cache_ways
        self.strict = strict

    @property
    def machine_check_off(self) -> bool:
        return self.machine_check_polling is False

    def to_json(self) -> dict[str, Any]:
        return {
            "irqs": self.irqs,
            "workqueues": self.workqueues,
            "machine_check_polling": self.machine_check_polling,
            "cache_ways": self.cache_ways,
            "strict": self.strict,
        }

    @classmethod
    def from_json(cls, data: Any) -> Settings:
        """Parse the metadata's (or state's) ``isolation`` mapping; ValueError if malformed."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError("isolation must be a mapping")
        settings = cls()
        for key in ("irqs", "workqueues", "strict"):
            if key in data:
                value = data[key]
                if not isinstance(value, bool):
                    raise ValueError(f"isolation.{key} must be true or false, not {value!r}")
                setattr(settings, key, value)
        if "machine_check_polling" in data:
            value = data["machine_check_polling"]
            if value is not None and not isinstance(value, bool):
                raise ValueError(
                    f"isolation.machine_check_polling must be true, false or null, not {value!r}"
                )
            settings.machine_check_polling = value
        if "cache_ways" in data:
            value = data["cache_ways"]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 64:
                raise ValueError(f"isolation.cache_ways must be an integer 0-64, not {value!r}")
            settings.cache_ways = value
        return settings

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and self.to_json() == other.to_json()

    def __hash__(self) -> int:  # pragma: no cover - not used as a key
        return hash(tuple(self.to_json().items()))

    def __repr__(self) -> str:
        return f"Settings({self.to_json()!r})"


class Claim:
    """One real-time VM that the hook looks after."""

    __slots__ = (
        "cache",
        "cache_error",
        "cpus",
        "name",
        "phase",
        "pid",
        "settings",
        "since",
        "tids",
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
        }

    @classmethod
    def from_json(cls, name: str, data: Any) -> Claim:
        if not isinstance(data, dict):
            raise ValueError(f"claim {name!r} is not a mapping")
        phase = data.get("phase")
        if phase not in (PHASE_PREPARED, PHASE_RUNNING):
            raise ValueError(f"claim {name!r} has an unknown phase {phase!r}")
        pid = data.get("pid")
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
            raise ValueError(f"claim {name!r}: pid must be an integer")
        tids = data.get("tids") or []
        if not isinstance(tids, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in tids
        ):
            raise ValueError(f"claim {name!r}: tids must be a list of integers")
        cache = data.get("cache") or {}
        if not isinstance(cache, dict):
            raise ValueError(f"claim {name!r}: cache must be a mapping")
        since = data.get("since", 0.0)
        if isinstance(since, bool) or not isinstance(since, int | float):
            raise ValueError(f"claim {name!r}: since must be a number")
        cache_error = data.get("cache_error")
        if cache_error is not None and not isinstance(cache_error, str):
            raise ValueError(f"claim {name!r}: cache_error must be a string")
        return cls(
            name,
            frozenset(parse_cpulist(str(data.get("cpus", "")))),
            Settings.from_json(data.get("settings")),
            uuid=data.get("uuid") if isinstance(data.get("uuid"), str) else None,
            phase=phase,
            pid=pid,
            since=float(since),
            tids=tids,
            cache={str(k): int(str(v), 16) for k, v in cache.items()},
            cache_error=cache_error,
        )


class State:
    """The hook's whole state, as loaded from (and saved to) the state file."""

    def __init__(self) -> None:
        self.claims: dict[str, Claim] = {}
        self.originals: dict[str, str] = {}
        self.refused: dict[str, str] = {}
        self.groups: dict[str, str] = {}  # resctrl group path -> owning domain name
        self.resctrl_mounted = False
        self.set_aside: str | None = None  # where a corrupt state file was moved this call

    def is_empty(self) -> bool:
        return not (
            self.claims or self.originals or self.refused or self.groups or self.resctrl_mounted
        )

    def running(self) -> list[Claim]:
        return [c for _, c in sorted(self.claims.items()) if c.running]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "claims": {name: claim.to_json() for name, claim in sorted(self.claims.items())},
            "originals": dict(sorted(self.originals.items())),
            "refused": dict(sorted(self.refused.items())),
            "groups": dict(sorted(self.groups.items())),
            "resctrl_mounted": self.resctrl_mounted,
        }

    @classmethod
    def from_json(cls, data: Any) -> State:
        if not isinstance(data, dict):
            raise ValueError("the state is not a JSON object")
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown state format {data.get('format')!r} (expected {FORMAT})")
        state = cls()
        claims = data.get("claims", {})
        if not isinstance(claims, dict):
            raise ValueError("claims is not a mapping")
        state.claims = {str(name): Claim.from_json(str(name), c) for name, c in claims.items()}
        for key in ("originals", "refused", "groups"):
            table = data.get(key, {})
            if not isinstance(table, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in table.items()
            ):
                raise ValueError(f"{key} is not a mapping of strings")
            setattr(state, key, dict(table))
        mounted = data.get("resctrl_mounted", False)
        if not isinstance(mounted, bool):
            raise ValueError("resctrl_mounted is not a boolean")
        state.resctrl_mounted = mounted
        return state


class StateStore:
    """The state file of a host (rooted, like every /run path)."""

    def __init__(self, fs: HostFS) -> None:
        self.fs = fs
        self.path = fs.path(STATE_FILE)
        self.lock_path = fs.path(LOCK_FILE)

    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def locked(self, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """Hold the exclusive lock (waiting up to ``timeout`` seconds)."""
        os.makedirs(self.lock_path.parent, mode=0o755, exist_ok=True)
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
        """The state; an unreadable file is set aside (see ``State.set_aside``)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return State()
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            return State.from_json(json.loads(raw))
        except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError
            aside = self._set_aside()
            state = State()
            state.set_aside = f"{aside} ({exc})"
            return state

    def _set_aside(self) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{os.getpid()}")
        os.replace(self.path, aside)
        return str(aside)

    def set_aside_files(self) -> list[str]:
        """Corrupt state files set aside so far (for ``hook status``)."""
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return []
        return sorted(
            str(self.path.parent / n) for n in names if n.startswith(f"{self.path.name}.corrupt-")
        )

    def save(self, state: State) -> None:
        """Write the state atomically (temp file, fsync, rename); remove it when empty."""
        if state.is_empty():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                return
            files.fsync_dir(self.path.parent)
            return
        data = json.dumps(state.to_json(), indent=1).encode("utf-8") + b"\n"
        files.atomic_write(self.path, data, mode=0o600)


def peek(fs: HostFS) -> State:
    """The state as it is on disk, read without the lock and without setting anything aside.

    For readers outside the hook (``rtlibvirt hook status``, ``rtlibvirt status``);
    raises StateError when the file cannot be read or parsed.
    """
    path = fs.path(STATE_FILE)
    try:
        return State.from_json(json.loads(path.read_bytes()))
    except FileNotFoundError:
        return State()
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise StateError(f"{path} is unreadable: {exc}") from None


def isolated_by_vm(fs: HostFS | None = None) -> dict[str, frozenset[int]] | None:
    """Domain name -> the host CPUs the hook isolates for it now (running VMs).

    An empty mapping when no VM is isolated; None when the state cannot be read.
    Never raises.
    """
    try:
        state = peek(fs or HostFS("/"))
    except StateError:
        return None
    return {claim.name: claim.cpus for claim in state.running()}

"""Install, remove and inspect the libvirt qemu hook (``rtlibvirt hook ...``).

The hook is installed as ``HOOKS_DIR/qemu.d/50-rtlibvirt``: libvirt 6.5 and
later run every executable in ``qemu.d/`` after ``HOOKS_DIR/qemu``, which stays
the user's own and is never touched. libvirt looks for hook scripts only when
the daemon starts (or reloads), so a daemon started before the hook was
installed must be restarted to see it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rtlibvirt import __version__, resources
from rtlibvirt.errors import HostError, InputError
from rtlibvirt.hook import log as hooklog
from rtlibvirt.hook.state import STATE_FILE, State, StateError, StateStore, peek
from rtlibvirt.kernel import procs, rtgroup
from rtlibvirt.kernel.cpuset import format_cpulist
from rtlibvirt.kernel.files import atomic_write
from rtlibvirt.kernel.fs import HostFS

DEFAULT_HOOKS_DIR = Path("/etc/libvirt/hooks")
HOOK_NAME = "qemu.d/50-rtlibvirt"
DAEMONS = ("libvirtd", "virtqemud")
_MARKER = "rtlibvirt's libvirt qemu hook"
_SHELL = "#!/bin/sh"
# The three lines that `render` fills in: NAME='value' (sh quoting: ' is '\'').
_SETTING = re.compile(r"^RTLIBVIRT_(VERSION|PYTHON|PATH)='((?:[^']|'\\'')*)'$", re.MULTILINE)
# Hooks installed before the shell entry were Python scripts: #!PYTHON -IS, then
# NAME = "json".
_OLD_VERSION_LINE = re.compile(r'^RTLIBVIRT_VERSION = "([^"]*)"', re.MULTILINE)
_OLD_PATH_LINE = re.compile(r"^RTLIBVIRT_PATH = (\".*\")$", re.MULTILINE)


def host_fs() -> HostFS:
    """The host whose hook state these commands read: / (RTLIBVIRT_HOST_ROOT in tests)."""
    return HostFS(os.environ.get("RTLIBVIRT_HOST_ROOT") or "/")


def package_dir() -> Path:
    """The folder that holds the rtlibvirt package (put on the hook's sys.path)."""
    return Path(__file__).resolve().parents[2]


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def render(python: str | None = None, path: Path | None = None) -> str:
    """The hook file as installed: hooks/qemu with the version, Python and path filled in."""
    python = python or sys.executable
    if not python or not os.path.isabs(python) or any(c in python for c in "\n\r\0"):
        raise HostError(
            f"cannot run the hook with the Python {python!r}: not an absolute path of one line",
            "install rtlibvirt into a Python with a plain absolute path",
        )
    source = resources.hook_script().read_text(encoding="utf-8")
    if not source.startswith(_SHELL + "\n"):
        raise HostError("the packaged hooks/qemu is not a shell script: the installation is broken")
    values = {"VERSION": __version__, "PYTHON": python, "PATH": str(path or package_dir())}
    for name, value in values.items():
        empty = f"RTLIBVIRT_{name}=''"
        if source.count(empty) != 1:
            raise HostError(f"the packaged hooks/qemu lacks {empty}: the installation is broken")
        source = source.replace(empty, f"RTLIBVIRT_{name}={_sh_quote(value)}", 1)
    return source


def installed_settings(text: str) -> dict[str, str]:
    """VERSION, PYTHON and PATH of an installed hook (of this version or an older one)."""
    found = {m.group(1): m.group(2).replace("'\\''", "'") for m in _SETTING.finditer(text)}
    if found or text.startswith(_SHELL):
        return found
    # before the shell entry: a Python script run by the Python of its #! line
    first = text.splitlines()[0] if text else ""
    words = first[2:].split() if first.startswith("#!") else []
    if words:
        found["PYTHON"] = words[0]
    version = _OLD_VERSION_LINE.search(text)
    if version:
        found["VERSION"] = version.group(1)
    path = _OLD_PATH_LINE.search(text)
    if path:
        with contextlib.suppress(ValueError):
            found["PATH"] = str(json.loads(path.group(1)))
    return found


def stale_reason(text: str) -> str | None:
    """Why an installed hook is not what this rtlibvirt would install; None if it is."""
    settings = installed_settings(text)
    python, path = settings.get("PYTHON"), settings.get("PATH")
    try:
        wanted = render(python, Path(path) if path else None) if python else None
    except HostError:
        wanted = None
    if text == wanted:
        return None
    if not text.startswith(_SHELL):
        return (
            "an older hook that starts Python for every call of every domain "
            "(about 10 ms each, five calls per start and stop)"
        )
    version = settings.get("VERSION")
    if version and version != __version__:
        return f"installed by rtlibvirt {version}; this is rtlibvirt {__version__}"
    return f"it differs from what rtlibvirt {__version__} installs (edited, or another build)"


@dataclass(frozen=True)
class InstallResult:
    path: Path
    changed: bool  # False: the same hook was already there
    user_hook: Path | None  # the user's own DIR/qemu, left alone
    upgraded: str | None = None  # the hook replaced was out of date: why


def install(hooks_dir: Path = DEFAULT_HOOKS_DIR) -> InstallResult:
    if hooks_dir == DEFAULT_HOOKS_DIR and not hooks_dir.parent.is_dir():
        raise HostError(
            f"{hooks_dir.parent} does not exist: is libvirt installed?",
            "install libvirt (Debian: apt install libvirt-daemon-system), or pass --hooks-dir",
        )
    content = render()
    target = hooks_dir / HOOK_NAME
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise HostError(f"{target} exists and is not a regular file; nothing was changed")
    if target.is_file() and not _ours(target):
        raise HostError(
            f"{target} exists and was not installed by rtlibvirt; nothing was changed",
            "move it away, or pass another --hooks-dir",
        )
    user = hooks_dir / "qemu"
    user_hook = user if user.exists() else None
    upgraded = None
    try:
        if target.is_file():
            old = target.read_text(encoding="utf-8", errors="replace")
            if old == content:
                if os.stat(target).st_mode & 0o777 != 0o755:
                    os.chmod(target, 0o755)
                return InstallResult(target, False, user_hook)
            upgraded = stale_reason(old) or "it was installed from another Python or folder"
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        atomic_write(target, content.encode("utf-8"), mode=0o755)
    except OSError as exc:
        raise HostError(
            f"cannot install the hook as {target}: {exc.strerror or exc}",
            "run as root" if isinstance(exc, PermissionError) else None,
        ) from None
    return InstallResult(target, True, user_hook, upgraded)


def _ours(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return False
    return _MARKER in head


def uninstall(
    hooks_dir: Path = DEFAULT_HOOKS_DIR, *, fs: HostFS | None = None, force: bool = False
) -> bool:
    """Remove the hook; False when it was not installed."""
    target = hooks_dir / HOOK_NAME
    if not target.exists() and not target.is_symlink():
        return False
    if not _ours(target):
        raise HostError(f"{target} was not installed by rtlibvirt; nothing was removed")
    claims = isolated_vms(fs or host_fs())
    if claims and not force:
        raise InputError(
            f"real-time VMs are isolated by the hook now ({', '.join(claims)}): without the "
            "hook, stopping them would not undo their isolation; nothing was removed",
            "stop them first, or pass --force",
        )
    try:
        target.unlink()
    except OSError as exc:
        raise HostError(f"cannot remove {target}: {exc.strerror or exc}") from None
    return True


def isolated_vms(fs: HostFS) -> list[str]:
    try:
        state = peek(fs)
    except StateError:
        return []
    return sorted(state.claims)


# ---- status --------------------------------------------------------------------


@dataclass(frozen=True)
class Daemon:
    name: str
    pid: int
    started: float  # epoch seconds


@dataclass
class Status:
    path: Path
    installed: bool
    current: bool = False
    stale: str | None = None  # installed, but not what this rtlibvirt installs: why
    installed_version: str | None = None
    python: str | None = None
    python_ok: bool | None = False  # None: cannot be told by this user (not root)
    installed_at: float | None = None
    daemon: Daemon | None = None
    user_hook: Path | None = None
    claims: dict[str, str] = field(default_factory=dict)  # name -> "CPUs 1, running"
    unrestored: int = 0  # saved originals: values the hook changed and will restore
    kernel_threads: int = 0  # of them: kernel threads raised above the vCPUs
    state_file: str = ""
    state_problem: str | None = None
    set_aside: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)  # what the hook rebuilt from its journal
    log: str = ""
    rt_problem: str | None = None

    @property
    def needs_restart(self) -> bool | None:
        """Did the daemon start before the hook was installed? None if unknown."""
        if not self.installed or self.daemon is None or self.installed_at is None:
            return None
        return self.daemon.started < self.installed_at

    def to_json(self) -> dict[str, object]:
        daemon = self.daemon
        return {
            "ok": self.ok,
            "path": str(self.path),
            "installed": self.installed,
            "current": self.current,
            "stale": self.stale,
            "installed_version": self.installed_version,
            "python": self.python,
            "python_ok": self.python_ok,
            "installed_at": self.installed_at,
            "daemon": None
            if daemon is None
            else {"name": daemon.name, "pid": daemon.pid, "started": daemon.started},
            "needs_restart": self.needs_restart,
            "user_hook": str(self.user_hook) if self.user_hook is not None else None,
            "claims": dict(self.claims),
            "unrestored": self.unrestored,
            "state_file": self.state_file,
            "state_problem": self.state_problem,
            "set_aside": list(self.set_aside),
            "recovered": list(self.recovered),
            "log": self.log,
            "rt_problem": self.rt_problem,
        }

    @property
    def ok(self) -> bool:
        return (
            self.installed
            and self.current
            and self.python_ok is not False
            and self.needs_restart is not True
            and self.state_problem is None
            and not self.set_aside
            and not self.recovered
            and self.rt_problem is None
        )


def status(hooks_dir: Path = DEFAULT_HOOKS_DIR, fs: HostFS | None = None) -> Status:
    fs = fs or host_fs()
    target = hooks_dir / HOOK_NAME
    result = Status(path=target, installed=target.is_file() and _ours(target))
    user = hooks_dir / "qemu"
    result.user_hook = user if user.exists() else None
    if result.installed:
        text = target.read_text(encoding="utf-8", errors="replace")
        settings = installed_settings(text)
        result.installed_version = settings.get("VERSION")
        result.python = settings.get("PYTHON")
        result.python_ok = _runnable(result.python)
        result.stale = stale_reason(text)
        result.current = result.stale is None
        result.installed_at = target.stat().st_mtime
    result.daemon = find_daemon(fs)
    try:
        state = peek(fs)
    except StateError as exc:
        result.state_problem = str(exc)
        state = State()
    for name, claim in sorted(state.claims.items()):
        result.claims[name] = f"CPUs {format_cpulist(claim.cpus)}, {claim.phase}"
    result.unrestored = len(state.originals) + len(state.tasks)
    result.kernel_threads = sum(1 for key in state.originals if procs.owns_sched(key))
    result.recovered = list(state.recovered)
    result.state_file = str(fs.path(STATE_FILE))
    result.set_aside = StateStore(fs).set_aside_files()
    result.log = hooklog.destination(fs)
    result.rt_problem = rtgroup.diagnose(fs)
    return result


def find_daemon(fs: HostFS) -> Daemon | None:
    """The running libvirtd (or modular virtqemud) and when it started."""
    candidates: list[int] = []
    for name in DAEMONS:
        text = fs.read_or(f"/run/{name}.pid", "").strip()
        if text.isdigit():
            candidates.append(int(text))
    for pid in candidates:
        daemon = _daemon(fs, pid)
        if daemon:
            return daemon
    for entry in fs.listdir("/proc"):
        if entry.isdigit():
            daemon = _daemon(fs, int(entry))
            if daemon:
                return daemon
    return None


def _daemon(fs: HostFS, pid: int) -> Daemon | None:
    comm = procs.comm(fs, pid).strip()
    if comm not in DAEMONS:
        return None
    info = procs.stat(fs, pid)
    if info is None or info.state == "Z":
        return None  # gone, or a zombie of an earlier daemon
    started = procs.start_time(fs, pid)
    return None if started is None else Daemon(comm, pid, started)


# ---- restore -------------------------------------------------------------------------


@dataclass
class RestoreResult:
    restored: int  # values put back
    left: int  # values that could not be put back (they stay in the state)
    released: list[str]  # claims of VMs that no longer run, dropped
    folded: list[str]  # set-aside state files whose originals were taken in
    messages: list[str]  # what the log says about it


def _runnable(python: str | None) -> bool | None:
    """The hook's Python can run; None when this user cannot look (a folder of root's)."""
    if not python:
        return False
    try:
        mode = os.stat(python).st_mode
    except PermissionError:
        return None
    except OSError:
        return False
    if os.access(python, os.X_OK):
        return True
    return None if os.geteuid() != 0 and mode & 0o111 else False


def restore(fs: HostFS | None = None) -> RestoreResult:
    """Put every saved original back, when no rtlibvirt VM runs.

    The hook's state (rebuilt from its journal if it is damaged), and the
    originals of damaged state files set aside earlier that the state no
    longer holds: every value goes back, every group the hook made goes, a
    resctrl the hook mounted is unmounted. Raises InputError while a VM the
    hook isolates still runs (its stop does this) and HostError when the state
    cannot be locked.
    """
    from rtlibvirt.hook import isolation, ops
    from rtlibvirt.hook.isolation import Host
    from rtlibvirt.hook.log import HookLog
    from rtlibvirt.hook.state import StateStore, fold_set_aside

    fs = fs or HostFS("/")
    store = StateStore(fs)
    log = HookLog(fs, "rtlibvirt hook restore")
    try:
        with store.locked(timeout=10):
            state = store.load()
            host = Host(fs, state, log, store)
            running = sorted(c.name for c in state.claims.values() if ops.alive(fs, c))
            if running:
                raise InputError(
                    f"real-time VMs run with the hook's isolation ({', '.join(running)}); "
                    "nothing was changed",
                    "stop them: their stop hooks restore what they need",
                )
            released = sorted(state.claims)
            for name in released:
                host.drop_claim(name)
            folded = fold_set_aside(store, state, host.keep_original)
            before = len(state.originals) + len(state.tasks)
            isolation.reconcile(host)
            host.commit()
            left = len(state.originals) + len(state.tasks)
            if not left:
                for path in folded:
                    os.replace(path, path + ".restored")
            return RestoreResult(
                restored=before - left,
                left=left,
                released=released,
                folded=folded,
                messages=[text for level, text in log.lines if level != "debug"],
            )
    except StateError as exc:
        hint = None
        if os.geteuid() != 0 and "Permission denied" in str(exc):
            hint = "the hook's state belongs to root: run it with sudo"
        raise HostError(str(exc), hint) from None
    finally:
        log.close()


# ---- restart -------------------------------------------------------------------------


def restart_daemon(fs: HostFS | None = None) -> str:
    """Restart the daemon through systemd where it runs it; else say what to run."""
    fs = fs or host_fs()
    systemctl = shutil.which("systemctl")
    if systemctl and os.path.isdir("/run/systemd/system"):
        for unit in ("virtqemud", "libvirtd"):
            active = subprocess.run(
                [systemctl, "is-active", "--quiet", unit], check=False, capture_output=True
            )
            if active.returncode == 0:
                done = subprocess.run(
                    [systemctl, "restart", unit], check=False, capture_output=True, text=True
                )
                if done.returncode != 0:
                    raise HostError(
                        f"systemctl restart {unit} failed: {done.stderr.strip()}",
                        f"run `systemctl restart {unit}` yourself",
                    )
                return f"restarted {unit} (systemd)"
    daemon = find_daemon(fs)
    if daemon is None:
        return "no libvirt daemon runs: the hook is used from its next start"
    return (
        f"{daemon.name} (pid {daemon.pid}) is not run by systemd here: restart it yourself so "
        f"that it sees the hook, e.g. `kill {daemon.pid}; {daemon.name} -d` "
        "(with the options it was started with); running VMs keep running"
    )

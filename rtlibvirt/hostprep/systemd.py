"""systemd: the CPUAffinity drop-in, and the boot-time unit that re-applies runtime values.

``/etc/systemd/system.conf.d/50-rtlibvirt.conf`` pins the service manager and
everything it starts to the housekeeping CPUs (``system.conf`` itself is never
edited). ``rtlibvirt-host.service`` runs ``rtlibvirt host-prep apply
--runtime-only`` at each boot for what does not survive a reboot; it is enabled
the way ``systemctl enable`` does it, by its ``multi-user.target.wants``
symlink, so that it works on a tree and without systemd running.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rtlibvirt.errors import HostError
from rtlibvirt.hostprep.changes import FileChange, Plan, header
from rtlibvirt.hostprep.effects import FileState
from rtlibvirt.kernel import cpuset
from rtlibvirt.kernel.fs import HostFS

DROPIN = "/etc/systemd/system.conf.d/50-rtlibvirt.conf"
UNIT = "rtlibvirt-host.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
WANTS_LINK = f"/etc/systemd/system/multi-user.target.wants/{UNIT}"
HOST_YAML = "/etc/rtlibvirt/host.yaml"
DAEMON_RELOAD = ("systemctl", "daemon-reload")


def unit_text(program: str) -> bytes:
    text = header() + (
        "[Unit]\n"
        "Description=rtlibvirt: real-time host settings that do not survive a reboot\n"
        "After=local-fs.target systemd-sysctl.service systemd-modules-load.service\n"
        "Before=libvirtd.service virtqemud.service\n"
        f"ConditionPathExists={HOST_YAML}\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"ExecStart={program} host-prep apply --runtime-only --yes {HOST_YAML}\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
    return text.encode("utf-8")


def plan(plan_: Plan, program: str) -> None:
    host = plan_.host
    reload = (DAEMON_RELOAD,) if plan_.facts.systemd_running else ()
    affinity = cpuset.format_cpulist(host.housekeeping)
    plan_.files.append(
        FileChange(
            DROPIN,
            FileState.file((header() + f"[Manager]\nCPUAffinity={affinity}\n").encode("utf-8")),
            f"systemd and every service it starts run on the housekeeping CPUs {affinity}",
            "systemd",
            reboot=True,
        )
    )
    if host.guest is not None:  # guest-prep: its own boot-time unit (profiles.guest), no host.yaml
        return
    plan_.files.append(
        FileChange(
            HOST_YAML,
            FileState.file(host.text, 0o644),
            f"a copy of {host.source}, read by {UNIT} at boot",
            "systemd",
        )
    )
    text = unit_text(program)
    plan_.files.append(
        FileChange(
            UNIT_PATH,
            FileState.file(text),
            "re-applies the runtime values at each boot",
            "systemd",
            then=reload,
        )
    )
    if systemctl_path() is None:
        plan_.note(
            "systemd",
            f"systemctl is not installed here: {UNIT} is enabled by its "
            f"{WANTS_LINK} link, as its [Install] section says",
        )
        links: list[tuple[str, FileState]] = [(WANTS_LINK, FileState.symlink(UNIT_PATH))]
    else:
        # One run for our unit and the services to disable or mask: one answer
        # for a .wants/ folder that both touch (services.plan takes the rest).
        run = dry_run(
            plan_.facts.fs,
            enable=[UNIT],
            disable=host.services,
            mask=host.masks,
            extra_files={UNIT_PATH: text},
            originals=plan_.originals,
        )
        plan_.unit_run = run
        links = [(c.path, c.after) for c in run.changes if ours(c)]
    for path, want in links:
        plan_.files.append(
            FileChange(
                path, want, f"enables {UNIT} (what `systemctl enable` does)", "systemd", then=reload
            )
        )


# ---- systemctl --root: what enable, disable and mask change ---------------
#
# systemd decides what `disable` removes (the unit's links, its Also= units,
# its aliases, every instance of a template, .wants/ folders left empty) and
# what `enable` adds; host-prep does not second-guess it. systemctl --root=DIR
# works offline, on files alone: it runs on a scratch copy of the root's unit
# folders, and the difference between the copy's /etc/systemd/system before
# and after is the plan. apply makes those changes itself, each journaled
# before it is made, so that a kill at any point still reverts byte for byte.

# The folders systemd 252 searches for system units (lookup_paths_init), in
# its order; those that exist under the root are copied.
SEARCH_PATHS = (
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
CONFIG_DIR = "/etc/systemd/system"  # where enable, disable and mask change links
MAX_UNIT_FILES = 20_000
MAX_UNIT_BYTES = 1 << 20


class SystemctlError(HostError):
    """systemctl refused (a unit it cannot find or read), or is not there."""


@dataclass(frozen=True)
class LinkChange:
    """One path under /etc/systemd/system that systemctl changed in the scratch copy."""

    path: str
    before: FileState
    after: FileState


@dataclass(frozen=True)
class DryRun:
    changes: tuple[LinkChange, ...]
    states: dict[str, str]  # unit -> `systemctl is-enabled` afterwards


def ours(change: LinkChange) -> bool:
    """A change of a dry run that enables rtlibvirt-host.service (a link to its file)."""
    return change.after.kind == "symlink" and change.after.target == UNIT_PATH


def systemctl_path() -> str | None:
    return shutil.which("systemctl")


def dry_run(
    fs: HostFS,
    *,
    enable: Sequence[str] = (),
    disable: Sequence[str] = (),
    mask: Sequence[str] = (),
    extra_files: dict[str, bytes] | None = None,
    originals: dict[str, FileState] | None = None,
) -> DryRun:
    """What ``systemctl --root`` enable/disable/mask would change under the root.

    ``originals``: what paths under /etc/systemd/system were before host-prep
    changed them (from its journal), put back in the copy first, so that the
    changes are counted from the original tree. ``extra_files``: unit files the
    plan will write (host path -> content). Changes nothing under the root.
    """
    tool = systemctl_path()
    if tool is None:
        raise SystemctlError(
            "systemctl is not installed here: host-prep asks systemctl --root what enabling "
            "and disabling units changes",
            "install systemd (it provides systemctl), or leave out disable_services",
        )
    with tempfile.TemporaryDirectory(prefix="rtlibvirt-units-") as scratch:
        try:
            _copy_unit_dirs(fs, scratch)
            _put_back(scratch, originals or {})
            for host_path, data in (extra_files or {}).items():
                target = _inside(scratch, host_path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        except OSError as exc:
            raise HostError(
                f"cannot copy the unit folders of {fs.root} for systemctl --root: "
                f"{exc.strerror}: {exc.filename}",
                f"check the links in {fs.path('/etc/systemd', follow=False)} and the unit folders",
            ) from None
        before = _tree(scratch)
        for verb, units in (("disable", disable), ("mask", mask), ("enable", enable)):
            if units:
                _systemctl(tool, scratch, verb, *units)
        after = _tree(scratch)
        states = {}
        for unit in (*disable, *mask, *enable):
            states[unit] = _systemctl(tool, scratch, "is-enabled", unit, check=False).strip()
    changes = [
        LinkChange(path, before.get(path, FileState.absent()), after.get(path, FileState.absent()))
        for path in sorted(set(before) | set(after))
        if not before.get(path, FileState.absent()).same_as(after.get(path, FileState.absent()))
    ]
    for change in changes:
        if not change.path.isprintable():
            raise HostError(
                f"{fs.path('/', follow=False)}{ascii(change.path)[1:-1]}: a file name with a "
                "control character, which systemctl would change: host-prep does not",
                "rename or remove it, then run the command again",
            )
    # Links before the folders that held them (removal), folders before links (creation).
    changes.sort(key=lambda c: (c.after.kind == "absent" and c.before.kind == "dir", c.path))
    return DryRun(tuple(changes), states)


def is_enabled(fs: HostFS, unit: str) -> str:
    """``systemctl --root=ROOT is-enabled UNIT`` (offline, read only): enabled, disabled,
    static, masked, alias, indirect, ...; "" when systemctl is not here."""
    tool = systemctl_path()
    if tool is None:
        return ""
    root = os.path.realpath(fs.path("/"))
    said = _systemctl(tool, root, "is-enabled", unit, check=False).strip()
    return said.splitlines()[-1] if said else "not installed"


def _put_back(scratch: str, originals: dict[str, FileState]) -> None:
    """The journal's originals into the copy: the tree as it was before host-prep."""
    for host_path in sorted(originals, key=lambda p: (-p.count("/"), p)):
        if originals[host_path].kind == "absent":
            path = _inside(scratch, host_path)
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()  # only if empty: what else is there stays
    for host_path in sorted(originals, key=lambda p: (p.count("/"), p)):
        state, path = originals[host_path], _inside(scratch, host_path)
        if state.kind == "absent":
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if state.kind == "dir":
            path.mkdir(exist_ok=True)
            path.chmod(state.mode)
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
        if state.kind == "symlink":
            os.symlink(_safe_target(host_path, state.target), path)
        elif state.kind == "file":
            path.write_bytes(state.data)
            path.chmod(state.mode)


def _systemctl(tool: str, root: str, *args: str, check: bool = True) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C"}
    done = subprocess.run(
        [tool, f"--root={root}", "--no-pager", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    if check and done.returncode != 0:
        said = [line for line in done.stderr.splitlines() if line.strip()]
        raise SystemctlError(
            f"systemctl {args[0]} {' '.join(args[1:])} refused"
            + (f": {said[-1]}" if said else f" (status {done.returncode})"),
            "check the unit names with `systemctl list-unit-files`",
        )
    return done.stdout


def _copy_unit_dirs(fs: HostFS, scratch: str) -> None:
    """The root's unit folders, at the same paths in ``scratch``, links kept as links."""
    copied = 0
    done: set[str] = set()
    links: list[str] = []
    for host_dir in SEARCH_PATHS:
        _mirror_links_above(fs, host_dir, scratch)
        try:
            real = fs.path(host_dir)
        except OSError:
            continue
        if not real.is_dir():
            continue
        resolved = _resolved_host_path(fs, host_dir)
        if resolved in done:
            continue  # the same folder through a link (/lib -> usr/lib)
        done.add(resolved)
        target = _inside(scratch, resolved)
        for directory, dirs, files in os.walk(real):
            rel = os.path.relpath(directory, real)
            out = target / rel if rel != "." else target
            out.mkdir(parents=True, exist_ok=True)
            for name in sorted(dirs + files):
                source = os.path.join(directory, name)
                copied += 1
                if copied > MAX_UNIT_FILES:
                    raise HostError(f"{fs.path(host_dir)}: more than {MAX_UNIT_FILES} unit files")
                if os.path.islink(source):
                    link = os.readlink(source)
                    host_link = f"{resolved}/{os.path.relpath(source, real)}"
                    os.symlink(_safe_target(host_link, link), out / name)
                    if name in dirs:
                        dirs.remove(name)  # a link to a folder: not walked into
                    links.append(f"{host_dir}/{os.path.relpath(source, real)}")
                elif name in files and os.path.isfile(source):
                    if os.path.getsize(source) > MAX_UNIT_BYTES:
                        continue  # not a unit file systemctl would read
                    shutil.copyfile(source, out / name)
    for host_link in links:  # after the folders: a target may be in one of them
        _copy_link_target(fs, host_link, scratch)
    null = Path(scratch, "dev/null")  # masked units link here; empty counts as masked
    null.parent.mkdir(parents=True, exist_ok=True)
    null.touch()


def _mirror_links_above(fs: HostFS, host_dir: str, scratch: str) -> None:
    """Folders above ``host_dir`` that are links under the root (``/lib -> usr/lib``)."""
    parts = host_dir.strip("/").split("/")
    for end in range(1, len(parts)):
        above = "/" + "/".join(parts[:end])
        try:
            st = os.lstat(fs.path(above, follow=False))
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode):
            mirror = Path(scratch + above)
            if not mirror.is_symlink() and not mirror.exists():
                mirror.parent.mkdir(parents=True, exist_ok=True)
                target = os.readlink(fs.path(above, follow=False))
                os.symlink(_safe_target(above, target), mirror)
                with contextlib.suppress(OSError):
                    if fs.path(above).is_dir():  # where it leads, so that it leads somewhere
                        _inside(scratch, _resolved_host_path(fs, above)).mkdir(
                            parents=True, exist_ok=True
                        )
            return


def _resolved_host_path(fs: HostFS, host_path: str) -> str:
    """``host_path`` with every link in it resolved (inside the root), as a host path."""
    real = os.path.realpath(fs.path(host_path))  # already resolved in a tree; the kernel's on /
    prefix = os.path.realpath(fs.path("/")).rstrip("/")
    return real[len(prefix) :] or "/"


def _copy_link_target(fs: HostFS, host_link: str, scratch: str) -> None:
    """A unit file linked into a unit folder from elsewhere (``systemctl link``)."""
    try:
        real = fs.path(host_link)
    except OSError:
        return
    if not real.is_file() or real.stat().st_size > MAX_UNIT_BYTES:
        return
    host_target = _resolved_host_path(fs, host_link)
    out = _inside(scratch, host_target)
    if out.exists() or out.is_symlink():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(real, out)


def _safe_target(host_link: str, target: str) -> str:
    """A link's target for the scratch copy: relative, and never above its top.

    The copy is an ordinary folder, not a chroot: an absolute target, or one with
    more ".." than the link is deep, would lead out of it when this process writes
    through the link (systemctl --root resolves either inside, so it reads the same).
    """
    base = posixpath.dirname(host_link)
    parts: list[str] = []
    for part in (target if target.startswith("/") else f"{base}/{target}").split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return posixpath.relpath("/" + "/".join(parts), base)


def _inside(scratch: str, host_path: str) -> Path:
    """``scratch + host_path``; HostError if its folder resolves out of ``scratch``."""
    path = Path(scratch + host_path)
    top = os.path.realpath(scratch)
    folder = os.path.realpath(path.parent)
    if folder != top and not folder.startswith(top + "/"):
        raise HostError(f"{host_path}: leads out of the copy of the unit folders ({folder})")
    return path


def _tree(scratch: str) -> dict[str, FileState]:
    """Every link, file and folder under the copy's /etc/systemd/system, by host path."""
    top = scratch + CONFIG_DIR
    found: dict[str, FileState] = {}
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(directory, name)
            host = path[len(scratch) :]
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[host] = FileState.symlink(os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[host] = FileState("dir", mode=st.st_mode & 0o7777)
            else:
                found[host] = FileState.file(Path(path).read_bytes(), st.st_mode & 0o7777)
    return found

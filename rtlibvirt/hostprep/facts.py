"""What host-prep reads from the host (or a tree) before it plans anything.

Everything is read under a :class:`~rtlibvirt.kernel.fs.HostFS` root. A file that
is absent is a fact ("not known here"); a file that exists but cannot be read
is an error, so that nothing is planned from half the facts.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field

from rtlibvirt.errors import HostError
from rtlibvirt.hostprep.effects import FileState
from rtlibvirt.kernel import cpufreq, cpuset, mounts
from rtlibvirt.kernel import files as fsutil
from rtlibvirt.kernel.fs import CPU_DIR, HostFS

CPUINFO_HEAD = 64 << 10
VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "amd"}
UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)


def read_text(fs: HostFS, host_path: str, limit: int = fsutil.READ_LIMIT) -> str | None:
    """The text of a file under the root (at most ``limit`` bytes); None when it does not exist.

    Any other failure (a directory, no permission, not UTF-8, too large) is a
    HostError: host-prep refuses to plan from a file it could not read.
    """
    return fsutil.read_text(fs.path(host_path), HostError, missing_ok=True, limit=limit)


def parse_os_release(text: str) -> dict[str, str]:
    """``/etc/os-release`` (shell-style KEY=value lines) into a dict."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


@dataclass(frozen=True)
class HostFacts:
    """The facts host-prep plans from. ``None`` means "not known under this root"."""

    fs: HostFS
    vendor_id: str | None  # e.g. "GenuineIntel", from /proc/cpuinfo
    cpus_present: frozenset[int] | None
    os_release: dict[str, str] = field(default_factory=dict)
    systemd_running: bool = False  # /run/systemd/system exists (sd_booted)
    pid1: str | None = None  # the command name of PID 1
    kvm_params: frozenset[str] | None = None  # /sys/module/kvm/parameters, if kvm is loaded
    filesystems: frozenset[str] = frozenset()  # from /proc/filesystems
    proc_cmdline: str | None = None
    # the governors every cpufreq policy offers; None: no cpufreq here
    cpufreq_governors: frozenset[str] | None = None
    # what host-prep's journal says /etc/systemd/system held before it changed it
    unit_originals: dict[str, FileState] = field(default_factory=dict)

    @property
    def vendor(self) -> str | None:
        """``intel`` or ``amd`` from /proc/cpuinfo; None if absent or another vendor."""
        return VENDORS.get(self.vendor_id or "")

    @property
    def os_ids(self) -> tuple[str, ...]:
        """``ID`` then every ``ID_LIKE`` entry, lower case."""
        ids = [self.os_release.get("ID", ""), *self.os_release.get("ID_LIKE", "").split()]
        return tuple(i.lower() for i in ids if i)

    @property
    def os_name(self) -> str:
        name = self.os_release.get("PRETTY_NAME") or self.os_release.get("NAME") or "unknown"
        return fsutil.display_path(name[:200])  # a tree's text: no escape sequence or newline out

    def unit_file(self, unit: str) -> str | None:
        """The host path of a systemd unit's file, searched as systemd does; None if absent.

        An instance (``getty@tty2.service``) without a file of its own is its
        template's (``getty@.service``), as for systemd.
        """
        names = [unit]
        prefix, at, rest = unit.partition("@")
        if at and not rest.startswith("."):
            names.append(f"{prefix}@{rest[rest.rfind('.') :]}")
        for name in names:
            for directory in UNIT_DIRS:
                candidate = f"{directory}/{name}"
                original = self.unit_originals.get(candidate)
                if original is not None and original.kind != "absent":
                    return candidate  # there before host-prep removed it (an alias)
                try:
                    if os.path.lexists(self.fs.path(candidate, follow=False)):
                        return candidate
                except OSError:
                    continue
        return None

    def canonical_unit(self, unit: str) -> str:
        """The unit an alias names (``dbus-org.freedesktop.Avahi.service`` ->
        ``avahi-daemon.service``): an alias is a link in a configuration folder."""
        found = self.unit_file(unit)
        if found is None or not found.startswith(("/etc/systemd/", "/run/systemd/")):
            return unit
        state = self.unit_originals.get(found)
        target = None
        if state is not None and state.kind == "symlink":
            target = state.target
        else:
            with contextlib.suppress(OSError):
                target = os.readlink(self.fs.path(found, follow=False))
        if not target:
            return unit
        name = os.path.basename(target)
        if target == "/dev/null" or name in (unit, _template(unit)) or "." not in name:
            return unit  # masked, the unit itself, or an instance of its template
        return name

    def tool(self, *names: str) -> str | None:
        """The host path of the first of ``names`` found in sbin/bin dirs under the root."""
        for name in names:
            for directory in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
                candidate = self.fs.path(f"{directory}/{name}")
                try:
                    mode = candidate.stat().st_mode
                except OSError:
                    continue
                if stat.S_ISREG(mode) and mode & 0o111:
                    return f"{directory}/{name}"
        return None


def _template(unit: str) -> str:
    """``getty@tty2.service`` -> ``getty@.service``; other names as they are."""
    prefix, at, rest = unit.partition("@")
    return f"{prefix}@{rest[rest.rfind('.') :]}" if at and "." in rest else unit


def gather(fs: HostFS) -> HostFacts:
    """Read every fact under ``fs``; unreadable files raise HostError."""
    # The first processor's vendor_id is all host-prep needs: the head of the file
    # (it is ~1.5 KiB a CPU, and a tree's /proc/cpuinfo may be anything, /dev/zero too).
    head = fsutil.read_bytes(
        fs.path("/proc/cpuinfo"), HostError, limit=CPUINFO_HEAD, missing_ok=True, head=True
    )
    cpuinfo = None
    if head is not None:
        try:
            cpuinfo = head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if len(head) < CPUINFO_HEAD or exc.start < len(head) - 3:
                raise HostError(
                    f"{fs.path('/proc/cpuinfo')}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                ) from None
            cpuinfo = head[: exc.start].decode("utf-8")  # a character cut at the head's end
    vendor_id = None
    if cpuinfo is not None:
        for line in cpuinfo.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "vendor_id":
                vendor_id = fsutil.display_path(value.strip()[:64])
                break
    present_text = read_text(fs, f"{CPU_DIR}/present")
    present = None
    if present_text is not None:
        try:
            present = frozenset(cpuset.parse_cpulist(present_text))
        except cpuset.CpuListError as exc:
            raise HostError(f"{fs.path(CPU_DIR + '/present')}: {exc}") from None
    os_text = read_text(fs, "/etc/os-release")
    if os_text is None:
        os_text = read_text(fs, "/usr/lib/os-release")
    pid1 = read_text(fs, "/proc/1/comm")
    kvm_dir = fs.path("/sys/module/kvm/parameters")
    kvm_params = frozenset(os.listdir(kvm_dir)) if kvm_dir.is_dir() else None
    filesystems = mounts.parse_filesystems(read_text(fs, mounts.FILESYSTEMS) or "")
    cmdline = read_text(fs, "/proc/cmdline")
    unit_originals = _unit_originals(fs)
    governors = cpufreq.available_governors(fs)
    return HostFacts(
        fs=fs,
        vendor_id=vendor_id,
        cpus_present=present or None,
        os_release=parse_os_release(os_text or ""),
        systemd_running=fs.path("/run/systemd/system").is_dir(),
        pid1=pid1.strip() if pid1 else None,
        kvm_params=kvm_params,
        filesystems=filesystems,
        proc_cmdline=cmdline.strip() if cmdline is not None else None,
        unit_originals=unit_originals,
        cpufreq_governors=governors,
    )


def _unit_originals(fs: HostFS) -> dict[str, FileState]:
    """The journal's originals under /etc/systemd/system (read only: no lock taken)."""
    from rtlibvirt.hostprep.effects import Effects
    from rtlibvirt.hostprep.journal import Journal

    reader = Effects(fs, runtime=False, commands=False)
    return Journal(reader).originals("/etc/systemd/system")

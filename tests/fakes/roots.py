"""Fake roots shaped like real hosts: Debian 12, Ubuntu 24.04 (cloud image), RHEL 9.

Only what host-prep reads or writes is there, in the real formats: os-release,
/etc/default/grub (and Ubuntu's 50-cloudimg-settings.cfg), boot entries, unit
files and their enable symlinks, /proc and /sys files. The commands host-prep
runs on a live host (update-grub, grubby, systemctl) are stand-ins in bin/
that record their arguments and act on the tree.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from pathlib import Path
from typing import ClassVar

from rtlibvirt.kernel.cpuset import format_mask, parse_mask
from rtlibvirt.kernel.fs import HostFS

BIN = Path(__file__).resolve().parent / "bin"

CPUINFO_ENTRY = """\
processor\t: {n}
vendor_id\t: {vendor}
cpu family\t: 6
model name\t: Test CPU
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic vmx

"""

DEBIAN_OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"""

UBUNTU_OS_RELEASE = """\
PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=noble
"""

RHEL_OS_RELEASE = """\
NAME="Red Hat Enterprise Linux"
VERSION="9.4 (Plow)"
ID="rhel"
ID_LIKE="fedora"
VERSION_ID="9.4"
PLATFORM_ID="platform:el9"
PRETTY_NAME="Red Hat Enterprise Linux 9.4 (Plow)"
"""

# The user's own arguments, one of which (hugepages=4) host-prep replaces.
DEBIAN_GRUB = """\
# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.
# For full documentation of the options in this file, see:
#   info -f grub -n 'Simple configuration'

GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`( . /etc/os-release; echo ${NAME:-Debian} ) 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX="console=ttyS0,115200n8 hugepages=4 net.ifnames=0"
"""

UBUNTU_GRUB = """\
# If you change this file or any /etc/default/grub.d/*.cfg file,
# run 'update-grub' afterwards to update /boot/grub/grub.cfg.

GRUB_DEFAULT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=`( . /etc/os-release; echo ${NAME:-Ubuntu} ) 2>/dev/null || echo Ubuntu`
GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"
GRUB_CMDLINE_LINUX="this_is_overwritten_by_cloudimg"
"""

UBUNTU_CLOUDIMG = """\
# Cloud Image specific Grub settings for Generic Cloud Images
# CLOUD_IMG: This file was created/modified by the Cloud Image build process

# Set the recordfail timeout
GRUB_RECORDFAIL_TIMEOUT=0

# Do not wait on grub prompt
GRUB_TIMEOUT=0

# Set the default commandline
GRUB_CMDLINE_LINUX="console=tty1 console=ttyS0"

# Set the grub console type
GRUB_TERMINAL=console
"""

RHEL_GRUB = """\
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR="$(sed 's, release .*$,,g' /etc/system-release)"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT="console"
GRUB_CMDLINE_LINUX="{cmdline}"
GRUB_DISABLE_RECOVERY="true"
GRUB_ENABLE_BLSCFG=true
"""

RHEL_USER_ARGS = (
    "crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap "
    "rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap hugepages=4"
)
RHEL_KERNEL = "5.14.0-427.13.1.el9_4.x86_64"
RHEL_MACHINE_ID = "2e0e3c8a5b7d4c1f9a6b0d3e8f1c2a4b"
RHEL_OPTIONS = (
    "root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M "
    "resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap hugepages=4"
)
RHEL_ENTRY = """\
title Red Hat Enterprise Linux ({kernel}) 9.4 (Plow)
version {kernel}
linux /vmlinuz-{kernel}
initrd /initramfs-{kernel}.img $tuned_initrd
options {options}
grub_users $grub_users
grub_arg --unrestricted
grub_class rhel
"""

UNIT = """\
[Unit]
Description={name}

[Service]
ExecStart=/usr/sbin/{name}

[Install]
WantedBy=multi-user.target
"""


# Units shaped like Debian's own (avahi-daemon, cups, getty@), for what
# `systemctl disable` takes with a unit: Also= units, aliases, template instances.
SERVICE_UNITS = {
    "avahi-daemon.service": (
        "[Unit]\nDescription=Avahi mDNS/DNS-SD Stack\nRequires=avahi-daemon.socket\n\n"
        "[Service]\nType=dbus\nBusName=org.freedesktop.Avahi\nExecStart=/usr/sbin/avahi-daemon -s\n\n"
        "[Install]\nWantedBy=multi-user.target\nAlso=avahi-daemon.socket\n"
        "Alias=dbus-org.freedesktop.Avahi.service\n"
    ),
    "avahi-daemon.socket": (
        "[Unit]\nDescription=Avahi mDNS/DNS-SD Stack Activation Socket\n\n"
        "[Socket]\nListenStream=/run/avahi-daemon/socket\n\n[Install]\nWantedBy=sockets.target\n"
    ),
    "cups.service": (
        "[Unit]\nDescription=CUPS Scheduler\n\n[Service]\nExecStart=/usr/sbin/cupsd -l\n\n"
        "[Install]\nAlso=cups.socket cups.path\nWantedBy=printer.target multi-user.target\n"
    ),
    "cups.socket": (
        "[Unit]\nDescription=CUPS Scheduler\n\n[Socket]\nListenStream=/run/cups/cups.sock\n\n"
        "[Install]\nWantedBy=sockets.target\n"
    ),
    "cups.path": (
        "[Unit]\nDescription=CUPS Scheduler\n\n[Path]\nPathExists=/var/cache/cups/org.cups.cupsd\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    ),
    "getty@.service": (
        "[Unit]\nDescription=Getty on %I\n\n[Service]\nExecStart=-/sbin/agetty -o '-p -- \\\\u' --noclear - $TERM\n\n"
        "[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n"
    ),
    "thermald.service": (
        "[Unit]\nDescription=Thermal Daemon Service\n\n[Service]\nExecStart=/usr/sbin/thermald\n\n"
        "[Install]\nWantedBy=multi-user.target\nAlias=dbus-org.freedesktop.thermald.service\n"
    ),
    "ksm.service": "[Unit]\nDescription=a static unit\n\n[Service]\nExecStart=/bin/true\n",
    "tuned.service": (
        "[Unit]\nDescription=Dynamic System Tuning Daemon\n\n[Service]\nExecStart=/usr/sbin/tuned\n\n"
        "[Install]\nWantedBy=multi-user.target\nRequiredBy=graphical.target\n"
    ),
}
ENABLED_UNITS = (
    "avahi-daemon.service",
    "cups.service",
    "getty@tty1.service",
    "getty@tty2.service",
    "thermald.service",
    "tuned.service",
)


def add_service_units(root: Path, distro: str = "debian") -> None:
    """Install :data:`SERVICE_UNITS` and enable :data:`ENABLED_UNITS` with the real
    ``systemctl --root``, plus a unit linked in from /opt (``systemctl link``)."""
    units = "/usr/lib/systemd/system" if distro == "rhel" else "/lib/systemd/system"
    for name, text in SERVICE_UNITS.items():
        write(root, f"{units}/{name}", text)
    write(
        root,
        "/opt/plc/plc-bridge.service",
        "[Unit]\nDescription=linked\n\n[Service]\nExecStart=/opt/plc/bridge\n\n"
        "[Install]\nWantedBy=multi-user.target\n",
    )
    systemctl(root, "enable", *ENABLED_UNITS)
    systemctl(root, "link", "/opt/plc/plc-bridge.service")
    systemctl(root, "enable", "plc-bridge.service")


def real_systemctl() -> str:
    for candidate in ("/usr/bin/systemctl", "/bin/systemctl"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("systemctl is not installed")


def systemctl(root: Path, *args: str) -> None:
    """The real ``systemctl --root=ROOT ARGS`` (offline: files only)."""
    subprocess.run(
        [real_systemctl(), f"--root={root}", *args],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
    )


def write(root: Path, host_path: str, text: str, mode: int = 0o644) -> None:
    path = root / host_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def link(root: Path, host_path: str, target: str) -> None:
    path = root / host_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def make_tree(
    root: Path,
    distro: str = "debian",
    *,
    cpus: int = 14,
    vendor: str = "GenuineIntel",
    kvm_param: str = "lapic_timer_advance_ns",
    proc: bool = True,
    rt: bool = True,
    cpufreq: bool = True,
) -> Path:
    """A fake root of ``distro`` (debian, ubuntu, rhel, or anything else: unknown).

    ``rt``: a PREEMPT_RT kernel (its version string says so, as uname -v does);
    ``cpufreq``: acpi-cpufreq's one policy per CPU, and energy_perf_bias.
    """
    root.mkdir(parents=True, exist_ok=True)
    for d in ("etc", "var/lib", "run", "usr/sbin", "boot"):
        (root / d).mkdir(parents=True, exist_ok=True)
    if proc:
        write(
            root,
            "/proc/cpuinfo",
            "".join(CPUINFO_ENTRY.format(n=n, vendor=vendor) for n in range(cpus)),
        )
        write(root, "/proc/1/comm", "systemd\n" if distro == "rhel" else "init\n")
        write(root, "/proc/filesystems", "nodev\tsysfs\nnodev\tproc\nnodev\thugetlbfs\n\text4\n")
        write(root, "/proc/mounts", "sysfs /sys sysfs rw 0 0\nproc /proc proc rw 0 0\n")
        write(root, "/proc/cmdline", "BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro quiet\n")
        write(root, "/proc/sys/kernel/sched_rt_runtime_us", "950000\n")
        write(root, "/proc/sys/kernel/timer_migration", "1\n")
        write(root, "/proc/sys/kernel/nmi_watchdog", "1\n")
        write(root, "/proc/sys/vm/stat_interval", "1\n")
        write(root, "/sys/devices/system/cpu/present", f"0-{cpus - 1}\n", 0o444)
        write(root, "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "0\n")
        write(
            root,
            f"/sys/module/kvm/parameters/{kvm_param}",
            "-1\n" if kvm_param.endswith("_ns") else "Y\n",
        )
        write(root, "/sys/module/kvm/parameters/kvmclock_periodic_sync", "Y\n", 0o444)
        for cpu in range(cpus):
            write(
                root, f"/sys/devices/system/machinecheck/machinecheck{cpu}/check_interval", "300\n"
            )
        add_recipe_files(root, distro, cpus=cpus, rt=rt, cpufreq=cpufreq)
    units = "/usr/lib/systemd/system" if distro == "rhel" else "/lib/systemd/system"
    for name in ("irqbalance", "wpa_supplicant"):
        write(root, f"{units}/{name}.service", UNIT.format(name=name))
        link(
            root,
            f"/etc/systemd/system/multi-user.target.wants/{name}.service",
            f"{units}/{name}.service",
        )
    link(
        root,
        "/etc/systemd/system/dbus-fi.w1.wpa_supplicant1.service",
        f"{units}/wpa_supplicant.service",
    )
    write(root, "/etc/systemd/system.conf", "[Manager]\n#CPUAffinity=\n")
    write(root, "/etc/sysctl.d/99-sysctl.conf", "# /etc/sysctl.conf, for the user\n")
    if distro == "debian":
        write(root, "/etc/os-release", DEBIAN_OS_RELEASE)
        write(root, "/etc/default/grub", DEBIAN_GRUB)
        write(
            root,
            "/usr/sbin/update-grub",
            '#!/bin/sh\nset -e\nexec grub-mkconfig -o /boot/grub/grub.cfg "$@"\n',
            0o755,
        )
    elif distro == "ubuntu":
        write(root, "/etc/os-release", UBUNTU_OS_RELEASE)
        write(root, "/etc/default/grub", UBUNTU_GRUB)
        write(root, "/etc/default/grub.d/50-cloudimg-settings.cfg", UBUNTU_CLOUDIMG)
        write(
            root,
            "/usr/sbin/update-grub",
            '#!/bin/sh\nset -e\nexec grub-mkconfig -o /boot/grub/grub.cfg "$@"\n',
            0o755,
        )
        write(root, "/etc/modprobe.d/blacklist.conf", "blacklist evbug\n")
    elif distro == "rhel":
        write(root, "/etc/os-release", RHEL_OS_RELEASE)
        write(root, "/etc/default/grub", RHEL_GRUB.format(cmdline=RHEL_USER_ARGS))
        write(root, "/usr/sbin/grubby", "#!/bin/bash\n# grubby (BLS)\n", 0o755)
        (root / "run/systemd/system").mkdir(parents=True)
        (root / "run/fake-active").mkdir(parents=True)
        (root / "run/fake-active/irqbalance.service").write_text("")
        for kernel, options in (
            (RHEL_KERNEL, RHEL_OPTIONS),
            (f"0-rescue-{RHEL_MACHINE_ID}", RHEL_OPTIONS),
        ):
            write(
                root,
                f"/boot/loader/entries/{RHEL_MACHINE_ID}-{kernel}.conf",
                RHEL_ENTRY.format(kernel=kernel, options=options),
            )
    else:
        write(
            root,
            "/etc/os-release",
            'NAME="Alpine Linux"\nID=alpine\nPRETTY_NAME="Alpine Linux v3.20"\n',
        )
    return root


KERNEL_VERSION = {
    # /proc/sys/kernel/version (uname -v) of each distribution's kernels
    ("debian", True): "#1 SMP PREEMPT_RT Debian 6.1.115-1 (2024-11-01)",
    ("debian", False): "#1 SMP PREEMPT_DYNAMIC Debian 6.1.115-1 (2024-11-01)",
    ("ubuntu", True): "#12~24.04.1-Ubuntu SMP PREEMPT_RT Thu Oct 10 10:55:18 UTC 2024",
    ("ubuntu", False): "#45-Ubuntu SMP PREEMPT_DYNAMIC Fri Aug 30 12:02:04 UTC 2024",
    ("rhel", True): "#1 SMP PREEMPT_RT Thu Apr 4 20:26:50 EDT 2024",
    ("rhel", False): "#1 SMP PREEMPT_DYNAMIC Fri Mar 29 23:14:13 EDT 2024",
}
GOVERNORS = "conservative ondemand userspace powersave performance schedutil"


def add_recipe_files(
    root: Path, distro: str, *, cpus: int, rt: bool = True, cpufreq: bool = True
) -> None:
    """The kernel files of the rest of the real-time recipe, as a distribution kernel
    on an Intel server has them: RCU and KVM parameters, THP, KSM, NUMA balancing,
    hung-task timeout, cpufreq (acpi-cpufreq, schedutil), energy_perf_bias, and the
    sysfs workqueues (Linux 6.1's writeback and blkcg_punt_bio)."""
    version = KERNEL_VERSION.get((distro, rt), KERNEL_VERSION[("debian", rt)])
    write(root, "/proc/sys/kernel/version", version + "\n", 0o444)
    if rt and distro == "rhel":
        write(root, "/sys/kernel/realtime", "1\n", 0o444)  # kernel-rt has the RT patch set's file
    write(root, "/proc/sys/kernel/numa_balancing", "1\n")
    write(root, "/proc/sys/kernel/hung_task_timeout_secs", "120\n")
    write(root, "/sys/module/rcutree/parameters/nohz_full_patience_delay", "0\n", 0o444)
    write(root, "/sys/module/rcupdate/parameters/rcu_normal_after_boot", "0\n", 0o444)
    write(root, "/sys/module/kvm/parameters/nx_huge_pages", "Y\n")
    write(
        root,
        "/sys/devices/system/cpu/vulnerabilities/itlb_multihit",
        "KVM: Mitigation: Split huge pages\n",
        0o444,
    )
    write(root, "/sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never\n")
    write(root, "/sys/kernel/mm/ksm/run", "0\n")
    full = format(2**cpus - 1, "x").rjust((cpus + 3) // 4, "0")
    write(root, "/sys/devices/virtual/workqueue/cpumask", full + "\n")
    for name in ("writeback", "blkcg_punt_bio"):
        write(root, f"/sys/devices/virtual/workqueue/{name}/cpumask", full + "\n")
        write(root, f"/sys/devices/virtual/workqueue/{name}/per_cpu", "0\n", 0o444)
    if cpufreq:
        for cpu in range(cpus):
            policy = f"/sys/devices/system/cpu/cpufreq/policy{cpu}"
            write(root, f"{policy}/scaling_governor", "schedutil\n")
            write(root, f"{policy}/scaling_available_governors", GOVERNORS + "\n", 0o444)
            write(root, f"/sys/devices/system/cpu/cpu{cpu}/power/energy_perf_bias", "6\n")


class KernelTree(HostFS):
    """A HostFS over a fake root whose kernel files answer writes as the kernel does.

    Selector files (``transparent_hugepage/enabled``) take one of their words and
    read back as the whole list with that word in brackets; cpumasks take a hex
    mask, refuse one without a present CPU (EINVAL) and read back in the kernel's
    width; ``scaling_governor`` takes only a governor of its policy's
    ``scaling_available_governors`` (EINVAL); ``energy_perf_bias`` takes 0-15 or
    a name and reads back the number. ``refuse``: paths whose every write fails
    with that errno (a workqueue the kernel will not move: EINVAL, EIO).
    """

    EPB: ClassVar[dict[str, int]] = {
        "performance": 0,
        "balance-performance": 4,
        "normal": 6,
        "balance-power": 8,
        "power": 15,
    }

    def __init__(self, root: Path | str, refuse: dict[str, int] | None = None) -> None:
        super().__init__(root)
        self.refuse = dict(refuse or {})
        self.writes: list[tuple[str, str]] = []

    def _fail(self, host_path: str, code: int = errno.EINVAL) -> OSError:
        return OSError(code, os.strerror(code), host_path)

    def write(self, host_path: str, value: str) -> None:
        text = value.rstrip("\n")
        if host_path in self.refuse:
            raise self._fail(host_path, self.refuse[host_path])
        current = self.read_or(host_path, "")
        if "[" in current:
            words = [w.strip("[]") for w in current.split()]
            if text not in words:
                raise self._fail(host_path)
            text = " ".join(f"[{w}]" if w == text else w for w in words)
        elif host_path.endswith("/cpumask"):
            try:
                cpus = parse_mask(text)
            except ValueError:
                raise self._fail(host_path) from None
            present = self.cpus_present()
            if not cpus & present:
                raise self._fail(host_path)
            text = format_mask(cpus, max(present) + 1)
        elif host_path.endswith("/scaling_governor"):
            offered = self.read_or(
                host_path.replace("scaling_governor", "scaling_available_governors"), ""
            )
            if text not in offered.split():
                raise self._fail(host_path)
        elif host_path.endswith("/energy_perf_bias"):
            number = self.EPB.get(text, int(text) if text.isdigit() else -1)
            if not 0 <= number <= 15:
                raise self._fail(host_path)
            text = str(number)
        super().write(host_path, text)
        self.writes.append((host_path, text))


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every path under ``root``: (kind, mode, content or link target), links not
    followed; a FIFO or device only by its mode (reading one could block)."""
    out: dict[str, tuple[str, int, bytes]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(path).encode())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mode & 0o7777, b"")
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", st.st_mode & 0o7777, Path(path).read_bytes())
            else:
                out[rel] = ("special", st.st_mode, b"")
    return out


def sourced_cmdline(root: Path, shell: str = "sh") -> str:
    """GRUB_CMDLINE_LINUX as grub-mkconfig sees it: /etc/default/grub, then grub.d/*.cfg."""
    script = (
        'etc="$1/etc"\n'
        'if test -f "$etc/default/grub"; then . "$etc/default/grub"; fi\n'
        'for x in "$etc"/default/grub.d/*.cfg; do if [ -e "$x" ]; then . "$x"; fi; done\n'
        'printf "%s\\n%s" "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT"\n'
    )
    done = subprocess.run(
        [shell, "-c", script, shell, str(root)], capture_output=True, text=True, check=True
    )
    return done.stdout

"""systemd: the CPUAffinity drop-in, and the boot-time unit that re-applies runtime values.

``/etc/systemd/system.conf.d/50-rtlibvirt.conf`` pins the service manager and
everything it starts to the housekeeping CPUs (``system.conf`` itself is never
edited). ``rtlibvirt-host.service`` runs ``rtlibvirt host-prep apply
--runtime-only`` at each boot for what does not survive a reboot; it is enabled
the way ``systemctl enable`` does it, by its ``multi-user.target.wants``
symlink, so that it works on a tree and without systemd running.
"""

from __future__ import annotations

from rtlibvirt.hostprep.changes import FileChange, Plan, header
from rtlibvirt.hostprep.effects import FileState
from rtlibvirt.kernel import cpuset

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
    plan_.files.append(
        FileChange(
            HOST_YAML,
            FileState.file(host.text, 0o644),
            f"a copy of {host.source}, read by {UNIT} at boot",
            "systemd",
        )
    )
    plan_.files.append(
        FileChange(
            UNIT_PATH,
            FileState.file(unit_text(program)),
            "re-applies the runtime values at each boot",
            "systemd",
            then=reload,
        )
    )
    plan_.files.append(
        FileChange(
            WANTS_LINK,
            FileState.symlink(UNIT_PATH),
            f"enables {UNIT} (what `systemctl enable` does)",
            "systemd",
            then=reload,
        )
    )

"""A plan as cloud-init user-data: the same changes, made by cloud-init at first boot.

``rtlibvirt guest-prep cloud-init VM.yaml`` builds guest-prep's plan (the engine
with the guest profile) and writes it as ``#cloud-config``: every planned file
through ``write_files`` (content, mode, owner), every link the plan makes or
removes and every command it would run (``update-grub``; grubby on Fedora and
RHEL) through ``runcmd`` in the plan's order, the services through ``systemctl
disable --now`` / ``mask --now``, and one reboot through ``power_state``. Since
both come from one plan, they cannot drift: the kernel arguments in the
user-data are those of ``guest-prep plan``.

A new guest has no tree to plan on yet: :func:`skeleton` makes the smallest
tree of its distribution family that the plan needs (os-release, the boot-loader
tool, its vCPUs, its listed units, the workqueue and THP files every distribution
kernel has), or ``--root`` names an image's tree. A kernel parameter planned only
where the running kernel has it (``rcutree.nohz_full_patience_delay``) is left
out without a tree that shows it. What
cloud-init does is not journaled (rtlibvirt is not in the guest): to undo it
later, install rtlibvirt in the guest and use guest-prep, or write it off with
the image.
"""

from __future__ import annotations

import io
import posixpath
from pathlib import Path
from typing import Any

from rtlibvirt.hostprep.changes import Plan
from rtlibvirt.kernel.cpuset import format_cpulist, format_mask

# The distribution families a skeleton can be made for: os-release and boot-loader tool.
DISTROS: dict[str, tuple[str, str]] = {
    "debian": (
        'PRETTY_NAME="Debian GNU/Linux (cloud-init)"\nNAME="Debian GNU/Linux"\nID=debian\n',
        "/usr/sbin/update-grub",
    ),
    "ubuntu": (
        'PRETTY_NAME="Ubuntu (cloud-init)"\nNAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n',
        "/usr/sbin/update-grub",
    ),
    "rhel": (
        'PRETTY_NAME="RHEL-like (cloud-init)"\nNAME="Red Hat Enterprise Linux"\nID="rhel"\n'
        'ID_LIKE="fedora"\n',
        "/usr/sbin/grubby",
    ),
}
REBOOT_MESSAGE = "rtlibvirt guest-prep: reboot for the real-time kernel command line"


def skeleton(root: Path, distro: str, vcpus: int, units: list[str]) -> None:
    """The smallest tree of ``distro`` a guest plan needs: os-release, the boot-loader
    tool, the guest's vCPUs (0 to vcpus-1 online) and a unit file per listed unit."""
    release, tool = DISTROS[distro]
    files = {
        "/etc/os-release": (release, 0o644),
        tool: ("#!/bin/sh\n", 0o755),
        "/sys/devices/system/cpu/online": (f"{format_cpulist(range(vcpus))}\n", 0o444),
        "/sys/devices/system/cpu/present": (f"{format_cpulist(range(vcpus))}\n", 0o444),
        # what every Debian and RHEL kernel has: the unbound and writeback workqueue
        # cpumasks and the THP selector (the plan sets them again at each boot)
        "/sys/devices/virtual/workqueue/cpumask": (f"{format_mask(range(vcpus))}\n", 0o644),
        "/sys/devices/virtual/workqueue/writeback/cpumask": (
            f"{format_mask(range(vcpus))}\n",
            0o644,
        ),
        "/sys/kernel/mm/transparent_hugepage/enabled": ("always [madvise] never\n", 0o644),
    }
    units_dir = "/usr/lib/systemd/system" if distro == "rhel" else "/lib/systemd/system"
    for unit in units:
        text = f"[Unit]\nDescription={unit}\n\n[Install]\nWantedBy=multi-user.target\n"
        files[f"{units_dir}/{unit}"] = (text, 0o644)
    for host_path, (text, mode) in files.items():
        path = root / host_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    for folder in ("etc/systemd/system", "boot"):
        (root / folder).mkdir(parents=True, exist_ok=True)


def user_data(plan: Plan, preview: Any, source: str) -> str:
    """``#cloud-config`` that makes the plan's changes at first boot, then reboots once."""
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import LiteralScalarString

    write_files: list[dict[str, Any]] = []
    runcmd: list[list[str]] = []
    for change in plan.files:
        want = change.want
        if want.kind == "file":
            write_files.append(
                {
                    "path": change.path,
                    "owner": "root:root",
                    "permissions": f"{want.mode:04o}",
                    "content": LiteralScalarString(want.data.decode("utf-8")),
                }
            )
        elif want.kind == "symlink":
            runcmd.append(["mkdir", "-p", posixpath.dirname(change.path)])
            runcmd.append(["ln", "-sfn", want.target, change.path])
        elif want.kind == "absent":
            runcmd.append(["rm", "-f", change.path])
    host = plan.host
    if host.services:
        runcmd.append(["systemctl", "disable", "--now", *host.services])
    if host.masks:
        runcmd.append(["systemctl", "mask", "--now", *host.masks])
    grubby = preview.grubby
    if grubby is None and plan.grubby is not None:  # an image's tree: grubby runs at first boot
        from rtlibvirt.hostprep import grub

        if grub.grubby_needed(plan.facts.fs, plan.grubby.args):
            grubby = grub.grubby_apply_argvs(plan.facts.fs, plan.grubby.args)
    for argv in grubby or []:
        runcmd.append(list(argv))
    for argv in preview.commands:
        if list(argv) not in runcmd and list(argv) != ["systemctl", "daemon-reload"]:  # rebooting
            runcmd.append(list(argv))
    data: dict[str, Any] = {
        "write_files": write_files,
        "runcmd": runcmd,
        "power_state": {"mode": "reboot", "message": REBOOT_MESSAGE, "condition": True},
    }
    yaml = YAML()
    yaml.default_flow_style = None
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(data, out)
    args = " ".join(plan.cmdline.texts)
    head = (
        "#cloud-config\n"
        f"# rtlibvirt guest-prep cloud-init {posixpath.basename(source)}: the guest half of the\n"
        "# real-time recipe at first boot (files, boot loader, services), then one reboot.\n"
        f"# kernel arguments: {args}\n"
    )
    return head + out.getvalue()

"""The guest profile: host-prep's engine, configured from a vm.yaml, run inside the guest.

guest-prep is not a second engine: :func:`resolve` turns the VM's spec into the
engine's own resolved configuration (:class:`~rtlibvirt.config.host.Resolved`),
whose ``guest`` field holds this profile and marks the plan as a guest's. The
engine then plans, applies, verifies and reverts exactly as for a host (the same
journal, GRUB drop-in or grubby, systemd drop-in, services, sysctl.d), and leaves
out what belongs to a hypervisor: no ``kvm.*`` option, no IOMMU, no hugepages,
no cache allocation, no KVM module options, ``idle=poll`` only when asked.

What the profile takes from the spec, and why (TuneD's ``realtime-virtual-guest``
profile and the guest chapter of Red Hat's real-time virtualization guide):

- the real-time vCPU indices (``cpu.realtime.vcpus``) are isolated inside the guest
  (``isolcpus``, ``nohz_full``, ``rcu_nocbs``, ``rcu_nocb_poll``): vCPU numbers, not
  host CPU numbers; the other vCPUs do the guest's own work (``irqaffinity``,
  systemd's ``CPUAffinity``);
- the guest's per-CPU kernel threads (``ksoftirqd/N``, and on PREEMPT_RT
  ``ktimers/N``, ``rcuc/N``, ``rcub/N``) are raised to SCHED_FIFO at each boot, at
  the priorities of TuneD's realtime-virtual-guest (2, 3, 4, 4), by a oneshot unit
  that needs nothing but ``chrt`` (util-linux): also a guest set up by cloud-init,
  without rtlibvirt, keeps it;
- the running kernel is checked for PREEMPT_RT, and the plan names the package
  that provides one on the guest's distribution.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rtlibvirt.config.host import HostSpec, Resolved, _check_services
from rtlibvirt.config.model import Checker, item_path
from rtlibvirt.config.vm import Guest
from rtlibvirt.errors import Problem
from rtlibvirt.kernel import cpuset

if TYPE_CHECKING:  # what plans and reads a tree; `render` and the probe need only derive()
    from rtlibvirt.config.document import Document
    from rtlibvirt.config.vm import Loaded
    from rtlibvirt.hostprep.changes import FileChange, Plan
    from rtlibvirt.hostprep.facts import HostFacts

UNIT = "rtlibvirt-guest.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
WANTS_LINK = f"/etc/systemd/system/multi-user.target.wants/{UNIT}"
BOOT_SCRIPT = "/usr/local/sbin/rtlibvirt-guest-boot"
# The kernel threads raised, in the order of vm.yaml's guest.kthreads keys.
KTHREADS = ("ksoftirqd", "ktimers", "rcuc", "rcub")

GUEST_HEADER = (
    "# Written by `rtlibvirt guest-prep apply` from {source}.\n"
    "# `rtlibvirt guest-prep revert` removes it; edit the VM's spec and apply again to change it.\n"
)

# The package that provides a PREEMPT_RT kernel, by /etc/os-release ID (or ID_LIKE).
RT_KERNEL_PACKAGES = {
    "debian": "linux-image-rt-amd64 (Debian)",
    "ubuntu": "linux-realtime (Ubuntu Pro: `pro enable realtime-kernel`)",
    "rhel": "kernel-rt (RHEL: the rt repository)",
    "centos": "kernel-rt (the RT repository)",
    "rocky": "kernel-rt (the RT repository)",
    "almalinux": "kernel-rt (the RT repository)",
    "fedora": "kernel-rt",
    "sles": "kernel-rt (SUSE Linux Enterprise Real Time)",
}


class NothingToDo(Exception):
    """The spec has no real-time vCPUs: there is nothing to isolate in the guest."""


@dataclass(frozen=True)
class GuestProfile:
    """What guest-prep takes from a VM's spec, beyond the engine's resolved configuration."""

    section: Guest  # vm.yaml's guest: section
    source: str
    realtime: frozenset[int]
    housekeeping: frozenset[int]
    kthreads: tuple[tuple[str, int], ...]  # (name, SCHED_FIFO priority), priority > 0

    def boot_files(
        self, values: Sequence[tuple[str, str]], reload: tuple[tuple[str, ...], ...]
    ) -> list[FileChange]:
        """The boot-time unit: its script (the kernel threads raised, and ``values``: the
        plan's /sys values that do not survive a reboot, such as the workqueue cpumasks),
        the unit, and its enable link.

        Enabled by its ``multi-user.target.wants`` link, which is all that
        ``systemctl enable`` makes for a unit with only ``WantedBy=multi-user.target``:
        so it works on a tree, without systemd running, and from cloud-init.
        """
        from rtlibvirt.hostprep.changes import FileChange
        from rtlibvirt.hostprep.effects import FileState

        if not self.kthreads and not values:
            return []
        what = []
        if self.kthreads:
            names = ", ".join(f"{name}/N at {prio}" for name, prio in self.kthreads)
            what.append(f"raises the guest's per-CPU kernel threads to SCHED_FIFO ({names})")
        if values:
            what.append(f"writes {len(values)} /sys value{'s' if len(values) > 1 else ''}")
        text = boot_script(self.kthreads, values, self.source)
        return [
            FileChange(
                BOOT_SCRIPT,
                FileState.file(text.encode(), 0o755),
                "; ".join(what),
                "boot",
                reboot=True,
            ),
            FileChange(
                UNIT_PATH,
                FileState.file(unit_text(self.source).encode()),
                f"runs {BOOT_SCRIPT} at each boot",
                "boot",
                reboot=True,
                then=reload,
            ),
            FileChange(
                WANTS_LINK,
                FileState.symlink(UNIT_PATH),
                f"enables {UNIT} (what `systemctl enable` does)",
                "boot",
                then=reload,
            ),
        ]


def header(source: str) -> str:
    return GUEST_HEADER.format(source=source)


def boot_script(
    kthreads: Sequence[tuple[str, int]], values: Sequence[tuple[str, str]], source: str
) -> str:
    """A POSIX shell script: every kernel thread NAME/N to SCHED_FIFO at its priority, then
    each (/sys path, value) written; exit 1 if anything could not be done."""
    import shlex

    out = [
        "#!/bin/sh\n",
        header(_base(source)),
        "# What the guest needs again at each boot, run by rtlibvirt-guest.service.\n",
        "status=0\n",
    ]
    if kthreads:
        cases = "".join(f"        {name}/[0-9]*) prio={prio} ;;\n" for name, prio in kthreads)
        out.append(
            "# The per-CPU kernel threads to SCHED_FIFO, at the priorities of TuneD's\n"
            "# realtime-virtual-guest profile: ahead of ordinary tasks, below the real-time\n"
            "# application.\n"
            "for dir in /proc/[0-9]*; do\n"
            '    comm=$(cat "$dir/comm" 2>/dev/null) || continue\n'
            '    case "$comm" in\n'
            f"{cases}"
            "        *) continue ;;\n"
            "    esac\n"
            '    chrt --fifo --pid "$prio" "${dir#/proc/}" || status=1\n'
            "done\n"
        )
    if values:
        out.append("# Values of /sys that do not survive a reboot (the plan's runtime values).\n")
        for path, value in values:
            out.append(f"printf '%s\\n' {shlex.quote(value)} > {shlex.quote(path)} || status=1\n")
    out.append('exit "$status"\n')
    return "".join(out)


def unit_text(source: str) -> str:
    return header(_base(source)) + (
        "[Unit]\n"
        "Description=rtlibvirt: the guest's real-time settings that do not survive a reboot\n"
        "After=local-fs.target\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"ExecStart={BOOT_SCRIPT}\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def _base(source: str) -> str:
    return source.rsplit("/", 1)[-1] or "vm.yaml"


class _GuestChecker(Checker):
    """host.yaml's checks of the ``guest:`` section, with their paths under ``guest.``."""

    def error(self, path: Any, message: str, hint: str | None = None) -> None:
        super().error(("guest", *path), message, hint)

    def warn(self, path: Any, message: str, hint: str | None = None) -> None:
        super().warn(("guest", *path), message, hint)

    def item(self, base: Any, index: int) -> Any:
        return item_path(self.doc, ("guest", *base), index)[1:]


def guest_cpus(facts: HostFacts) -> tuple[frozenset[int] | None, str]:
    """The guest's online CPUs (its vCPUs) and the file they were read from."""
    from rtlibvirt.hostprep.facts import read_text

    fs = facts.fs
    for name in ("online", "present"):
        path = f"/sys/devices/system/cpu/{name}"
        text = read_text(fs, path)
        if text is not None:
            try:
                return frozenset(cpuset.parse_cpulist(text.strip())), path
            except cpuset.CpuListError:
                continue
    return None, ""


def derive(
    vcpus: int,
    realtime: Iterable[int],
    section: Guest | None = None,
    source: str = "vm.yaml",
    vendor: str = "intel",
) -> Resolved:
    """The engine's configuration for a guest of ``vcpus`` vCPUs whose ``realtime`` ones are
    isolated: the one definition of the guest half (guest-prep, cloud-init, the probe's
    guest, render's recommendation). No facts: services are checked by :func:`resolve`.

    NothingToDo without real-time vCPUs; ValueError when no vCPU is left for the
    guest's own work (resolve reports it on the spec).
    """
    g = section or Guest()
    rt = frozenset(v for v in realtime if 0 <= v < vcpus)
    if not rt:
        raise NothingToDo(
            f"{source}: the VM has no real-time vCPUs (cpu.realtime is off): "
            "guest-prep has nothing to do"
        )
    housekeeping = frozenset(range(vcpus)) - rt
    if not housekeeping:
        raise ValueError("every vCPU is real-time")
    spec = HostSpec(
        isolated_cpus=tuple(sorted(rt)),
        housekeeping_cpus=tuple(sorted(housekeeping)),
        hugepages=(),
        iommu=False,
        cache_allocation=False,
        idle="poll" if g.idle_poll else "default",
        pstate="default",
        disable_services=g.disable_services,
        mask_services=g.mask_services,
        extra_kernel_args=g.extra_kernel_args,
        # the host recipe's items, as they apply inside a guest (each item: docs/guest.md)
        rcu_normal_after_boot=True,
        transparent_hugepages="never",
        numa_balancing=False,
        hung_task_timeout_secs=600,
        unbound_workqueues="housekeeping",
        ksm=True,  # left alone: page merging is the host's business
        kvm_nx_huge_pages="auto",  # a hypervisor's (never planned in a guest)
        cpu_governor="default",  # a guest's vCPUs have no frequency of their own
        energy_perf_bias="default",
    )
    kthreads = tuple(
        (name, getattr(g.kthreads, name)) for name in KTHREADS if getattr(g.kthreads, name) > 0
    )
    return Resolved(
        spec=spec,
        vendor=vendor,  # no vendor-specific argument is planned in a guest
        isolated=rt,
        housekeeping=housekeeping,
        services=(),
        missing_services=(),
        masks=(),
        source=source,
        text=b"",
        warnings=(),
        hypervisor=False,
        guest=GuestProfile(g, source, rt, housekeeping, kthreads),
    )


def kernel_args(vcpus: int, realtime: Iterable[int], section: Guest | None = None) -> list[str]:
    """The guest's kernel command line: empty without real-time vCPUs or without a vCPU
    left for the guest's own work (a Linux guest with every vCPU isolated has nowhere
    to run its own work)."""
    from rtlibvirt.hostprep import cmdline

    try:
        return cmdline.plan(derive(vcpus, realtime, section)).texts
    except (NothingToDo, ValueError):
        return []


def resolve(doc: Document, loaded: Loaded, facts: HostFacts) -> Resolved:
    """The engine's configuration for the guest of ``loaded``, checked against the guest
    (its CPUs, its units); SpecError lists every problem. NothingToDo when the spec has
    no real-time vCPUs.
    """
    vm = loaded.spec
    rt = frozenset(vm.realtime_vcpus)
    check = _GuestChecker(doc)
    try:
        host = derive(vm.vcpus, rt, vm.guest, loaded.source, facts.vendor or "intel")
    except ValueError:
        Checker.error(
            check,
            ("cpu", "realtime"),
            f"every vCPU ({cpuset.format_cpulist(rt)}) is real-time: the guest has no vCPU "
            "left for its own work, interrupts and timers",
            f"keep vCPU 0 for the guest, e.g. `cpu.realtime.vcpus: "
            f"{cpuset.format_cpulist(range(1, vm.vcpus)) or '1'}`"
            + (" with `vcpus: 2`" if vm.vcpus == 1 else ""),
        )
        check.raise_errors()
        raise
    online, where = guest_cpus(facts)
    if online is not None and not rt <= online:
        missing = rt - online
        Checker.error(
            check,
            ("cpu", "realtime", "vcpus"),
            f"the spec's real-time vCPUs {cpuset.format_cpulist(rt)} need {max(rt) + 1} CPUs, "
            f"but this guest has {len(online)} online ({cpuset.format_cpulist(online)}, "
            f"{facts.fs.path(where)}): vCPU{'s' if len(missing) > 1 else ''} "
            f"{cpuset.format_cpulist(missing)} missing",
            f"run guest-prep inside the VM this spec defines (vcpus: {vm.vcpus}), or bring "
            "its CPUs online",
        )
    services, missing_units, masks = _check_services(host.spec, facts, check)
    check.raise_errors()
    warnings: tuple[Problem, ...] = (*loaded.warnings, *check.warnings)
    return dataclasses.replace(
        host, services=services, missing_services=missing_units, masks=masks, warnings=warnings
    )


def finish(plan: Plan) -> None:
    """The guest's touches to a plan the engine built: its files' headers, its notes."""
    from rtlibvirt.hostprep.changes import HEADER
    from rtlibvirt.hostprep.effects import FileState

    profile: GuestProfile = plan.host.guest
    ours = header(_base(profile.source)).encode()
    theirs = HEADER.format(source="host.yaml").encode()
    for index, change in enumerate(plan.files):
        want = change.want
        if want.kind == "file" and theirs in want.data:
            data = want.data.replace(theirs, ours, 1)
            plan.files[index] = dataclasses.replace(change, want=FileState.file(data, want.mode))
    values = [(c.path, c.value) for c in plan.runtime if c.path.startswith("/sys/")]
    reload = (("systemctl", "daemon-reload"),) if plan.facts.systemd_running else ()
    boot = profile.boot_files(values, reload)
    plan.files.extend(boot)
    plan.note("kernel", preempt_rt(plan.facts))
    if boot:
        plan.note(
            "boot",
            f"{UNIT} sets the kernel threads' priorities and the /sys values again at each "
            "boot; `guest-prep revert` removes it (what it set stays until the next boot)",
        )


def preempt_rt(facts: HostFacts) -> str:
    """Whether the guest's running kernel is PREEMPT_RT (kernel.realtime), and the package
    that provides one on the guest's distribution if not."""
    from rtlibvirt.kernel import realtime

    rt, evidence = realtime.preempt_rt(facts.fs)
    if rt:
        return f"the running kernel is PREEMPT_RT ({evidence})"
    package = next((RT_KERNEL_PACKAGES[i] for i in facts.os_ids if i in RT_KERNEL_PACKAGES), None)
    get = (
        f"install {package} and boot it"
        if package
        else "install your distribution's PREEMPT_RT kernel and boot it"
    )
    if rt is None:
        return f"whether the kernel is PREEMPT_RT is not known ({evidence}): {get}"
    return f"the running kernel is not PREEMPT_RT ({evidence}): for bounded latency, {get}"

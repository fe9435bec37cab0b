"""The kernel command line: which arguments, why, and how to compare them.

Vendor-aware: Intel and AMD differ in the IOMMU, P-state and idle drivers and
in KVM's pause-loop exiting. Every argument planned here exists in Linux (see
Documentation/admin-guide/kernel-parameters.txt); the usual checklists also
carry a few that do not, listed in :data:`NONEXISTENT` with the reason the
plan gives for leaving them out.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from rtlibvirt.config.host import Resolved
from rtlibvirt.config.kernelargs import (
    CPULIST_KEYS,
    NONEXISTENT,
    KernelArg,
    parse_arg,
)
from rtlibvirt.hostprep.facts import HostFacts
from rtlibvirt.kernel import cpuset

PATIENCE = "/sys/module/rcutree/parameters/nohz_full_patience_delay"
THP = "/sys/kernel/mm/transparent_hugepage"
NX_HUGE_PAGES_WHY = (
    "KVM keeps guests' huge pages whole: no 4K split of executable pages and no "
    "kvm-nx-lpage-recovery thread zapping them; security trade-off: this turns off the "
    "iTLB multihit mitigation, so on an affected CPU a guest can crash the host with a "
    "machine check (kvm_nx_huge_pages: auto keeps it)"
)


def split_cmdline(text: str) -> list[str]:
    """A kernel command line into arguments (quotes as the kernel reads them)."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    if "--" in words:  # what follows is init's
        words = words[: words.index("--")]
    return words


@dataclass(frozen=True)
class CmdlinePlan:
    args: tuple[KernelArg, ...]
    left_out: tuple[tuple[str, str], ...]  # (argument, reason)
    notes: tuple[str, ...]

    @property
    def texts(self) -> list[str]:
        return [arg.text for arg in self.args]


def plan(host: Resolved, facts: HostFacts | None = None) -> CmdlinePlan:
    """The kernel arguments for ``host``, in a stable order, each with its reason.

    ``facts``: the host's, to add a parameter only where its kernel has it
    (``rcutree.nohz_full_patience_delay``); without them such a parameter is
    left out with a note. ``transparent_hugepage`` is left out (with a note) only
    where the facts show a kernel without transparent hugepages.
    """
    spec = host.spec
    hypervisor = host.hypervisor
    intel = host.vendor == "intel"
    guest = not hypervisor  # guest-prep: no argument that belongs to a hypervisor
    iso, hk = cpuset.format_cpulist(host.isolated), cpuset.format_cpulist(host.housekeeping)
    args: list[KernelArg] = []
    notes: list[str] = []

    def add(key: str, value: str | None, why: str) -> None:
        args.append(KernelArg(key, value, why))

    add(
        "isolcpus",
        f"managed_irq,domain,{iso}",
        "no scheduler balancing, unbound work or managed IRQs on the real-time CPUs",
    )
    add("nohz", "on", "tickless idle")
    add("nohz_full", iso, "no scheduler tick on a real-time CPU running one task")
    add("rcu_nocbs", iso, "RCU callbacks run on housekeeping CPUs")
    add(
        "rcu_nocb_poll",
        None,
        "RCU callback threads poll instead of being woken by the real-time CPUs",
    )
    add("irqaffinity", hk, "IRQs go to the housekeeping CPUs by default")
    if spec.rcu_normal_after_boot:
        add(
            "rcupdate.rcu_normal_after_boot",
            "1",
            "no expedited RCU grace periods after boot: they send IPIs to every CPU, the "
            "real-time ones too",
        )
        if facts is not None and facts.fs.exists(PATIENCE):
            add(
                "rcutree.nohz_full_patience_delay",
                "1000",
                "RCU leaves a nohz_full CPU running one task alone for up to 1 s before "
                "it disturbs it for a quiescent state",
            )
        else:
            where = "under the root" if facts is None or not facts.fs.is_live else "here"
            notes.append(
                "rcutree.nohz_full_patience_delay: not added: the running kernel "
                f"{where} has no such parameter ({PATIENCE}; Linux 6.10 and later)"
            )
    one_g = host.hugepages("1G") if hypervisor else None
    if one_g is not None:
        add("default_hugepagesz", "1G", "1G pages are the default hugepage size")
        add("hugepagesz", "1G", "the next hugepages= counts 1G pages")
        add("hugepages", str(one_g), f"{one_g} x 1G reserved at boot, while memory is unfragmented")
    if spec.transparent_hugepages != "default" and facts is not None and not facts.fs.exists(THP):
        # PREEMPT_RT kernels may be built without THP (Debian's 6.1 rt-amd64 is): there
        # the argument is an unknown one, passed on to init
        where = "under the root" if not facts.fs.is_live else "here"
        notes.append(
            f"transparent_hugepage: not added: the running kernel {where} has no transparent "
            f"hugepages ({THP})"
        )
    elif spec.transparent_hugepages != "default":
        add(
            "transparent_hugepage",
            spec.transparent_hugepages,
            "no khugepaged scans or compaction stalls behind the vCPUs' memory "
            "(hugepages for VMs are reserved, not transparent)"
            if spec.transparent_hugepages == "never"
            else f"transparent hugepages: {spec.transparent_hugepages}",
        )
    if spec.iommu and hypervisor:
        if intel:
            add("intel_iommu", "on", "IOMMU on, for VFIO device passthrough")
        else:
            notes.append(
                "amd_iommu: not added: the AMD IOMMU is on by default when the firmware "
                "enables it, and amd_iommu has no 'on' value (amd_iommu=on is ignored as an "
                "unknown option)"
            )
        add("iommu", "pt", "host devices keep identity (passthrough) DMA mappings")
    if spec.cache_allocation and hypervisor:
        add("rdt", "l3cat", "L3 cache allocation for resctrl")
    add("nmi_watchdog", "0", "no NMI watchdog interrupts")
    add("nosoftlockup", None, "no soft-lockup detector")
    add("skew_tick", "1", "per-CPU ticks offset, less lock contention")
    add("tsc", "reliable", "no TSC watchdog checks")
    if not guest:  # a KVM guest keeps kvm-clock, its stable paravirtual clock
        add("clocksource", "tsc", "TSC as the clock source")
        add("no_timer_check", None, "no timer IRQ check at boot")
    if spec.idle == "poll" and guest:
        add("idle", "poll", "idle vCPUs poll instead of halting: no wake-up exit (asked)")
    elif spec.idle == "poll":
        add("idle", "poll", "idle CPUs poll: no C-state exit latency")
        add("processor.max_cstate", "0", "ACPI idle limited to C0/C1")
        if intel:
            add("intel_idle.max_cstate", "0", "intel_idle off (ACPI idle limits apply)")
    elif spec.idle == "shallow":
        add("processor.max_cstate", "1", "ACPI idle: C1 at most")
        if intel:
            add("intel_idle.max_cstate", "1", "intel_idle: C1 at most")
    if spec.pstate != "default":
        driver = "intel_pstate" if intel else "amd_pstate"
        add(
            driver,
            spec.pstate,
            "no P-state driver: the frequency does not change under the vCPUs"
            if spec.pstate == "disable"
            else f"{driver} in {spec.pstate} mode",
        )
    if spec.cpu_governor != "default":
        add(
            "cpufreq.default_governor",
            spec.cpu_governor,
            "every CPU starts with this governor: intel_pstate=disable alone leaves the "
            "fallback driver's default (often schedutil or ondemand), which changes the "
            "frequency under the vCPUs"
            if spec.cpu_governor == "performance"
            else f"every CPU starts with the {spec.cpu_governor} governor",
        )
    if hypervisor:
        add("audit", "0", "no audit records from system calls")
        add("kvm.kvmclock_periodic_sync", "N", "no periodic kvmclock updates")
        if intel:
            add("kvm_intel.ple_gap", "0", "no pause-loop exits: vCPUs own their CPUs")
        else:
            add("kvm_amd.pause_filter_count", "0", "no pause-filter exits: vCPUs own their CPUs")
        if spec.kvm_nx_huge_pages == "off":
            add("kvm.nx_huge_pages", "off", NX_HUGE_PAGES_WHY)
    if spec.mitigations == "off":
        add("nospectre_v2", None, "Spectre v2 mitigations off (asked: mitigations: off)")
        add("spectre_v2_user", "off", "Spectre v2 user-space mitigations off")

    # extra_kernel_args: one with a planned name replaces it; unknown ones are left out.
    for text in spec.extra_kernel_args:
        extra = parse_arg(text)
        if extra.key in NONEXISTENT:
            continue
        replaced = [a for a in args if a.key == extra.key]
        if replaced and extra.key not in ("hugepagesz", "hugepages", "console"):
            index = args.index(replaced[0])
            args[index] = KernelArg(extra.key, extra.value, "from extra_kernel_args")
            notes.append(f"{text} (extra_kernel_args) replaces {replaced[0].text}")
        else:
            args.append(KernelArg(extra.key, extra.value, "from extra_kernel_args"))
    left_out = tuple(NONEXISTENT.items())
    return CmdlinePlan(tuple(args), left_out, tuple(notes))


def _value_matches(key: str, want: str | None, have: str | None) -> bool:
    if want == have:
        return True
    if want is None or have is None or key not in CPULIST_KEYS:
        return False
    w_flags, w_cpus = _split_cpulist_value(want)
    h_flags, h_cpus = _split_cpulist_value(have)
    return w_flags == h_flags and w_cpus == h_cpus


def _split_cpulist_value(value: str) -> tuple[frozenset[str], frozenset[int] | None]:
    parts = value.split(",")
    flags = []
    while parts and parts[0] and not parts[0][0].isdigit():
        flags.append(parts.pop(0))
    try:
        cpus = frozenset(cpuset.parse_cpulist(",".join(parts)))
    except cpuset.CpuListError:
        return frozenset(flags), None
    return frozenset(flags), cpus


def find(arg: KernelArg, words: Sequence[str]) -> str | None:
    """The value the kernel takes for ``arg.key`` from ``words`` (the last one wins)."""
    found: str | None = None
    for word in words:
        have = parse_arg(word)
        if have.key == arg.key:
            found = word
    return found


def present(arg: KernelArg, words: Sequence[str]) -> bool:
    """Whether ``words`` (a parsed command line) has ``arg`` with its value."""
    if arg.key in ("hugepagesz", "hugepages"):
        return arg.text in words
    word = find(arg, words)
    if word is None:
        return False
    return _value_matches(arg.key, arg.value, parse_arg(word).value)

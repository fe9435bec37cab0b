"""The ``host.yaml`` model: typed, frozen, validated like ``vm.yaml``.

Three steps, each reporting every problem with its key path and line (exit 2,
nothing changed): YAML syntax, shape (the model below), and meaning
(:func:`check`), which also compares the file with the host's facts: CPUs the
host does not have, the CPU vendor, services that are not installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtlibvirt.config.document import Document, KeyPath
from rtlibvirt.config.kernelargs import NONEXISTENT, arg_key
from rtlibvirt.config.model import (
    Checker,
    Errors,
    ListOf,
    Model,
    boolean,
    choice,
    cpus,
    integer,
    list_of,
    model,
    nested,
    optional,
    setting,
    short,
    validate_model,
)
from rtlibvirt.config.sysvalues import (  # noqa: F401  (also imported from here)
    EXTRA_ARGS_MAX,
    KERNEL_ARG,
    KERNEL_ARG_MAX,
    SERVICE_NAME,
    UNIT_NAME_MAX,
    _kernel_arg,
    _service,
)
from rtlibvirt.errors import Problem
from rtlibvirt.kernel import cpuset

if TYPE_CHECKING:  # facts are read by hostprep; config needs only their type
    from rtlibvirt.hostprep.facts import HostFacts

# The cpufreq governors of Linux (drivers/cpufreq/cpufreq_*.c, and the ones
# intel_pstate and amd-pstate offer in active mode: performance and powersave).
GOVERNORS = ("performance", "schedutil", "ondemand", "conservative", "powersave", "userspace")
# energy_perf_bias by name, and the number the kernel keeps (Documentation/ABI/
# testing/sysfs-devices-system-cpu: 0 performance ... 15 power).
EPB_VALUES: dict[str, int] = {
    "performance": 0,
    "balance-performance": 4,
    "normal": 6,
    "balance-power": 8,
    "power": 15,
}
# The keys that only make sense on a hypervisor: KVM's options, the IOMMU for
# device passthrough, hugepages reserved for guests' memory, cache allocation
# for the hook. A profile for a guest (Resolved.hypervisor false) plans none of them.
HYPERVISOR_ONLY = (
    "hugepages",
    "iommu",
    "cache_allocation",
    "lapic_timer_advance_ns",
    "kvm_nx_huge_pages",
)
# Services that run KSM: stopped with `ksm: false` where they are installed.
KSM_SERVICES = ("ksm.service", "ksmtuned.service")


# Arguments host-prep derives from isolated_cpus and housekeeping_cpus: given
# again in extra_kernel_args they would bypass the rules that keep CPU 0 and
# the housekeeping CPUs for the host (nohz=off turns nohz_full off).
DERIVED_ARGS: dict[str, str] = {
    "isolcpus": "isolated_cpus",
    "nohz_full": "isolated_cpus",
    "rcu_nocbs": "isolated_cpus",
    "rcu_nocb_poll": "isolated_cpus",
    "nohz": "isolated_cpus",
    "irqaffinity": "housekeeping_cpus",
}


@model
class Hugepages(Model):
    """Hugepages reserved for VMs: 1G pages at boot (kernel arguments), 2M pages at runtime."""

    size: str = setting(choice("1G", "2M"), "1G (reserved at boot) or 2M (set at runtime)")
    count: int = setting(integer(1, 1_000_000), "number of pages")


class _HugepagesList(ListOf[Hugepages]):
    """``{size, count}``, or a list of them; null or false: none."""

    def parse(self, value: Any, path: Any, errors: Errors) -> tuple[Hugepages, ...]:
        if value is None or value is False:
            return ()
        return super().parse(value, path, errors)


@model
class HostSpec(Model):
    """A real-time KVM host: the contents of ``host.yaml``."""

    isolated_cpus: tuple[int, ...] = setting(cpus(), "CPUs reserved for real-time vCPUs")
    housekeeping_cpus: tuple[int, ...] | None = setting(
        optional(cpus()),
        "CPUs for the host's own work; default: every other present CPU",
        default=None,
    )
    hugepages: tuple[Hugepages, ...] = setting(
        _HugepagesList(nested(Hugepages), single=True),
        "{size, count}, or a list of them (one per size)",
        default=(),
    )
    iommu: bool = setting(boolean(), "IOMMU on, passthrough mode for host devices", default=True)
    cache_allocation: bool = setting(
        boolean(), "L3 cache allocation (rdt=l3cat) and the resctrl mount", default=False
    )
    idle: str = setting(
        choice("poll", "shallow", "default"),
        "poll: no C-states; shallow: C1 at most; default: the kernel's",
        default="poll",
    )
    pstate: str = setting(
        choice("disable", "passive", "active", "default"),
        "intel_pstate= / amd_pstate= mode; disable: no P-state driver",
        default="disable",
    )
    lapic_timer_advance_ns: int | None = setting(
        optional(integer(-1, 1_000_000)),
        "KVM's fixed LAPIC timer advance; -1 = adaptive",
        default=None,
    )
    machine_check_polling: bool | None = setting(
        optional(boolean()),
        "false: machine-check polling off (check_interval 0); unset: left alone",
        default=None,
    )
    disable_services: tuple[str, ...] = setting(
        list_of(SERVICE_NAME),
        "systemd units to stop and disable, as `systemctl disable` does (with their Also= "
        "units, aliases and instances), e.g. irqbalance",
        default=(),
    )
    mask_services: tuple[str, ...] = setting(
        list_of(SERVICE_NAME),
        "systemd units to stop and mask (`systemctl mask`): nothing can start them, also "
        "static units that disable cannot touch",
        default=(),
    )
    mitigations: str = setting(
        choice("keep", "off"), "off disables Spectre v2 mitigations (nospectre_v2)", default="keep"
    )
    kvm_nx_huge_pages: str = setting(
        choice("off", "auto"),
        "off: KVM keeps guests' huge pages whole (kvm.nx_huge_pages=off; no iTLB multihit "
        "mitigation: on affected CPUs a guest can crash the host); auto: the kernel's choice",
        default="off",
    )
    rcu_normal_after_boot: bool = setting(
        boolean(),
        "no expedited RCU grace periods (IPIs to every CPU) after boot; with it "
        "rcutree.nohz_full_patience_delay=1000 where the kernel has it",
        default=True,
    )
    transparent_hugepages: str = setting(
        choice("never", "madvise", "always", "default"),
        "transparent hugepages (cmdline and now); never: no khugepaged or compaction "
        "behind the vCPUs; default: left alone",
        default="never",
    )
    numa_balancing: bool = setting(
        boolean(),
        "false: automatic NUMA balancing off (kernel.numa_balancing = 0: no page-fault "
        "scanning of the vCPUs' memory); true: left alone",
        default=False,
    )
    ksm: bool = setting(
        boolean(),
        "false: KSM stopped and its pages unmerged (ksm/run = 2 at each boot; ksm and "
        "ksmtuned services disabled where installed); true: left alone",
        default=False,
    )
    hung_task_timeout_secs: int | None = setting(
        optional(integer(0, 2_000_000)),
        "kernel.hung_task_timeout_secs; a task blocked behind a FIFO vCPU is not reported "
        "hung before this; null: left alone",
        default=600,
    )
    cpu_governor: str = setting(
        choice(*GOVERNORS, "default"),
        "the cpufreq governor of every CPU (cpufreq.default_governor= and now, where cpufreq "
        "exists); default: left alone",
        default="performance",
    )
    energy_perf_bias: str = setting(
        choice(*EPB_VALUES, "default"),
        "the CPUs' energy/performance bias (energy_perf_bias, where the CPU has it); "
        "default: left alone",
        default="performance",
    )
    unbound_workqueues: str = setting(
        choice("housekeeping", "default"),
        "housekeeping: unbound workqueues (the global, writeback and every sysfs workqueue's "
        "cpumask) on the housekeeping CPUs from boot on; default: left alone",
        default="housekeeping",
    )
    extra_kernel_args: tuple[str, ...] = setting(
        list_of(KERNEL_ARG),
        "more kernel arguments; one with the name of a planned one replaces it",
        default=(),
    )
    cpu_vendor: str | None = setting(
        optional(choice("intel", "amd")),
        "default: from /proc/cpuinfo; needed for a tree without /proc",
        default=None,
    )


@dataclass(frozen=True)
class Resolved:
    """A valid host.yaml with everything the host decides filled in."""

    spec: HostSpec
    vendor: str  # "intel" or "amd"
    isolated: frozenset[int]
    housekeeping: frozenset[int]
    services: tuple[str, ...]  # installed units to disable
    missing_services: tuple[str, ...]
    masks: tuple[str, ...]  # installed units to mask
    source: str
    text: bytes  # the file as written, installed for the boot-time unit
    warnings: tuple[Problem, ...]
    # False for a guest: nothing of HYPERVISOR_ONLY is planned (no KVM options,
    # IOMMU, hugepages or cache allocation), whatever the spec says.
    hypervisor: bool = True
    # guest-prep: the guest profile (hostprep.profiles.guest.GuestProfile): its
    # boot-time unit for the kernel threads, its files' headers
    guest: Any = None

    def hugepages(self, size: str) -> int | None:
        for pages in self.spec.hugepages:
            if pages.size == size:
                return pages.count
        return None


def load_host_spec(path: str | Path, facts: HostFacts) -> Resolved:
    """Read and validate host.yaml against the host; SpecError lists every problem."""
    from rtlibvirt.config.loader import load_with_bytes  # ruamel.yaml: only when read

    doc, text = load_with_bytes(path)  # read once: the bytes checked are the bytes installed
    return resolve(doc, facts, text)


def resolve(doc: Document, facts: HostFacts, text: bytes = b"") -> Resolved:
    spec = validate_model(doc, HostSpec, _missing_hint)
    check = Checker(doc)
    isolated = frozenset(spec.isolated_cpus)
    housekeeping = _check_cpus(spec, facts, check)
    vendor = _check_vendor(spec, facts, check)
    services, missing, masks = _check_services(spec, facts, check)
    if not spec.ksm:
        services += tuple(
            unit
            for unit in KSM_SERVICES
            if unit not in services and unit not in masks and facts.unit_file(unit) is not None
        )
    _check_rest(spec, check)
    _check_governor(spec, facts, check)
    check.raise_errors()
    assert vendor is not None and housekeeping is not None
    return Resolved(
        spec=spec,
        vendor=vendor,
        isolated=isolated,
        housekeeping=housekeeping,
        services=services,
        missing_services=missing,
        masks=masks,
        source=doc.source,
        text=text,
        warnings=tuple(check.warnings),
    )


def _missing_hint(path: KeyPath) -> str | None:
    if path == ("isolated_cpus",):
        return "add the CPUs reserved for real-time vCPUs, e.g. `isolated_cpus: 2-13`"
    if path[-1:] == ("count",):
        return "add the number of pages, e.g. `hugepages: {size: 1G, count: 8}`"
    if path[-1:] == ("size",):
        return "add the page size, 1G or 2M"
    return None


def _cpulist_or_none(cpus: frozenset[int]) -> str:
    return cpuset.format_cpulist(cpus) or "none"


def _check_cpus(spec: HostSpec, facts: HostFacts, check: Checker) -> frozenset[int] | None:
    isolated = frozenset(spec.isolated_cpus)
    present = facts.cpus_present
    where = facts.fs.path("/sys/devices/system/cpu/present")
    if not isolated:
        check.error(
            ("isolated_cpus",), "is empty", "name the CPUs reserved for real-time vCPUs, e.g. 2-13"
        )
    if 0 in isolated:
        check.error(
            ("isolated_cpus",),
            "CPU 0 is isolated: it must stay a housekeeping CPU (it takes the boot-time and "
            "global timer work that nohz_full cannot move off it)",
            "start the isolated CPUs at 1 or above, e.g. `isolated_cpus: 2-13`",
        )
    if present is not None:
        for key, cpus in (
            ("isolated_cpus", isolated),
            ("housekeeping_cpus", spec.housekeeping_cpus),
        ):
            missing = frozenset(cpus or ()) - present
            if missing:
                check.error(
                    (key,),
                    f"CPU{'s' if len(missing) > 1 else ''} {_cpulist_or_none(missing)} "
                    f"{'do' if len(missing) > 1 else 'does'} not exist: "
                    f"the host has CPUs {_cpulist_or_none(present)}",
                    "use CPUs listed in /sys/devices/system/cpu/present",
                )
        if isolated and present <= isolated:
            check.error(
                ("isolated_cpus",),
                f"isolates every CPU of the host ({_cpulist_or_none(present)}): nothing is "
                "left for the host itself",
                "keep at least CPU 0 as a housekeeping CPU",
            )
    if spec.housekeeping_cpus is not None:
        housekeeping = frozenset(spec.housekeeping_cpus)
        if not housekeeping:
            check.error(("housekeeping_cpus",), "is empty", "name at least CPU 0, e.g. `0-1`")
    elif present is not None:
        housekeeping = present - isolated
    else:
        check.error(
            ("housekeeping_cpus",),
            f"is required here: {where} does not exist, so the other CPUs are not known",
            "name the housekeeping CPUs, e.g. `housekeeping_cpus: 0-1`",
        )
        return None
    both = housekeeping & isolated
    if both:
        check.error(
            ("housekeeping_cpus",),
            f"CPU{'s' if len(both) > 1 else ''} {_cpulist_or_none(both)} "
            f"{'are' if len(both) > 1 else 'is'} both isolated and housekeeping",
            "a CPU is either reserved for real-time vCPUs or does the host's work, not both",
        )
    if housekeeping and 0 not in housekeeping and 0 not in isolated:
        check.warn(
            ("housekeeping_cpus",),
            "does not include CPU 0, which keeps host work (timers, IRQs) that cannot move",
            "add CPU 0 to housekeeping_cpus",
        )
    return housekeeping


def _check_vendor(spec: HostSpec, facts: HostFacts, check: Checker) -> str | None:
    found = facts.vendor
    if spec.cpu_vendor is not None:
        if found is not None and found != spec.cpu_vendor:
            check.error(
                ("cpu_vendor",),
                f"is {spec.cpu_vendor} but /proc/cpuinfo says {facts.vendor_id} ({found})",
                f"remove cpu_vendor, or set it to {found}",
            )
        return spec.cpu_vendor
    if found is None:
        what = (
            f"its vendor {facts.vendor_id!r} is neither Intel nor AMD"
            if facts.vendor_id
            else f"{facts.fs.path('/proc/cpuinfo')} has no vendor_id"
        )
        check.error(
            ("cpu_vendor",),
            f"is required here: {what}",
            "add `cpu_vendor: intel` or `cpu_vendor: amd`",
        )
        return "intel"  # checked above: never used
    return found


def _check_services(
    spec: HostSpec, facts: HostFacts, check: Checker
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    found: dict[str, list[str]] = {"disable_services": [], "mask_services": []}
    missing: list[str] = []
    seen: dict[str, str] = {}
    for key in ("disable_services", "mask_services"):
        for index, unit in enumerate(getattr(spec, key)):
            path = check.item((key,), index)
            if unit in seen:
                if seen[unit] == key:
                    check.warn(path, f"{unit} is listed twice")
                else:
                    check.error(
                        path,
                        f"{unit} is in both disable_services and mask_services",
                        "a masked unit is disabled too: list it in mask_services only",
                    )
                continue
            canonical = facts.canonical_unit(unit)
            if canonical != unit:
                check.warn(path, f"{unit} is an alias of {canonical}: {canonical} is meant")
                unit = canonical
                if unit in seen:
                    continue
            seen[unit] = key
            if unit.startswith("rtlibvirt-host."):
                check.error(path, f"{unit} is host-prep's own boot-time unit")
                continue
            if facts.unit_file(unit) is None:
                check.warn(
                    path,
                    f"{unit} is not installed (no unit file under {facts.fs.root}); skipped",
                    "check the name with `systemctl list-unit-files`",
                )
                missing.append(unit)
            else:
                found[key].append(unit)
    return tuple(found["disable_services"]), tuple(missing), tuple(found["mask_services"])


def _check_rest(spec: HostSpec, check: Checker) -> None:
    sizes: set[str] = set()
    for index, pages in enumerate(spec.hugepages):
        if pages.size in sizes:
            check.error(
                check.item(("hugepages",), index),
                f"{pages.size} hugepages are listed twice",
                "give one count per page size",
            )
        sizes.add(pages.size)
    if spec.mitigations == "off":
        check.warn(
            ("mitigations",),
            "off disables Spectre v2 mitigations (nospectre_v2 spectre_v2_user=off): "
            "guests and local users can attack the host's memory",
            "only on a host that runs nothing untrusted",
        )
    keys: dict[str, int] = {}
    for index, arg in enumerate(spec.extra_kernel_args):
        path = check.item(("extra_kernel_args",), index)
        key = arg_key(arg)
        if key in DERIVED_ARGS:
            check.error(
                path,
                f"{short(arg)}: host-prep derives {key} from {DERIVED_ARGS[key]}; "
                "given here it would bypass the rules that keep CPUs for the host",
                f"set `{DERIVED_ARGS[key]}` instead, and remove this argument",
            )
            continue
        if key in NONEXISTENT:
            check.warn(path, f"{arg}: left out: {NONEXISTENT[key]}")
        if key in keys and key not in _REPEATABLE:
            check.error(
                path,
                f"{key} is given twice (also extra_kernel_args[{keys[key]}])",
                "give each kernel argument once",
            )
        keys.setdefault(key, index)
    total = len(" ".join(spec.extra_kernel_args))
    if total > EXTRA_ARGS_MAX:
        check.error(
            ("extra_kernel_args",),
            f"the extra arguments take {total} bytes: at most {EXTRA_ARGS_MAX}, so that with "
            "the planned ones and the distribution's own the command line stays within the "
            "kernel's 2048 bytes (it drops the rest without a word)",
            "give fewer or shorter arguments",
        )


def _check_governor(spec: HostSpec, facts: HostFacts, check: Checker) -> None:
    offered = facts.cpufreq_governors
    if spec.cpu_governor == "default" or offered is None or spec.cpu_governor in offered:
        return
    check.error(
        ("cpu_governor",),
        f"the running kernel has no {spec.cpu_governor!r} governor: its cpufreq driver "
        f"offers {', '.join(sorted(offered)) or 'none'} (scaling_available_governors)",
        "choose one of those, or `default` to leave the governor alone",
    )


_REPEATABLE = frozenset({"console", "hugepagesz", "hugepages", "modprobe.blacklist"})

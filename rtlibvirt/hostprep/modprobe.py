"""KVM module options: ``/etc/modprobe.d/50-rtlibvirt.conf``, and lapic_timer_advance_ns now.

The kernel-command-line forms (``kvm.kvmclock_periodic_sync=N``) reach a
built-in KVM; the modprobe.d file reaches KVM as a module, also when it is
reloaded without a reboot. ``lapic_timer_advance_ns`` is written at once where
the running kernel has it and it is writable. Newer kernels replaced it with a
boolean ``lapic_timer_advance`` (adaptive tuning on or off): there the plan
says so, and no fixed value is set.
"""

from __future__ import annotations

import os

from rtlibvirt.hostprep.changes import FileChange, Plan, RuntimeChange, header
from rtlibvirt.hostprep.effects import FileState
from rtlibvirt.kernel.cpufreq import read_small

PATH = "/etc/modprobe.d/50-rtlibvirt.conf"
KVM_PARAMS = "/sys/module/kvm/parameters"


ITLB_MULTIHIT = "/sys/devices/system/cpu/vulnerabilities/itlb_multihit"


def plan(plan_: Plan) -> None:
    host, facts = plan_.host, plan_.facts
    if not host.hypervisor:
        return  # KVM's options are a hypervisor's business
    intel = host.vendor == "intel"
    kvm = ["kvmclock_periodic_sync=N"]
    if host.spec.kvm_nx_huge_pages == "off":
        kvm.append("nx_huge_pages=off")
        _nx_huge_pages(plan_)
    ns = host.spec.lapic_timer_advance_ns
    params = facts.kvm_params
    if ns is not None:
        if params is not None and "lapic_timer_advance_ns" in params:
            kvm.append(f"lapic_timer_advance_ns={ns}")
            path = f"{KVM_PARAMS}/lapic_timer_advance_ns"
            if os.stat(facts.fs.path(path)).st_mode & 0o200:
                plan_.runtime.append(
                    RuntimeChange(path, str(ns), "kvm.lapic_timer_advance_ns", "for new vCPUs")
                )
            else:
                plan_.note("kvm", "lapic_timer_advance_ns is read-only here: set at module load")
        elif params is not None and "lapic_timer_advance" in params:
            plan_.note(
                "kvm",
                f"lapic_timer_advance_ns: {ns} not set: this kernel has no lapic_timer_advance_ns; "
                "it replaced it with the boolean lapic_timer_advance (adaptive tuning, "
                f"now {_read(plan_, 'lapic_timer_advance')})",
            )
        else:
            kvm.append(f"lapic_timer_advance_ns={ns}")
            plan_.note(
                "kvm",
                f"lapic_timer_advance_ns: the kvm module is not loaded under {facts.fs.root}, "
                "so whether its kernel has this option is not known; an unknown option is "
                "ignored (with a warning) when kvm loads",
            )
    if plan_.runtime_only:
        return
    vendor_line = (
        "options kvm_intel ple_gap=0\n" if intel else "options kvm_amd pause_filter_count=0\n"
    )
    text = header() + f"options kvm {' '.join(kvm)}\n" + vendor_line
    plan_.files.append(
        FileChange(
            PATH,
            FileState.file(text.encode("utf-8")),
            "KVM module options (at the next load of kvm; also on the kernel command line)",
            "kvm",
            reboot=True,
        )
    )


def _nx_huge_pages(plan_: Plan) -> None:
    """kvm.nx_huge_pages now, where kvm is loaded; and what the CPU says of iTLB multihit."""
    fs = plan_.facts.fs
    state = read_small(fs, ITLB_MULTIHIT)
    if state is None:
        plan_.note(
            "kvm",
            f"nx_huge_pages=off: {ITLB_MULTIHIT} does not exist under {fs.root}, so whether "
            "this CPU is affected by iTLB multihit is not known; on an affected CPU a guest "
            "can crash the host (set `kvm_nx_huge_pages: auto` to keep the mitigation)",
        )
    elif state.startswith("Not affected"):
        plan_.note("kvm", f"nx_huge_pages=off: this CPU is not affected by iTLB multihit ({state})")
    else:
        plan_.note(
            "kvm",
            f"nx_huge_pages=off: this CPU is affected by iTLB multihit ({state}): with the "
            "mitigation off a guest can crash the host with a machine check; set "
            "`kvm_nx_huge_pages: auto` unless every guest is trusted",
        )
    path = f"{KVM_PARAMS}/nx_huge_pages"
    now = read_small(fs, path)
    if now is None:
        return
    if now == "never":  # the mitigation is disabled for good (nx_huge_pages=never)
        plan_.note("kvm", "nx_huge_pages is 'never' here: huge pages are never split already")
        return
    writable = bool(os.stat(fs.path(path)).st_mode & 0o200)
    plan_.runtime.append(
        RuntimeChange(path, "N", "kvm.nx_huge_pages", "guests' huge pages stay whole", writable)
    )


def _read(plan_: Plan, name: str) -> str:
    try:
        return plan_.facts.fs.read(f"{KVM_PARAMS}/{name}").strip()
    except OSError:
        return "unknown"

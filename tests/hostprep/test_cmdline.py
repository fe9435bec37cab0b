"""The kernel command line: the seed's arguments, vendor equivalents, extra arguments."""

from __future__ import annotations

from collections.abc import Callable

from rtlibvirt.config.kernelargs import KernelArg, parse_arg
from rtlibvirt.hostprep import cmdline
from tests.fakes.hostprep import Host

# The seed checklist's GRUB_CMDLINE_LINUX, verbatim.
SEED_CMDLINE = (
    "isolcpus=4 rcu_nocbs=4 nohz_full=4 default_hugepagesz=1G hugepagesz=1G hugepages=8 "
    "intel_iommu=on rdt=l3cat nmi_watchdog=0 idle=poll clocksource=tsc tsc=reliable noht "
    "audit=0 skew_tick=1 intel_pstate=disable intel.max_cstate=0 intel_idle.max_cstate=0 "
    "processor.max_cstate=0 processor_idle.max_cstate=0 nosoftlockup nohz=on no_timer_check "
    "nospectre_v2 spectre_v2_user=off kvm.kvmclock_periodic_sync=N kvm_intel.ple_gap=0 "
    "irqaffinity=0"
)
NOT_IN_LINUX = {"noht", "intel.max_cstate", "processor_idle.max_cstate"}


def test_seed_host_reproduces_the_seed_cmdline(fake_host: Callable[..., Host]) -> None:
    plan = fake_host("debian").plan()
    args = {a.key: a for a in plan.cmdline.args}
    seed = [parse_arg(w) for w in SEED_CMDLINE.split()]
    for arg in seed:
        if arg.key in NOT_IN_LINUX:
            assert arg.key not in args
            continue
        assert arg.key in args, arg.text
        if arg.key == "isolcpus":
            assert args["isolcpus"].value == "managed_irq,domain,4"
        elif arg.key == "irqaffinity":  # the seed named CPU 0; housekeeping is "the rest"
            assert args["irqaffinity"].value == "0-3,5-13"
        else:
            assert args[arg.key].text == arg.text
    # ...and why the others are left out.
    assert {name for name, _ in plan.cmdline.left_out} == NOT_IN_LINUX
    assert all(reason for _, reason in plan.cmdline.left_out)
    # The additions the issue asks for beyond the seed.
    assert {"rcu_nocb_poll", "iommu"} <= set(args)


def test_seed_irqaffinity_with_housekeeping_cpu_0(fake_host: Callable[..., Host]) -> None:
    host = fake_host("debian", "isolated_cpus: 4\nhousekeeping_cpus: 0\n")
    texts = host.plan().cmdline.texts
    assert "irqaffinity=0" in texts
    assert texts.count("isolcpus=managed_irq,domain,4") == 1


def test_amd_gets_the_vendor_equivalents(fake_host: Callable[..., Host]) -> None:
    host = fake_host("debian", vendor="AuthenticAMD")
    plan = host.plan()
    keys = {a.key for a in plan.cmdline.args}
    assert {"amd_pstate", "kvm_amd.pause_filter_count", "iommu"} <= keys
    assert not {"intel_iommu", "intel_pstate", "intel_idle.max_cstate", "kvm_intel.ple_gap"} & keys
    assert "amd_pstate=disable" in plan.cmdline.texts
    # amd_iommu has no "on" value: the plan says why it is not added.
    assert any("amd_iommu" in text for _, text in plan.notes)


def test_options_change_the_arguments(fake_host: Callable[..., Host]) -> None:
    host = fake_host(
        "debian",
        """\
        isolated_cpus: 2-13
        iommu: false
        idle: shallow
        pstate: passive
        hugepages: [{size: 2M, count: 512}]
        extra_kernel_args: [audit=1, console=ttyS0, noht]
        """,
    )
    texts = host.plan().cmdline.texts
    assert "processor.max_cstate=1" in texts and "intel_idle.max_cstate=1" in texts
    assert "idle=poll" not in texts
    assert "intel_pstate=passive" in texts
    assert not any(t.startswith(("intel_iommu", "iommu", "hugepages")) for t in texts)
    assert "audit=1" in texts and "audit=0" not in texts  # an extra replaces ours
    assert "console=ttyS0" in texts
    assert "noht" not in texts


def test_present_compares_cpulists_as_sets() -> None:
    arg = KernelArg("isolcpus", "managed_irq,domain,2-5", "")
    assert cmdline.present(arg, ["isolcpus=domain,managed_irq,2,3,4,5"])
    assert not cmdline.present(arg, ["isolcpus=managed_irq,domain,2-4"])
    assert cmdline.present(parse_arg("nohz=on"), ["nohz=off", "nohz=on"])
    assert not cmdline.present(parse_arg("nohz=on"), ["nohz=on", "nohz=off"])

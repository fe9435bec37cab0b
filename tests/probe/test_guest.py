"""The guest side: cyclictest's options, the guest command line, where the threads go."""

from __future__ import annotations

import pytest

from rtlibvirt.config.vm import load_spec
from rtlibvirt.domain.render import render
from rtlibvirt.hostprep.profiles.guest import kernel_args
from rtlibvirt.probe import guest
from rtlibvirt.probe import run as proberun
from tests.conftest import EXAMPLES, REPO


def test_cyclictest_runs_as_the_real_time_community_runs_it() -> None:
    m = guest.Measurement(cpus=(1, 2, 3), main=0, duration_s=60, histogram_us=10000)
    assert m.argv() == [
        "-m", "-q", "--policy=fifo", "-p95", "-i200", "-t3", "-a1,2,3", "--mainaffinity=0", "-h10000", "-D60",
    ]  # fmt: skip
    assert m.kernel_params() == [
        "rtlprobe.duration=60", "rtlprobe.cpus=1,2,3", "rtlprobe.threads=3", "rtlprobe.main=0",
        "rtlprobe.interval=200", "rtlprobe.priority=95", "rtlprobe.histogram=10000",
    ]  # fmt: skip
    for word in m.kernel_params():  # the init accepts digits, commas and dashes only
        assert set(word.split("=", 1)[1]) <= set("0123456789,-")
    # every parameter the init reads is on the command line
    for name in ("duration", "cpus", "threads", "main", "interval", "priority", "histogram"):
        assert f"$(param {name})" in guest.INIT


def test_the_guest_isolates_its_realtime_vcpus_and_keeps_one_for_housekeeping() -> None:
    # guest-prep's command line (the guest profile): one definition for both
    assert guest.isolation_args(4, [1, 2, 3]) == [
        "isolcpus=managed_irq,domain,1-3",
        "nohz=on",
        "nohz_full=1-3",
        "rcu_nocbs=1-3",
        "rcu_nocb_poll",
        "irqaffinity=0",
        "rcupdate.rcu_normal_after_boot=1",
        "transparent_hugepage=never",
        "nmi_watchdog=0",
        "nosoftlockup",
        "skew_tick=1",
        "tsc=reliable",
    ]
    assert guest.isolation_args(4, [1, 2, 3]) == kernel_args(4, [1, 2, 3])
    six = guest.isolation_args(6, [1, 3, 5])
    assert {"isolcpus=managed_irq,domain,1,3,5", "nohz_full=1,3,5", "rcu_nocbs=1,3,5"} <= set(six)
    assert "irqaffinity=0,2,4" in six
    assert guest.isolation_args(2, [0, 1]) == []  # nothing left for the guest's own work
    assert guest.isolation_args(2, []) == []
    assert guest.housekeeping_vcpu(4, [0, 2]) == 1
    assert guest.housekeeping_vcpu(2, [0, 1]) == 0
    line = guest.kernel_cmdline(guest.Measurement((1,), 0, 5, 100), ["isolcpus=1"])
    assert (
        line.startswith("console=ttyS0,115200 panic=-1 ")
        and " isolcpus=1 rtlprobe.duration=5 " in line
    )


def target_of(example: str) -> proberun.Target:
    return proberun.plan_target(render(load_spec(EXAMPLES / example).spec), example)


def test_one_thread_per_realtime_vcpu_and_the_baseline_on_their_host_cpus() -> None:
    plc = target_of("plc.yaml")
    assert (plc.measured, plc.housekeeping) == ((1, 2, 3), 0)
    assert plc.host_cpus == (3, 4, 5) and plc.host_main == 0  # the emulator's CPU
    assert plc.guest_isolation == kernel_args(4, [1, 2, 3])
    assert "isolcpus=managed_irq,domain,1-3" in plc.guest_isolation
    assert plc.managed and plc.notes == ()

    bench = target_of("testbench.yaml")  # every vCPU real-time
    assert bench.measured == (0, 1) and bench.guest_isolation == []
    assert "every vCPU is measured" in bench.notes[0]

    nort = target_of("nort.yaml")  # pinned, nothing real-time: vCPU 0 is all there is
    assert nort.measured == (0,) and "no real-time vCPUs" in nort.notes[0]


def test_a_virt_manager_vm_has_no_host_cpus_for_a_baseline() -> None:
    xml = (REPO / "tests/data/domains/virt-manager-desktop.libvirt.xml").read_text()
    target = proberun.plan_target(xml, "domain 'desktop'")
    assert target.measured == (1, 2, 3) and target.host_cpus is None and not target.managed


def running(name: str, pins: dict[int, str], emulator: str | None = None) -> tuple[str, str, str]:
    cputune = "".join(f"<vcpupin vcpu='{v}' cpuset='{c}'/>" for v, c in pins.items())
    if emulator:
        cputune += f"<emulatorpin cpuset='{emulator}'/>"
    xml = f"<domain type='kvm'><name>{name}</name><vcpu>{max(pins, default=0) + 1}</vcpu><cputune>{cputune}</cputune></domain>"
    return (name, xml, xml)


def test_the_probe_refuses_while_a_vm_holds_its_cpus_and_names_it() -> None:
    plc = target_of("plc.yaml")  # measures on host CPUs 3-5
    proberun.check_free([running("web", {0: "0", 1: "1"}), ("off", "<domain/>", None)], plc)
    with pytest.raises(proberun.ProbeError, match="running VM 'plc' holds host CPU 3-5"):
        proberun.check_free([running("plc", {0: "2", 1: "3", 2: "4", 3: "5"}, "0-1")], plc)
    with pytest.raises(proberun.ProbeError, match="running VM 'db' holds host CPU 4"):
        proberun.check_free([running("db", {0: "6"}, "4")], plc)
    desk = "<domain><name>desk</name><vcpu>2</vcpu></domain>"
    unpinned = ("desk", desk, desk)
    with pytest.raises(
        proberun.ProbeError, match="'desk' runs with unpinned vCPUs, which may use host CPU 3-5"
    ):
        proberun.check_free([unpinned], plc)
    with pytest.raises(proberun.ProbeError, match="a probe of 'plc' is running already"):
        proberun.check_free([running("plc-probe", {0: "9"})], plc)


@pytest.mark.parametrize(
    ("text", "seconds"), [("60s", 60), ("5m", 300), ("1h", 3600), ("90", 90), (" 10S ", 10)]
)
def test_durations(text: str, seconds: int) -> None:
    assert proberun.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "1.5s", "-5s", "0s", "25h", "10 minutes", "9999999s"])
def test_bad_durations_are_input_errors(text: str) -> None:
    with pytest.raises(proberun.InputError):
        proberun.parse_duration(text)


def test_the_load_is_stress_ng_on_the_housekeeping_cpus_and_bounded() -> None:
    argv = proberun.load_argv([0, 2, 3], 60)
    assert argv[0] == "stress-ng"
    assert argv[argv.index("--taskset") + 1] == "0,2-3"
    assert argv[argv.index("--cpu") + 1] == "3"
    assert argv[argv.index("--timeout") + 1] == "90s"
    assert argv[argv.index("--vm-bytes") + 1] == "128M"

"""Each source's hint names the fix and how far rtlibvirt has come with it.

The host view is built by hand for the kernel arguments and the hook's state;
threads are this machine's own (``/proc`` as it is), so a per-CPU kernel
thread and an unbound kworker are judged from their real flags and affinity.
"""

from __future__ import annotations

import os

import pytest

from rtlibvirt.kernel.fs import HostFS
from rtlibvirt.noise.attribute import Source
from rtlibvirt.noise.hints import HostView, hint, kernel_args, view


def _pid_of(prefix: str) -> int:
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/comm") as f:
                if f.read().strip().startswith(prefix):
                    return int(name)
        except OSError:
            continue
    pytest.skip(f"no thread named {prefix}* on this machine")


def test_the_tick_hint_follows_nohz_full_from_missing_to_pending_to_booted() -> None:
    tick = Source("timer", "local timer: tick_nohz_handler")
    v = HostView()
    assert "boot with nohz_full=1" in hint(tick, 1, v, None)
    assert "host-prep apply" in hint(tick, 1, v, None)
    v.pending = kernel_args("nohz_full=1 isolcpus=managed_irq,domain,1")
    assert "host-prep has set nohz_full=1 for the next boot: reboot" in hint(tick, 1, v, None)
    v.nohz_full = frozenset({1})
    said = hint(tick, 1, v, None)
    assert "still runs though CPU 1 is nohz_full" in said and "reboot" not in said


def test_an_irq_the_kernel_would_not_move_asks_for_managed_irq() -> None:
    irq = Source("irq", "IRQ 36 virtio1-req.0", irq=36)
    v = HostView(irq_names={36: "virtio1-req.0"}, irq_affinity={36: frozenset({0, 1})})
    free = hint(irq, 1, v, None)
    assert "includes CPU 1" in free and "hook moves it off" in free
    v.hook = {"plc": frozenset({1})}
    refused = hint(irq, 1, v, "plc")
    assert "the hook isolates CPU 1 for plc but the kernel refused" in refused
    assert "boot with isolcpus=managed_irq,1" in refused
    v.booted = kernel_args("isolcpus=managed_irq,domain,1")
    assert "isolcpus=managed_irq,1 is booted" in hint(irq, 1, v, "plc")
    v.irq_affinity[36] = frozenset({0})
    assert "excludes CPU 1 now: it was moved during the trace" in hint(irq, 1, v, "plc")


def test_a_passthrough_irq_is_the_guests_own_and_a_gone_irq_says_so() -> None:
    v = HostView(irq_names={40: "vfio-msix[0](0000:01:00.0)"}, irq_affinity={40: frozenset({1})})
    assert "VFIO" in hint(Source("irq", "IRQ 40", irq=40), 1, v, "plc")
    assert "no longer exists" in hint(Source("irq", "IRQ 41", irq=41), 1, v, "plc")


def test_rcu_and_sched_softirqs_point_at_their_boot_arguments() -> None:
    v = HostView(booted=kernel_args("rcu_nocbs=1"))
    assert "rcu_nocbs=1 is booted" in hint(Source("softirq", "RCU"), 1, v, None)
    sched = hint(Source("softirq", "SCHED"), 1, v, None)
    assert "boot with isolcpus=domain,1" in sched


def test_a_per_cpu_kernel_thread_is_not_movable() -> None:
    fs = HostFS("/")
    pid = _pid_of("ksoftirqd/")
    said = hint(Source("thread", f"ksoftirqd/1 (pid {pid})", pid=pid), 1, HostView(fs=fs), None)
    assert "not movable" in said


def test_an_unbound_kworker_says_whether_the_workqueue_mask_holds_the_cpu() -> None:
    fs = HostFS("/")
    pid = _pid_of("kworker/u")
    source = Source("thread", f"kworker/u8:1 (pid {pid})", pid=pid)
    v = HostView(fs=fs, wq_cpumask=frozenset({0, 1}))
    assert "includes CPU 1 now" in hint(source, 1, v, None)
    v.wq_cpumask = frozenset({0})
    said = hint(source, 1, v, None)
    assert "excludes CPU 1 now" in said and "each sysfs workqueue's own cpumask" in said


def test_a_thread_that_exited_before_the_report_says_so() -> None:
    said = hint(Source("thread", "sh (pid 0)", pid=4194305), 1, HostView(fs=HostFS("/")), None)
    assert "exited before the report" in said


def test_a_work_item_queued_on_the_cpu_names_its_cause_and_that_no_mask_moves_it() -> None:
    said = hint(Source("workqueue", "vmstat_update"), 1, HostView(), None)
    assert "no cpumask moves" in said and said != hint(
        Source("workqueue", "x"), 1, HostView(), None
    )


def test_the_guests_own_timers_emulated_by_kvm_say_what_stops_them() -> None:
    pit = hint(Source("timer", "local timer: pit_timer_fn"), 1, HostView(), "plc")
    assert "emulated PIT" in pit and "tsc-deadline" in pit
    apic = hint(Source("timer", "local timer: apic_timer_fn"), 1, HostView(), "plc")
    assert "LAPIC timer" in apic and "guest-prep" in apic


def test_rt_throttling_timer_says_whether_throttling_is_on() -> None:
    timer = Source("timer", "local timer: sched_rt_period_timer")
    on = hint(timer, 1, HostView(rt_runtime_us="950000"), None)
    assert "sched_rt_runtime_us 950000" in on and "host-prep's sysctl sets -1" in on
    assert "throttling is off now" in hint(timer, 1, HostView(rt_runtime_us="-1"), None)


def test_the_view_of_this_host_reads_the_rt_runtime() -> None:
    with open("/proc/sys/kernel/sched_rt_runtime_us") as f:
        assert view(HostFS("/")).rt_runtime_us == f.read().strip()

"""What to change, source by source, and whether rtlibvirt does it already.

Read once after the trace (:func:`view`): ``/proc/interrupts`` (each IRQ's chip
and action names), each IRQ's affinity, the booted command line and the one
host-prep has written for the next boot (its GRUB drop-in), ``nohz_full`` and
``isolcpus`` as the kernel runs them, the unbound workqueues' cpumask, and
what the rtlibvirt hook isolates now and which threads it could not move.
A thread's facts (per-CPU kernel thread or movable, its affinity) are read
from ``/proc`` as it is after the trace; a thread that exited says so.

Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rtlibvirt.kernel import procs
from rtlibvirt.kernel.cpuset import CpuListError, format_cpulist, parse_cpulist
from rtlibvirt.kernel.fs import HostFS
from rtlibvirt.noise.attribute import Source

GRUB_DROPIN = "/etc/default/grub.d/99-rtlibvirt.cfg"  # host-prep's (hostprep.grub.DROPIN)
WQ_CPUMASK = "/sys/devices/virtual/workqueue/cpumask"
RT_RUNTIME = "/proc/sys/kernel/sched_rt_runtime_us"
_ARG = re.compile(r"(isolcpus|nohz_full|rcu_nocbs|irqaffinity)=([\w,.-]{1,256})")
_IRQ_LINE = re.compile(r" *(\d{1,10}): +((?:\d+ +)*)(.{0,256})")

# Per-CPU kernel threads users meet on an isolated CPU, and what keeps them away
KTHREADS = {
    "ksoftirqd": "runs softirqs that did not finish at interrupt exit: see the softirq sources",
    "migration": "the stopper thread (CPU hotplug, stop_machine, task migration): not movable, "
    "rare on an idle host",
    "cpuhp": "CPU hotplug: only while CPUs go on or offline",
    "rcuc": "RCU callbacks (PREEMPT_RT): boot with rcu_nocbs= (host-prep's recipe does)",
    "rcuop": "RCU offloaded callbacks: belongs on housekeeping CPUs (rcu_nocbs= plus the hook)",
    "ktimers": "timer softirqs (PREEMPT_RT): boot with nohz_full= (host-prep's recipe does)",
    "kworker": "a per-CPU kworker: the work items above say what it ran",
    "watchdog": "the soft-lockup watchdog: boot with nohz_full= (it stays off those CPUs) or "
    "nowatchdog",
    "idle_inject": "idle injection (thermal): not movable",
}
SOFTIRQ_HINTS = {
    "TIMER": "timer-wheel callbacks on this CPU (see the timer sources); nohz_full= keeps the "
    "tick and most global timers away",
    "HRTIMER": "hrtimers that run in softirq context: see who armed them on this CPU",
    "NET_RX": "network packets processed on this CPU: move the NIC's IRQs (the hook does) and "
    "clear this CPU from /sys/class/net/*/queues/rx-*/rps_cpus",
    "NET_TX": "network transmit completions on this CPU: move the NIC's IRQs (the hook does)",
    "BLOCK": "block I/O completions on this CPU: the disk's IRQ fires here (see the irq sources)",
    "RCU": "RCU callbacks and grace periods: boot with rcu_nocbs= and nohz_full=",
    "SCHED": "scheduler load balancing: boot with isolcpus=domain (host-prep's recipe) or use "
    "an isolated cpuset partition",
    "TASKLET": "tasklets raised by a device's IRQ: move that IRQ",
    "HI": "high-priority tasklets raised by a device's IRQ: move that IRQ",
    "IRQ_POLL": "block IRQ polling: move the device's IRQ",
}
WORK_HINTS = {
    "vmstat_update": "per-CPU VM statistics: nohz_full= defers it; sysctl vm.stat_interval "
    "spaces it out",
    "lru_add_drain_per_cpu": "a drain of per-CPU page lists asked by another CPU "
    "(mlock, migration): lock the VM's memory at start",
    "drain_local_pages_wq": "a page-allocator drain asked by another CPU: memory pressure "
    "elsewhere",
    "blk_mq_requeue_work": "block I/O of a disk whose queue maps to this CPU",
    "blk_mq_run_work_fn": "block I/O of a disk whose queue maps to this CPU",
    "kfree_rcu_work": "RCU frees queued on this CPU: rcu_nocbs=",
}


@dataclass
class HostView:
    irq_names: dict[int, str] = field(default_factory=dict)
    irq_affinity: dict[int, frozenset[int]] = field(default_factory=dict)
    booted: dict[str, str] = field(default_factory=dict)  # kernel args of the running kernel
    pending: dict[str, str] = field(default_factory=dict)  # host-prep's for the next boot
    nohz_full: frozenset[int] = frozenset()
    isolated: frozenset[int] = frozenset()
    wq_cpumask: frozenset[int] | None = None
    rt_runtime_us: str | None = None  # kernel.sched_rt_runtime_us now
    hook: dict[str, frozenset[int]] | None = None
    unmoved: dict[str, list[str]] = field(default_factory=dict)
    fs: HostFS | None = None

    def hooked(self, cpu: int) -> str | None:
        for name, cpus in sorted((self.hook or {}).items()):
            if cpu in cpus:
                return name
        return None


def _cpus(text: str) -> frozenset[int]:
    """The CPUs of a cpulist, or of ``isolcpus=``'s value without its flags."""
    cpus = ",".join(t for t in text.split(",") if not t[:1].isalpha())
    try:
        return frozenset(parse_cpulist(cpus)) if cpus else frozenset()
    except CpuListError:
        return frozenset()


def kernel_args(text: str) -> dict[str, str]:
    return {m[1]: m[2] for m in _ARG.finditer(text)}


def view(fs: HostFS) -> HostView:
    found = HostView(fs=fs)
    for line in fs.read_or("/proc/interrupts", "").splitlines()[1:]:
        m = _IRQ_LINE.fullmatch(line)
        if m:
            found.irq_names[int(m[1])] = " ".join(m[3].split())
    for n in found.irq_names:
        aff = fs.read_or(f"/proc/irq/{n}/smp_affinity_list", "")
        found.irq_affinity[n] = _cpus(aff) if aff else frozenset()
    found.booted = kernel_args(fs.read_or("/proc/cmdline", ""))
    found.pending = kernel_args(fs.read_or(GRUB_DROPIN, ""))
    found.nohz_full = fs.cpus_nohz_full()
    found.isolated = fs.cpus_isolated()
    found.wq_cpumask = fs.cpulist(WQ_CPUMASK) if fs.exists(WQ_CPUMASK) else None
    found.rt_runtime_us = fs.read_or(RT_RUNTIME, "").strip() or None
    from rtlibvirt.hook.state import isolated_by_vm, unmoved_by_vm

    found.hook = isolated_by_vm(fs)
    found.unmoved = unmoved_by_vm(fs)
    return found


def _arg_has(args: dict[str, str], key: str, cpu: int, flag: str | None = None) -> bool:
    value = args.get(key)
    if value is None:
        return False
    if flag is not None and flag not in value.split(","):
        return False
    return cpu in _cpus(value)


def boot_arg(v: HostView, key: str, cpu: int, flag: str | None = None) -> str:
    """How far host-prep's kernel argument ``key`` (for ``cpu``) has come."""
    shown = f"{key}={flag + ',' if flag else ''}{cpu}"
    if _arg_has(v.booted, key, cpu, flag):
        return f"{shown} is booted"
    if _arg_has(v.pending, key, cpu, flag):
        return f"host-prep has set {shown} for the next boot: reboot"
    return f"boot with {shown} (`rtlibvirt host-prep apply` with CPU {cpu} isolated sets it)"


def hint(source: Source, cpu: int, v: HostView, domain: str | None) -> str:
    kind = source.kind
    if kind == "irq":
        return _irq(source, cpu, v, domain)
    if kind == "softirq":
        base = SOFTIRQ_HINTS.get(source.name, "a softirq raised on this CPU")
        if source.name in ("RCU",):
            return f"{base}; {boot_arg(v, 'rcu_nocbs', cpu)}"
        if source.name == "SCHED":
            return f"{base}; {boot_arg(v, 'isolcpus', cpu, 'domain')}"
        return base
    if kind == "timer":
        return _timer(source, cpu, v)
    if kind == "ipi":
        return _ipi(source, cpu)
    if kind == "workqueue":
        known = WORK_HINTS.get(source.name.split("+", 1)[0])
        unbound = (
            "the hook keeps unbound workqueues off isolated CPUs; this one was queued on "
            "this CPU (queue_work_on / a per-CPU workqueue), which no cpumask moves"
        )
        return f"{known}; {unbound}" if known else unbound
    return _thread(source, cpu, v, domain)


def _irq(source: Source, cpu: int, v: HostView, domain: str | None) -> str:
    n = source.irq
    if n is None:  # an APIC vector (thermal, error, spurious, platform)
        return "a system vector: not movable; rare unless the hardware reports trouble"
    label = v.irq_names.get(n)
    if label is None:
        return f"IRQ {n} no longer exists (its device was removed during the trace)"
    if "vfio" in label:
        return "the VM's passthrough device (VFIO): its interrupts are the guest's own work"
    aff = v.irq_affinity.get(n, frozenset())
    where = f"affinity {format_cpulist(aff) or '?'}"
    managed = boot_arg(v, "isolcpus", cpu, "managed_irq")
    if cpu not in aff:
        return f"{where} excludes CPU {cpu} now: it was moved during the trace"
    vm = v.hooked(cpu)
    if vm is not None:
        return (
            f"{where}: the hook isolates CPU {cpu} for {vm} but the kernel refused to move "
            f"this IRQ (a managed or per-CPU interrupt); {managed}"
        )
    return (
        f"{where} includes CPU {cpu}: rtlibvirt's hook moves it off while a real-time VM "
        f"runs here (unless the kernel manages it: then {managed})"
    )


def _timer(source: Source, cpu: int, v: HostView) -> str:
    name = source.name
    if name.startswith("local timer:"):
        funcs = name.split(":", 1)[1]
        parts = []
        if "tick_" in funcs:
            if cpu in v.nohz_full:
                parts.append(
                    f"the tick still runs though CPU {cpu} is nohz_full: more than one task "
                    "(or RCU callbacks) ran there"
                )
            else:
                parts.append(f"the scheduler tick: {boot_arg(v, 'nohz_full', cpu)}")
        if "hrtimer_wakeup" in funcs:
            parts.append("a task's sleep ending (nanosleep, poll): see the thread it woke")
        if "watchdog" in funcs:
            parts.append("the soft-lockup watchdog timer: nohz_full= keeps it off")
        if "sched_rt_period_timer" in funcs:
            if v.rt_runtime_us == "-1":
                parts.append(
                    "RT throttling's period timer; throttling is off now "
                    "(kernel.sched_rt_runtime_us -1), so it stops after its last period"
                )
            else:
                now = v.rt_runtime_us or "?"
                parts.append(
                    f"RT throttling's period timer (kernel.sched_rt_runtime_us {now}): "
                    "host-prep's sysctl sets -1, which also lets a FIFO vCPU use its whole CPU"
                )
        if "pit_timer_fn" in funcs:
            parts.append(
                "the guest's emulated PIT (KVM's i8254): its firmware or a kernel without a "
                "TSC-deadline clock programmed it; rtlibvirt's domains require tsc-deadline, "
                "so a booted guest kernel leaves the PIT idle"
            )
        if "apic_timer_fn" in funcs:
            parts.append(
                "the guest's own LAPIC timer, emulated by KVM on the host: the guest's tick; "
                "nohz_full= inside the guest (rtlibvirt guest-prep) stops it on real-time vCPUs"
            )
        return "; ".join(parts) or f"hrtimers armed on this CPU: {funcs.strip()}"
    func = name.split(":", 1)[-1].strip()
    if func == "delayed_work_timer_fn":
        return "a delayed work item's timer: see the workqueue sources"
    if func == "process_timeout":
        return "a task's schedule_timeout() ending: see the threads"
    return f"a timer-wheel callback armed on this CPU; {boot_arg(v, 'nohz_full', cpu)}"


def _ipi(source: Source, cpu: int) -> str:
    name = source.name
    if name == "reschedule":
        return (
            "another CPU woke a task to run here: the thread sources say which; keep tasks "
            "off this CPU (the hook moves those it may)"
        )
    if name == "irq work":
        return "deferred kernel work (perf, printk, RCU, tracing wake-ups) raised on this CPU"
    if "flush_tlb_func" in name:
        return (
            "TLB shootdowns: a process with threads on this CPU and others changed its memory "
            "map (often QEMU itself); lock the VM's memory and use hugepages"
        )
    return "kernel functions other CPUs ran here (smp_call_function); see which in the name"


def _thread(source: Source, cpu: int, v: HostView, domain: str | None) -> str:
    pid = source.pid
    if pid is None:
        return "threads beyond the report's limit"
    fs = v.fs
    info = procs.stat(fs, pid) if fs is not None and pid > 0 else None
    comm = source.name.rsplit(" (pid", 1)[0]
    if info is None:
        return "exited before the report; a short-lived task started with this CPU allowed"
    base = comm.split("/", 1)[0]
    if comm.startswith("kworker/u"):
        moved = v.wq_cpumask is not None and cpu not in v.wq_cpumask
        state = "excludes" if moved else "includes"
        return (
            f"an unbound kworker: the workqueue cpumask ({WQ_CPUMASK}) {state} CPU {cpu} now; "
            "the hook sets it, and each sysfs workqueue's own cpumask, to the housekeeping "
            "CPUs while a real-time VM runs (host-prep's unbound_workqueues: from boot on)"
        )
    if info.kernel_thread and not info.movable:
        what = KTHREADS.get(base, "a per-CPU kernel thread")
        return f"{what}; not movable (a per-CPU kernel thread)"
    aff = procs.affinity(fs, pid, pid) if fs is not None else None
    allowed = format_cpulist(aff) if aff else "?"
    vm = v.hooked(cpu)
    kind = "kernel thread" if info.kernel_thread else "task"
    if vm is not None:
        why = next(
            (line for lines in v.unmoved.values() for line in lines if f"(thread {pid})" in line),
            None,
        )
        if why:
            return f"movable {kind} (allowed CPUs {allowed}); the hook could not move it: {why}"
        if aff is not None and cpu not in aff:
            return f"movable {kind}, now allowed on {allowed}: it ran here before the hook moved it"
        return (
            f"movable {kind} allowed on {allowed}: it started or changed its affinity after "
            f"the hook isolated CPU {cpu} for {vm}; set its affinity off CPU {cpu} (taskset)"
        )
    return (
        f"movable {kind} allowed on {allowed}: rtlibvirt's hook moves such tasks off while a "
        f"real-time VM runs here; by hand: taskset -pc <housekeeping CPUs> {pid}"
    )

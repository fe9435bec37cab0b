"""End to end: the installed hook isolates a real VM on the real libvirtd, and undoes it.

`rtlibvirt hook install`, scripts/libvirtd-up (which restarts libvirtd so that
it sees the new hook), `rtlibvirt define` a VM whose single real-time vCPU is
pinned to CPU 1 (emulator on CPU 0), `virsh start`; then: the vCPU thread runs
on CPU 1 with SCHED_FIFO, no writable IRQ affinity holds CPU 1, the workqueue
cpumasks (the global one and each sysfs workqueue's: writeback, blkcg_punt_bio
on this machine's kernel) hold CPU 0 only, their affinity scopes untouched, a host process that was allowed on CPUs 0-1 runs on
CPU 0 only while QEMU's own threads keep libvirt's pinning, and the real
``ksoftirqd/1`` runs SCHED_FIFO above the FIFO-1 vCPU (``ksoftirqd/0`` as it
was). After `virsh destroy` every one of those values is what it was before
the start (``ksoftirqd/1`` SCHED_OTHER again); and a VM
whose start fails after `prepare` (libvirt cannot open its disk) leaves them as
they were too. The guest has no disk and boots nothing; its
QEMU and vCPU thread run, which is all the hook needs.

The domain, the hook and every host value are cleaned up even when the test
fails: libvirtd is shared with other tests.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtlibvirt import hook
from rtlibvirt.hook import threads as vcputhreads
from rtlibvirt.hook.state import peek
from rtlibvirt.kernel import procs, rtgroup
from rtlibvirt.kernel.cpuset import parse_mask
from rtlibvirt.kernel.fs import HostFS
from tests.conftest import require_rt_host

pytestmark = pytest.mark.libvirtd

REPO = Path(__file__).resolve().parents[2]
NAME = "rtl-hook-e2e"
CLASH = "rtl-hook-e2e-clash"  # a second VM that wants CPU 1 too
FAILING = "rtl-hook-e2e-failing"  # a VM whose start fails after prepare (its disk is missing)
SPEC = f"""\
name: {NAME}
memory: 128MiB
vcpus: 1
cpu:
  pinning: [1]
  emulator: "0"           # a bare 0 is not a cpulist for the spec (yet)
  realtime:
    vcpus: [0]
    priority: 1
  features:
    arch-capabilities: disable
memory_backing:
  hugepages: none
  locked: false
"""
WQ_DIR = "/sys/devices/virtual/workqueue"


def workqueue_masks() -> list[str]:
    """The global unbound cpumask and each sysfs workqueue's own (this machine's kernel
    has writeback and blkcg_punt_bio), by the devices' own paths."""
    fs = HostFS("/")
    own = [
        f"{WQ_DIR}/{name}/cpumask"
        for name in sorted(fs.listdir(WQ_DIR))
        if fs.exists(f"{WQ_DIR}/{name}/cpumask")
    ]
    return [f"{WQ_DIR}/cpumask", *own]


def workqueue_scopes() -> dict[str, str]:
    """Each sysfs workqueue's affinity_scope and affinity_strict (the hook never writes them)."""
    fs = HostFS("/")
    return {
        f"{WQ_DIR}/{name}/{leaf}": fs.read(f"{WQ_DIR}/{name}/{leaf}")
        for name in sorted(fs.listdir(WQ_DIR))
        for leaf in ("affinity_scope", "affinity_strict")
        if fs.exists(f"{WQ_DIR}/{name}/{leaf}")
    }


HOOK_LOG = Path("/var/log/rtlibvirt/hook.log")


def host_values() -> dict[str, str]:
    """Every IRQ affinity and workqueue cpumask of the live host."""
    fs = HostFS("/")
    paths = ["/proc/irq/default_smp_affinity", *workqueue_masks()]
    paths += [
        f"/proc/irq/{n}/smp_affinity"
        for n in sorted(fs.listdir("/proc/irq"), key=lambda n: int(n) if n.isdigit() else -1)
        if n.isdigit()
    ]
    return {p: fs.read(p) for p in paths if fs.exists(p)}


def writable_irqs(values: dict[str, str]) -> list[str]:
    """IRQ affinity files that take a write (probed by writing back their own value)."""
    found = []
    for path, value in values.items():
        if not path.startswith("/proc/irq/") or path.endswith("default_smp_affinity"):
            continue
        try:
            HostFS("/").write(path, value)
        except OSError:
            continue
        found.append(path)
    return found


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        pytest.fail(
            f"`{' '.join(argv)}` failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            + hook_log_tail()
        )
    return done


def hook_log_tail() -> str:
    if not HOOK_LOG.exists():
        return ""
    lines = HOOK_LOG.read_text(errors="replace").splitlines()[-40:]
    return "\nlast lines of the hook log:\n" + "\n".join(lines)


def ksoftirqd() -> dict[int, tuple[int, int]]:
    """CPU -> (policy, priority) of the live host's ksoftirqd/CPU threads."""
    fs = HostFS("/")
    found = {}
    for pid in procs.pids(fs):
        info = procs.stat(fs, pid)
        if info is not None and info.kernel_thread and info.comm.startswith("ksoftirqd/"):
            found[int(info.comm.split("/")[1])] = (
                os.sched_getscheduler(pid),
                os.sched_getparam(pid).sched_priority,
            )
    return found


def claims() -> dict[str, object]:
    return dict(peek(HostFS("/")).claims)


def test_the_hook_isolates_a_real_vm_and_restores_the_host(
    system_uri: str, system_domain_cleanup: object, tmp_path: Path
) -> None:
    require_rt_host("installs a libvirt hook")
    rtlibvirt = str(Path(sys.executable).with_name("rtlibvirt"))
    virsh = ("virsh", "-q", "-c", system_uri)
    spec = tmp_path / "vm.yaml"
    spec.write_text(SPEC)
    hook_was_installed = Path("/etc/libvirt/hooks/qemu.d/50-rtlibvirt").exists()
    before = host_values()
    scopes = workqueue_scopes()
    workqueues = workqueue_masks()
    assert len(workqueues) > 1, f"no sysfs workqueue with a cpumask in {WQ_DIR}: nothing to test"
    softirq_threads = ksoftirqd()
    assert softirq_threads[1] == (os.SCHED_OTHER, 0), softirq_threads
    writable = writable_irqs(before)
    assert writable, "no IRQ of this host takes a new affinity: nothing to test"
    # a host process allowed on CPUs 0-1, and one with threads
    sleeper = subprocess.Popen(["sleep", "600"])
    os.sched_setaffinity(sleeper.pid, {0, 1})
    try:
        run(rtlibvirt, "hook", "install")
        run(str(REPO / "scripts/libvirtd-up"))  # restarts libvirtd if it predates the hook
        status = run(rtlibvirt, "hook", "status", check=False).stdout
        assert ": uses the hook" in status, status

        run(rtlibvirt, "define", str(spec), "-c", system_uri)
        started = run(*virsh, "start", NAME, check=False)
        if started.returncode != 0:
            why = started.stderr.strip()
            if rtgroup.LIBVIRT_ERROR in why:
                why += f"\n({rtgroup.diagnose(HostFS('/')) or 'RT group scheduling'})"
            pytest.fail(f"virsh start {NAME} failed: {why}" + hook_log_tail())

        fs = HostFS("/")
        pid = vcputhreads.qemu_pid(fs, NAME)
        assert pid is not None
        threads = vcputhreads.vcpu_threads(fs, pid)
        assert list(threads) == [0], threads
        tid = threads[0]
        assert os.sched_getaffinity(tid) == {1}
        assert os.sched_getscheduler(tid) == os.SCHED_FIFO
        assert os.sched_getparam(tid).sched_priority == 1

        # the tasks step: host processes off CPU 1, the VM's own threads as libvirt set them
        assert os.sched_getaffinity(sleeper.pid) == {0}
        qemu_threads = {
            int(t): os.sched_getaffinity(int(t)) for t in os.listdir(f"/proc/{pid}/task")
        }
        assert qemu_threads[tid] == {1}
        assert qemu_threads[pid] == {0}  # QEMU's main thread: libvirt's <emulatorpin cpuset='0'>
        assert "host tasks" in HOOK_LOG.read_text(errors="replace")

        during = host_values()
        for path in writable:
            assert 1 not in parse_mask(during[path]), f"{path} = {during[path]}"
        assert 1 not in parse_mask(during["/proc/irq/default_smp_affinity"])
        for path in workqueues:  # the global mask and every sysfs workqueue's own
            assert parse_mask(during[path]) == {0}, f"{path} = {during[path]}"
        assert workqueue_scopes() == scopes
        assert NAME in claims()
        log = HOOK_LOG.read_text(errors="replace")
        assert f"{NAME} started begin: checked: vCPU 0 (thread {tid}) runs fifo 1" in log

        # the kernel_threads step: ksoftirqd/1 above the vCPU's FIFO 1, CPU 0's alone
        raised = ksoftirqd()
        assert raised[1] == (os.SCHED_FIFO, 2), raised
        assert raised[0] == softirq_threads[0]
        assert "kernel_threads: " in log

        # prepare refuses a VM whose CPU the running one holds; libvirt shows our line
        clash = tmp_path / "clash.yaml"
        clash.write_text(SPEC.replace(f"name: {NAME}", f"name: {CLASH}"))
        # The host check would refuse a second domain on CPU 1: sharing it is the point here.
        run(rtlibvirt, "define", str(clash), "-c", system_uri, "--allow-shared")
        refused = run(*virsh, "start", CLASH, check=False)
        assert refused.returncode != 0
        assert (
            f"rtlibvirt: {CLASH}: host CPU 1 already belongs to real-time VM '{NAME}' (running)"
            in refused.stderr
        ), refused.stderr
        assert host_values() == during  # the refused VM's stop hooks changed nothing
        assert NAME in claims() and CLASH not in claims()

        run(*virsh, "destroy", NAME)
        assert host_values() == before
        assert workqueue_scopes() == scopes
        assert ksoftirqd() == softirq_threads  # SCHED_OTHER again
        assert os.sched_getaffinity(sleeper.pid) == {0, 1}  # back on CPUs 0-1
        assert NAME not in claims()

        # prepare isolates before QEMU exists; a start that fails after it (libvirt
        # cannot open the disk) is undone by libvirt's stop calls
        failing = tmp_path / "failing.yaml"
        failing.write_text(
            SPEC.replace(f"name: {NAME}", f"name: {FAILING}")
            + "devices:\n  disks:\n    - source: /nonexistent/rtl-hook-e2e-missing.qcow2\n"
        )
        xml = tmp_path / "failing.xml"
        xml.write_text(run(rtlibvirt, "render", str(failing)).stdout)
        run(*virsh, "define", str(xml))
        log_start = HOOK_LOG.stat().st_size
        failed = run(*virsh, "start", FAILING, check=False)
        assert failed.returncode != 0 and "rtl-hook-e2e-missing.qcow2" in failed.stderr
        log = HOOK_LOG.read_text(errors="replace")[log_start:]
        assert f"{FAILING} prepare begin: isolating CPUs 1" in log, log
        assert f"{FAILING} stopped end: no real-time VM is left" in log, log
        assert host_values() == before
        assert ksoftirqd() == softirq_threads
        assert os.sched_getaffinity(sleeper.pid) == {0, 1}
        assert not claims()
    finally:
        sleeper.kill()
        sleeper.wait()
        _cleanup(virsh, rtlibvirt, hook_was_installed)


def _cleanup(
    virsh: tuple[str, ...],
    rtlibvirt: str,
    hook_was_installed: bool,
    names: tuple[str, ...] = (FAILING, CLASH, NAME),
) -> None:
    """Remove the test's domains, undo what the hook still claims for them, and the hook
    if the test installed it (the Cockpit page's live test uses it too)."""
    for name in names:
        subprocess.run([*virsh, "destroy", name], capture_output=True, check=False)
        subprocess.run([*virsh, "undefine", name], capture_output=True, check=False)
    for name in names:
        if name in claims():
            # The stop hooks did not run (e.g. the hook was not seen by libvirtd):
            # undo by name, as they would have, so that no host value stays changed.
            hook.main([name, "release", "end", "-"], io.StringIO(""))
    if not hook_was_installed:
        subprocess.run([rtlibvirt, "hook", "uninstall"], capture_output=True, check=False)

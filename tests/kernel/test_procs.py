"""kernel.procs: /proc/PID files in the kernel's formats, and thread affinity."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rtlibvirt.kernel import procs
from rtlibvirt.kernel.fs import HostFS

# field 3 onwards of a real stat line, with flags (field 9) = PF_KTHREAD | PF_NO_SETAFFINITY
FIELDS = ["S", "2", "0", "0", "0", "-1", str(0x04208040)] + ["0"] * 12 + ["42"] + ["0"] * 17
FIELDS += ["5", "1"] + ["0"] * 11


def test_stat_with_parentheses_and_spaces_in_the_name() -> None:
    line = "77 (a) (b c)) " + " ".join(FIELDS)
    info = procs.parse_stat(line)
    assert info is not None
    assert info.comm == "a) (b c)"
    assert info.state == "S" and info.ppid == 2
    assert info.start == 42
    assert info.rt_priority == 5 and info.policy_name == "fifo"
    assert info.kernel_thread and not info.movable


def test_cut_or_garbage_stat_lines() -> None:
    assert procs.parse_stat("") is None
    assert procs.parse_stat("1 (x) S 0") is None
    assert procs.parse_stat("no parenthesis at all") is None


def test_cgroup_lines_of_v1_and_v2(tmp_path: Path) -> None:
    (tmp_path / "proc/9").mkdir(parents=True)
    (tmp_path / "proc/9/cgroup").write_text(
        "12:cpu,cpuacct:/machine/qemu-1-vm.libvirt-qemu\n"
        "3:cpuset:/machine/qemu-1-vm.libvirt-qemu/emulator\n"
        "1:name=systemd:/\n"
        "0::/machine.slice/x.scope\n"
    )
    found = procs.cgroups(HostFS(tmp_path), 9)
    assert found["cpuset"] == "/machine/qemu-1-vm.libvirt-qemu/emulator"
    assert found["cpu"] == found["cpuacct"] == "/machine/qemu-1-vm.libvirt-qemu"
    assert found[""] == "/machine.slice/x.scope"
    assert procs.cgroups(HostFS(tmp_path), 10) == {}


def test_this_process_as_proc_shows_it() -> None:
    fs = HostFS("/")
    pid = os.getpid()
    assert pid in procs.pids(fs)
    assert pid in procs.tids(fs, pid)
    info = procs.stat(fs, pid)
    assert info is not None and info.movable and not info.kernel_thread
    assert procs.cmdline(fs, pid)[0].endswith(b"python") or b"python" in procs.cmdline(fs, pid)[0]
    started = procs.start_time(fs, pid)
    assert started is not None and abs(started - time.time()) < 24 * 3600
    assert procs.affinity(fs, pid, pid) == frozenset(os.sched_getaffinity(0))


def test_set_affinity_of_a_real_thread() -> None:
    """Our own child process only: no value of the shared host changes."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        fs = HostFS("/")
        every = procs.affinity(fs, child.pid, child.pid)
        assert every
        one = frozenset([min(every)])
        procs.set_affinity(fs, child.pid, child.pid, one)
        assert procs.affinity(fs, child.pid, child.pid) == one
        assert procs.status(fs, child.pid)["Cpus_allowed_list"] == str(min(every))
    finally:
        child.kill()
        child.wait()
    assert procs.affinity(HostFS("/"), child.pid, child.pid) is None


def test_affinity_in_a_fake_tree(tmp_path: Path) -> None:
    task = tmp_path / "proc/5/task/6"
    task.mkdir(parents=True)
    (task / "status").write_text("Name:\tx\nCpus_allowed_list:\t0-3\nPid:\t6\n")
    fs = HostFS(tmp_path)
    assert procs.affinity(fs, 5, 6) == {0, 1, 2, 3}
    procs.set_affinity(fs, 5, 6, frozenset({0, 2}))
    assert procs.affinity(fs, 5, 6) == {0, 2}
    assert (task / "status").read_text() == "Name:\tx\nCpus_allowed_list:\t0,2\nPid:\t6\n"
    assert procs.affinity(fs, 5, 7) is None

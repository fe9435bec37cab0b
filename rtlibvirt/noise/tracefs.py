"""A private tracefs instance: only our events, only the measured CPUs, bounded buffers.

Why tracefs directly, and not ``trace-cmd``, ``perf`` or ``rtla``: the kernel's
text format of a few tracepoints is all the attribution needs; an instance of
our own (``instances/rtlibvirt-noise-PID``) touches none of the host's tracing
settings (``tracing_on``, ``current_tracer``, ``set_event``, ``buffer_size_kb``,
``trace_clock`` of the top level stay as they were); reading ``trace_pipe``
while the trace runs keeps the buffers small; and it needs nothing beyond the
kernel (trace-cmd is not installed by default, perf's own tracepoint parsing
mounts tracefs for good, and rtla's osnoise needs a tracer this kernel lacks).

Why not the osnoise or timerlat tracer where the kernel has one: both measure
the noise their own per-CPU workload thread sees (osnoise's busy loop,
timerlat's timer wake-ups), and a running real-time VM's CPU belongs to a FIFO
vCPU that never yields. The workload would either never run there (nothing
measured) or, raised above the vCPU, take the CPU from the guest it is meant
to observe. Their ``osnoise:*_noise`` events are emitted only while that
workload samples. The tracepoints below see the same interruptions from the
outside, with the names the hints need, and cost the guest only the events.

Nothing outlives us. The instance (and tracefs itself, when we had to mount
it) is removed on the way out of :class:`Session` on errors and on SIGINT or
SIGTERM (the CLI turns them into exceptions), and, should this process be
killed outright, by a watchdog child (:mod:`rtlibvirt.noise.watchdog`) that
waits on a pipe from us and cleans up when it closes without a ``done``.

The trace never wakes a reader on the measured CPUs: ``trace_pipe`` is read
non-blocking on a timer (a blocking reader is woken by an irq_work on the CPU
that wrote the event), and this process moves itself to the CPUs not measured
for the length of the session.

Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterable

from rtlibvirt.errors import HostError
from rtlibvirt.kernel import mounts
from rtlibvirt.kernel.cpuset import format_mask
from rtlibvirt.kernel.fs import HostFS

DEFAULT_POINT = "/sys/kernel/tracing"
INSTANCE_PREFIX = "rtlibvirt-noise-"
# What "the host's tracing state" is: the top level's settings, and its instances
STATE_FILES = ("tracing_on", "current_tracer", "set_event", "buffer_size_kb", "trace_clock")
BUFFER_KB = 1024  # per measured CPU; trace_pipe is drained every READ_EVERY_S
IDLE_BUFFER_KB = 4  # per CPU not measured (an instance has a buffer for every CPU)
READ_EVERY_S = 0.05
READ_SIZE = 1 << 16
REQUIRED = ("sched_switch", "irq_handler_entry", "irq_handler_exit")


def find_root(fs: HostFS) -> str | None:
    """Where tracefs is mounted (its usual place first), or None."""
    found = [m.point for m in mounts.read(fs) if m.fstype == "tracefs"]
    if DEFAULT_POINT in found:
        return DEFAULT_POINT
    if found:
        return found[0]
    debug = [m.point for m in mounts.read(fs) if m.fstype == "debugfs"]
    for point in debug:
        if fs.exists(f"{point}/tracing/instances"):
            return f"{point}/tracing"
    return None


def state(fs: HostFS) -> dict[str, str]:
    """The host's tracing state as text, to compare before and after (tests, the CLI)."""
    root = find_root(fs)
    if root is None:
        return {"mounted": "no"}
    found = {"mounted": root}
    for name in STATE_FILES:
        found[name] = fs.read_or(f"{root}/{name}", "?")
    found["instances"] = " ".join(sorted(fs.listdir(f"{root}/instances")))
    return found


class Watchdog:
    """A child that removes what we announce if we die without saying ``done``."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtlibvirt.noise.watchdog"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to our process group does not reach it
            close_fds=True,
        )

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def done(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.tell("done")
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - it only reads a pipe
            self.proc.kill()
            self.proc.wait()


class Session:
    """One trace of ``events`` ((system, event) pairs) on ``cpus``. A context manager."""

    def __init__(
        self,
        cpus: Iterable[int],
        events: Iterable[tuple[str, str]],
        fs: HostFS | None = None,
        buffer_kb: int = BUFFER_KB,
    ) -> None:
        self.fs = fs or HostFS("/")
        self.cpus = frozenset(cpus)
        self.events = tuple(events)
        self.buffer_kb = buffer_kb
        self.root: str | None = None
        self.path: str | None = None
        self.mounted = False
        self.missing: list[str] = []
        self.clock = "mono"
        self.start_us = 0
        self.stop_us = 0
        self._fd: int | None = None
        self._watchdog: Watchdog | None = None
        self._affinity: set[int] | None = None

    # ---- set up ------------------------------------------------------------------

    def __enter__(self) -> Session:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        fs = self.fs
        root = find_root(fs)
        self._watchdog = Watchdog()
        if root is None:
            if "tracefs" not in mounts.filesystems(fs):
                raise HostError(
                    "this kernel has no tracefs (CONFIG_TRACING)",
                    "rtlibvirt noise needs a kernel built with tracepoints (Debian's is)",
                )
            try:
                fs.mount("tracefs", DEFAULT_POINT)
            except OSError as exc:
                raise HostError(
                    f"cannot mount tracefs on {DEFAULT_POINT}: {exc.strerror or exc}",
                    f"mount it yourself: mount -t tracefs tracefs {DEFAULT_POINT}",
                ) from None
            root, self.mounted = DEFAULT_POINT, True
            self._watchdog.tell(f"mounted {root}")
        self.root = root
        if not fs.exists(f"{root}/instances"):
            raise HostError(
                f"{root} has no instances/ (a kernel older than 3.16?)",
                "rtlibvirt noise traces in a private instance; this kernel cannot make one",
            )
        path = f"{root}/instances/{INSTANCE_PREFIX}{os.getpid()}"
        if fs.exists(path):
            raise HostError(
                f"{path} exists already (left by an earlier run that was killed with its watchdog)",
                f"remove it: rmdir {path}",
            )
        self._watchdog.tell(f"instance {path}")
        try:
            fs.mkdir(path)
        except OSError as exc:
            raise HostError(f"cannot create the tracefs instance {path}: {exc.strerror}") from None
        self.path = path
        self._configure()

    def _write(self, name: str, value: str) -> None:
        assert self.path is not None
        try:
            self.fs.write(f"{self.path}/{name}", value)
        except OSError as exc:
            raise HostError(
                f"cannot write {value!r} to {self.path}/{name}: {exc.strerror or exc}"
            ) from None

    def _configure(self) -> None:
        assert self.path is not None
        fs = self.fs
        self._write("tracing_on", "0")
        clocks = fs.read_or(f"{self.path}/trace_clock", "")
        if "mono" not in clocks.replace("[", " ").replace("]", " ").split():
            raise HostError("this kernel's tracefs has no 'mono' trace clock")
        self._write("trace_clock", self.clock)
        nbits = fs.nr_cpu_ids()
        self._write("tracing_cpumask", format_mask(self.cpus, nbits))
        for cpu in range(nbits):
            per_cpu = f"per_cpu/cpu{cpu}/buffer_size_kb"
            if fs.exists(f"{self.path}/{per_cpu}"):
                size = self.buffer_kb if cpu in self.cpus else IDLE_BUFFER_KB
                self._write(per_cpu, str(size))
        for system, event in self.events:
            enable = f"events/{system}/{event}/enable"
            if not fs.exists(f"{self.path}/{enable}"):
                self.missing.append(f"{system}:{event}")
                continue
            self._write(enable, "1")
        lacking = [e for e in REQUIRED if any(m.endswith(f":{e}") for m in self.missing)]
        if lacking:
            raise HostError(
                f"this kernel lacks the tracepoints {', '.join(lacking)}",
                "rtlibvirt noise needs the irq and sched tracepoints (CONFIG_TRACEPOINTS)",
            )

    # ---- the trace ---------------------------------------------------------------

    def start(self) -> None:
        assert self.path is not None
        online = self.fs.cpus_online()
        others = online - self.cpus
        if others:  # keep the reader (and its watchdog) off the measured CPUs
            try:
                self._affinity = os.sched_getaffinity(0)
                os.sched_setaffinity(0, others)
            except OSError:
                self._affinity = None
        self._fd = os.open(self.fs.path(f"{self.path}/trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        self.start_us = now_us()
        self._write("tracing_on", "1")

    def read(self) -> bytes:
        """What the trace holds now (may be empty); never blocks."""
        assert self._fd is not None
        chunks = []
        total = 0
        while total < 64 * READ_SIZE:
            try:
                chunk = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise HostError(f"reading {self.path}/trace_pipe: {exc.strerror}") from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    def stop(self) -> None:
        if self.path is not None and self._fd is not None and not self.stop_us:
            self.stop_us = now_us()
            self._write("tracing_on", "0")

    def lost(self) -> dict[int, int]:
        """CPU -> events the ring buffer overwrote or dropped (read before close)."""
        found: dict[int, int] = {}
        if self.path is None:
            return found
        for cpu in sorted(self.cpus):
            text = self.fs.read_or(f"{self.path}/per_cpu/cpu{cpu}/stats", "")
            count = 0
            for line in text.splitlines():
                key, _, value = line.partition(":")
                if key.strip() in ("overrun", "dropped events") and value.strip().isdigit():
                    count += int(value.strip())
            found[cpu] = count
        return found

    # ---- tear down ---------------------------------------------------------------

    def close(self) -> None:
        """Removes the instance (and tracefs, if we mounted it); safe to call twice."""
        problems = []
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.fs.write(f"{self.path}/tracing_on", "0")
            for attempt in range(100):
                try:
                    self.fs.rmdir(self.path)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or attempt == 99:
                        problems.append(f"cannot remove {self.path}: {exc.strerror}")
                        break
                    time.sleep(0.02)
            self.path = None
        if self.mounted:
            try:
                self.fs.umount(DEFAULT_POINT)
                self.mounted = False
            except OSError as exc:
                problems.append(f"cannot unmount tracefs from {DEFAULT_POINT}: {exc}")
        if self._affinity is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self._affinity)
            self._affinity = None
        if self._watchdog is not None:
            if problems:  # leave it to the watchdog, which tries again once we are gone
                if self._watchdog.proc.stdin is not None:
                    self._watchdog.proc.stdin.close()
            else:
                self._watchdog.done()
            self._watchdog = None
        if problems:
            raise HostError("; ".join(problems), "rtlibvirt's watchdog tries again when it exits")


def now_us() -> int:
    """CLOCK_MONOTONIC in microseconds: the trace's ``mono`` clock."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

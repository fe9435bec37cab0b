"""Run rtlibvirt as a user would, on hostile input, and measure what it cost.

Each case is a real process (``python -m rtlibvirt``): its exit status, its
standard output and error, and its peak memory (max RSS, from ``wait4`` on that
one child, so other tests' children do not count, measured by a small go-between
process so that this big one does not count either). A timeout is a hang
detector, never a measure of speed: a case that needs more than HANG seconds
is stuck, on any machine.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

HANG = 120.0  # seconds: far beyond any honest run, even on a loaded machine
MAX_RSS_MIB = 120  # a generous bound: an honest run takes ~30-45 MiB
REPO = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class Ran:
    argv: tuple[str, ...]
    code: int
    out: str
    err: str
    rss_mib: float

    def __str__(self) -> str:
        return (
            f"rtlibvirt {' '.join(self.argv)}: exit {self.code}, {self.rss_mib:.0f} MiB\n"
            f"--- stdout\n{self.out[:2000]}\n--- stderr\n{self.err[:2000]}"
        )


# A small go-between measures the child: the kernel gives a child the peak RSS of the
# memory it was forked from (exec_mmap keeps the old mm's high-water mark), so a child
# of this pytest process (150 MB after a full run) would report at least that much.
# The go-between is a fresh interpreter of a few MiB; its child is rtlibvirt.
_MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "rtlibvirt", *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
os.write(int(sys.argv[1]), f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}".encode())
"""


def run(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Ran:
    """``rtlibvirt ARGV`` in a child process; its exit status, output and max RSS."""
    report_r, report_w = os.pipe()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(
            [sys.executable, "-c", _MEASURE, str(report_w), *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO)},
            cwd=cwd,
            start_new_session=True,
            pass_fds=(report_w,),
        )
        os.close(report_w)
        timer = threading.Timer(HANG, lambda: os.killpg(child.pid, signal.SIGKILL))
        timer.start()
        try:
            child.wait()
        finally:
            timer.cancel()
        with os.fdopen(report_r, "rb") as report:
            said = report.read().decode().split()
        out.seek(0)
        err.seek(0)
        code, rss_kib = (int(said[0]), int(said[1])) if len(said) == 2 else (-signal.SIGKILL, 0)
        return Ran(
            tuple(argv),
            code,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            rss_kib / 1024,  # KiB on Linux
        )


def assert_refused(
    ran: Ran,
    source: str | Path,
    *,
    line: int | None = None,
    key: str | None = None,
    code: int = 2,
    message: str | None = None,
) -> None:
    """Refused as issue 9 asks: the exit status, the file (and line and key), nothing on
    stdout, no traceback or internal error, memory bounded."""
    assert ran.code != -signal.SIGKILL, f"hung (killed after {HANG} s)\n{ran}"
    assert ran.code == code, str(ran)
    assert ran.out == "", str(ran)
    assert "Traceback" not in ran.err and "internal error" not in ran.err, str(ran)
    assert ran.rss_mib < MAX_RSS_MIB, str(ran)
    where = str(source)
    if line is not None:
        where += f":{line}:"
        if key:
            where += f" {key}:"
    assert where in ran.err, f"{where!r} not in the message\n{ran}"
    if message is not None:
        assert re.search(message, ran.err), f"{message!r} not in the message\n{ran}"

"""kernel.files: the one flock helper (waiting or not) and atomic writes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtlibvirt.kernel import files

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def holder(path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_lock_without_patience_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    proc = holder(path, 30)
    try:
        start = time.monotonic()
        with pytest.raises(files.LockBusy):
            files.lock(path, timeout=0)
        assert time.monotonic() - start < 5
    finally:
        proc.kill()
        proc.wait()


def test_lock_waits_for_the_holder_to_finish(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    proc = holder(path, 0.3)
    try:
        fd = files.lock(path, timeout=30)
        os.close(fd)
    finally:
        proc.kill()
        proc.wait()


def test_lock_gives_up_after_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    proc = holder(path, 30)
    try:
        with pytest.raises(files.LockBusy):
            files.lock(path, timeout=0.2)
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    proc = holder(path, 30)
    proc.kill()
    proc.wait()
    os.close(files.lock(path, timeout=0))


def test_a_directory_lock(tmp_path: Path) -> None:
    fd = files.lock(tmp_path, timeout=0, directory=True)
    try:
        with pytest.raises(files.LockBusy):
            files.lock(tmp_path, timeout=0, directory=True)
    finally:
        os.close(fd)


def test_atomic_write_modes_and_no_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "f"
    files.atomic_write(target, b"one")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    os.chmod(target, 0o640)
    files.atomic_write(target, b"two")
    assert target.read_bytes() == b"two" and stat.S_IMODE(target.stat().st_mode) == 0o640
    files.atomic_write(target, b"three", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]

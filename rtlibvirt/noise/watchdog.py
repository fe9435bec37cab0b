"""``python -m rtlibvirt.noise.watchdog``: cleans up after a ``noise`` session that died.

Started by :class:`rtlibvirt.noise.tracefs.Session` in its own session (so a
Ctrl-C or a SIGTERM to the process group does not reach it; it also ignores
SIGINT, SIGTERM and SIGHUP). It reads lines from its standard input, a pipe
from the session's process:

- ``instance PATH``: a tracefs instance the session is about to create;
- ``mounted PATH``: tracefs, mounted by the session at PATH;
- ``done``: the session cleaned up itself.

When the pipe closes without ``done`` (the session was killed, even with
SIGKILL), it stops the instance's trace, removes the instance and unmounts
what was mounted, retrying while the kernel still holds them busy. Only
paths of the exact shapes the session announces are touched.

Standard library only; it imports nothing else of rtlibvirt.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

_INSTANCE = re.compile(r"/[\w/.-]{1,200}/instances/rtlibvirt-noise-\d{1,10}")
_MOUNT = re.compile(r"/sys/kernel/tracing")
RETRY_S = 5.0


def _retry(action: object, what: str) -> None:
    deadline = time.monotonic() + RETRY_S
    while True:
        try:
            action()  # type: ignore[operator]
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                print(f"rtlibvirt noise watchdog: {what}: {exc}", file=sys.stderr)
                return
            time.sleep(0.05)


def _umount(path: str) -> None:
    done = subprocess.run(["umount", path], capture_output=True, check=False)
    if done.returncode != 0:
        raise OSError(done.stderr.decode(errors="replace").strip() or "umount failed")


def cleanup(instances: list[str], mounted: list[str]) -> None:
    for path in instances:
        try:
            with open(f"{path}/tracing_on", "w") as f:
                f.write("0")
        except OSError:
            pass
        _retry(lambda p=path: os.rmdir(p), f"rmdir {path}")
    for path in mounted:
        _retry(lambda p=path: _umount(p), f"umount {path}")


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    instances: list[str] = []
    mounted: list[str] = []
    for raw in sys.stdin.buffer:
        line = raw.decode(errors="replace").rstrip("\n")
        word, _, path = line.partition(" ")
        if word == "done":
            return
        if word == "instance" and _INSTANCE.fullmatch(path) and len(instances) < 4:
            instances.append(path)
        elif word == "mounted" and _MOUNT.fullmatch(path) and not mounted:
            mounted.append(path)
    cleanup(instances, mounted)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What users wait for: `virsh start` and `virsh destroy`, with the rtlibvirt hook and without.

    .venv/bin/python bench/start_stop.py [--rounds N] [--calls]     (as root)

Two domains on the real libvirtd (qemu:///system), both a 256 MiB KVM guest
with one vCPU pinned to CPU 1 and run SCHED_FIFO (emulator on CPU 0, no disk:
QEMU and its vCPU thread run, which is all the hook needs; no guest kernel has
to boot):

- ``rt``: rendered by rtlibvirt from a vm.yaml (``locked: false``: locked
  memory cannot start on these machines), so it carries rtlibvirt's metadata
  and the hook isolates CPU 1 while it runs;
- ``plain``: the same domain without rtlibvirt's metadata, like any domain
  made by virt-install or virt-manager: the hook must leave it alone.

Each round starts and destroys both domains once with the hook installed (as
``rtlibvirt hook install`` installs it from this checkout) and once without,
in ABBA order (with/without, then without/with), so that the drift of a shared
machine falls on both sides alike. It prints the medians, the hook's added time
(the median of the per-round differences) and the ratio with/without.

``--compare-hook LABEL=FILE`` adds the hook file FILE (say, as installed by
another version, or a script that only reads its stdin: the least any hook
costs) as one more mode.

``--calls`` instead lists the hook calls libvirt makes for one start and one
destroy of each domain, with how long the installed hook took for each: two
probe scripts around it in ``qemu.d/`` (``00-`` and ``99-``; libvirt runs the
folder's scripts in name order) log each call and the time.

The script holds /run/lock/rtlibvirt-tests.lock while it uses libvirtd and the
hook folder (other checkouts' tests share them; RTLIBVIRT_HOST_LOCK_HELD=1 if
the caller holds it), restarts libvirtd once through scripts/libvirtd-up if
the daemon started before the hook was installed (libvirt looks for hook
scripts only when it starts; a daemon that knows of a script in qemu.d/ scans
the folder at every call, so the hook can then come and go), and leaves the
host as it found it: both domains undefined, the hook installation restored
byte for byte (with its mtime), probes removed. Not a test: nothing asserts
on these times.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import libvirt  # noqa: E402

from rtlibvirt import hook as hookentry  # noqa: E402
from rtlibvirt.config.vm import validate_data  # noqa: E402
from rtlibvirt.domain import metadata  # noqa: E402
from rtlibvirt.domain.render import render  # noqa: E402
from rtlibvirt.hook import install as hookinstall  # noqa: E402
from rtlibvirt.hook import state as hookstate  # noqa: E402
from rtlibvirt.hook.state import STATE_FILE  # noqa: E402
from rtlibvirt.kernel.fs import HostFS  # noqa: E402

URI = "qemu:///system"
LOCK = Path("/run/lock/rtlibvirt-tests.lock")
HOOKS_DIR = hookinstall.DEFAULT_HOOKS_DIR
HOOK = HOOKS_DIR / hookinstall.HOOK_NAME
PROBES = (HOOKS_DIR / "qemu.d/00-rtl-speed-probe", HOOKS_DIR / "qemu.d/99-rtl-speed-probe")
PROBE_LOG = Path("/run/rtl-speed-probe.log")
RT, PLAIN = "rtl-speed-rt", "rtl-speed-plain"
VIRSH = ("virsh", "-q", "-c", URI)

SPEC: dict[str, Any] = {
    "name": RT,
    "memory": "256MiB",
    "vcpus": 1,
    "cpu": {
        "pinning": [1],
        "emulator": "0",
        "realtime": {"vcpus": [0], "priority": 1},
        "features": {"arch-capabilities": "disable"},  # nested KVM here lacks it
    },
    "memory_backing": {"hugepages": "none", "locked": False},
}

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


# ---- the host: lock, hook, domains ----------------------------------------------------


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    if os.environ.get("RTLIBVIRT_HOST_LOCK_HELD") == "1":
        yield
        return
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {LOCK} (another checkout uses libvirtd) ...", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        os.environ["RTLIBVIRT_HOST_LOCK_HELD"] = "1"  # for scripts/libvirtd-up
        try:
            yield
        finally:
            os.environ.pop("RTLIBVIRT_HOST_LOCK_HELD", None)


class HookFile:
    """The installed hook: put in place or removed per mode; restored as found at the end."""

    def __init__(self) -> None:
        self.found: tuple[bytes, int, int, int] | None = None
        if HOOK.is_file():
            st = HOOK.stat()
            self.found = (HOOK.read_bytes(), st.st_mode & 0o7777, st.st_atime_ns, st.st_mtime_ns)
        self.text = hookinstall.render()

    def install(self) -> None:
        self.put(self.text.encode())

    def put(self, data: bytes | None, mode: int = 0o755) -> None:
        """The hook file holds ``data`` (None: no hook)."""
        if data is None:
            with contextlib.suppress(FileNotFoundError):
                HOOK.unlink()
            return
        if HOOK.is_file() and HOOK.read_bytes() == data:
            return
        HOOK.parent.mkdir(parents=True, exist_ok=True)
        tmp = HOOK.with_name(f".{HOOK.name}.rtl-speed")
        tmp.write_bytes(data)
        os.chmod(tmp, mode)
        os.replace(tmp, HOOK)

    def restore(self) -> None:
        if self.found is None:
            self.put(None)
            return
        data, mode, atime, mtime = self.found
        self.put(data, mode)
        os.chmod(HOOK, mode)
        os.utime(HOOK, ns=(atime, mtime))  # scripts/libvirtd-up compares it with the daemon


def domain_xmls() -> dict[str, str]:
    rt = render(validate_data(SPEC))
    plain = rt.replace(f"<name>{RT}</name>", f"<name>{PLAIN}</name>")
    start = plain.index("<metadata>")
    end = plain.index("</metadata>") + len("</metadata>")
    plain = plain[:start] + plain[end:]
    assert metadata.NAMESPACE in rt and metadata.NAMESPACE not in plain
    return {RT: rt, PLAIN: plain}


def remove_domains() -> None:
    conn = libvirt.open(URI)
    try:
        _remove_domains(conn)
    finally:
        conn.close()


def _remove_domains(conn: Any) -> None:
    for name in (RT, PLAIN):
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if dom.isActive():
            dom.destroy()
        dom.undefine()


def claims() -> dict[str, Any]:
    """The hook's claims now (its state file plus its journal, as the hook reads them)."""
    try:
        return dict(hookstate.peek(HostFS("/")).claims)
    except hookstate.StateError:
        return {}


def release_leftover() -> None:
    """The stop hooks did not run for RT (e.g. the hook was removed meanwhile): undo by name."""
    if RT in claims():
        hookentry.main([RT, "release", "end", "-"], io.StringIO(""))


def libvirtd_up() -> None:
    done = subprocess.run([str(REPO / "scripts/libvirtd-up")], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"scripts/libvirtd-up failed: {done.stderr.strip()}")
    for line in done.stdout.splitlines():
        if "restarting" in line:
            print(line)


# ---- timing ------------------------------------------------------------------------------


def virsh(op: str, name: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([*VIRSH, op, name], capture_output=True, text=True)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"virsh {op} {name} failed: {done.stderr.strip()}")
    return elapsed


def cycle(name: str, pause: float) -> tuple[float, float]:
    """Start and destroy ``name``; the two wall times in ms."""
    started = virsh("start", name)
    time.sleep(pause)
    stopped = virsh("destroy", name)
    time.sleep(pause)
    return started, stopped


def check_isolation(hook: HookFile) -> None:
    """With the hook installed, libvirtd must run it: RT's claim appears while it runs."""
    hook.install()
    virsh("start", RT)
    try:
        running = RT in claims()
    finally:
        virsh("destroy", RT)
    if not running:
        raise SystemExit(
            f"libvirtd did not run the installed hook for {RT} (no claim in {STATE_FILE}); "
            "restart libvirtd (scripts/libvirtd-up) and run again"
        )
    if RT in claims():
        raise SystemExit(f"the hook did not release {RT} at its destroy")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def measure(
    hook: HookFile, modes: dict[str, bytes | None], rounds: int, pause: float, probes: bool
) -> dict[str, Any]:
    """Time both domains under each mode (a hook text, or None for no hook), interleaved."""
    names = list(modes)
    times: dict[str, dict[str, dict[str, list[float]]]] = {
        mode: {name: {"start": [], "destroy": []} for name in (RT, PLAIN)} for mode in names
    }
    # per mode, domain and op: one {call: ms between the probes} per round
    gaps: dict[str, dict[str, dict[str, list[dict[str, float]]]]] = {
        mode: {name: {"start": [], "destroy": []} for name in (RT, PLAIN)} for mode in names
    }
    if probes:
        install_probes()
    try:
        # warm up every path (page cache, the hook's bytecode, QEMU's binary)
        for mode in names:
            hook.put(modes[mode])
            for name in (RT, PLAIN):
                cycle(name, pause)
        load_before = loadavg()
        began = time.monotonic()
        for r in range(rounds):
            # every mode comes first, last and in between equally often
            order = names[r % len(names) :] + names[: r % len(names)]
            if (r // len(names)) % 2:
                order.reverse()
            domains = (RT, PLAIN) if r % 2 == 0 else (PLAIN, RT)
            for mode in order:
                hook.put(modes[mode])
                for name in domains:
                    for op in ("start", "destroy"):
                        mark = time.time()
                        times[mode][name][op].append(virsh(op, name))
                        time.sleep(pause)
                        if probes:
                            calls = _read_probe_log(mark)
                            gaps[mode][name][op].append({c: gap for _, c, _, gap in calls})
            print(f"  round {r + 1}/{rounds} done (load {loadavg()})", flush=True)
        took = time.monotonic() - began
    finally:
        if probes:
            remove_probes()
    print()
    print(
        f"virsh start/destroy on {URI}, {rounds} rounds, modes interleaved; load average "
        f"{load_before} before, {loadavg()} after; {took:.0f} s"
    )
    print("1. wall time of the virsh process")
    print(f"{'domain':<7}{'op':<9}{'hook':<10}{'median':>9}{'min':>9}{'added':>10}{'ratio':>8}")
    for name, label in ((RT, "rt"), (PLAIN, "plain")):
        for op in ("start", "destroy"):
            without = times["without"][name][op]
            for mode in names:
                values = times[mode][name][op]
                line = (
                    f"{label:<7}{op:<9}{mode:<10}{statistics.median(values):>7.1f}ms"
                    f"{min(values):>7.1f}ms"
                )
                if mode != "without":
                    added = statistics.median(v - o for v, o in zip(values, without, strict=True))
                    ratio = statistics.median(values) / statistics.median(without)
                    line += f"{added:>+8.1f}ms{ratio:>8.3f}"
                print(line)
    print(
        "   added = median over the rounds of (with the hook - without); "
        "ratio = median / median without"
    )
    if probes:
        print_hook_time(names, times, gaps)
    return {
        "rounds": rounds,
        "load": [load_before, loadavg()],
        "seconds": took,
        "times": times,
        "gaps": gaps,
    }


def print_hook_time(
    names: list[str],
    times: dict[str, dict[str, dict[str, list[float]]]],
    gaps: dict[str, dict[str, dict[str, list[dict[str, float]]]]],
) -> None:
    """The hook's own time in each start and stop, from the probes around it."""
    print(
        "2. the hook's own time, measured where libvirt waits for it: per call, the time "
        "between the 00- and 99- probes minus its median without the hook (fork and exec "
        "included), summed over the calls of the start or stop; ratio = 1 + that sum / the "
        "median wall time without the hook"
    )
    print(f"{'domain':<7}{'op':<9}{'hook':<10}{'hook time':>10}{'ratio':>8}   per call (median)")
    for name, label in ((RT, "rt"), (PLAIN, "plain")):
        for op in ("start", "destroy"):
            bare = gaps["without"][name][op]
            calls = sorted({c for g in bare for c in g}, key=_call_order)
            base = {c: statistics.median(g[c] for g in bare if c in g) for c in calls}
            wall = statistics.median(times["without"][name][op])
            for mode in names[1:]:
                rounds = gaps[mode][name][op]
                totals = [sum(g.get(c, base[c]) - base[c] for c in calls) for g in rounds]
                each = {
                    c: statistics.median(g.get(c, base[c]) - base[c] for g in rounds) for c in calls
                }
                per_call = ", ".join(f"{c.split()[0]} {ms:.1f}" for c, ms in each.items())
                total = statistics.median(totals)
                print(
                    f"{label:<7}{op:<9}{mode:<10}{total:>8.1f}ms{1 + total / wall:>8.3f}"
                    f"   {per_call}"
                )


def _call_order(call: str) -> int:
    order = ["prepare", "start", "started", "stopped", "release"]
    op = call.split()[0]
    return order.index(op) if op in order else len(order)


def install_probes() -> None:
    PROBE_LOG.unlink(missing_ok=True)
    for probe in PROBES:
        probe.write_text(PROBE.format(log=PROBE_LOG))
        probe.chmod(0o755)


def remove_probes() -> None:
    for probe in PROBES:
        probe.unlink(missing_ok=True)
    PROBE_LOG.unlink(missing_ok=True)


# ---- which calls libvirt makes -------------------------------------------------------------


PROBE = """#!/bin/sh
# rtl-speed probe (bench/start_stop.py --calls): log the call, read stdin, exit 0
t=$(date +%s.%N)
n=$(wc -c)
echo "$t $(basename "$0") $1 $2 $3 $4 $n" >> {log}
exit 0
"""


def list_calls(hook: HookFile, pause: float) -> None:
    seen: dict[str, dict[tuple[str, str], Any]] = {}
    install_probes()
    try:
        for mode in ("with", "without"):
            hook.install() if mode == "with" else hook.put(None)
            cycle(RT, pause)  # warm
            cycle(PLAIN, pause)
            for name in (RT, PLAIN):
                for op in ("start", "destroy"):
                    PROBE_LOG.unlink(missing_ok=True)
                    mark = time.time()
                    wall = virsh(op, name)
                    time.sleep(pause)
                    seen.setdefault(mode, {})[(name, op)] = (mark, wall, _read_probe_log(mark))
    finally:
        remove_probes()
    for name in (RT, PLAIN):
        for op in ("start", "destroy"):
            mark, wall, calls = seen["with"][(name, op)]
            _, wall_without, bare = seen["without"][(name, op)]
            print(
                f"virsh {op} {name}: {len(calls)} hook calls; {wall:.0f} ms with the hook, "
                f"{wall_without:.0f} ms without"
            )
            gaps = {call: gap for _, call, _, gap in bare}
            for when, call, size, gap in calls:
                print(
                    f"  +{(when - mark) * 1000:6.1f} ms  {call:<22} stdin {size:>6} bytes  "
                    f"between the probes: {gap:5.1f} ms with the hook, "
                    f"{gaps.get(call, float('nan')):5.1f} ms without"
                )
    print(
        "(between the probes: from the start of the 00- probe to the start of the 99- probe; "
        "the difference with and without is the rtlibvirt hook's call, fork and exec included)"
    )


def _read_probe_log(since: float) -> list[tuple[float, str, int, float]]:
    rows = []
    pending: dict[str, float] = {}
    for line in PROBE_LOG.read_text().splitlines() if PROBE_LOG.exists() else []:
        stamp, probe, *call, size = line.split()
        when = float(stamp)
        if when < since:
            continue
        key = " ".join(call[1:4])
        if probe.startswith("00-"):
            pending[key] = when
        elif key in pending:
            begun = pending.pop(key)
            rows.append((begun, key, int(size), (when - begun) * 1000))
    return rows


# ---- main ------------------------------------------------------------------------------------


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="ABBA rounds (default 12)")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between calls")
    parser.add_argument("--calls", action="store_true", help="list libvirt's hook calls")
    parser.add_argument(
        "--compare-hook",
        metavar="LABEL=FILE",
        action="append",
        default=[],
        help="also time this hook file (e.g. one installed by another version) under LABEL; "
        "repeatable",
    )
    parser.add_argument(
        "--no-probes", action="store_true", help="time the virsh processes only (no probes)"
    )
    parser.add_argument("--raw", metavar="FILE", type=Path, help="write every time as JSON")
    options = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit(
            "bench/start_stop.py uses qemu:///system and /etc/libvirt/hooks: run as root"
        )
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # the hook's bytecode is cached, as installed
    signal.signal(signal.SIGTERM, _interrupted)  # clean up as after Ctrl-C
    xmls = domain_xmls()
    with host_lock():
        hook = HookFile()
        try:
            remove_domains()  # leftovers of an interrupted run
            conn = libvirt.open(URI)
            for xml in xmls.values():
                conn.defineXML(xml)
            conn.close()
            hook.install()
            libvirtd_up()  # restarts libvirtd if it predates the hook
            check_isolation(hook)
            if options.calls:
                list_calls(hook, options.pause)
            else:
                modes: dict[str, bytes | None] = {"without": None, "with": hook.text.encode()}
                for item in options.compare_hook:
                    label, _, path = item.rpartition("=")
                    modes[label or Path(path).name] = Path(path).read_bytes()
                raw = measure(hook, modes, options.rounds, options.pause, not options.no_probes)
                if options.raw:
                    options.raw.write_text(json.dumps(raw, indent=1) + "\n")
        finally:
            try:
                remove_domains()
            finally:
                release_leftover()
                hook.restore()
                for probe in PROBES:
                    probe.unlink(missing_ok=True)


if __name__ == "__main__":
    main()

"""The libvirt qemu hook: argv + the domain XML on stdin -> isolation of the host.

libvirt runs ``/etc/libvirt/hooks/qemu.d/50-rtlibvirt DOMAIN OP SUBOP EXTRA``
(installed from ``hooks/qemu`` by ``rtlibvirt hook install``) at every step of
every domain's life, with the domain XML on stdin:

====================  =====================================================
``prepare begin``     reserve the VM's CPUs; refuse the start (exit 1, one
                      line on stderr) when another running rtlibvirt VM holds
                      one of them, or when ``strict`` is set and a step is
                      impossible here
``started begin``     apply the isolation; check the vCPU threads
``stopped end``,      undo what this VM needed (the CPUs of VMs still running
``release end``       stay isolated); idempotent
``reconnect begin``   libvirtd restarted: take the running VM back in; always 0
anything else         nothing, exit 0, print nothing on stdout (libvirt would
                      take it for a replacement XML)
====================  =====================================================

The installed hook is a shell script (``hooks/qemu``) that starts Python only
for the calls above of a domain with rtlibvirt metadata (and for stops while
the state file exists): the other calls, and every call of other domains, cost
no Python at all. This module makes the same decision again (it is also what
hooks installed by older versions call for every call): a domain without
rtlibvirt metadata costs one substring search, and this module imports only
``os`` and ``sys`` until it knows the domain is ours. It never calls back into
libvirt (that deadlocks the daemon) and never imports libvirt, click, jinja2,
pydantic, lxml or ruamel.

The environment variable ``RTLIBVIRT_HOST_ROOT`` roots every /proc, /sys, /run
(and /var/log) path at another directory: tests and benchmarks run the hook
against a fake tree with it. libvirt passes the hook a fixed environment, so
it is never set there.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the hook ~3 ms
if TYPE_CHECKING:
    from typing import TextIO

    from rtlibvirt.kernel.fs import HostFS

# = metadata.NAMESPACE, repeated so that the no-metadata path imports nothing
# (a test keeps the two equal).
NAMESPACE = "http://rtlibvirt.org/xmlns/vm/1"
ROOT_ENV = "RTLIBVIRT_HOST_ROOT"
OPERATIONS = frozenset({"prepare", "started", "stopped", "release", "reconnect"})
STOP_OPERATIONS = frozenset({"stopped", "release"})
STATE_FILE = "run/rtlibvirt/state.json"  # = state.STATE_FILE, relative to the root
JOURNAL_FILE = "run/rtlibvirt/journal"  # = state.JOURNAL_FILE, relative to the root

USAGE = (
    "usage: 50-rtlibvirt DOMAIN OPERATION SUB-OPERATION [EXTRA] < domain.xml\n"
    "  libvirt runs this hook; install it with `rtlibvirt hook install`\n"
)


# More than any domain XML libvirt writes (a few KiB); a longer stdin is read to
# its end and dropped (= the shell entry's MAX_XML).
MAX_XML = 16 << 20


def run() -> int:
    """Entry point of the installed hook (``hooks/qemu``, and older ones): never raises."""
    try:
        return main(sys.argv[1:], sys.stdin, os.environ.get(ROOT_ENV) or "/")
    except Exception as exc:  # a broken installation must not stop the VM
        sys.stderr.write(f"rtlibvirt hook: internal error: {type(exc).__name__}: {exc}\n")
        return 0


def read_all(stdin: TextIO) -> str | None:
    """All of stdin (libvirt writes it before it waits); None when longer than MAX_XML."""
    try:
        xml = stdin.read(MAX_XML + 1)
        if len(xml) <= MAX_XML:
            return xml
        while stdin.read(1 << 20):
            pass
    except (OSError, ValueError):  # unreadable, or not text: like no XML at all
        return ""
    return None


def main(args: list[str], stdin: TextIO, root: str = "/", fs: HostFS | None = None) -> int:
    """Handle one call; returns the exit status (non-zero only to refuse a ``prepare``)."""
    xml = read_all(stdin)
    if len(args) < 3:
        sys.stderr.write(USAGE)
        return 2
    name, op, subop = args[0], args[1], args[2]
    if op not in OPERATIONS:
        return 0
    if xml is None:
        _too_long(fs, root, name, op, subop)
        xml = ""  # no isolation from it; a stop still undoes by name below
    if op in STOP_OPERATIONS:
        # Everything a stop may undo is in the state file: without it (no VM is
        # isolated, or the last one's `stopped` restored everything before its
        # `release`) there is nothing to do, and no need to import the rest.
        state_root = fs.root_str if fs is not None else root
        if not (
            os.path.exists(os.path.join(state_root, STATE_FILE))
            or os.path.exists(os.path.join(state_root, JOURNAL_FILE))
        ):
            return 0
    elif NAMESPACE not in xml:
        return 0  # not ours (a stop of a domain that is not goes on: undo by name)
    from rtlibvirt.hook import ops as hookops
    from rtlibvirt.kernel.fs import HostFS

    return hookops.handle(fs or HostFS(root), name, op, subop, xml)


def _too_long(fs: HostFS | None, root: str, name: str, op: str, subop: str) -> None:
    from rtlibvirt.hook.log import HookLog
    from rtlibvirt.kernel.fs import HostFS

    log = HookLog(fs or HostFS(root), f"{name} {op} {subop}")
    log.error(f"the domain XML on stdin is longer than {MAX_XML} characters: no isolation from it")
    log.close()

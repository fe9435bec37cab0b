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

A domain without rtlibvirt metadata costs one substring search: this module
imports only ``os`` and ``sys`` until it knows the domain is ours. It never
calls back into libvirt (that deadlocks the daemon) and never imports
libvirt, click, jinja2, pydantic, lxml or ruamel.

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
MAX_STDIN = 4 * 1024 * 1024  # = domain.MAX_XML: a domain XML is kilobytes

USAGE = (
    "usage: 50-rtlibvirt DOMAIN OPERATION SUB-OPERATION [EXTRA] < domain.xml\n"
    "  libvirt runs this hook; install it with `rtlibvirt hook install`\n"
)


def run() -> int:
    """Entry point of ``hooks/qemu``."""
    return main(sys.argv[1:], sys.stdin, os.environ.get(ROOT_ENV) or "/")


def main(args: list[str], stdin: TextIO, root: str = "/", fs: HostFS | None = None) -> int:
    """Handle one call; returns the exit status (non-zero only to refuse a ``prepare``)."""
    try:
        # Read it all, since libvirt writes it before it waits, but keep at most
        # MAX_STDIN characters: a longer XML is refused by hook.domain, and an
        # endless one costs no memory.
        xml = stdin.read(MAX_STDIN + 1)
        if len(xml) > MAX_STDIN:
            while stdin.read(1 << 20):
                pass
    except (OSError, ValueError):
        xml = ""
    if len(args) < 3:
        sys.stderr.write(USAGE)
        return 2
    name, op, subop = args[0], args[1], args[2]
    if op not in OPERATIONS:
        return 0
    if NAMESPACE not in xml:
        # Not ours: nothing to do, unless a VM that lost its metadata while it ran
        # (virsh edit) stops with a claim in the state: undo by name.
        if op not in STOP_OPERATIONS:
            return 0
        state_root = str(fs.root) if fs is not None else root
        if not (
            os.path.exists(os.path.join(state_root, STATE_FILE))
            or os.path.exists(os.path.join(state_root, JOURNAL_FILE))
        ):
            return 0
    from rtlibvirt.hook import ops as hookops
    from rtlibvirt.kernel.fs import HostFS

    return hookops.handle(fs or HostFS(root), name, op, subop, xml)

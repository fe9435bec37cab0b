"""Start, shut down and undefine a domain: what the Ansible module's ``state`` needs.

Each function says whether it changed anything, so that a caller (the
``rtlibvirt_vm`` module) reports ``changed`` only for real changes, and each
turns libvirt's exceptions into one-line LibvirtErrors with a hint.
"""

from __future__ import annotations

import time
from typing import Any

import libvirt

from rtlibvirt.errors import LibvirtError
from rtlibvirt.virt import connection as virt

_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",  # waiting on a resource, still running
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}


def _message(exc: libvirt.libvirtError) -> str:
    return (exc.get_error_message() or str(exc)).strip().rstrip(".")


def state_of(domain: Any) -> str:
    """``running``, ``shut off``, ``paused``, ... (as ``virsh domstate`` words it)."""
    try:
        code = domain.state()[0]
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"cannot read the state of {domain.name()!r}: {_message(exc)}") from None
    return _STATES.get(code, "unknown")


def start(conn: Any, name: str) -> bool:
    """Start the domain unless it runs; True when it was started."""
    domain = _need(conn, name)
    if virt.is_active(domain):
        return False
    try:
        domain.create()
    except libvirt.libvirtError as exc:
        raise LibvirtError(
            f"cannot start {name!r}: {_message(exc)}",
            "`rtlibvirt check NAME` and libvirt's log (/var/log/libvirt/qemu/NAME.log) tell "
            "why; the hook's refusal is in `journalctl -t rtlibvirt-hook`",
        ) from None
    return True


def shut_off(conn: Any, name: str, *, timeout: float, force: bool) -> bool:
    """Shut the domain down (ACPI), waiting up to ``timeout`` seconds; True when it ran.

    When it still runs after ``timeout``: power it off if ``force``, else a
    LibvirtError (the guest ignored the request or is slow).
    """
    domain = _need(conn, name)
    if not virt.is_active(domain):
        return False
    if timeout > 0:
        try:
            domain.shutdown()
        except libvirt.libvirtError as exc:
            if not force:
                raise LibvirtError(f"cannot shut {name!r} down: {_message(exc)}") from None
        deadline = time.monotonic() + timeout
        while virt.is_active(domain) and time.monotonic() < deadline:
            time.sleep(0.25)
    if virt.is_active(domain):
        if not force:
            raise LibvirtError(
                f"{name!r} still runs {timeout:g} s after the shutdown request",
                "give it more time (shutdown_timeout), or allow a power-off (force)",
            )
        try:
            domain.destroy()
        except libvirt.libvirtError as exc:
            if virt.is_active(domain):
                raise LibvirtError(f"cannot power {name!r} off: {_message(exc)}") from None
    return True


def undefine(conn: Any, name: str) -> bool:
    """Remove the persistent definition (and its NVRAM, managed save, snapshot metadata).

    A running domain is not stopped here: the caller shuts it off first.
    True when a definition was removed.
    """
    domain = virt.lookup(conn, name)
    if domain is None:
        return False
    flags = 0
    for flag in (
        "VIR_DOMAIN_UNDEFINE_MANAGED_SAVE",
        "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA",
        "VIR_DOMAIN_UNDEFINE_NVRAM",
        "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA",
    ):
        flags |= getattr(libvirt, flag, 0)
    try:
        domain.undefineFlags(flags)
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"cannot undefine {name!r}: {_message(exc)}") from None
    return True


def _need(conn: Any, name: str) -> Any:
    domain = virt.lookup(conn, name)
    if domain is None:
        raise LibvirtError(f"no domain named {name!r} on {virt.uri_of(conn)}")
    return domain

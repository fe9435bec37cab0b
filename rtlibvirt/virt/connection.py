"""The only module that imports libvirt.

Thin wrappers that turn libvirt's exceptions into one-line LibvirtErrors with
a hint, and that keep libvirt's default error handler from printing to stderr.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import libvirt

from rtlibvirt.errors import LibvirtError

# libvirt's default handler prints every error to stderr; we report our own.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def _message(exc: libvirt.libvirtError) -> str:
    text = exc.get_error_message() or str(exc)
    return text.strip().rstrip(".")


# What libvirt says when a user may not use the system daemon: the socket's mode, or
# polkit (which asks D-Bus first: "Unable to get system bus connection" without one).
_NOT_ALLOWED = ("permission denied", "authentication", "polkit", "system bus", "access denied")


def not_allowed(uri: str, exc: libvirt.libvirtError, euid: int | None = None) -> bool:
    """The connection failed because this user may not use ``uri``'s daemon."""
    text = (exc.get_error_message() or "").lower()
    if exc.get_error_code() in (libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_AUTH_UNAVAILABLE):
        return True
    if "permission denied" in text:
        return True
    euid = os.geteuid() if euid is None else euid
    return euid != 0 and "/system" in uri and any(word in text for word in _NOT_ALLOWED)


def _connect_hint(uri: str, exc: libvirt.libvirtError) -> str | None:
    text = (exc.get_error_message() or "").lower()
    if not_allowed(uri, exc):
        return (
            f"this user may not use {uri}: run it with sudo (or as a member of the 'libvirt' "
            "group), or use your own session daemon with `--connect qemu:///session`"
        )
    if "no such file" in text or "connection refused" in text or "failed to connect" in text:
        return (
            "is libvirtd running? Start it with `systemctl start libvirtd` "
            "(or `libvirtd -d` where there is no systemd); "
            "`--connect test:///default` needs no daemon"
        )
    if uri.startswith("test://"):
        return "test:///default is libvirt's built-in test driver"
    return None


@contextmanager
def connection(uri: str) -> Iterator[Any]:
    """An open read-write connection to ``uri``, closed afterwards."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        why = " (a permission problem: this user may not use it)"
        raise LibvirtError(
            f"cannot connect to {uri}: {_message(exc)}{why if not_allowed(uri, exc) else ''}",
            _connect_hint(uri, exc),
        ) from None
    try:
        yield conn
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def lookup(conn: Any, name: str) -> Any | None:
    """The domain named ``name``, or None."""
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise LibvirtError(f"cannot look up domain {name!r}: {_message(exc)}") from None


def inactive_xml(domain: Any) -> str:
    """The persistent definition of a domain, as libvirt stores it."""
    try:
        return str(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    except libvirt.libvirtError as exc:
        raise LibvirtError(
            f"cannot read the definition of {domain.name()!r}: {_message(exc)}"
        ) from None


def is_active(domain: Any) -> bool:
    try:
        return bool(domain.isActive())
    except libvirt.libvirtError:
        return False


def define(conn: Any, xml: str) -> Any:
    """Define (or redefine) a persistent domain, with libvirt's schema validation."""
    flags = getattr(libvirt, "VIR_DOMAIN_DEFINE_VALIDATE", 0)
    try:
        if flags and hasattr(conn, "defineXMLFlags"):
            return conn.defineXMLFlags(xml, flags)
        return conn.defineXML(xml)  # pragma: no cover - libvirt older than 5.6
    except libvirt.libvirtError as exc:
        raise LibvirtError(
            f"libvirt refused the domain: {_message(exc)}", _define_hint(exc)
        ) from None


def _define_hint(exc: libvirt.libvirtError) -> str | None:
    text = (exc.get_error_message() or "").lower()
    if "already exists with uuid" in text:
        return "another domain has this name or UUID; pick another `name`"
    if "schemas" in text or "relax-ng" in text:
        return "this is a bug in rtlibvirt's XML: please report it with your vm.yaml"
    return None


def uri_of(conn: Any) -> str:
    try:
        return str(conn.getURI())
    except libvirt.libvirtError:  # pragma: no cover
        return "?"


# ---- reading the host and its domains (host-aware checks, placement, status) ----


def capabilities(conn: Any) -> str:
    """The host's capabilities XML (CPU and NUMA topology)."""
    try:
        return str(conn.getCapabilities())
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"cannot read the host's capabilities: {_message(exc)}") from None


def node_info(conn: Any) -> list[Any]:
    """virNodeGetInfo: [model, memory MiB, cpus, mhz, nodes, sockets, cores, threads]."""
    try:
        return list(conn.getInfo())
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"cannot read the host's node info: {_message(exc)}") from None


def all_domains(conn: Any) -> list[tuple[str, str, str | None]]:
    """Every domain as ``(name, definition, live XML or None)``.

    The definition is the persistent (inactive) XML, or the live XML of a
    transient domain; the live XML is given too for running domains, whose
    pinning may have been changed with ``virsh vcpupin --live``. A domain that
    disappears while we read it is left out.
    """
    try:
        domains = conn.listAllDomains(0)
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"cannot list the domains: {_message(exc)}") from None
    result: list[tuple[str, str, str | None]] = []
    for domain in domains:
        try:
            name = str(domain.name())
            active = bool(domain.isActive())
            live = str(domain.XMLDesc(0)) if active else None
            persistent = bool(domain.isPersistent())
            definition = (
                str(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) if persistent else live
            )
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                continue
            raise LibvirtError(f"cannot read a domain's definition: {_message(exc)}") from None
        if definition is None:  # pragma: no cover - a transient domain is always active
            continue
        result.append((name, definition, live))
    return result


def networks(conn: Any) -> dict[str, tuple[bool, bool]]:
    """Every libvirt network of the host: name -> (active, autostart).

    Three listings (all, active, autostart) instead of two calls per network: a
    network cannot vanish between our calls, and the cost does not grow with them.
    """
    try:
        every = conn.listAllNetworks(0)
        active = conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE)
        autostart = conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_AUTOSTART)
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"cannot list the networks: {_message(exc)}") from None
    up = {str(n.name()) for n in active}
    auto = {str(n.name()) for n in autostart}
    return {str(n.name()): (str(n.name()) in up, str(n.name()) in auto) for n in every}

"""Transient domains for ``rtlibvirt probe``: started from XML, gone when they stop.

Every probe domain is created with ``VIR_DOMAIN_START_AUTODESTROY``: libvirt
destroys it when our connection closes, so it cannot outlive the probe even
when the probe is killed; :func:`destroy` ends it earlier on every normal way
out.
"""

from __future__ import annotations

import contextlib
from typing import Any

import libvirt

from rtlibvirt.errors import LibvirtError
from rtlibvirt.virt.connection import _message, inactive_xml, lookup, uri_of


def create(conn: Any, xml: str, *, paused: bool = False) -> Any:
    """Start a transient domain that libvirt destroys when ``conn`` closes."""
    flags = libvirt.VIR_DOMAIN_START_AUTODESTROY
    if paused:
        flags |= libvirt.VIR_DOMAIN_START_PAUSED
    flags |= getattr(libvirt, "VIR_DOMAIN_START_VALIDATE", 0)
    try:
        return conn.createXML(xml, flags)
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"libvirt could not start the probe domain: {_message(exc)}") from None


def is_running(domain: Any) -> bool:
    """False once the domain has stopped (a transient domain is then gone)."""
    try:
        return bool(domain.isActive())
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return False
        raise LibvirtError(f"cannot ask libvirt about the probe domain: {_message(exc)}") from None


def destroy(domain: Any) -> None:
    """Stop the domain now; nothing if it is already gone."""
    with contextlib.suppress(libvirt.libvirtError):
        if domain.isActive():
            domain.destroy()


def exists(conn: Any, name: str) -> bool:
    try:
        conn.lookupByName(name)
    except libvirt.libvirtError:
        return False
    return True


def is_local(conn: Any) -> bool:
    """Does the domain run on this machine (its serial files are ours to read)?"""
    try:
        uri = str(conn.getURI())
    except libvirt.libvirtError:
        return False
    scheme, _, rest = uri.partition("://")
    host = rest.split("/", 1)[0].split("@")[-1]
    return ("+" not in scheme and host in ("", "localhost")) or scheme.endswith("+unix")


def definition(conn: Any, name: str) -> str | None:
    """A domain's persistent definition (a transient one's live XML); None if none."""
    domain = lookup(conn, name)
    if domain is None:
        return None
    try:
        persistent = bool(domain.isPersistent())
        return inactive_xml(domain) if persistent else str(domain.XMLDesc(0))
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"cannot read domain {name!r}: {_message(exc)}") from None


def uri(conn: Any) -> str:
    return uri_of(conn)

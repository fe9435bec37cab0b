"""The only package that imports libvirt (see connection.py).

libvirt-python is the ``[host]`` extra: host-prep and guest-prep run without it
(inside a guest there is no libvirt). A command that needs it says how to get it.
"""

from __future__ import annotations

try:
    import libvirt  # noqa: F401  (imported here first, to say what is missing)
except ModuleNotFoundError as _exc:
    if _exc.name != "libvirt":
        raise
    from rtlibvirt.errors import HostError

    raise HostError(
        "this command talks to libvirt, and libvirt's Python binding (libvirt-python) "
        "is not installed",
        "on a libvirt host install rtlibvirt with it: pip install 'rtlibvirt[host]' "
        "(host-prep and guest-prep need no libvirt)",
    ) from None

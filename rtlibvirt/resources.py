"""Files shipped inside the package: the XML templates and the hook script.

The repository keeps them in the top-level ``xml_templates/`` and ``hooks/``
folders; packaging maps them to ``rtlibvirt.xml_templates`` and
``rtlibvirt.hooks`` so that an installed wheel (or an editable install) finds
them through importlib.resources, never relative to a checkout.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable


def templates() -> Traversable:
    """The folder of jinja2 templates of the domain XML."""
    return files("rtlibvirt.xml_templates")


def hook_script() -> Traversable:
    """The libvirt qemu hook entry point (``hooks/qemu``)."""
    return files("rtlibvirt.hooks").joinpath("qemu")

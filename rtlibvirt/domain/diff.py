"""Compare two domain definitions the way a user means it.

libvirt fills in details a definition leaves to it: device addresses, the
emulator path, implicit controllers and inputs, the versioned machine type,
one ``<vcpusched>`` per vCPU. :func:`canonical` removes or normalizes exactly
those on both sides, so that ``define --dry-run`` shows what the new spec
changes (and what edits made outside rtlibvirt it would undo), not noise.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
from typing import Any

from lxml import etree

from rtlibvirt.domain import metadata
from rtlibvirt.kernel.cpuset import format_cpulist, parse_cpulist

# Controllers libvirt adds on its own; rtlibvirt never writes them.
_IMPLICIT_CONTROLLERS = {"pci", "sata", "ide", "virtio-serial", "fdc"}
_MACHINE_ALIASES = ((re.compile(r"^pc-q35-"), "q35"), (re.compile(r"^pc-i440fx-"), "pc"))


def canonical(xml: str) -> str:
    """The definition with libvirt's own additions removed, attributes sorted, re-indented."""
    parser = etree.XMLParser(remove_blank_text=True)
    root = etree.fromstring(xml.encode("utf-8"), parser)

    devices = root.find("devices")
    if devices is not None:
        for device in list(devices):
            address = device.find("address")
            if address is not None:
                device.remove(address)
            tag = device.tag
            if (
                tag == "emulator"
                or (tag == "controller" and device.get("type") in _IMPLICIT_CONTROLLERS)
                or (tag == "input" and device.get("bus") == "ps2")
                or (tag == "audio" and device.get("type") == "none")
            ):
                devices.remove(device)
                continue
            if tag == "controller":
                device.attrib.pop("index", None)
            if tag == "serial":
                target = device.find("target")
                if target is not None and target.get("type") == "isa-serial":
                    target.attrib.pop("type")
                    for model in target.findall("model"):
                        target.remove(model)

    ostype = root.find("os/type")
    if ostype is not None:
        for pattern, alias in _MACHINE_ALIASES:
            machine = ostype.get("machine", "")
            if pattern.match(machine):
                ostype.set("machine", alias)

    cputune = root.find("cputune")
    if cputune is not None:
        for sched in cputune.findall("vcpusched"):
            index = list(cputune).index(sched)
            cputune.remove(sched)
            for offset, vcpu in enumerate(parse_cpulist(sched.get("vcpus", ""))):
                single = etree.Element("vcpusched", dict(sched.attrib))
                single.set("vcpus", format_cpulist([vcpu]))
                cputune.insert(index + offset, single)

    ours = root.find(f"metadata/{metadata.TAG}")
    if ours is not None:
        with contextlib.suppress(json.JSONDecodeError):
            ours.text = metadata.spec_text(_sorted(json.loads(ours.text or "")), "      ")

    for element in root.iter():
        if isinstance(element.tag, str) and len(element.attrib) > 1:
            items = sorted(element.attrib.items())
            element.attrib.clear()
            element.attrib.update(items)
    etree.indent(root, space="  ")
    return etree.tostring(root, encoding="unicode") + "\n"


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def unified(current: str, new: str, current_label: str, new_label: str) -> str:
    """A unified diff of the canonical forms; empty when they are the same."""
    lines = difflib.unified_diff(
        canonical(current).splitlines(keepends=True),
        canonical(new).splitlines(keepends=True),
        fromfile=current_label,
        tofile=new_label,
    )
    return "".join(lines)

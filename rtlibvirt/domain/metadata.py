"""rtlibvirt's element in a domain's ``<metadata>``: the normalized spec, as JSON.

libvirt keeps one element per XML namespace in ``<metadata>`` and preserves it
across edits (virsh edit, virt-manager), so the domain XML alone says what the
user asked for. The stored JSON is itself a valid vm.yaml.

Standard library only: the hook reads this on every libvirt event and must not
pay for lxml or libvirt.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # not typing's: importing typing costs the hook ~3 ms a call
if TYPE_CHECKING:
    import xml.etree.ElementTree as ET
    from typing import Any

NAMESPACE = "http://rtlibvirt.org/xmlns/vm/1"
PREFIX = "rtlibvirt"
TAG = f"{{{NAMESPACE}}}vm"
SCHEMA_VERSION = "1"
TUNE_ORIGIN = "tune"  # origin='tune': written by `rtlibvirt tune`, not by `define`


class MetadataError(ValueError):
    """The domain carries rtlibvirt metadata that cannot be read."""


def spec_text(normalized_spec: dict[str, Any], indent: str = "") -> str:
    """The element's text: the spec as JSON, one key per line, short lists inline."""
    return "\n" + indent + _json(normalized_spec, indent) + "\n" + indent[:-2]


def _json(value: Any, indent: str) -> str:
    if isinstance(value, dict) and value:
        inner = indent + "  "
        items = [f"{inner}{json.dumps(k)}: {_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + _json(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, separators=(", ", ": "))


def has_metadata(domain_xml: str) -> bool:
    """Cheap test, without parsing: can this domain carry rtlibvirt metadata?"""
    return NAMESPACE in domain_xml


def find(root: ET.Element) -> ET.Element | None:
    """Our element under ``<metadata>`` of a parsed ``<domain>``, if any."""
    metadata = root.find("metadata")
    return None if metadata is None else metadata.find(TAG)


def read(domain_xml: str) -> dict[str, Any] | None:
    """The spec stored in a domain's XML; None when the domain is not rtlibvirt's."""
    if not has_metadata(domain_xml):
        return None
    import xml.etree.ElementTree as ET  # not at import: render writes with lxml

    try:
        root = ET.fromstring(domain_xml)
    except ET.ParseError as exc:
        raise MetadataError(f"the domain XML is not well-formed: {exc}") from None
    return read_element(root)


def read_element(root: ET.Element) -> dict[str, Any] | None:
    """Like :func:`read`, on an already parsed ``<domain>`` element."""
    element = find(root)
    if element is None:
        return None
    return parse_text(element.text or "")


def parse_text(text: str) -> dict[str, Any]:
    """The spec of our element's text; MetadataError when it is not a JSON mapping.

    Untrusted input (anyone who may edit a domain writes it): deep nesting and
    over-long integers end in MetadataError, not in RecursionError or a crash.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetadataError(f"rtlibvirt metadata is not valid JSON: {exc}") from None
    except RecursionError:
        raise MetadataError("rtlibvirt metadata is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise MetadataError(f"rtlibvirt metadata holds an invalid value: {exc}") from None
    if not isinstance(data, dict):
        raise MetadataError("rtlibvirt metadata does not hold a mapping")
    return data

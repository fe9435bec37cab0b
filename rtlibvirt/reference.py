"""The generated parts of docs/: key references and check codes, from the code's own tables.

The ``vm.yaml``, ``TUNING.yaml`` and ``host.yaml`` key tables come from the
``setting()`` tables of their models (through the JSON Schema they make, so
that custom parsers describe themselves), the check tables from
:data:`rtlibvirt.fit.checks.CHECKS`. Each lands in a block of a hand-written
page, between ``<!-- BEGIN GENERATED name -->`` and ``<!-- END GENERATED name
-->``; the prose around the blocks stays the author's. ``make docs`` rewrites
the blocks, and a test fails when a committed page differs from what this
module makes.

It sits at the top of the package because it reads both config/ and fit/ (no
package below may import the other's tables for it); it only builds text,
``cli/docs.py`` reads and writes the pages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from rtlibvirt.config.host import HostSpec
from rtlibvirt.config.model import CPU_LIST_SCHEMA
from rtlibvirt.config.tuning import NOT_IN_TUNING, Tuning
from rtlibvirt.config.vm import VmSpec
from rtlibvirt.fit.checks import CHECKS, Subject

BEGIN = (
    "<!-- BEGIN GENERATED {name}: made by `make docs` from {source}; edit the code, not this -->"
)
END = "<!-- END GENERATED {name} -->"
_BLOCK = re.compile(
    r"<!-- BEGIN GENERATED (?P<name>[a-z-]+):[^\n]*-->\n.*?<!-- END GENERATED (?P=name) -->",
    re.DOTALL,
)
_CPU_LIST = CPU_LIST_SCHEMA["oneOf"]


class BlockError(ValueError):
    """A page's generated blocks are malformed or unknown."""


# ---- key tables, from a model's JSON Schema ---------------------------------------------


def _code(text: str) -> str:
    """Docstring markup to Markdown: ``x`` -> `x`; table cells cannot hold a bare |."""
    return text.replace("``", "`").replace("|", "\\|")


def _alternatives(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def type_text(schema: dict[str, Any]) -> str:
    """A short, human name for the values a schema allows."""
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return _alternatives([f"`{v}`" for v in schema["enum"]])
    for key in ("oneOf", "anyOf"):
        if key in schema:
            options = [o for o in schema[key] if o != {"type": "null"}]
            parts: list[str] = []
            if options[: len(_CPU_LIST)] == _CPU_LIST:
                parts.append("CPU list")
                options = options[len(_CPU_LIST) :]
            if len(options) == 2 and options[0].get("items") == options[1]:
                parts.append(f"{type_text(options[1])}, or a list of them")
                options = []
            for option in options:
                text = type_text(option)
                if option.get("description") and option.get("type") in ("integer", "string"):
                    text += f" ({option['description']})"
                if text not in parts:
                    parts.append(text)
            return _alternatives(parts)
    kind = schema.get("type")
    if kind == "boolean":
        return "bool"
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"integer {low}-{high}" if low >= 0 else f"integer {low} to {high}"
        if low is not None:
            return f"integer >= {low}"
        return "integer"
    if kind == "array":
        item = type_text(schema.get("items", {}))
        return "list of " + re.sub(r"\b(string|mapping|integer|bool)\b", r"\1s", item)
    if kind == "object":
        if "properties" in schema:
            return "mapping"
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            return f"mapping of names to {type_text(values)}"
        return "mapping"
    if kind == "string":
        return "string"
    return "any"


def _default_text(schema: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in schema:
        return "-"
    value = schema["default"]
    if value is None:
        return "unset"
    if value in ([], {}):
        return "none"
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value)}`"


def _objects(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The mappings below a value: ("", it) for a mapping, ("[]", item) for a list's."""
    if "properties" in schema:
        yield "", schema
    for key in ("oneOf", "anyOf"):
        for option in schema.get(key, ()):
            yield from _objects(option)
    items = schema.get("items")
    if isinstance(items, dict):
        for suffix, found in _objects(items):
            yield "[]" + suffix, found


def key_rows(
    schema: dict[str, Any], prefix: str = "", leave_out: frozenset[str] = frozenset()
) -> Iterator[tuple[str, str, str, str]]:
    """(key path, type, default, meaning) of every key of a model's schema, depth first."""
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        if path in leave_out:
            continue
        yield (
            path,
            type_text(prop),
            _default_text(prop, name in required),
            prop.get("description", ""),
        )
        seen: list[dict[str, Any]] = []
        for suffix, inner in _objects(prop):
            if inner not in seen:  # a mapping, or a list of them: its keys once
                seen.append(inner)
                yield from key_rows(inner, f"{path}{suffix}.", leave_out)


def key_table(schema: dict[str, Any], refused: dict[str, tuple[str, str]] | None = None) -> str:
    """The key table of a model's schema; ``refused`` keys (key -> why, fix) are left out
    of it and listed after it."""
    refused = refused or {}
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for path, kind, default, meaning in key_rows(schema, leave_out=frozenset(refused)):
        lines.append(f"| `{path}` | {_code(kind)} | {_code(default)} | {_code(meaning)} |")
    for key, (why, _) in refused.items():
        lines += ["", f"Not taken here: `{key}` ({_code(why)})."]
    return "\n".join(lines)


# ---- check tables, from the registry ----------------------------------------------------


def check_table(subject: Subject) -> str:
    lines = ["| code | severity | finds |", "|---|---|---|"]
    for registered in CHECKS:
        if registered.subject == subject:
            lines.append(
                f"| `{registered.code}` | {registered.severity} | {_code(registered.about)} |"
            )
    return "\n".join(lines)


# ---- the blocks and the pages that hold them --------------------------------------------

BLOCKS: dict[str, tuple[str, Callable[[], str]]] = {
    "vm-keys": ("config/vm.py", lambda: key_table(VmSpec.json_schema())),
    "tuning-keys": (
        "config/tuning.py",
        lambda: key_table(Tuning.json_schema(), NOT_IN_TUNING),
    ),
    "host-keys": ("config/host.py", lambda: key_table(HostSpec.json_schema())),
    "host-checks": ("fit/checks.py", lambda: check_table("host")),
    "domain-checks": ("fit/checks.py", lambda: check_table("domain")),
}

# docs/ page -> the blocks it holds.
PAGES: dict[str, tuple[str, ...]] = {
    "vm-yaml.md": ("vm-keys",),
    "tune.md": ("tuning-keys",),
    "host-prep.md": ("host-keys",),
    "host-checks.md": ("host-checks", "domain-checks"),
}


def block(name: str) -> str:
    """The whole block ``name``, markers included."""
    source, make = BLOCKS[name]
    return "\n".join(
        [BEGIN.format(name=name, source=f"rtlibvirt/{source}"), make(), END.format(name=name)]
    )


def regenerate(page: str, text: str) -> str:
    """``text`` (the page ``page``) with every generated block made anew."""
    wanted = PAGES.get(page, ())
    found = [m.group("name") for m in _BLOCK.finditer(text)]
    if sorted(found) != sorted(wanted):
        raise BlockError(
            f"docs/{page} holds the generated blocks {found or 'none'}, not {list(wanted)}: "
            f"put each one in as {BEGIN.format(name='NAME', source='...')} ... "
            f"{END.format(name='NAME')}"
        )
    for name in wanted:
        if text.count(f"<!-- BEGIN GENERATED {name}:") != 1:
            raise BlockError(f"docs/{page}: the block {name} begins more than once")
    return _BLOCK.sub(lambda m: block(m.group("name")), text)

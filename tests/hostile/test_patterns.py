"""Every pattern is a full match: in the code (no `$` that also matches before a final
newline) and in the JSON Schema an editor or python-jsonschema checks vm.yaml with."""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from rtlibvirt.config.vm import json_schema

PACKAGE = Path(__file__).resolve().parent.parent.parent / "rtlibvirt"
RE_CALLS = {
    "compile",
    "match",
    "search",
    "fullmatch",
    "sub",
    "subn",
    "split",
    "findall",
    "finditer",
}


def patterns() -> list[tuple[str, int, str, bool]]:
    """(file, line, pattern, multiline) of every literal pattern given to the re module."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in RE_CALLS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "re"
                and node.args
            ):
                continue
            first = node.args[0]
            text = None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                text = first.value
            elif isinstance(first, ast.JoinedStr):
                text = "".join(v.value for v in first.values if isinstance(v, ast.Constant))
            if text is None:
                continue
            flags = ast.unparse(node.args[-1]) if len(node.args) > 1 else ""
            flags += " ".join(ast.unparse(k.value) for k in node.keywords)
            found.append((str(path.relative_to(PACKAGE)), node.lineno, text, "MULTILINE" in flags))
    return found


def test_there_are_patterns_to_check() -> None:
    assert len(patterns()) > 10


def test_no_dollar_that_passes_a_final_newline() -> None:
    """`$` matches before a final newline: "quiet\\n" passed ^[...]+$. Use fullmatch or \\Z
    (a `$` in a MULTILINE pattern that reads line by line is meant)."""
    bad = [
        f"{file}:{line}: {text!r}"
        for file, line, text, multiline in patterns()
        if re.search(r"(?<!\\)\$", text) and not multiline
    ]
    assert bad == []


# ---- the JSON Schema -----------------------------------------------------------------

VALID: dict[str, Any] = {
    "name": "plc",
    "memory": "2GiB",
    "vcpus": 2,
    "cpu": {"pinning": [2, 3], "emulator": "0-1", "model": "host-passthrough"},
    "devices": {
        "disks": [{"source": "/var/lib/libvirt/images/plc.qcow2"}],
        "networks": [{"bridge": "br0", "mac": "52:54:00:12:34:56"}],
        "hostdevs": ["0000:03:00.0"],
    },
}


def with_value(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def test_the_valid_spec_is_valid_to_the_schema() -> None:
    jsonschema.Draft202012Validator(json_schema()).validate(VALID)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("name",), "plc\n"),
        (("memory",), "2GiB\n"),
        (("cpu", "model"), "host-passthrough\n"),
        (("cpu", "emulator"), "0-1\n"),
        (("devices", "disks", 0, "source"), "/var/lib/x.qcow2\n"),
        (("devices", "disks", 0, "source"), "/var/lib/a\tb.qcow2"),
        (("devices", "networks", 0, "bridge"), "br0\n"),
        (("devices", "networks", 0, "mac"), "52:54:00:12:34:56\n"),
        (("devices", "hostdevs", 0), "0000:03:00.0\n"),
        (("cpu", "pinning"), [2, True]),
    ],
)
def test_the_schema_refuses_what_the_model_refuses(path: tuple[Any, ...], value: Any) -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    assert list(validator.iter_errors(with_value(path, value))), (path, value)

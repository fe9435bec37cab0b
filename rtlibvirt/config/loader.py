"""Load a YAML file into plain Python values, remembering the line of every key.

YAML 1.2 (ruamel.yaml): ``0000:03:00.0`` and ``0-1`` stay strings (PyYAML's
YAML 1.1 would read the PCI address as the sexagesimal float 180.0), ``no``
stays a string, and duplicate keys are an error instead of a silent overwrite.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from rtlibvirt.config.document import Document, KeyPath
from rtlibvirt.errors import InputError, Problem, SpecError
from rtlibvirt.kernel.files import read_text


def _plain(node: Any, path: KeyPath, lines: dict[KeyPath, int]) -> Any:
    if isinstance(node, CommentedMap):
        result: dict[Any, Any] = {}
        for key in node:
            line = node.lc.key(key)[0] + 1
            plain_key = _plain(key, (), {})
            if not isinstance(plain_key, str):
                plain_key = str(plain_key)
            lines[(*path, plain_key)] = line
            result[plain_key] = _plain(node[key], (*path, plain_key), lines)
        return result
    if isinstance(node, CommentedSeq):
        items = []
        for index, item in enumerate(node):
            lines[(*path, index)] = node.lc.item(index)[0] + 1
            items.append(_plain(item, (*path, index), lines))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, datetime.date):
        return node.isoformat()
    return node


def loads(text: str, source: str = "<string>") -> Document:
    """Parse YAML text; syntax errors become a SpecError with the line."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "invalid YAML"
        raise SpecError(
            source, [Problem("", f"YAML syntax error: {what}", line, _syntax_hint(str(what)))]
        ) from None
    except YAMLError as exc:
        raise SpecError(source, [Problem("", f"YAML syntax error: {exc}")]) from None
    lines: dict[KeyPath, int] = {}
    data = _plain(raw, (), lines)
    return Document(source=source, data=data, lines=lines)


def _syntax_hint(problem: str) -> str | None:
    if "found duplicate key" in problem:
        return "each key may appear once in a mapping; remove or merge the repeated one"
    if "tab" in problem:
        return "indent with spaces; YAML does not allow tabs for indentation"
    return None


def load(path: str | Path) -> Document:
    """Read and parse a YAML file; unreadable files raise one-line errors."""
    path = Path(path)
    text = read_text(path, InputError, kind="a YAML file") or ""
    doc = loads(text, str(path))
    if doc.data is None:
        raise SpecError(
            str(path),
            [Problem("", "the file is empty", 1, "see examples/plc.yaml for a complete VM spec")],
        )
    if not isinstance(doc.data, Mapping):
        kind = type(doc.data).__name__.replace("list", "a list").replace("str", "a string")
        raise SpecError(
            str(path),
            [Problem("", f"the top level must be a mapping of keys, not {kind}", 1)],
        )
    return doc

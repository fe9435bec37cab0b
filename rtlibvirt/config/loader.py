"""Load a YAML file into plain Python values, remembering the line of every key.

YAML 1.2 (ruamel.yaml's parser and its YAML 1.2 resolver): ``0000:03:00.0``
and ``0-1`` stay strings (PyYAML's YAML 1.1 would read the PCI address as the
sexagesimal float 180.0), ``no`` stays a string, and duplicate keys are an
error instead of a silent overwrite.

Every input is hostile: the values are built here from the parser's events,
one at a time and without recursion, so that every bound holds *before* the
work it limits is done (a half-kilobyte alias bomb used to take 30 s and
1.6 GB): the file's size, its lines, the nesting depth, the number of values
(aliases count what they expand to), the length of a value and of an integer.
Tags other than YAML's standard ones (``!!python/object``, ``!!binary``,
``!custom``) are refused with their line; merge keys (``<<: *base``) work as
YAML's merge-key type says. Every failure is a :class:`SpecError` (exit 2)
with the line and the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, events
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver

from rtlibvirt.config.document import Document, Key, KeyPath, format_path
from rtlibvirt.errors import InputError, Problem, SpecError
from rtlibvirt.kernel.files import display_path, read_bytes

MAX_BYTES = 1 << 20  # 1 MiB: a vm.yaml is a few hundred bytes
MAX_LINES = 20_000
MAX_DEPTH = 32  # mappings and lists inside each other (a vm.yaml needs 4)
MAX_VALUES = 20_000  # scalars, mappings and lists, aliases counted as what they expand to
MAX_SCALAR = 16_384  # characters in one value (a path is at most 4095 bytes)
MAX_INT_CHARS = 32  # characters of an integer (2**64 has 20 digits)

_YAML = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (f"{_YAML}{t}" for t in ("str", "int", "float", "bool", "null"))
_MAP, _SEQ, _MERGE, _TIMESTAMP = (f"{_YAML}{t}" for t in ("map", "seq", "merge", "timestamp"))
_SCALAR_TAGS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_INFINITY = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf}

_resolver = VersionedResolver(version=(1, 2))


class _Merge:
    """The key ``<<`` of YAML's merge-key type."""


MERGE = _Merge()


@dataclass
class _Frame:
    """A mapping or list being built."""

    data: dict[str, Any] | list[Any]
    path: KeyPath
    line: int
    anchor: str | None
    record: bool  # record key lines (not inside a key or a merged mapping)
    first_value: int  # the value count when it started
    depth: int
    below: int = 0  # how deep its values nest
    key: Key | _Merge | None = None  # mapping: the key whose value comes next
    key_line: int = 0
    key_lines: dict[str, int] = field(default_factory=dict)
    merges: list[tuple[Any, int]] = field(default_factory=list)


@dataclass(frozen=True)
class _Anchor:
    value: Any
    values: int  # how many values it holds, itself included
    depth: int  # how deep it nests below itself


class _Builder:
    """Plain values and key lines from parser events, bounded before the work."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[KeyPath, int] = {}
        self.anchors: dict[str, _Anchor] = {}
        self.open_anchors: set[str] = set()
        self.stack: list[_Frame] = []
        self.values = 0
        self.documents = 0
        self.root: Any = None

    # ---- errors ----------------------------------------------------------

    def fail(self, line: int | None, message: str, hint: str | None = None) -> SpecError:
        return SpecError(self.source, [Problem(format_path(self.where()), message, line, hint)])

    def where(self) -> KeyPath:
        """The key path of the value being read."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.data, list):
            return (*top.path, len(top.data))
        if isinstance(top.key, str | int):
            return (*top.path, top.key)
        if top.key is MERGE:
            return (*top.path, "<<")
        return top.path

    # ---- events ----------------------------------------------------------

    def feed(self, event: Any) -> None:
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, events.ScalarEvent):
            self.count(1, line)
            value = self.scalar(event, line or 0)
            if event.anchor:
                self.anchors[event.anchor] = _Anchor(value, 1, 0)
            self.add(value, line or 0, scalar=event)
        elif isinstance(event, events.MappingStartEvent | events.SequenceStartEvent):
            self.start(event, line or 0)
        elif isinstance(event, events.MappingEndEvent | events.SequenceEndEvent):
            self.end(line or 0)
        elif isinstance(event, events.AliasEvent):
            self.alias(event, line or 0)
        elif isinstance(event, events.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise self.fail(
                    line,
                    "the file holds more than one YAML document",
                    "remove the second `---` and what follows, or merge the two",
                )
            version = getattr(event, "version", None)
            if version is not None and tuple(version) != (1, 2):
                raise self.fail(
                    line,
                    f"%YAML {'.'.join(map(str, version))} is not supported: "
                    "rtlibvirt reads YAML 1.2",
                    "remove the %YAML line",
                )

    def count(self, values: int, line: int | None) -> None:
        self.values += values
        if self.values > MAX_VALUES:
            raise self.fail(
                line,
                f"the file holds more than {MAX_VALUES} values (aliases count as what they "
                "repeat): it is not a configuration rtlibvirt reads",
                "an alias (*name) repeats everything under its anchor; write the values once",
            )

    def start(self, event: Any, line: int) -> None:
        mapping = isinstance(event, events.MappingStartEvent)
        tag = None if event.tag is None else str(event.tag)
        if tag not in (None, "!", _MAP if mapping else _SEQ):
            raise self.fail(line, *_tag_problem(tag, "a mapping" if mapping else "a list"))
        depth = len(self.stack) + 1
        if depth > MAX_DEPTH:
            raise self.fail(
                line,
                f"mappings and lists nest more than {MAX_DEPTH} deep here",
                "rtlibvirt's files nest a few levels at most",
            )
        self.count(1, line)
        parent = self.stack[-1] if self.stack else None
        in_key = parent is not None and isinstance(parent.data, dict) and parent.key is None
        if in_key:
            raise self.fail(
                line,
                "a key must be a plain string, not " + ("a mapping" if mapping else "a list"),
                "write `key: value`; `? [a, b]: ...` keys are not used by rtlibvirt",
            )
        record = parent is None or (parent.record and parent.key is not MERGE)
        if event.anchor:
            self.open_anchors.add(event.anchor)
        self.stack.append(
            _Frame(
                data={} if mapping else [],
                path=self.where(),
                line=line,
                anchor=event.anchor,
                record=record,
                first_value=self.values,
                depth=depth,
            )
        )

    def end(self, line: int) -> None:
        frame = self.stack.pop()
        if isinstance(frame.data, dict):
            self.merge(frame)
        if frame.anchor:
            self.open_anchors.discard(frame.anchor)
            self.anchors[frame.anchor] = _Anchor(
                frame.data, self.values - frame.first_value + 1, frame.below + 1
            )
        self.add(frame.data, frame.line, depth=frame.below + 1)

    def alias(self, event: Any, line: int) -> None:
        name = event.anchor
        if name in self.open_anchors:
            raise self.fail(
                line,
                f"the alias *{name} is inside its own anchor &{name}: it would repeat forever",
                "an alias can only repeat a value whose anchor is closed",
            )
        anchor = self.anchors.get(name)
        if anchor is None:
            raise self.fail(
                line,
                f"the alias *{name} has no anchor &{name} before it",
                f"define `&{name}` on a value before this line",
            )
        self.count(anchor.values, line)
        if len(self.stack) + anchor.depth > MAX_DEPTH:
            raise self.fail(line, f"the alias *{name} nests more than {MAX_DEPTH} deep here")
        self.add(anchor.value, line, depth=anchor.depth, alias=True)

    # ---- building ----------------------------------------------------------

    def add(
        self,
        value: Any,
        line: int,
        *,
        scalar: Any = None,
        depth: int = 0,
        alias: bool = False,
    ) -> None:
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        top.below = max(top.below, depth)
        if isinstance(top.data, list):
            if top.record:
                self.lines[(*top.path, len(top.data))] = line
            top.data.append(value)
            return
        if top.key is None:  # this value is a key
            self.take_key(top, value, line, scalar, alias)
            return
        key, top.key = top.key, None
        if key is MERGE:
            self.take_merge(top, value, line)
            return
        assert isinstance(key, str)
        top.data[key] = value

    def take_key(self, top: _Frame, value: Any, line: int, scalar: Any, alias: bool) -> None:
        if (
            scalar is not None
            and scalar.tag is None
            and scalar.implicit[0]
            and scalar.value == "<<"
        ):
            top.key, top.key_line = MERGE, line
            return
        if scalar is not None:
            key = scalar.value  # as written: `true:` is the key "true", `0x10:` is "0x10"
        elif alias and isinstance(value, str):
            key = value
        else:
            raise self.fail(line, "a key must be a plain string", "write `key: value`")
        first = top.key_lines.get(key)
        if first is not None:
            top.key = None
            raise SpecError(
                self.source,
                [
                    Problem(
                        format_path((*top.path, key)),
                        f"found duplicate key {key!r} (first on line {first})",
                        line,
                        "each key may appear once in a mapping; remove or merge the repeated one",
                    )
                ],
            )
        top.key_lines[key] = line
        top.key, top.key_line = key, line
        if top.record:
            self.lines[(*top.path, key)] = line

    def take_merge(self, top: _Frame, value: Any, line: int) -> None:
        sources = value if isinstance(value, list) else [value]
        if not sources or not all(isinstance(s, dict) for s in sources):
            raise SpecError(
                self.source,
                [
                    Problem(
                        format_path((*top.path, "<<")),
                        "a merge key (<<) takes a mapping or a list of mappings, "
                        f"not {_kind(value)}",
                        line,
                        "write `<<: *base` with `base: &base {key: value}` above",
                    )
                ],
            )
        top.merges.append((sources, line))

    def merge(self, frame: _Frame) -> None:
        """YAML's merge keys: keys written in the mapping win, then earlier merges."""
        data = frame.data
        assert isinstance(data, dict)
        for sources, line in frame.merges:
            for source in sources:
                for key, value in source.items():
                    if key not in data:
                        data[key] = value
                        if frame.record:
                            self.lines[(*frame.path, key)] = line

    def scalar(self, event: Any, line: int) -> Any:
        value: str = event.value
        if len(value) > MAX_SCALAR:
            raise self.fail(
                line,
                f"a value of {len(value)} characters: at most {MAX_SCALAR}",
                "no setting of rtlibvirt takes a value this long",
            )
        tag = None if event.tag is None else str(event.tag)
        if tag == "!" or (tag is None and not event.implicit[0]):
            return value  # quoted, or the non-specific tag `!`: a string
        if tag is None:
            tag = str(_resolver.resolve(ScalarNode, value, (True, False)))
            if tag in (_MERGE, f"{_YAML}value", _TIMESTAMP):
                return value  # `<<` as a value, `=`, a date: the text as written
        if tag not in _SCALAR_TAGS:
            raise self.fail(line, *_tag_problem(tag, "a value"))
        if tag == _STR:
            return value
        if tag == _NULL:
            if value in _NULLS:
                return None
        elif tag == _BOOL:
            if value in _TRUE or value in _FALSE:
                return value in _TRUE
        elif tag == _INT:
            return self.integer(value, line)
        elif tag == _FLOAT:
            number = self.float(value)
            if number is not None:
                return number
        raise self.fail(line, f"{value!r} is not a valid {tag.removeprefix(_YAML)}")

    def integer(self, value: str, line: int) -> int:
        digits = value.replace("_", "")
        if len(digits) > MAX_INT_CHARS:
            raise self.fail(
                line,
                f"an integer of {len(digits)} characters: at most {MAX_INT_CHARS}",
                "no setting of rtlibvirt takes a number this large",
            )
        sign = -1 if digits.startswith("-") else 1
        digits = digits.lstrip("+-")
        base = {"0b": 2, "0o": 8, "0x": 16}.get(digits[:2].lower(), 10)
        if base != 10:
            digits = digits[2:]
        try:
            return sign * int(digits, base)
        except ValueError:
            raise self.fail(line, f"{value!r} is not a valid integer") from None

    @staticmethod
    def float(value: str) -> float | None:
        if len(value) > 64:
            return None
        lowered = value.lower()
        if lowered in _INFINITY:
            return _INFINITY[lowered]
        if lowered == ".nan":
            return math.nan
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return None


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "a single value"


def _tag_problem(tag: str | None, what: str) -> tuple[str, str]:
    shown = f"!!{tag.removeprefix(_YAML)}" if tag and tag.startswith(_YAML) else str(tag)
    return (
        f"the tag {shown} on {what} is not supported: rtlibvirt reads plain YAML "
        "(strings, numbers, true/false, null, lists and mappings)",
        "remove the tag",
    )


def loads(text: str, source: str = "<string>") -> Document:
    """Parse YAML text; syntax errors and exceeded bounds become a SpecError with the line."""
    lines = text.count("\n", 0, MAX_BYTES * 4)
    if lines > MAX_LINES:
        raise SpecError(
            source,
            [
                Problem(
                    "",
                    f"the file has {lines} lines: at most {MAX_LINES}",
                    MAX_LINES + 1,
                    "it is not a configuration rtlibvirt reads",
                )
            ],
        )
    builder = _Builder(source)
    yaml = YAML(typ="safe", pure=True)
    try:
        for event in yaml.parse(text):
            builder.feed(event)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "invalid YAML"
        raise SpecError(
            source, [Problem("", f"YAML syntax error: {what}", line, _syntax_hint(str(what)))]
        ) from None
    except ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise SpecError(
            source,
            [
                Problem(
                    "",
                    f"the character U+{exc.character:04X} is not allowed in YAML"
                    if isinstance(exc.character, int)
                    else f"YAML syntax error: {exc.reason}",
                    line,
                    "control characters must be written as escapes in a double-quoted "
                    'string ("\\t"), if at all',
                )
            ],
        ) from None
    except YAMLError as exc:
        raise SpecError(source, [Problem("", f"YAML syntax error: {exc}")]) from None
    return Document(source=source, data=builder.root, lines=builder.lines)


def _syntax_hint(problem: str) -> str | None:
    if "found duplicate key" in problem:
        return "each key may appear once in a mapping; remove or merge the repeated one"
    if "tab" in problem:
        return "indent with spaces; YAML does not allow tabs for indentation"
    return None


def load(path: str | Path) -> Document:
    """Read (at most :data:`MAX_BYTES`) and parse a YAML file; every failure is one line."""
    return load_with_bytes(path)[0]


def load_with_bytes(path: str | Path) -> tuple[Document, bytes]:
    """:func:`load`, and the bytes it parsed (read once: host-prep installs them)."""
    path = Path(path)
    source = display_path(path)
    data = read_bytes(path, InputError, kind="a YAML file", limit=MAX_BYTES) or b""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    doc = loads(text, source)
    if doc.data is None:
        raise SpecError(
            source,
            [Problem("", "the file is empty", 1, "see examples/plc.yaml for a complete VM spec")],
        )
    if not isinstance(doc.data, Mapping):
        kind = "a list" if isinstance(doc.data, list) else "a single value"
        raise SpecError(
            source,
            [Problem("", f"the top level must be a mapping of keys, not {kind}", 1)],
        )
    return doc, data

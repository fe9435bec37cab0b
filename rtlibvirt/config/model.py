"""Typed, frozen input models and their validation, for every YAML file we read.

A model is a frozen dataclass whose fields are declared with :func:`setting`:
the field's parser, its help text and its default, in one place. That one
table drives parsing, error messages, the normalized output (:meth:`Model.dump`)
and the JSON Schema (:meth:`Model.json_schema`), in the manner of mkosi's
settings table.

Parsing reports *every* problem at once, each with the key path exactly as the
user wrote it (``cpu.pinning[2]``), so that :func:`validate_model` can name the
YAML line. Parsers raise :class:`Invalid`; nothing here exits or prints.

Standard library only, and cheap to import: every ``rtlibvirt`` command that
reads a file pays for this module, and it used to be pydantic's ~100 ms.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast, dataclass_transform

from rtlibvirt.config.document import Document, KeyPath, format_path
from rtlibvirt.errors import Problem, SpecError
from rtlibvirt.kernel import cpuset

T = TypeVar("T")
M = TypeVar("M", bound="Model")

MAX_CPU = cpuset.MAX_CPUS - 1  # the kernel's largest NR_CPUS, less one
MAX_TEXT = 255  # characters in a name-like string (a libvirt network, ...)
PATH_MAX = 4096  # bytes in a path, with its terminating NUL (linux/limits.h)
NAME_MAX = 255  # bytes in one path component

# What no string may carry into XML, a file or a log line: C0 and C1 control
# characters (newline, tab and carriage return included), line and paragraph
# separators (a line break to many readers), the bidirectional embeddings,
# overrides and isolates (they make a log line read other than it is), lone
# surrogates (not encodable) and the byte-order mark.
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufeff]"
)
_NAMED = {"\n": "a newline", "\t": "a tab", "\r": "a carriage return", "\x00": "a NUL"}

MissingHint = Callable[[KeyPath], "str | None"]


class Invalid(ValueError):
    """A value a parser rejects. The message says what is wrong and what is right."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class _InvalidType:
    """The result of parsing a value whose errors were recorded."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _InvalidType()


@dataclass
class Errors:
    """Problems found while parsing, keyed by the user's own key paths."""

    missing_hint: MissingHint | None = None
    found: list[tuple[KeyPath, str, str | None]] = field(default_factory=list)
    # path -> the model parsed there despite errors: its valid fields, INVALID for the
    # others, for the rules that tie keys together to judge what they can (never a result)
    partial: dict[KeyPath, Any] = field(default_factory=dict)

    def add(self, path: KeyPath, message: str, hint: str | None = None) -> None:
        self.found.append((path, message, hint))

    def missing(self, path: KeyPath) -> None:
        hint = self.missing_hint(path) if self.missing_hint else None
        self.add(path, "is required but missing", hint)

    def __len__(self) -> int:
        return len(self.found)


def describe(value: Any) -> str:
    """How a value reads in a message: ``the string '4'``, ``a list``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, int):
        return f"the integer {value}"
    return f"{type(value).__name__} {value!r}"


def _alternatives(values: Sequence[Any]) -> str:
    quoted = [repr(v) for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


# ---------------------------------------------------------------------------
# Parsers: one per kind of value. Each parses, describes itself as JSON Schema,
# and dumps a parsed value back to JSON that it would parse again.
# ---------------------------------------------------------------------------


class Parser(Generic[T]):
    def parse(self, value: Any, path: KeyPath, errors: Errors) -> T:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def dump(self, value: T) -> Any:
        return value


class Scalar(Parser[T]):
    """A value checked by one function that returns it normalized or raises Invalid."""

    def __init__(
        self,
        check: Callable[[Any], T],
        schema: dict[str, Any],
        dump: Callable[[T], Any] | None = None,
    ) -> None:
        self._check = check
        self._schema = schema
        self._dump = dump

    def parse(self, value: Any, path: KeyPath, errors: Errors) -> T:
        return self._check(value)

    def schema(self) -> dict[str, Any]:
        return dict(self._schema)

    def dump(self, value: T) -> Any:
        return self._dump(value) if self._dump else value


def boolean() -> Parser[bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise Invalid(f"expected true or false, got {describe(value)}")
        return value

    return Scalar(check, {"type": "boolean"})


def integer(minimum: int | None = None, maximum: int | None = None) -> Parser[int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected an integer, got {describe(value)}")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            if minimum is not None and maximum is not None:
                bounds = f"from {minimum} to {maximum}"
            elif minimum is not None:
                bounds = f"at least {minimum}"
            else:
                bounds = f"at most {maximum}"
            raise Invalid(f"{value} is out of range: must be {bounds}")
        return value

    schema: dict[str, Any] = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return Scalar(check, schema)


def choice(*values: str) -> Parser[str]:
    def check(value: Any) -> str:
        if value not in values or not isinstance(value, str):
            raise Invalid(f"must be {_alternatives(values)}, not {describe(value)}")
        return value

    return Scalar(check, {"enum": list(values)})


def control_character(value: str) -> str | None:
    """How the first control character of ``value`` reads in a message, or None if none."""
    m = _CONTROL.search(value)
    if m is None:
        return None
    char = m.group()
    name = _NAMED.get(char, "a control character")
    return f"{name} (U+{ord(char):04X}) at character {m.start() + 1}"


def short(value: str, width: int = 60) -> str:
    """``value`` quoted for a message, cut to ``width`` characters."""
    return repr(value) if len(value) <= width else repr(value[:width]) + f"... ({len(value)} chars)"


def check_text(value: Any, max_length: int = MAX_TEXT) -> str:
    """A non-empty string of at most ``max_length`` characters, without control characters."""
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {describe(value)}")
    if not value:
        raise Invalid("must not be empty")
    if len(value) > max_length:
        raise Invalid(f"{short(value)} is too long: at most {max_length} characters")
    found = control_character(value)
    if found is not None:
        raise Invalid(
            f"{short(value)} contains {found}: control characters and line breaks are not allowed"
        )
    return value


def text(max_length: int = MAX_TEXT) -> Parser[str]:
    return Scalar(
        lambda value: check_text(value, max_length),
        {"type": "string", "minLength": 1, "maxLength": max_length},
    )


def json_pattern(regex: re.Pattern[str] | str) -> str:
    """The JSON Schema form of a pattern we full-match.

    JSON Schema's patterns are not anchored, and are searched with the
    validator's own engine: "$" is the end in ECMA-262 but also "before a final
    newline" in Python's re (python-jsonschema), so "(?!\\n)" follows it, which
    means the same in both.
    """
    pattern = regex if isinstance(regex, str) else regex.pattern
    return f"^(?:{pattern})$(?!\\n)"


def matching(regex: re.Pattern[str], what: str, example: str) -> Parser[str]:
    """A string that matches all of ``regex``; the message names ``what`` with an ``example``."""

    def check(value: Any) -> str:
        string = check_text(value)
        if not regex.fullmatch(string):
            raise Invalid(f"{short(string)} is not a valid {what} (e.g. {example})")
        return string

    return Scalar(check, {"type": "string", "pattern": json_pattern(regex)})


def check_path(value: Any) -> str:
    """An absolute path that Linux can open: at most PATH_MAX - 1 bytes, components NAME_MAX."""
    string = check_text(value, PATH_MAX)
    if not string.startswith("/"):
        raise Invalid(
            f"{short(string)} is not an absolute path",
            "libvirt needs absolute paths, e.g. /var/lib/libvirt/images/plc.qcow2",
        )
    size = len(string.encode("utf-8"))
    if size >= PATH_MAX:
        raise Invalid(f"{short(string)} is {size} bytes long: a path has at most {PATH_MAX - 1}")
    for component in string.split("/"):
        if len(component.encode("utf-8")) > NAME_MAX:
            raise Invalid(
                f"{short(string)}: the component {short(component, 30)} is longer than "
                f"{NAME_MAX} bytes, which no Linux file system allows"
            )
    return string


def host_path() -> Parser[str]:
    return Scalar(
        check_path,
        {
            "type": "string",
            "pattern": json_pattern(r"/[^\x00-\x1f\x7f]*"),
            "maxLength": PATH_MAX - 1,
        },
    )


def cpu_list(value: Any) -> tuple[int, ...]:
    """A YAML list of integers, a cpulist string or one integer, in the order written."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]  # a single CPU
    if isinstance(value, str):
        try:
            cpus = cpuset.parse_cpulist(check_text(value, 4096), MAX_CPU + 1)
        except cpuset.CpuListError as exc:
            raise Invalid(str(exc)) from None
    elif isinstance(value, list | tuple):
        if len(value) > MAX_CPU + 1:
            raise Invalid(f"lists {len(value)} CPUs: there are at most {MAX_CPU + 1}")
        cpus = []
        for item in value:
            # bool is a subclass of int: true would be CPU 1
            if isinstance(item, bool) or not isinstance(item, int):
                raise Invalid(
                    f"CPU lists hold integers; {describe(item)} is not one "
                    "(write [2, 3] or the string '2-3')"
                )
            cpus.append(item)
    else:
        raise Invalid(
            "expected a list of CPU numbers or a cpulist string such as '2-5,8', "
            f"got {describe(value)}"
        )
    for cpu in cpus:
        if cpu < 0 or cpu > MAX_CPU:
            raise Invalid(f"CPU number {cpu} is out of range 0-{MAX_CPU}")
    return tuple(cpus)


_RANGE = r"[0-9]+(-[0-9]+(:[0-9]+/[0-9]+)?)?"
CPU_LIST_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": MAX_CPU}},
        {"type": "integer", "minimum": 0, "maximum": MAX_CPU},
        {
            "type": "string",
            "pattern": json_pattern(rf" *{_RANGE}( *, *{_RANGE})* *"),
            "description": "a Linux cpulist such as '2-5,8'",
        },
    ]
}


def cpus() -> Parser[tuple[int, ...]]:
    """Host CPUs or vCPU ids: ``[2, 3]``, ``'2-3'`` or ``2``; dumped as a list."""
    return Scalar(cpu_list, CPU_LIST_SCHEMA, dump=list)


class Optional(Parser["T | None"]):
    """``null`` is None; anything else goes to ``inner``."""

    def __init__(self, inner: Parser[T]) -> None:
        self.inner = inner

    def parse(self, value: Any, path: KeyPath, errors: Errors) -> T | None:
        return None if value is None else self.inner.parse(value, path, errors)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [self.inner.schema(), {"type": "null"}]}

    def dump(self, value: T | None) -> Any:
        return None if value is None else self.inner.dump(value)


def optional(inner: Parser[T]) -> Parser[T | None]:
    return Optional(inner)


class ListOf(Parser[tuple[T, ...]]):
    """A YAML list, each item parsed on its own path (``disks[1]``); a tuple."""

    def __init__(self, item: Parser[T], single: bool = False) -> None:
        self.item = item
        self.single = single  # a lone item (not in a list) is a list of one

    def parse(self, value: Any, path: KeyPath, errors: Errors) -> tuple[T, ...]:
        if self.single and not isinstance(value, list | tuple):
            return (parse_value(self.item, value, path, errors),)  # the path has no index
        if not isinstance(value, list | tuple):
            raise Invalid(f"expected a list, got {describe(value)}")
        items = []
        for index, item in enumerate(value):
            items.append(parse_value(self.item, item, (*path, index), errors))
        return tuple(items)

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "array", "items": self.item.schema()}
        if self.single:
            return {"anyOf": [schema, self.item.schema()]}
        return schema

    def dump(self, value: tuple[T, ...]) -> Any:
        return [self.item.dump(item) for item in value]


def list_of(item: Parser[T], single: bool = False) -> Parser[tuple[T, ...]]:
    return ListOf(item, single)


class MappingOf(Parser[dict[str, T]]):
    """A YAML mapping with keys checked by ``key`` and values by ``value``."""

    def __init__(self, key: Callable[[Any], str], value: Parser[T], key_schema: dict[str, Any]):
        self.key = key
        self.value = value
        self.key_schema = key_schema

    def parse(self, value: Any, path: KeyPath, errors: Errors) -> dict[str, T]:
        if not isinstance(value, Mapping):
            raise Invalid(f"expected a mapping, got {describe(value)}")
        result: dict[str, T] = {}
        for raw_key, raw_value in value.items():
            where = (*path, str(raw_key))
            try:
                key = self.key(raw_key)
            except Invalid as exc:
                errors.add(where, exc.message, exc.hint)
                continue
            result[key] = parse_value(self.value, raw_value, where, errors)
        return result

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "propertyNames": self.key_schema,
            "additionalProperties": self.value.schema(),
        }

    def dump(self, value: dict[str, T]) -> Any:
        return {k: self.value.dump(v) for k, v in value.items()}


class Nested(Parser[M]):
    """A mapping described by a Model."""

    def __init__(self, model: type[M]) -> None:
        self.model = model

    def parse(self, value: Any, path: KeyPath, errors: Errors) -> M:
        return self.model.parse(value, path, errors)

    def schema(self) -> dict[str, Any]:
        return self.model.json_schema()

    def dump(self, value: M) -> Any:
        return value.dump()


def nested(model: type[M]) -> Parser[M]:
    return Nested(model)


def parse_value(parser: Parser[T], value: Any, path: KeyPath, errors: Errors) -> T:
    """Parse one value; a rejection is recorded at ``path`` and gives INVALID."""
    before = len(errors)
    try:
        result = parser.parse(value, path, errors)
    except Invalid as exc:
        errors.add(path, exc.message, exc.hint)
        return cast(T, INVALID)
    return cast(T, INVALID) if len(errors) > before else result


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


def setting(
    parser: Parser[Any],
    help: str = "",
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """Declare a model field: its parser, help text and default (none = required)."""
    return field(
        default=default,
        default_factory=default_factory,
        metadata={"parser": parser, "help": help},
    )


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(setting,))
def model(cls: type[M]) -> type[M]:
    """Make ``cls`` a frozen, keyword-only dataclass, without generating code.

    ``@dataclass(frozen=True, kw_only=True)`` compiles six methods from source
    for every class (about 0.3 ms each class: 4 ms of every command's start for
    vm.yaml's models alone). Here dataclasses only reads the fields
    (``dataclasses.fields`` and ``replace`` work as usual); ``__init__``,
    ``__eq__``, ``__hash__``, ``__repr__`` and the frozen ``__setattr__`` are
    :class:`Model`'s own, driven by the field table. The same behaviour:
    keyword-only arguments with their defaults, equality and hash over the
    fields, FrozenInstanceError on assignment.
    """
    dataclasses.dataclass(cls, init=False, repr=False, eq=False, match_args=False, kw_only=True)
    cls._table = tuple((f.name, f.default, f.default_factory) for f in dataclasses.fields(cls))
    return cls


class Model:
    """Base of every input model. Subclasses are declared with ``@model``."""

    #: keys the input gave (the rest are defaults); for "was this set?" questions
    _given: ClassVar[str] = "_rtlibvirt_given"
    #: (name, default, default_factory) of each field, in order (made by ``model``)
    _table: ClassVar[tuple[tuple[str, Any, Any], ...]] = ()
    if TYPE_CHECKING:  # set by dataclasses in ``model``
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __init__(self, **values: Any) -> None:
        for name, default, factory in self._table:
            if name in values:
                value = values.pop(name)
            elif factory is not dataclasses.MISSING:
                value = factory()
            elif default is not dataclasses.MISSING:
                value = default
            else:
                raise TypeError(f"{type(self).__name__}() misses the keyword argument {name!r}")
            object.__setattr__(self, name, value)
        if values:
            unknown = next(iter(values))
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword {unknown!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name, _, _ in self._table)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Model)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name, _, _ in self._table)
        return f"{type(self).__qualname__}({fields})"

    @classmethod
    def settings(cls) -> Iterable[dataclasses.Field[Any]]:
        return (f for f in dataclasses.fields(cls) if "parser" in f.metadata)

    @classmethod
    def parse(cls: type[M], data: Any, path: KeyPath, errors: Errors) -> M:
        if not isinstance(data, Mapping):
            raise Invalid(f"expected a mapping, got {describe(data)}")
        known = {f.name: f for f in cls.settings()}
        before = len(errors)
        # A misspelled required key is one problem, not "unknown" and "missing" twice.
        missing = [n for n, f in known.items() if n not in data and _required(f)]
        misspelled: set[str] = set()
        for key in data:
            if key not in known:
                meant = close_match(str(key), missing)
                if meant is not None and meant not in misspelled:
                    misspelled.add(meant)
                    errors.add(
                        (*path, str(key)),
                        f"unknown key: did you mean `{meant}`? It is required and missing",
                        f"rename `{key}` to `{meant}`",
                    )
                else:
                    errors.add((*path, str(key)), "unknown key", did_you_mean(str(key), known))
        values: dict[str, Any] = {}
        for name, spec in known.items():
            if name in data:
                parser = spec.metadata["parser"]
                values[name] = parse_value(parser, data[name], (*path, name), errors)
                if values[name] is INVALID and (*path, name) in errors.partial:
                    values[name] = errors.partial[(*path, name)]
            elif _required(spec):
                values[name] = INVALID
                if name not in misspelled:
                    errors.missing((*path, name))
        if len(errors) > before:
            errors.partial[path] = cls._partial(values)
            return cast(M, INVALID)
        instance = cls(**values)
        object.__setattr__(instance, cls._given, frozenset(k for k in data if k in known))
        return instance

    @classmethod
    def _partial(cls: type[M], values: dict[str, Any]) -> M:
        """An instance for the rules to judge what they can: INVALID where the input was."""
        instance = cls.__new__(cls)
        for name, default, factory in cls._table:
            if name in values:
                value = values[name]
            elif factory is not dataclasses.MISSING:
                value = factory()
            else:
                value = default if default is not dataclasses.MISSING else INVALID
            object.__setattr__(instance, name, value)
        return instance

    @property
    def fields_set(self) -> frozenset[str]:
        """The keys that the input gave explicitly."""
        given: frozenset[str] = getattr(self, self._given, frozenset())
        return given

    def replace(self: M, **changes: Any) -> M:
        """A copy with ``changes``; what the input gave stays recorded."""
        copy = dataclasses.replace(self, **changes)
        object.__setattr__(copy, self._given, self.fields_set | frozenset(changes))
        return copy

    def dump(self) -> dict[str, Any]:
        """The model as JSON-ready data that parses back to an equal model."""
        return {f.name: f.metadata["parser"].dump(getattr(self, f.name)) for f in self.settings()}

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for f in cls.settings():
            schema = f.metadata["parser"].schema()
            if f.metadata["help"]:
                schema["description"] = f.metadata["help"]
            if f.default is not dataclasses.MISSING:
                schema["default"] = (
                    f.metadata["parser"].dump(f.default) if f.default is not None else None
                )
            elif _required(f):
                required.append(f.name)
            properties[f.name] = schema
        result: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        if cls.__doc__:
            result["description"] = cls.__doc__.strip().splitlines()[0]
        if required:
            result["required"] = required
        return result


def _required(spec: dataclasses.Field[Any]) -> bool:
    return spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING


def close_match(key: str, names: Iterable[str]) -> str | None:
    """The one of ``names`` that ``key`` most likely misspells, if any."""
    names = list(names)
    if not names:
        return None
    import difflib

    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(key: str, known: Iterable[str]) -> str:
    import difflib  # only for an unknown key: ~1 ms that valid files do not pay

    names = sorted(known)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`? Known keys here: {', '.join(names)}"
    return f"known keys here: {', '.join(names)}"


def validate_model(doc: Document, model: type[M], missing_hint: MissingHint | None = None) -> M:
    """The document as an instance of ``model``, or SpecError with every problem in it."""
    result, problems = parse_model(doc, model, missing_hint)
    if problems:
        raise SpecError(doc.source, by_line(problems))
    return result


def parse_model(
    doc: Document, model: type[M], missing_hint: MissingHint | None = None
) -> tuple[M, list[Problem]]:
    """The document as ``model`` and its problems. With problems, the model is *partial*:
    INVALID in every field whose value was wrong (INVALID itself when the document is
    not a mapping), for the rules that tie keys together to judge the rest."""
    errors = Errors(missing_hint)
    result = parse_value(nested(model), doc.data, (), errors)
    problems = [
        Problem(format_path(path), message, doc.line_of(path), hint)
        for path, message, hint in errors.found
    ]
    if problems:
        result = errors.partial.get((), INVALID)
    return result, problems


def by_line(problems: Sequence[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: p.line or 0)


def item_path(doc: Document, base: KeyPath, index: int) -> KeyPath:
    """``base[index]`` when the file wrote a list, else ``base`` (a cpulist string)."""
    node: Any = doc.data
    for key in base:
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        else:
            return base
    return (*base, index) if isinstance(node, list) else base


@dataclass
class Checker:
    """Collects the errors and warnings of the rules that tie keys together."""

    doc: Document
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def error(self, path: KeyPath, message: str, hint: str | None = None) -> None:
        self.errors.append(Problem(format_path(path), message, self.doc.line_of(path), hint))

    def warn(self, path: KeyPath, message: str, hint: str | None = None) -> None:
        self.warnings.append(Problem(format_path(path), message, self.doc.line_of(path), hint))

    def item(self, base: KeyPath, index: int) -> KeyPath:
        return item_path(self.doc, base, index)

    def raise_errors(self) -> None:
        """SpecError listing every error found, if there is one."""
        if self.errors:
            raise SpecError(self.doc.source, by_line(self.errors))

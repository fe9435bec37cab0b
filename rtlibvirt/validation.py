"""Validation shared by every YAML input (vm.yaml, host.yaml, tuning files).

A pydantic model describes the shape of a file; :func:`validate_model` checks a
loaded :class:`~rtlibvirt.yamlfile.Document` against it and turns every error
into a :class:`~rtlibvirt.errors.Problem` that names the key path (as the user
wrote it, ``cpu.pinning[2]``), the YAML line, what is wrong and, where it
helps, a hint ("did you mean ..."). Reusable value types live here too.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError

from . import cpuset
from .errors import Problem, SpecError
from .yamlfile import Document, KeyPath, format_path

M = TypeVar("M", bound=BaseModel)
MAX_CPU = 8191  # the kernel's largest NR_CPUS
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def custom_error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def describe(value: Any) -> str:
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
    return f"{type(value).__name__} {value!r}"


def cpu_list(value: Any) -> tuple[int, ...]:
    """A YAML list of integers, a cpulist string or one integer, in the order written."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]  # a single CPU
    if isinstance(value, str):
        try:
            cpus = cpuset.parse_cpulist(value)
        except cpuset.CpuListError as exc:
            raise custom_error("cpulist", str(exc)) from None
    elif isinstance(value, list | tuple):
        cpus = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int):
                raise custom_error(
                    "cpulist",
                    f"CPU lists hold integers; {describe(item)} is not one "
                    "(write [2, 3] or the string '2-3')",
                )
            cpus.append(item)
    else:
        raise custom_error(
            "cpulist",
            f"expected a list of CPU numbers or a cpulist string such as '2-5,8', "
            f"got {describe(value)}",
        )
    for cpu in cpus:
        if cpu < 0 or cpu > MAX_CPU:
            raise custom_error("cpulist", f"CPU number {cpu} is out of range 0-{MAX_CPU}")
    return tuple(cpus)


_CPU_LIST_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": MAX_CPU}},
        {"type": "integer", "minimum": 0, "maximum": MAX_CPU},
        {
            "type": "string",
            "pattern": r"^\s*\d+(-\d+(:\d+/\d+)?)?(\s*,\s*\d+(-\d+(:\d+/\d+)?)?)*\s*$",
            "description": "a Linux cpulist such as '2-5,8'",
        },
    ]
}

CpuList = Annotated[tuple[int, ...], BeforeValidator(cpu_list), WithJsonSchema(_CPU_LIST_SCHEMA)]


def check_text(value: Any) -> str:
    if not isinstance(value, str):
        raise custom_error("string_type", f"expected a string, got {describe(value)}")
    if not value:
        raise custom_error("string_empty", "must not be empty")
    if _CONTROL.search(value):
        raise custom_error("string_control", "must not contain control characters")
    return value


Text = Annotated[
    str, BeforeValidator(check_text), WithJsonSchema({"type": "string", "minLength": 1})
]


class Model(BaseModel):
    """Base of every input model: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def null_to(schema: dict[str, Any], replacement: dict[str, Any]) -> None:
    """In a generated ``anyOf [X, null]`` schema, replace the null branch."""
    schema["anyOf"] = [
        replacement if branch == {"type": "null"} else branch for branch in schema["anyOf"]
    ]


def data_path(loc: Sequence[str | int], data: Any) -> KeyPath:
    """Map a pydantic error location onto keys that exist in the input data.

    pydantic inserts validator names and union tags into ``loc``; the user only
    knows the keys of their file. The last element is kept even when it is not
    in the data (a missing or unknown key).
    """
    path: list[str | int] = []
    node = data
    for i, key in enumerate(loc):
        found, child = _child(node, key)
        if found:
            path.append(key)
            node = child
        elif i == len(loc) - 1 and (isinstance(node, Mapping) or isinstance(key, int)):
            path.append(key)
    return tuple(path)


def _child(node: Any, key: str | int) -> tuple[bool, Any]:
    """``(True, node[key])`` when ``key`` is a key or index of ``node``."""
    if isinstance(node, Mapping) and isinstance(key, str) and key in node:
        return True, node[key]
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return True, node[key]
    return False, None


def model_at(model: type[BaseModel], path: KeyPath) -> type[BaseModel] | None:
    """The model class that describes the mapping at ``path`` (list indices skipped)."""
    current: type[BaseModel] | None = model
    for key in path:
        if current is None:
            return None
        if isinstance(key, int):
            continue
        field = current.model_fields.get(key)
        if field is None:
            return None
        current = _first_model(field.annotation)
    return current


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None or get_args(annotation):
        for arg in get_args(annotation):
            found = _first_model(arg)
            if found is not None:
                return found
    return None


_TYPE_NAMES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "tuple_type": "a list",
    "list_type": "a list",
}


MissingHint = Callable[[KeyPath], "str | None"]


def shape_problems(
    exc: ValidationError,
    doc: Document,
    model: type[BaseModel],
    missing_hint: MissingHint | None = None,
) -> list[Problem]:
    """Every pydantic error as a Problem with the user's key path and line."""
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False):
        path = data_path(err["loc"], doc.data)
        kind = err["type"]
        hint = None
        if kind == "missing":
            message = "is required but missing"
            hint = missing_hint(path) if missing_hint else None
        elif kind == "extra_forbidden":
            message = "unknown key"
            hint = did_you_mean(model, path)
        elif kind in _TYPE_NAMES:
            message = f"expected {_TYPE_NAMES[kind]}, got {describe(err['input'])}"
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            message = f"must be {expected}, not {describe(err['input'])}"
        elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            message = f"{err['input']!r} is out of range: {err['msg'].lower()}"
            message = message.replace("input should be", "must be")
        else:
            message = err["msg"] or kind
            if message[:1].isupper() and not message[1:2].isupper():  # keep "CPU", "PCI"
                message = message[0].lower() + message[1:]
        key = (format_path(path), message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(format_path(path), message, doc.line_of(path), hint))
    return problems


def did_you_mean(model: type[BaseModel], path: KeyPath) -> str | None:
    parent = model_at(model, path[:-1])
    if parent is None or not path or not isinstance(path[-1], str):
        return None
    known = sorted(parent.model_fields)
    close = difflib.get_close_matches(path[-1], known, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`? Known keys here: {', '.join(known)}"
    return f"known keys here: {', '.join(known)}"


def by_line(problems: Sequence[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: p.line or 0)


def validate_model(doc: Document, model: type[M], missing_hint: MissingHint | None = None) -> M:
    """The document as an instance of ``model``, or SpecError with every shape problem."""
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise SpecError(
            doc.source, by_line(shape_problems(exc, doc, model, missing_hint))
        ) from None


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


def item_path(doc: Document, base: KeyPath, index: int) -> KeyPath:
    """``base[index]`` when the file wrote a list, else ``base`` (a cpulist string)."""
    node: Any = doc.data
    for key in base:
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        else:
            return base
    return (*base, index) if isinstance(node, list) else base

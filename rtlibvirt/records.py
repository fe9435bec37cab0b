"""Dataclasses without their generated code: :func:`record` and :func:`frozen_record`.

``@dataclass`` compiles its methods from source for every class at import
(``__init__``, ``__repr__``, ``__eq__``; for a frozen class also ``__hash__``,
``__setattr__`` and ``__delattr__``): 0.2 ms a class, 0.35 ms a frozen one.
``check`` and ``define`` import a dozen of them (findings, checks, the host
model, the define plan) before they do anything. Here dataclasses only reads
the fields, so ``dataclasses.fields``, ``replace`` and ``is_dataclass`` work as
usual, and the methods are shared ones driven by the field table, with the
same behaviour as the generated ones: positional or keyword arguments with
their defaults and default factories (``__post_init__`` called), equality
over the compared fields (only with the same class), ``repr`` of the shown
fields; a frozen record hashes its fields and raises FrozenInstanceError on
assignment, a mutable one is unhashable.

Not supported (a TypeError at the class): ``field(init=False)``, keyword-only
fields, ``InitVar`` and ``ClassVar`` annotations; use ``@dataclass`` for those.
"""

from __future__ import annotations

import dataclasses
import reprlib
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")
_MISSING = dataclasses.MISSING


def _build(cls: type[T], frozen: bool) -> type[T]:
    dataclasses.dataclass(cls, init=False, repr=False, eq=False)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # it is one now
    for f in fields:
        if not f.init or f.kw_only:
            raise TypeError(f"{cls.__qualname__}.{f.name}: @record has no init=False or kw_only")
    if getattr(cls, "__dataclass_fields__", {}).keys() != {f.name for f in fields}:
        raise TypeError(f"{cls.__qualname__}: @record has no InitVar or ClassVar fields")
    table = tuple((f.name, f.default, f.default_factory) for f in fields)
    count = len(table)
    compared = tuple(f.name for f in fields if f.compare)
    shown = tuple(f.name for f in fields if f.repr)
    hashed = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))
    names = frozenset(name for name, _, _ in table)
    post_init = getattr(cls, "__post_init__", None)
    setter = object.__setattr__ if frozen else setattr
    qualname = cls.__qualname__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > count:
            raise TypeError(
                f"{qualname}() takes {count} positional arguments but {len(args)} were given"
            )
        for index, (name, default, factory) in enumerate(table):
            if index < len(args):
                if name in kwargs:
                    raise TypeError(f"{qualname}() got multiple values for argument {name!r}")
                value = args[index]
            elif name in kwargs:
                value = kwargs.pop(name)
            elif factory is not _MISSING:
                value = factory()
            elif default is not _MISSING:
                value = default
            else:
                raise TypeError(f"{qualname}() missing required argument: {name!r}")
            setter(self, name, value)
        if kwargs:
            raise TypeError(
                f"{qualname}() got an unexpected keyword argument {next(iter(kwargs))!r}"
            )
        if post_init is not None:
            post_init(self)

    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{type(self).__qualname__}({values})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        mine = tuple(getattr(self, name) for name in compared)
        return mine == tuple(getattr(other, name) for name in compared)

    methods: dict[str, Any] = {"__init__": __init__, "__repr__": __repr__, "__eq__": __eq__}
    if frozen:

        def __hash__(self: Any) -> int:
            return hash(tuple(getattr(self, name) for name in hashed))

        def __setattr__(self: Any, name: str, value: Any) -> None:
            if type(self) is cls or name in names:
                raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
            super(cls, self).__setattr__(name, value)

        def __delattr__(self: Any, name: str) -> None:
            if type(self) is cls or name in names:
                raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
            super(cls, self).__delattr__(name)

        methods.update(__hash__=__hash__, __setattr__=__setattr__, __delattr__=__delattr__)
    elif "__hash__" not in cls.__dict__:
        methods["__hash__"] = None  # eq without frozen: unhashable, as a dataclass
    for name, method in methods.items():
        if method is not None:
            method.__qualname__ = f"{qualname}.{name}"
        setattr(cls, name, method)
    return cls


@dataclass_transform(field_specifiers=(dataclasses.field,))
def record(cls: type[T]) -> type[T]:
    """``@dataclass``, without its generated code."""
    return _build(cls, frozen=False)


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def frozen_record(cls: type[T]) -> type[T]:
    """``@dataclass(frozen=True)``, without its generated code."""
    return _build(cls, frozen=True)

"""rtlibvirt.records: the same classes as @dataclass makes, without its generated code."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest

from rtlibvirt.records import frozen_record, record


def pair(frozen: bool) -> tuple[Any, Any]:
    """The same class twice: by @dataclass and by @record / @frozen_record."""

    def body() -> type:
        class Point:
            """A point."""

            x: int
            y: int = 0
            tags: list[str] = field(default_factory=list)
            note: str = field(default="", compare=False, repr=False)

        return Point

    made = dataclass(frozen=frozen)(body())
    ours = (frozen_record if frozen else record)(body())
    return made, ours


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((1,), {}),
    ((1, 2), {}),
    ((1, 2, ("a",), "n"), {}),
    ((), {"x": 1, "y": 2}),
    ((1,), {"tags": ("b",), "note": "m"}),
]
BAD_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),  # x missing
    ((1, 2, [], "", 5), {}),  # too many
    ((1,), {"x": 2}),  # x twice
    ((1,), {"z": 2}),  # unknown
]


@pytest.mark.parametrize("frozen", [False, True])
def test_records_behave_as_dataclasses(frozen: bool) -> None:
    made, ours = pair(frozen)
    assert dataclasses.is_dataclass(ours)
    assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(made)]
    assert ours.__match_args__ == made.__match_args__
    for args, kwargs in CALLS:
        a, b = made(*args, **kwargs), ours(*args, **kwargs)
        assert [getattr(b, f) for f in ("x", "y", "tags", "note")] == [
            getattr(a, f) for f in ("x", "y", "tags", "note")
        ]
        assert repr(b).replace("Point", "P") == repr(a).replace("Point", "P")
        assert b == ours(*args, **kwargs) and b != ours(99)
        assert b == dataclasses.replace(b, note="other")  # note is not compared
        assert (b == a) is False  # another class: NotImplemented both ways
        assert dataclasses.replace(b, y=7).y == 7
        try:
            expected = hash(a)  # frozen: over x, y and tags; a list of tags is unhashable
        except TypeError:
            with pytest.raises(TypeError):
                hash(b)
        else:
            assert frozen and hash(b) == expected
    for args, kwargs in BAD_CALLS:
        with pytest.raises(TypeError):
            made(*args, **kwargs)
        with pytest.raises(TypeError):
            ours(*args, **kwargs)
    assert ours(1).tags is not ours(1).tags  # a fresh default each time


def test_a_frozen_record_cannot_be_changed_and_a_mutable_one_can() -> None:
    _, frozen = pair(True)
    point = frozen(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        del point.y
    _, mutable = pair(False)
    changing = mutable(1)
    changing.x = 3
    assert changing == mutable(3)


def test_post_init_runs_and_what_a_record_cannot_do_is_refused() -> None:
    @record
    class Counted:
        """Counted."""

        n: int
        double: int = 0

        def __post_init__(self) -> None:
            self.double = 2 * self.n

    assert Counted(3).double == 6

    class KwOnly:
        """Keyword-only."""

        a: int = field(kw_only=True)

    with pytest.raises(TypeError):
        record(KwOnly)

    class NoInit:
        """Not in __init__."""

        a: int = field(default=0, init=False)

    with pytest.raises(TypeError):
        frozen_record(NoInit)


def test_the_converted_classes_pickle_compare_and_replace_as_before() -> None:
    from rtlibvirt.fit.findings import Finding

    finding = Finding("error", "x-code", "what", fix="fix it")
    assert finding == Finding("error", "x-code", "what", "fix it")
    assert pickle.loads(pickle.dumps(finding)) == finding
    assert repr(finding) == "Finding(severity='error', code='x-code', what='what', fix='fix it')"
    assert dataclasses.replace(finding, fix=None).fix is None
    assert len({finding, Finding("error", "x-code", "what", "fix it")}) == 1

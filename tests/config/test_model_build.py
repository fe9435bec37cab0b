"""Models built by ``config.model.model`` behave as frozen keyword-only dataclasses.

``model`` builds them without dataclasses' generated code (which cost every
command ~4 ms at start); this pins the behaviour that code used to give.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from rtlibvirt.config.model import Model, boolean, integer, model, optional, setting
from rtlibvirt.config.vm import Cpu, Realtime, Topology, VmSpec, validate_data


@model
class Sample(Model):
    """A sample model."""

    size: int = setting(integer(1), "a size")
    flag: bool = setting(boolean(), default=False)
    limit: int | None = setting(optional(integer(0)), default=None)
    items: tuple[int, ...] = setting(integer(), default_factory=tuple)


def test_keyword_only_with_defaults() -> None:
    sample = Sample(size=3)
    assert (sample.size, sample.flag, sample.limit, sample.items) == (3, False, None, ())
    with pytest.raises(TypeError, match="misses the keyword argument 'size'"):
        Sample()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword 'colour'"):
        Sample(size=1, colour=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Sample(1)  # type: ignore[call-arg]


def test_frozen() -> None:
    sample = Sample(size=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.size = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del sample.size


def test_equality_hash_and_repr_over_the_fields() -> None:
    a, b, c = Sample(size=3), Sample(size=3), Sample(size=3, flag=True)
    assert a == b and hash(a) == hash(b) and a != c
    assert a != Realtime() and a.__eq__(object()) is NotImplemented
    assert repr(c) == "Sample(size=3, flag=True, limit=None, items=())"
    assert {a, b, c} == {a, c}


def test_dataclass_functions_still_work() -> None:
    kind: object = Sample
    assert dataclasses.is_dataclass(kind)
    assert [f.name for f in dataclasses.fields(Sample)] == ["size", "flag", "limit", "items"]
    assert [f.name for f in Sample.settings()] == ["size", "flag", "limit", "items"]
    changed = dataclasses.replace(Sample(size=3), flag=True)
    assert changed == Sample(size=3, flag=True)
    assert Sample.json_schema()["required"] == ["size"]


def test_copies_and_pickles() -> None:
    spec = validate_data(
        {"name": "a", "memory": "1GiB", "vcpus": 2, "cpu": {"pinning": [1, 2], "emulator": 0}}
    )
    assert copy.deepcopy(spec) == spec
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert spec.fields_set == {"name", "memory", "vcpus", "cpu"}
    assert spec.replace(vcpus=3).fields_set == {"name", "memory", "vcpus", "cpu"}


def test_the_vm_models() -> None:
    assert Topology(cores=2) == Topology(sockets=1, cores=2, threads=1)
    cpu = Cpu(pinning=(1,), emulator=(0,))
    assert cpu.realtime == Realtime() and cpu.features == {}
    assert cpu.features is not Cpu(pinning=(1,), emulator=(0,)).features  # default_factory
    assert isinstance(VmSpec.json_schema()["properties"]["cpu"], dict)

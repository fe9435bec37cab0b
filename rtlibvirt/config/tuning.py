"""The ``TUNING.yaml`` model of ``rtlibvirt tune``: the real-time sections of a vm.yaml.

``cpu``, ``memory_backing``, ``numa`` and ``isolation``, validated with the
same rules and messages as in a vm.yaml (``domain.edit.spec_for`` then checks
them against the domain's own vCPU count and memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rtlibvirt.config.document import Document, KeyPath
from rtlibvirt.config.loader import load
from rtlibvirt.config.model import Model, model, nested, setting, validate_model
from rtlibvirt.config.vm import Cpu, Isolation, MemoryBacking, Numa
from rtlibvirt.errors import Problem, SpecError


@model
class Tuning(Model):
    """The contents of TUNING.yaml: the real-time sections of a vm.yaml."""

    cpu: Cpu = setting(nested(Cpu), "vCPU placement, scheduling and model")
    numa: Numa = setting(nested(Numa), "host NUMA placement", default_factory=Numa)
    memory_backing: MemoryBacking = setting(
        nested(MemoryBacking), "how guest RAM is backed", default_factory=MemoryBacking
    )
    isolation: Isolation = setting(
        nested(Isolation), "what the hook isolates while the VM runs", default_factory=Isolation
    )


def _missing_hint(path: KeyPath) -> str | None:
    hints: dict[KeyPath, str] = {
        ("cpu",): "add a `cpu:` section with `pinning` and `emulator` (`auto` for both works)",
        ("cpu", "pinning"): "list the host CPU of each of the domain's vCPUs, or write `auto`",
        ("cpu", "emulator"): "name housekeeping host CPUs, e.g. `emulator: 0-1`, or `auto`",
    }
    return hints.get(path)


@dataclass(frozen=True)
class Loaded:
    doc: Document
    tuning: Tuning


def load_tuning(path: str | Path) -> Loaded:
    """Read TUNING.yaml and check its shape (every problem at once)."""
    doc = load(path)
    tuning = validate_model(doc, Tuning, _missing_hint)
    if "iothreads" in tuning.cpu.fields_set:
        raise SpecError(
            doc.source,
            [
                Problem(
                    "cpu.iothreads",
                    "tune keeps the domain's own I/O threads",
                    doc.line_of(("cpu", "iothreads")),
                    "remove `cpu.iothreads`; they are pinned to the emulator's CPUs",
                )
            ],
        )
    return Loaded(doc, tuning)

"""The ``TUNING.yaml`` model of ``rtlibvirt tune``: the real-time sections of a vm.yaml.

``cpu``, ``memory_backing``, ``numa`` and ``isolation``, validated with the
same rules and messages as in a vm.yaml; :func:`spec_for` then completes them
with what the domain itself says (its name, vCPU count, memory, machine,
firmware and PCI devices) and checks the whole as a vm.yaml.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtlibvirt.config import units
from rtlibvirt.config.document import Document, KeyPath
from rtlibvirt.config.loader import load
from rtlibvirt.config.model import Model, model, setting, validate_model
from rtlibvirt.config.vm import (
    NAME_RE,
    Cpu,
    Isolation,
    MemoryBacking,
    Numa,
    VmSpec,
    validate_document,
)
from rtlibvirt.errors import InputError, Problem, SpecError

if TYPE_CHECKING:
    from rtlibvirt.domain.facts import DomainFacts


# vm.yaml keys of these sections that TUNING.yaml refuses, and why.
NOT_IN_TUNING = {
    "cpu.iothreads": (
        "tune keeps the domain's own I/O threads",
        "remove `cpu.iothreads`; they are pinned to the emulator's CPUs",
    ),
}


def _as_in_vm_yaml(name: str) -> Any:
    """VmSpec's setting ``name`` again: the same parser, help text and default."""
    (vm_field,) = [f for f in dataclasses.fields(VmSpec) if f.name == name]
    return setting(
        vm_field.metadata["parser"],
        vm_field.metadata["help"],
        default=vm_field.default,
        default_factory=vm_field.default_factory,
    )


@model
class Tuning(Model):
    """The contents of TUNING.yaml: the real-time sections of a vm.yaml."""

    cpu: Cpu = _as_in_vm_yaml("cpu")
    numa: Numa = _as_in_vm_yaml("numa")
    memory_backing: MemoryBacking = _as_in_vm_yaml("memory_backing")
    isolation: Isolation = _as_in_vm_yaml("isolation")


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
    refused = []
    for key, (why, fix) in NOT_IN_TUNING.items():
        section, name = key.split(".")
        if name in getattr(tuning, section).fields_set:
            refused.append(Problem(key, why, doc.line_of((section, name)), fix))
    if refused:
        raise SpecError(doc.source, refused)
    return Loaded(doc, tuning)


def machine_of(dom: DomainFacts) -> str:
    """vm.yaml's ``machine`` for the domain's machine type: ``pc`` (i440fx) or ``q35``."""
    machine = dom.machine
    return (
        "pc" if machine == "pc" or (machine.startswith("pc-") and "q35" not in machine) else "q35"
    )


def spec_for(loaded: Loaded, dom: DomainFacts) -> tuple[VmSpec, list[Problem]]:
    """The VmSpec of the tuned domain, validated with vm.yaml's rules.

    Raises SpecError naming TUNING.yaml's keys; the domain supplies the name,
    the vCPU count, the memory, the machine, the firmware and the PCI devices.
    """
    doc = loaded.doc
    notes: list[Problem] = []
    backing = doc.data.get("memory_backing")
    hugepages = backing.get("hugepages", "1G") if isinstance(backing, dict) else "1G"
    memory_mib = -(-dom.memory_kib // units.MIB)  # whole MiB, rounded up
    if dom.memory_kib % units.MIB:
        if hugepages != "none":
            raise InputError(
                f"the domain {dom.name!r} has {dom.memory_kib} KiB of memory, not a whole "
                f"number of MiB, so not a whole number of {hugepages} hugepages; nothing was "
                "changed",
                "set its memory to a multiple of the page size first (virsh setmaxmem, or "
                "virt-manager), or tune with `memory_backing.hugepages: none`",
            )
        notes.append(
            Problem(
                "(the domain's <memory>)",
                f"{dom.memory_kib} KiB is not a whole number of MiB: counted as {memory_mib} MiB "
                "(the locked-memory limit is set from that)",
            )
        )
    if not NAME_RE.fullmatch(dom.name):
        raise InputError(
            f"the domain's name {dom.name!r} is not one rtlibvirt can use (1-64 characters of "
            "A-Z a-z 0-9 _ . + -, starting with a letter or digit): the hook names files and "
            f"log lines after it; nothing was changed",
            f"rename the domain first: virsh domrename {shlex.quote(dom.name)} NEW-NAME",
        )
    data: dict[str, Any] = {
        "name": dom.name,
        "memory": memory_mib,
        "vcpus": dom.vcpus,
        **doc.data,
        "machine": machine_of(dom),
        "firmware": dom.firmware,
        "devices": {
            "hostdevs": [{"address": d.address, "managed": d.managed} for d in dom.hostdevs]
        },
    }
    merged = Document(source=doc.source, data=data, lines=doc.lines)
    try:
        loaded_spec = validate_document(merged)
    except SpecError as exc:
        raise SpecError(exc.source, [_about_domain(p, dom) for p in exc.problems]) from None
    return loaded_spec.spec, notes + [_about_domain(p, dom) for p in loaded_spec.warnings]


def _about_domain(problem: Problem, dom: DomainFacts) -> Problem:
    """Say where values that TUNING.yaml does not hold come from."""
    message = problem.message.replace(
        f"but vcpus is {dom.vcpus}", f"but the domain has {dom.vcpus} vCPUs"
    ).replace("below `vcpus`", "below the domain's vCPU count")
    path = problem.path
    if path in ("memory", "vcpus", "name"):
        path = f"(the domain's <{'vcpu' if path == 'vcpus' else path}>)"
    return Problem(path, message, problem.line, problem.hint)

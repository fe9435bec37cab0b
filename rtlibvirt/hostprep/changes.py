"""The declarative changes every host-prep module plans, and the plan that holds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rtlibvirt.config.host import Resolved
from rtlibvirt.hostprep.cmdline import CmdlinePlan
from rtlibvirt.hostprep.effects import FileState
from rtlibvirt.hostprep.facts import HostFacts

HEADER = (
    "# Written by `rtlibvirt host-prep apply` from {source}.\n"
    "# `rtlibvirt host-prep revert` removes it; edit host.yaml and apply again to change it.\n"
)


def header(comment: str = "#") -> str:
    return HEADER.format(source="host.yaml").replace("# ", f"{comment} ")


@dataclass(frozen=True)
class FileChange:
    """``path`` should be ``want``; after a change, run ``then`` (live host only)."""

    path: str
    want: FileState
    why: str
    topic: str
    reboot: bool = False
    then: tuple[tuple[str, ...], ...] = ()
    # a file of the user's that host-prep edits (a tree's boot entries): revert puts the
    # original back only if nobody changed the file since
    guarded: bool = False


@dataclass(frozen=True)
class RuntimeChange:
    """A kernel value (``/proc/sys``, ``/sys``) to set now."""

    path: str
    value: str
    label: str
    why: str
    writable: bool = True


@dataclass(frozen=True)
class MountChange:
    path: str
    fstype: str
    why: str


@dataclass(frozen=True)
class GrubbyChange:
    """Kernel arguments given to every boot entry by grubby (Fedora, RHEL and kin)."""

    args: tuple[str, ...]


@dataclass
class Plan:
    host: Resolved
    facts: HostFacts
    cmdline: CmdlinePlan
    runtime_only: bool
    bootloader: str = ""  # a sentence: how the kernel arguments reach the boot loader
    cmdline_problem: str | None = None  # why the kernel arguments cannot be applied here
    files: list[FileChange] = field(default_factory=list)
    grubby: GrubbyChange | None = None
    runtime: list[RuntimeChange] = field(default_factory=list)
    mounts: list[MountChange] = field(default_factory=list)
    stop_services: list[str] = field(default_factory=list)
    # what /etc/systemd/system held before host-prep changed it (from the journal)
    originals: dict[str, FileState] = field(default_factory=dict)
    unit_run: Any = None  # systemd.DryRun of enable/disable/mask, shared by two modules
    notes: list[tuple[str, str]] = field(default_factory=list)  # (topic, text)

    def note(self, topic: str, text: str) -> None:
        self.notes.append((topic, text))

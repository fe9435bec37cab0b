"""host-prep as a library: what ``rtlibvirt host-prep`` and the Ansible module share.

:func:`prepare` reads the facts, validates host.yaml (a file, or a mapping
with the same keys) and builds the plan: nothing is changed. :func:`run_plan`,
:func:`run_apply`, :func:`run_verify` and :func:`run_revert` then return
results whose ``to_json()`` is the JSON form of ``host-prep ... --json``
(see :mod:`rtlibvirt.hostprep.report`). No printing here.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtlibvirt.config.document import Document
from rtlibvirt.errors import HostError, InputError, Problem
from rtlibvirt.hostprep.changes import Plan
from rtlibvirt.hostprep.effects import Effects
from rtlibvirt.hostprep.journal import Journal
from rtlibvirt.kernel.fs import HostFS

MAX_SPEC_BYTES = 64 * 1024  # a host.yaml given as a mapping, once dumped


@dataclass
class Prepared:
    """A validated host.yaml, the plan for this host, and how changes would be made."""

    plan: Plan
    effects: Effects
    journal: Journal
    warnings: tuple[Problem, ...]
    source: str

    @property
    def live(self) -> bool:
        return self.effects.fs.is_live


def is_live(root: Path) -> bool:
    return root.resolve() == Path("/")


# Where a tree's rtlibvirt usually is (pip, a distribution package, a venv in /opt).
TREE_PROGRAMS = ("/usr/local/bin/rtlibvirt", "/usr/bin/rtlibvirt", "/opt/rtlibvirt/bin/rtlibvirt")


def program(live: bool, fs: HostFS | None = None) -> tuple[str, str]:
    """The rtlibvirt that rtlibvirt-host.service runs at boot, and how it was found.

    On the live host: the one running now (``sys.argv[0]``), else the one
    beside this Python (a virtual environment), else the one on PATH. For a
    tree: the first of those paths, then :data:`TREE_PROGRAMS`, that is an
    executable file in the tree; else the default path, said to be missing.
    """
    from rtlibvirt.hostprep.plan import DEFAULT_PROGRAM

    argv0 = sys.argv[0] if sys.argv else ""
    mine: list[tuple[str, str]] = []
    if os.path.basename(argv0) == "rtlibvirt" and os.path.exists(argv0):
        mine.append((os.path.abspath(argv0), "the rtlibvirt running this command"))
    beside = os.path.join(os.path.dirname(sys.executable), "rtlibvirt")
    if os.access(beside, os.X_OK):
        mine.append((beside, f"the rtlibvirt beside this Python ({sys.executable})"))
    found = shutil.which("rtlibvirt")
    if found:
        mine.append((os.path.abspath(found), "the rtlibvirt on PATH"))
    if live:
        if mine:
            return mine[0]
        return DEFAULT_PROGRAM, "no rtlibvirt found on this host (not on PATH): install it there"
    assert fs is not None
    for path, _ in [*mine, *((p, "") for p in TREE_PROGRAMS)]:
        try:
            if fs.path(path).is_file() and os.access(fs.path(path), os.X_OK):
                return path, f"found in the tree at {path}"
        except OSError:
            continue
    looked = ", ".join(dict.fromkeys([p for p, _ in mine] + list(TREE_PROGRAMS)))
    return (
        DEFAULT_PROGRAM,
        f"no rtlibvirt in the tree (looked for {looked}): "
        f"install it at {DEFAULT_PROGRAM} in the tree before it boots, or the unit fails",
    )


def spec_text(data: Mapping[str, Any]) -> bytes:
    """A host.yaml given as a mapping, written out as the file the boot-time unit reads.

    JSON is YAML 1.2, so the file loads as host.yaml; keys sorted so that the
    same mapping always gives the same bytes (and a second apply changes nothing).
    """
    try:
        text = json.dumps(dict(data), indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"the host spec cannot be written as host.yaml: {exc}",
            "give plain values: strings, numbers, booleans, lists and mappings",
        ) from None
    out = ("# host.yaml, given as a mapping (rtlibvirt host-prep)\n" + text + "\n").encode()
    if len(out) > MAX_SPEC_BYTES:
        raise InputError(f"the host spec is {len(out)} bytes; at most {MAX_SPEC_BYTES} are read")
    return out


def mapping_document(data: Any, source: str, what: str) -> tuple[Document, bytes]:
    """A spec given as a mapping (Ansible's): bounded, plain data, as a Document, and
    the bytes it is written as (:func:`spec_text`)."""
    if not isinstance(data, Mapping):
        raise InputError(f"the {what} must be a mapping, got {type(data).__name__}")
    text = spec_text(data)
    return Document(source=source, data=json.loads(text.split(b"\n", 1)[1])), text


def prepare(
    root: Path,
    host_file: Path | None = None,
    *,
    data: Mapping[str, Any] | None = None,
    source: str = "host spec",
    runtime_only: bool = False,
    need_bootloader: bool = True,
) -> Prepared:
    """Facts, validated spec (``host_file`` or ``data``), plan, effects, journal.

    Nothing is changed. SpecError (exit 2) lists every problem of the spec.
    """
    from rtlibvirt.config.host import load_host_spec, resolve
    from rtlibvirt.hostprep.facts import gather
    from rtlibvirt.hostprep.plan import build_plan

    if (host_file is None) == (data is None):
        raise InputError("give host.yaml as a file or as a mapping, not both or neither")
    if not root.is_dir():
        raise InputError(f"{root}: not a directory", "--root names the tree to prepare")
    fs = HostFS(root)
    live = is_live(root)
    facts = gather(fs)
    if host_file is not None:
        host = load_host_spec(host_file, facts)
    else:
        assert data is not None
        doc, text = mapping_document(data, source, "host spec")
        host = resolve(doc, facts, text)
    path, how = program(live, fs)
    plan = build_plan(
        host,
        facts,
        runtime_only=runtime_only,
        program=path,
        need_bootloader=need_bootloader,
    )
    if not runtime_only:
        plan.note("systemd", f"rtlibvirt-host.service runs {path}: {how}")
    effects = Effects(fs, runtime=live, commands=live)
    journal = Journal(effects)
    _same_profile(journal, guest=False)
    return Prepared(plan, effects, journal, tuple(host.warnings), host.source)


def prepare_guest(
    root: Path,
    vm_file: Path | None = None,
    *,
    data: Mapping[str, Any] | None = None,
    source: str = "vm spec",
    runtime_only: bool = False,
    need_bootloader: bool = True,
) -> Prepared:
    """guest-prep: the same engine, with the guest profile derived from a vm.yaml
    (``vm_file``, or ``data``: a mapping with its keys, as the Ansible module gives it).

    Nothing is changed. SpecError (exit 2) lists every problem of the spec;
    ``profiles.guest.NothingToDo`` when it has no real-time vCPUs.
    """
    from rtlibvirt.config.loader import load
    from rtlibvirt.config.vm import validate_document
    from rtlibvirt.hostprep.facts import gather
    from rtlibvirt.hostprep.plan import build_plan
    from rtlibvirt.hostprep.profiles import guest

    if (vm_file is None) == (data is None):
        raise InputError("give the VM spec as a file or as a mapping, not both or neither")
    if not root.is_dir():
        raise InputError(f"{root}: not a directory", "--root names the tree to prepare")
    if vm_file is not None:
        doc = load(vm_file)
    else:
        assert data is not None
        doc = mapping_document(data, source, "VM spec")[0]
    loaded = validate_document(doc)
    fs = HostFS(root)
    facts = gather(fs)
    host = guest.resolve(doc, loaded, facts)
    plan = build_plan(
        host, facts, runtime_only=runtime_only, program="", need_bootloader=need_bootloader
    )
    guest.finish(plan)
    effects = Effects(fs, runtime=is_live(root), commands=is_live(root))
    journal = Journal(effects)
    _same_profile(journal, guest=True)
    return Prepared(plan, effects, journal, tuple(host.warnings), host.source)


def _same_profile(journal: Journal, *, guest: bool) -> None:
    """HostError when the journal holds the other command's changes.

    host-prep and guest-prep share one journal (a machine is a host or a guest):
    applying one over the other would put the other's files back as no longer
    planned. Each profile has a file only it writes; finding the other's, refuse.
    """
    from rtlibvirt.hostprep import systemd
    from rtlibvirt.hostprep.profiles.guest import UNIT_PATH

    theirs, mine, other = (
        (systemd.HOST_YAML, "guest-prep", "host-prep")
        if guest
        else (UNIT_PATH, "host-prep", "guest-prep")
    )
    if journal.file_entry(theirs) is not None:
        raise HostError(
            f"this machine's host-prep journal holds {other}'s changes ({theirs}): "
            f"{mine} would undo them",
            f"undo them first with `rtlibvirt {other} revert`, or keep using {other}",
        )


def guest_cloud_init(
    vm_file: Path, root: Path | None = None, distro: str = "debian"
) -> tuple[str, Prepared]:
    """guest-prep's plan as ``#cloud-config`` user-data (and the Prepared it came from).

    On ``root`` (an image's tree), or else on the smallest tree of ``distro``
    (see :func:`rtlibvirt.hostprep.cloudinit.skeleton`). Changes nothing.
    """
    import tempfile

    from rtlibvirt.config.vm import load_spec
    from rtlibvirt.hostprep import cloudinit
    from rtlibvirt.hostprep.plan import preview

    with tempfile.TemporaryDirectory(prefix="rtlibvirt-cloud-init-") as scratch:
        if root is None:
            vm = load_spec(vm_file).spec
            units = [*vm.guest.disable_services, *vm.guest.mask_services]
            cloudinit.skeleton(Path(scratch), distro, vm.vcpus, units)
        prepared = prepare_guest(root or Path(scratch), vm_file)
        pv = preview(prepared.plan, prepared.effects, prepared.journal)
        return cloudinit.user_data(prepared.plan, pv, prepared.source), prepared


def need_root(root: Path) -> None:
    if is_live(root) and os.geteuid() != 0:
        raise HostError("changing the host needs root", "run it with sudo")


def run_plan(prepared: Prepared) -> Any:
    """What apply would change now (a :class:`~rtlibvirt.hostprep.report.PlanResult`)."""
    from rtlibvirt.hostprep.plan import preview
    from rtlibvirt.hostprep.report import PlanResult

    pv = preview(prepared.plan, prepared.effects, prepared.journal)
    return PlanResult(prepared, pv)


def run_apply(prepared: Prepared) -> Any:
    """Apply the plan (journal first); a PlanResult with what was done.

    On failure the RtlibvirtError's hint says that some changes were made (and
    journaled) when that is so.
    """
    from rtlibvirt.errors import RtlibvirtError
    from rtlibvirt.hostprep.apply import apply
    from rtlibvirt.hostprep.plan import preview
    from rtlibvirt.hostprep.report import PlanResult

    need_root(prepared.effects.fs.root)
    pv = preview(prepared.plan, prepared.effects, prepared.journal)
    result = PlanResult(prepared, pv)
    if not result.changed:
        return result
    try:
        report = apply(prepared.plan, prepared.effects, prepared.journal)
    except RtlibvirtError as exc:
        if prepared.effects.changes:
            exc.hint = (exc.hint + "\n  " if exc.hint else "") + (
                "some changes were made (and journaled): fix the cause and apply again, "
                "or undo them with `rtlibvirt host-prep revert`"
            )
        raise
    result.applied = report
    return result


def run_verify(prepared: Prepared) -> Any:
    from rtlibvirt.hostprep.report import VerifyResult
    from rtlibvirt.hostprep.verify import verify

    return VerifyResult(prepared, verify(prepared.plan, prepared.effects))


def run_revert(root: Path) -> Any:
    """Undo every host-prep change recorded under ``root`` (a RevertResult)."""
    from rtlibvirt.hostprep.report import RevertResult
    from rtlibvirt.hostprep.revert import revert

    need_root(root)
    live = is_live(root)
    effects = Effects(HostFS(root), runtime=live, commands=live)
    journal = Journal(effects)
    had_journal = journal.exists
    return RevertResult(revert(effects, journal), changed=had_journal, root=str(root))

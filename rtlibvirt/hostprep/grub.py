"""How the kernel arguments reach the boot loader, by distribution.

- Debian, Ubuntu and kin: a drop-in ``/etc/default/grub.d/99-rtlibvirt.cfg``
  that grub-mkconfig sources after ``/etc/default/grub`` and the other
  drop-ins (Ubuntu cloud images' ``50-cloudimg-settings.cfg`` overwrites
  ``GRUB_CMDLINE_LINUX``), then ``update-grub``.
- Fedora, RHEL and kin: ``grubby --update-kernel=ALL --args=...``, and on
  revert ``--remove-args`` (plus the user's own earlier values, put back).
- Anything else: an error that prints the arguments to add by hand.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rtlibvirt.config.kernelargs import arg_key
from rtlibvirt.errors import HostError
from rtlibvirt.hostprep import cmdline
from rtlibvirt.hostprep.changes import FileChange, GrubbyChange, Plan, header
from rtlibvirt.hostprep.effects import FileState
from rtlibvirt.hostprep.facts import HostFacts, read_text
from rtlibvirt.kernel.fs import HostFS

DROPIN = "/etc/default/grub.d/99-rtlibvirt.cfg"
GRUB_CFG = "/boot/grub/grub.cfg"
BLS_DIR = "/boot/loader/entries"
DEBIAN_LIKE = ("debian", "ubuntu")
REDHAT_LIKE = ("fedora", "rhel", "centos")
UPDATE_GRUB = ("update-grub",)


@dataclass(frozen=True)
class Bootloader:
    method: str  # "grub-dropin" | "grubby"
    tool: str  # host path of the tool found under the root
    description: str


def detect(facts: HostFacts, args: Sequence[str]) -> Bootloader:
    """The way to set kernel arguments on this distribution, or HostError saying why not."""
    ids = facts.os_ids
    by_hand = " ".join(args)
    if any(i in DEBIAN_LIKE for i in ids):
        tool = facts.tool("update-grub")
        if tool is None:
            raise HostError(
                f"{facts.os_name}: GRUB is not installed under {facts.fs.root} (no update-grub), "
                "so host-prep cannot set the kernel command line",
                f"add these arguments to your boot loader's kernel command line by hand:\n"
                f"    {by_hand}\n"
                "  then `rtlibvirt host-prep apply --skip-cmdline` applies the rest",
            )
        return Bootloader(
            "grub-dropin", tool, f"{facts.os_name}: GRUB drop-in {DROPIN}, then update-grub"
        )
    if any(i in REDHAT_LIKE for i in ids):
        tool = facts.tool("grubby")
        if tool is None:
            raise HostError(
                f"{facts.os_name}: grubby is not installed under {facts.fs.root}, "
                "so host-prep cannot set the kernel command line",
                f"install grubby (dnf install grubby), or add these arguments by hand:\n"
                f"    {by_hand}\n"
                "  then `rtlibvirt host-prep apply --skip-cmdline` applies the rest",
            )
        return Bootloader("grubby", tool, f"{facts.os_name}: grubby --update-kernel=ALL")
    name = facts.os_name if facts.os_release else f"no /etc/os-release under {facts.fs.root}"
    raise HostError(
        f"unknown distribution ({name}): host-prep sets kernel arguments on Debian and Ubuntu "
        "(GRUB drop-in) and on Fedora, RHEL and their kin (grubby)",
        f"add these arguments to your boot loader's kernel command line by hand:\n"
        f"    {by_hand}\n"
        "  then `rtlibvirt host-prep apply --skip-cmdline` applies the rest",
    )


def dropin(args: Sequence[str]) -> bytes:
    """The GRUB drop-in: takes our keys out of the user's variables, then appends our args."""
    keys = sorted({arg_key(a) for a in args})
    text = header() + (
        "#\n"
        "# grub-mkconfig sources /etc/default/grub, then /etc/default/grub.d/*.cfg in\n"
        "# order; this file comes last (99-), after e.g. Ubuntu's 50-cloudimg-settings.cfg\n"
        "# that sets GRUB_CMDLINE_LINUX anew. It takes the arguments it sets out of\n"
        "# GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT, then appends them to\n"
        "# GRUB_CMDLINE_LINUX: each is there exactly once, every other argument is kept.\n"
        f"rtlibvirt_args='{' '.join(args)}'\n"
        f"rtlibvirt_keys=' {' '.join(keys)} '\n"
        "case $- in *f*) rtlibvirt_glob= ;; *) rtlibvirt_glob=1; set -f ;; esac\n"
        "rtlibvirt_filter() {\n"
        "  rtlibvirt_out=\n"
        "  for rtlibvirt_word in $1; do\n"
        '    case "$rtlibvirt_keys" in\n'
        '      *" ${rtlibvirt_word%%=*} "*) ;;\n'
        '      *) rtlibvirt_out="${rtlibvirt_out:+$rtlibvirt_out }$rtlibvirt_word" ;;\n'
        "    esac\n"
        "  done\n"
        "}\n"
        'rtlibvirt_filter "$GRUB_CMDLINE_LINUX"\n'
        'GRUB_CMDLINE_LINUX="${rtlibvirt_out:+$rtlibvirt_out }$rtlibvirt_args"\n'
        'rtlibvirt_filter "$GRUB_CMDLINE_LINUX_DEFAULT"\n'
        'GRUB_CMDLINE_LINUX_DEFAULT="$rtlibvirt_out"\n'
        'if [ -n "$rtlibvirt_glob" ]; then set +f; fi\n'
        "unset -f rtlibvirt_filter\n"
        "unset rtlibvirt_args rtlibvirt_keys rtlibvirt_glob rtlibvirt_out rtlibvirt_word\n"
    )
    return text.encode("utf-8")


def plan(plan_: Plan, loader: Bootloader) -> None:
    args = plan_.cmdline.texts
    plan_.bootloader = loader.description
    if loader.method == "grub-dropin":
        if not plan_.facts.fs.path("/etc/default/grub").exists():
            plan_.note(
                "boot loader",
                "/etc/default/grub does not exist: grub-mkconfig still reads the drop-in",
            )
        plan_.files.append(
            FileChange(
                DROPIN,
                FileState.file(dropin(args)),
                "kernel arguments for GRUB (appended to GRUB_CMDLINE_LINUX)",
                "boot loader",
                reboot=True,
                then=(UPDATE_GRUB,),
            )
        )
    else:
        plan_.grubby = GrubbyChange(tuple(args))


# ---- reading boot entries -------------------------------------------------

_LINUX_LINE = re.compile(r"\s*linux(?:efi|16)?\s+\S+\s*(.*)")


def grub_cfg_args(fs: HostFS) -> list[str] | None:
    """The arguments of the first ``linux`` line of grub.cfg (the default entry)."""
    text = read_text(fs, GRUB_CFG, 16 << 20)  # many kernels, many entries: more than 1 MiB
    if text is None:
        return None
    for line in text.splitlines():
        m = _LINUX_LINE.fullmatch(line)
        if m:
            return cmdline.split_cmdline(m.group(1))
    return None


GRUBENV = "/boot/grub2/grubenv"


def grubenv(fs: HostFS) -> dict[str, str]:
    """``/boot/grub2/grubenv``: GRUB's environment block (``saved_entry=``, ``kernelopts=``)."""
    values: dict[str, str] = {}
    for line in (read_text(fs, GRUBENV) or "").splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key] = value
    return values


def bls_entries(fs: HostFS) -> dict[str, str]:
    """Every BootLoaderSpec entry's ``options`` line, by host path of the entry file.

    RHEL 8's entries say ``options $kernelopts`` and keep the arguments in
    grubenv's ``kernelopts=``: that is what they boot with, and what is returned.
    """
    entries: dict[str, str] = {}
    env: dict[str, str] | None = None
    for name in fs.listdir(BLS_DIR):
        if not name.endswith(".conf"):
            continue
        text = read_text(fs, f"{BLS_DIR}/{name}") or ""
        options = ""
        for line in text.splitlines():
            key, _, value = line.strip().partition(" ")
            if key == "options":
                options = value.strip()
        if "$kernelopts" in options.split():
            env = grubenv(fs) if env is None else env
            words = options.split()
            options = " ".join(
                env.get("kernelopts", "") if w == "$kernelopts" else w for w in words
            )
        entries[f"{BLS_DIR}/{name}"] = options.strip()
    return entries


def bls_default_args(fs: HostFS) -> list[str] | None:
    entries = bls_entries(fs)
    if not entries:
        return None
    saved = grubenv(fs).get("saved_entry", "").strip()
    chosen = f"{BLS_DIR}/{saved}.conf" if saved else None
    if chosen is None or chosen not in entries:
        normal = sorted(e for e in entries if "rescue" not in e) or sorted(entries)
        chosen = normal[-1]
    return cmdline.split_cmdline(entries[chosen])


_DROPIN_ARGS = re.compile(r"rtlibvirt_args='([^'\n]*)'")


def dropin_args(fs: HostFS) -> list[str] | None:
    """The arguments host-prep's GRUB drop-in appends (its ``rtlibvirt_args='...'``
    line, read, never run); None without the drop-in or that line."""
    text = read_text(fs, DROPIN)
    for line in (text or "").splitlines():
        m = _DROPIN_ARGS.fullmatch(line.strip())
        if m:
            return cmdline.split_cmdline(m.group(1))
    return None


def configured_args(fs: HostFS, method: str | None) -> tuple[list[str] | None, str]:
    """The kernel arguments the boot-loader files configure, and which files those are.

    For a tree (``--root``), where no boot loader tool ran: the GRUB drop-in's
    arguments, or the BootLoaderSpec entries grubby edits.
    """
    if method == "grub-dropin":
        return dropin_args(fs), f"the GRUB drop-in {DROPIN} (grub.cfg is made by update-grub)"
    if method == "grubby":
        return bls_default_args(fs), f"the default boot entry under {BLS_DIR}"
    return boot_entry_args(fs, None), f"the boot entry ({GRUB_CFG} or {BLS_DIR})"


def boot_entry_args(fs: HostFS, method: str | None) -> list[str] | None:
    """The arguments the next boot will use, where they can be read; None if not known."""
    if method == "grubby":
        return bls_default_args(fs)
    if method == "grub-dropin":
        return grub_cfg_args(fs)
    return grub_cfg_args(fs) or bls_default_args(fs)


# ---- grubby: apply and revert ---------------------------------------------
#
# What grubby does with arguments differs by version, and host-prep must be
# right under each (read in rhboot/grubby):
# - grubby.c (updateActualImage): all --args first, each replacing the first
#   not yet replaced argument of the same name or else appended, THEN each
#   --remove-args removes the first argument of that name (and value, if it
#   has one). In one call, --remove-args=hugepages removes the hugepages=8 that
#   --args just put in; a repeated key loses one occurrence per listed name.
# - grubby-bls (update_args, the BootLoaderSpec script): removes first, each
#   with sed "s!ARG[^ ]*!!": the first *substring* match, not anchored to a
#   word ("hugepages" can hit "default_hugepagesz=1G"), once per listed arg;
#   then for each --args key=value, if "key=" occurs anywhere (iommu= is in
#   intel_iommu=on) it replaces the first "key=..." substring, else appends.
# So host-prep runs grubby twice, never mixing the two options: first
# --remove-args with every word of ours-by-name that any entry has, each as
# often as it occurs, longest first (a word is removed before a word it
# contains); then --args with none of our names left, in an order where no
# argument's "name=" is a substring of one added before it. Afterwards every
# entry is read back and must hold each argument exactly once.


def grubby_needed(fs: HostFS, args: Sequence[str]) -> bool:
    """Whether some boot entry lacks one of ``args``, or has one more than once, or holds
    another value of one of their names (True when entries are not readable)."""
    entries = bls_entries(fs)
    if not entries:
        return True
    return any(entry_problems(options, args) for options in entries.values())


def entry_problems(options: str, args: Sequence[str]) -> list[str]:
    """What keeps ``options`` from holding each of ``args`` exactly once and no other
    value of their names ([] when it does)."""
    words = cmdline.split_cmdline(options)
    keys = {arg_key(a) for a in args}
    problems = [
        f"{a} {'missing' if not words.count(a) else 'repeated'}"
        for a in args
        if words.count(a) != 1
    ]
    problems += [f"{w} left" for w in words if arg_key(w) in keys and w not in args]
    hugepages = [w for w in words if arg_key(w) in ("hugepagesz", "hugepages")]
    wanted = [a for a in args if arg_key(a) in ("hugepagesz", "hugepages")]
    if not problems and wanted and hugepages != wanted:  # none planned: the user's stay
        problems.append(f"hugepage arguments in the order {' '.join(hugepages)}")
    return problems


def grubby_apply_argvs(fs: HostFS, args: Sequence[str]) -> list[list[str]]:
    """The grubby commands that give every kernel ``args``, exactly once each (see above)."""
    keys = {arg_key(a) for a in args}
    probes = [_probe(a) for a in args]
    counts: dict[str, int] = {}
    kept: list[str] = []  # the user's words grubby-bls would misread: out, and back after ours
    sources = [*list(bls_entries(fs).values()), _grub_defaults_cmdline(fs)]
    for options in sources:
        seen: dict[str, int] = {}
        for word in cmdline.split_cmdline(options):
            ours = arg_key(word) in keys
            if ours or any(p in word for p in probes):
                seen[word] = seen.get(word, 0) + 1
                if not ours and word not in kept:
                    kept.append(word)
        for word, n in seen.items():
            counts[word] = max(counts.get(word, 0), n)
    removals = [w for w in sorted(counts, key=lambda w: (-len(w), w)) for _ in range(counts[w])]
    argvs = []
    if removals:
        argvs.append(["grubby", "--update-kernel=ALL", f"--remove-args={' '.join(removals)}"])
    added = substring_safe([*args, *kept])
    argvs.append(["grubby", "--update-kernel=ALL", f"--args={' '.join(added)}"])
    return argvs


def _probe(arg: str) -> str:
    """What grubby-bls looks for to find ``arg`` already there: ``name=``, or a flag itself."""
    return arg_key(arg) + "=" if "=" in arg else arg


_ORDERED = frozenset({"hugepagesz", "hugepages"})


def substring_safe(args: Sequence[str]) -> list[str]:
    """``args`` reordered so that no argument's ``name=`` (a flag: its name) occurs in one
    added before it (iommu=pt before intel_iommu=on); otherwise in their order."""
    todo = list(args)
    out: list[str] = []
    while todo:
        for index, arg in enumerate(todo):
            blocked = any(other is not arg and _probe(other) in arg for other in todo)
            # hugepages= counts pages of the hugepagesz= before it: their order stays
            if arg_key(arg) in _ORDERED:
                blocked = blocked or any(arg_key(o) in _ORDERED for o in todo[:index])
            if not blocked:
                out.append(todo.pop(index))
                break
        else:  # names that contain each other both ways (a repeated key): in order
            out.append(todo.pop(0))
    return out


def _grub_defaults_cmdline(fs: HostFS) -> str:
    """GRUB_CMDLINE_LINUX of /etc/default/grub, which RHEL 9's grubby also edits."""
    for line in (read_text(fs, "/etc/default/grub") or "").splitlines():
        if line.startswith("GRUB_CMDLINE_LINUX="):
            value = line.split("=", 1)[1].strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            return value
    return ""


def grubby_check(fs: HostFS, args: Sequence[str]) -> list[str]:
    """After grubby: ``entry: problem`` for every entry that does not hold ``args`` right."""
    return [
        f"{entry}: {', '.join(problems)}"
        for entry, options in sorted(bls_entries(fs).items())
        if (problems := entry_problems(options, args))
    ]


def grubby_record(fs: HostFS, args: Sequence[str]) -> dict[str, Any]:
    """What the journal keeps before grubby runs: our args and every entry's options."""
    return {"args": list(args), "entries": bls_entries(fs)}


def grubby_revert_argvs(
    fs: HostFS, record: dict[str, Any], skip: set[str] | frozenset[str] = frozenset()
) -> list[list[str]]:
    """The grubby commands that take our arguments out again and put back the user's own.

    For an entry recorded before apply: every argument of ours is removed (each
    occurrence), then the entry's own words of those names are added back, in
    their order (two commands, for the reasons above). An entry added since (a
    new kernel) loses our arguments. Without readable entries, our arguments
    are removed from every kernel. Entries in ``skip`` are left alone (the
    journal puts them back byte for byte).
    """
    ours = [str(a) for a in record.get("args", [])]
    keys = {arg_key(a) for a in ours}
    before: dict[str, str] = record.get("entries") or {}
    now = bls_entries(fs)
    if not before or not now:
        if now and set(now) <= set(skip):
            return []
        return [["grubby", "--update-kernel=ALL", f"--remove-args={' '.join(ours)}"]]
    argvs: list[list[str]] = []
    for entry in sorted(now):
        if entry in skip:
            continue
        kernel = _entry_kernel(fs, entry)
        if kernel is None:
            continue
        words = cmdline.split_cmdline(now[entry])
        remove = sorted((w for w in words if w in ours), key=lambda w: (-len(w), w))
        restore = []
        if entry in before:
            restore = [w for w in cmdline.split_cmdline(before[entry]) if arg_key(w) in keys]
            if [w for w in words if arg_key(w) in keys] == restore:
                continue  # already as it was
            remove = sorted((w for w in words if arg_key(w) in keys), key=lambda w: (-len(w), w))
        if remove:
            argvs.append(
                ["grubby", f"--update-kernel={kernel}", f"--remove-args={' '.join(remove)}"]
            )
        if restore:
            argvs.append(
                [
                    "grubby",
                    f"--update-kernel={kernel}",
                    f"--args={' '.join(substring_safe(restore))}",
                ]
            )
    return argvs


def grubby_revert_check(
    fs: HostFS, record: dict[str, Any], skip: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """After a grubby revert: a line for each entry that grubby did not put back (names
    of ours, in the entry's own words). grubby-bls cannot add a name twice, so an
    entry that had ``hugepagesz=`` twice keeps only one."""
    keys = {arg_key(str(a)) for a in record.get("args", [])}
    problems = []
    now = bls_entries(fs)
    for entry, options in sorted((record.get("entries") or {}).items()):
        if entry in skip or entry not in now:
            continue
        want = [w for w in cmdline.split_cmdline(options) if arg_key(w) in keys]
        have = [w for w in cmdline.split_cmdline(now[entry]) if arg_key(w) in keys]
        if want != have:
            problems.append(
                f"{entry}: grubby did not put back {' '.join(want) or 'nothing'} "
                f"(the entry has {' '.join(have) or 'none'} of those names); "
                f"set them with grubby --update-kernel=... --args=..."
            )
    return problems


def _entry_kernel(fs: HostFS, entry: str) -> str | None:
    text = read_text(fs, entry) or ""
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "linux":
            path = value.strip()
            return path if path.startswith("/boot") else f"/boot{path}"
    return None


def quote(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)

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

import os
import re
import shlex
from collections.abc import Callable, Sequence
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
    return _env_values(read_text(fs, GRUBENV) or "")


def _env_values(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
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
        options = " ".join(_options_lines(text))
        if "$kernelopts" in options.split():
            env = grubenv(fs) if env is None else env
            words = options.split()
            options = " ".join(
                env.get("kernelopts", "") if w == "$kernelopts" else w for w in words
            )
        entries[f"{BLS_DIR}/{name}"] = options.strip()
    return entries


def _options_lines(text: str) -> list[str]:
    """The values of an entry's ``options`` lines: the BootLoaderSpec (and GRUB's blscfg)
    joins them all, in order."""
    values = []
    for line in text.splitlines():
        parts = line.split(None, 1)
        if parts and parts[0] == "options":
            values.append(parts[1].strip() if len(parts) > 1 else "")
    return values


def default_entry(fs: HostFS) -> str | None:
    """The host path of the BootLoaderSpec entry GRUB boots by default: grubenv's
    ``saved_entry``, else the newest kernel's (rescue entries last); None without any."""
    entries = bls_entries(fs)
    if not entries:
        return None
    saved = grubenv(fs).get("saved_entry", "").strip()
    chosen = f"{BLS_DIR}/{saved}.conf" if saved else None
    if chosen is None or chosen not in entries:
        normal = sorted(e for e in entries if "rescue" not in e) or sorted(entries)
        chosen = normal[-1]
    return chosen


def uses_kernelopts(fs: HostFS, entry: str) -> bool:
    """Whether the entry's options say ``$kernelopts`` (RHEL 8: grubenv holds them)."""
    return "$kernelopts" in " ".join(_options_lines(read_text(fs, entry) or "")).split()


def bls_default_args(fs: HostFS) -> list[str] | None:
    chosen = default_entry(fs)
    if chosen is None:
        return None
    return cmdline.split_cmdline(bls_entries(fs)[chosen])


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
        entry = default_entry(fs)
        if entry is None:
            return None, f"the boot entries under {BLS_DIR} (there are none)"
        where = f"the options of the default boot entry {entry}"
        if uses_kernelopts(fs, entry):
            where += f" (its $kernelopts: kernelopts= in {GRUBENV})"
        return bls_default_args(fs), where
    return boot_entry_args(fs, None), f"the boot entry ({GRUB_CFG} or {BLS_DIR})"


def boot_entry_args(fs: HostFS, method: str | None) -> list[str] | None:
    """The arguments the next boot will use, where they can be read; None if not known."""
    if method == "grubby":
        return bls_default_args(fs)
    if method == "grub-dropin":
        return grub_cfg_args(fs)
    return grub_cfg_args(fs) or bls_default_args(fs)


# ---- a tree (--root): the files grubby would write --------------------------
#
# grubby is the tree's own program and is not run in a tree (nor could this host
# run another distribution's binary). What `grubby --update-kernel=ALL` with
# host-prep's arguments leaves behind is plain text, and host-prep writes that
# itself: every BootLoaderSpec entry's options (or, where they say $kernelopts,
# RHEL 8's kernelopts= in grubenv) and GRUB_CMDLINE_LINUX in /etc/default/grub,
# which grub2-mkconfig turns into kernelopts again and RHEL 9's grubby edits too.
# Each holds every argument of ours exactly once, no other value of their names,
# and the user's other arguments in their order (what entry_problems checks).

GRUBENV_SIZE = 1024  # GRUB's environment block is exactly this long, padded with '#'
GRUBENV_HEADER = "# GRUB Environment Block\n"
_SHELL_SPECIAL = frozenset('"$`\\')


def with_args(words: Sequence[str], args: Sequence[str]) -> list[str]:
    """``words`` without any argument of ``args``' names, then ``args``."""
    keys = {arg_key(a) for a in args}
    return [w for w in words if arg_key(w) not in keys] + list(args)


def _entry_text(text: str, args: Sequence[str]) -> str:
    """A BootLoaderSpec entry with ``args`` in its options (one ``options`` line); where
    the options say ``$kernelopts``, only a literal word of our names is taken out."""
    lines = text.splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.split(None, 1)[:1] == ["options"]]
    words = " ".join(_options_lines(text)).split()
    if "$kernelopts" in words:
        keys = {arg_key(a) for a in args}
        new = [w for w in words if w.startswith("$") or arg_key(w) not in keys]
    else:
        new = with_args(words, args)
    if new == words and len(at) == 1:
        return text
    line = "options " + " ".join(new) + "\n"
    if not at:
        return text + ("" if not text or text.endswith("\n") else "\n") + line
    lines[at[0]] = line
    return "".join(kept for i, kept in enumerate(lines) if i not in at[1:])


def grubenv_block(text: str, key: str, value: str) -> bytes:
    """GRUB's environment block ``text`` with ``key=value`` set, as grub2-editenv writes
    it: the header, one ``key=value`` line each (backslash and newline escaped), then
    '#' to 1024 bytes; HostError when it does not fit."""
    escaped = value.replace("\\", "\\\\").replace("\n", "\\\n")
    lines, seen = [], False
    for line in text.splitlines():
        if not line or line.startswith("#") or "=" not in line:
            continue
        name = line.split("=", 1)[0]
        if name == key:
            if seen:
                continue
            line, seen = f"{key}={escaped}", True
        lines.append(line + "\n")
    if not seen:
        lines.append(f"{key}={escaped}\n")
    body = (GRUBENV_HEADER + "".join(lines)).encode("utf-8")
    if len(body) > GRUBENV_SIZE:
        raise HostError(
            f"{GRUBENV}: {key}= with the kernel arguments needs {len(body)} bytes; GRUB's "
            f"environment block holds {GRUBENV_SIZE}",
            "write the arguments into the boot entries' options instead of $kernelopts "
            "(grubby --update-kernel=ALL on the booted system does that), then apply again",
        )
    return body + b"#" * (GRUBENV_SIZE - len(body))


def _defaults_text(text: str, args: Sequence[str]) -> str:
    """/etc/default/grub with ``args`` in every ``GRUB_CMDLINE_LINUX=`` line."""
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith("GRUB_CMDLINE_LINUX="):
            value = line.split("=", 1)[1].strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            words = with_args(value.split(), args)
            line = f'GRUB_CMDLINE_LINUX="{" ".join(words)}"\n'
        out.append(line)
    return "".join(out)


def _in_root(fs: HostFS, host_path: str) -> str:
    """``host_path`` with its symlinks resolved inside the root (grubenv is often a link
    to the EFI partition's): the file to write, not the link."""
    if fs.is_live:
        return host_path
    return "/" + os.path.relpath(fs.real(host_path), fs.root_str)


def _file(fs: HostFS, host_path: str, data: bytes) -> FileState:
    """``data`` with the mode of the file now at ``host_path``."""
    try:
        mode = os.stat(fs.path(host_path)).st_mode & 0o7777
    except OSError:
        mode = 0o644
    return FileState.file(data, mode)


TREE_WHY = (
    "the kernel arguments, as `grubby --update-kernel=ALL` writes them (grubby is not run "
    "in a tree)"
)


def tree_changes(
    fs: HostFS, args: Sequence[str], original: Callable[[str], str | None] = lambda _: None
) -> tuple[list[FileChange], list[str]]:
    """For a tree, where grubby is not run: the boot-loader files as grubby would leave
    them with ``args`` (see above), each a change of a file of the user's (put back on
    revert only if unchanged since); and notes on what was not written.

    ``original(path)``: the file's text before host-prep changed it, when host-prep's
    own change is still what is there; the arguments are then added to that, so that
    one that host.yaml no longer asks for goes away again.
    """
    changes: list[FileChange] = []
    notes: list[str] = []

    def edit(host_path: str, make: Callable[[str], bytes], why: str) -> str | None:
        path = _in_root(fs, host_path)
        text = read_text(fs, path)
        if text is None:
            return None
        base = original(path) or text
        data = make(base)
        if data != text.encode("utf-8"):
            changes.append(
                FileChange(
                    path, _file(fs, path, data), why, "boot loader", reboot=True, guarded=True
                )
            )
        return base

    entries = sorted(bls_entries(fs))
    kernelopts = False
    for entry in entries:
        base = edit(
            entry, lambda t: _entry_text(t, args).encode("utf-8"), f"boot entry: {TREE_WHY}"
        )
        kernelopts = kernelopts or "$kernelopts" in " ".join(_options_lines(base or "")).split()
    if not entries:
        notes.append(
            f"no boot entries under {BLS_DIR} in the tree (no kernel installed yet?): only "
            "GRUB_CMDLINE_LINUX gets the arguments; install the kernel first, or apply again "
            "after it, so that its boot entry gets them"
        )
    if kernelopts:

        def env(text: str) -> bytes:
            words = _env_values(text).get("kernelopts", "").split()
            return grubenv_block(text, "kernelopts", " ".join(with_args(words, args)))

        if edit(GRUBENV, env, f"kernelopts=, the boot entries' $kernelopts: {TREE_WHY}") is None:
            notes.append(f"the boot entries say $kernelopts, but the tree has no {GRUBENV}")
    if any(c in _SHELL_SPECIAL for a in args for c in a):
        notes.append(
            "/etc/default/grub: not changed: an argument holds a character the shell reads "
            'inside "..." (" $ ` \\); add it to GRUB_CMDLINE_LINUX by hand'
        )
    else:
        edit(
            "/etc/default/grub",
            lambda t: _defaults_text(t, args).encode("utf-8"),
            f"GRUB_CMDLINE_LINUX, for grub2-mkconfig: {TREE_WHY}",
        )
    return changes, notes


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

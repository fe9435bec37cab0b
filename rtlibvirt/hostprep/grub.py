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

from rtlibvirt.config.kernelargs import arg_key, parse_arg
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
                "  then use `rtlibvirt host-prep apply --runtime-only` for the rest",
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
                f"    {by_hand}",
            )
        return Bootloader("grubby", tool, f"{facts.os_name}: grubby --update-kernel=ALL")
    name = facts.os_name if facts.os_release else f"no /etc/os-release under {facts.fs.root}"
    raise HostError(
        f"unknown distribution ({name}): host-prep sets kernel arguments on Debian and Ubuntu "
        "(GRUB drop-in) and on Fedora, RHEL and their kin (grubby)",
        f"add these arguments to your boot loader's kernel command line by hand:\n"
        f"    {by_hand}\n"
        "  then use `rtlibvirt host-prep apply --runtime-only` for the rest",
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

_LINUX_LINE = re.compile(r"^\s*linux(?:efi|16)?\s+\S+\s*(.*)$")


def grub_cfg_args(fs: HostFS) -> list[str] | None:
    """The arguments of the first ``linux`` line of grub.cfg (the default entry)."""
    text = read_text(fs, GRUB_CFG)
    if text is None:
        return None
    for line in text.splitlines():
        m = _LINUX_LINE.match(line)
        if m:
            return cmdline.split_cmdline(m.group(1))
    return None


def bls_entries(fs: HostFS) -> dict[str, str]:
    """Every BootLoaderSpec entry's ``options`` line, by host path of the entry file."""
    entries: dict[str, str] = {}
    for name in fs.listdir(BLS_DIR):
        if not name.endswith(".conf"):
            continue
        text = read_text(fs, f"{BLS_DIR}/{name}") or ""
        options = ""
        for line in text.splitlines():
            key, _, value = line.strip().partition(" ")
            if key == "options":
                options = value.strip()
        entries[f"{BLS_DIR}/{name}"] = options
    return entries


def bls_default_args(fs: HostFS) -> list[str] | None:
    entries = bls_entries(fs)
    if not entries:
        return None
    grubenv = read_text(fs, "/boot/grub2/grubenv") or ""
    saved = re.search(r"^saved_entry=(.+)$", grubenv, re.MULTILINE)
    chosen = f"{BLS_DIR}/{saved.group(1).strip()}.conf" if saved else None
    if chosen is None or chosen not in entries:
        normal = sorted(e for e in entries if "rescue" not in e) or sorted(entries)
        chosen = normal[-1]
    return cmdline.split_cmdline(entries[chosen])


def boot_entry_args(fs: HostFS, method: str | None) -> list[str] | None:
    """The arguments the next boot will use, where they can be read; None if not known."""
    if method == "grubby":
        return bls_default_args(fs)
    if method == "grub-dropin":
        return grub_cfg_args(fs)
    return grub_cfg_args(fs) or bls_default_args(fs)


# ---- grubby: apply and revert ---------------------------------------------


def grubby_needed(fs: HostFS, args: Sequence[str]) -> bool:
    """Whether some boot entry lacks one of ``args`` (True when entries are not readable)."""
    entries = bls_entries(fs)
    if not entries:
        return True
    wanted = [parse_arg(a) for a in args]
    for options in entries.values():
        words = cmdline.split_cmdline(options)
        if not all(cmdline.present(arg, words) for arg in wanted):
            return True
    return False


_HUGEPAGE_KEYS = ("default_hugepagesz", "hugepagesz", "hugepages")


def grubby_apply_argv(args: Sequence[str]) -> list[str]:
    """grubby replaces an argument of the same name in place; the hugepage arguments
    only mean something in order (hugepages= counts pages of the hugepagesz= before
    it), so the old ones are removed first and ours appended in order."""
    argv = ["grubby", "--update-kernel=ALL"]
    if any(arg_key(a) in _HUGEPAGE_KEYS for a in args):
        argv.append(f"--remove-args={' '.join(_HUGEPAGE_KEYS)}")
    return [*argv, f"--args={' '.join(args)}"]


def grubby_record(fs: HostFS, args: Sequence[str]) -> dict[str, Any]:
    """What the journal keeps before grubby runs: our args and every entry's options."""
    return {"args": list(args), "entries": bls_entries(fs)}


def grubby_revert_argvs(
    fs: HostFS, record: dict[str, Any], skip: set[str] | frozenset[str] = frozenset()
) -> list[list[str]]:
    """The grubby commands that take our arguments out again and put back the user's own.

    For an entry recorded before apply: an argument whose name the entry did not
    have is removed; one whose value we replaced gets its old value back. An
    entry added since (a new kernel) loses our arguments. Without readable
    entries, our arguments are removed from every kernel. Entries in ``skip``
    are left alone (the journal puts them back byte for byte).
    """
    ours = [str(a) for a in record.get("args", [])]
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
        if entry in before:
            old_words = cmdline.split_cmdline(before[entry])
            remove: list[str] = []
            restore: list[str] = []
            for arg in ours:
                key = arg_key(arg)
                old = [w for w in old_words if arg_key(w) == key]
                if arg in old_words:
                    continue
                if old:
                    restore.extend(w for w in old if w not in restore)
                else:
                    remove.append(arg)
        else:
            remove, restore = list(ours), []
        argv = ["grubby", f"--update-kernel={kernel}"]
        if remove:
            argv.append(f"--remove-args={' '.join(remove)}")
        if restore:
            argv.append(f"--args={' '.join(restore)}")
        if len(argv) > 2:
            argvs.append(argv)
    return argvs


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

"""Values that name things of an installed system: kernel arguments, systemd units.

Shared by host.yaml (``config.host``) and vm.yaml's ``guest:`` section
(``config.vm``): standard library and ``config.model`` only, since the hook
validates a domain's metadata with vm.yaml's model.
"""

from __future__ import annotations

import re
from typing import Any

from rtlibvirt.config.model import Invalid, Scalar, check_text, json_pattern, short

# A unit name as systemd checks it (unit_name_is_valid): a prefix, an optional
# @instance (empty for a template), a known type; at most 255 characters.
_UNIT_TYPES = ("service", "socket", "timer", "path", "target")
_UNIT_CHARS = r"[A-Za-z0-9:_.\\-]"
_SERVICE = re.compile(
    rf"(?P<prefix>{_UNIT_CHARS}+)(?:@(?P<instance>{_UNIT_CHARS}*))?"
    rf"(?:\.(?P<type>{'|'.join(_UNIT_TYPES)}))?"
)
UNIT_NAME_MAX = 255

# One kernel argument: a parameter name (letters, digits, _ . -; a module's
# parameters are module.name), then optionally = and a value of the characters
# arguments are made of. No blank, quote, newline or shell or GRUB-script
# character: the argument is written into a shell string for GRUB, and into
# grub.cfg's `linux` line, where `#` starts a comment, `$` a variable and `;`
# a new command; and not "--", which ends the kernel's arguments.
_KERNEL_KEY_MAX = 128
_KERNEL_KEY = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{_KERNEL_KEY_MAX - 1}}}")
_KERNEL_VALUE = re.compile(r"[A-Za-z0-9_.,:/=+@%~!^-]*")
KERNEL_ARG_MAX = 1024
# The kernel keeps the first COMMAND_LINE_SIZE - 1 bytes (2048 on x86) and drops
# the rest without a word: the extra arguments leave room for the planned ones.
EXTRA_ARGS_MAX = 1024


def _service(value: Any) -> str:
    text = check_text(value)
    m = _SERVICE.fullmatch(text)
    if m is None or text.startswith("-") or len(text) > UNIT_NAME_MAX:
        raise Invalid(
            f"{short(text)} is not a systemd unit name: letters, digits and : _ . \\ -, "
            f"an optional @instance, at most {UNIT_NAME_MAX} characters (e.g. irqbalance, "
            "getty@tty2, cups.socket)"
        )
    if not text.endswith(tuple(f".{t}" for t in _UNIT_TYPES)):
        text += ".service"
        if len(text) > UNIT_NAME_MAX:
            raise Invalid(f"{short(text)} is longer than {UNIT_NAME_MAX} characters")
    return text


SERVICE_NAME = Scalar(_service, {"type": "string", "pattern": json_pattern(_SERVICE)})


def _kernel_arg(value: Any) -> str:
    text = check_text(value, KERNEL_ARG_MAX)
    key, _, arg_value = text.partition("=")
    if not _KERNEL_KEY.fullmatch(key) or not _KERNEL_VALUE.fullmatch(arg_value):
        first = next(
            (c for c in text if not (c.isascii() and (c.isalnum() or c in "_.,:/=+@%~!^-"))),
            None,
        )
        if first is not None:
            why = f"{first!r} is not allowed"
        elif not key or not (key[0].isalnum() or key[0] == "_"):
            why = "a name starts with a letter, digit or _"
        else:
            why = f"the name is longer than {_KERNEL_KEY_MAX} characters"
        raise Invalid(
            f"{short(text)} is not one kernel argument: {why}",
            "one argument per list item, as name or name=value, of letters, digits and "
            "_ . , : / = + @ % ~ ! ^ -; no blanks, quotes, #, $ or ; "
            "(e.g. 'console=ttyS0,115200')",
        )
    return text


KERNEL_ARG = Scalar(
    _kernel_arg,
    {
        "type": "string",
        "maxLength": KERNEL_ARG_MAX,
        "pattern": json_pattern(f"{_KERNEL_KEY.pattern}(={_KERNEL_VALUE.pattern})?"),
    },
)


# The arguments that isolate CPUs: host-prep derives them from isolated_cpus and
# housekeeping_cpus, guest-prep from cpu.realtime.vcpus; given by hand they would
# bypass the rules that keep CPU 0 and the housekeeping CPUs (nohz=off turns
# nohz_full off).
ISOLATION_ARGS = ("isolcpus", "nohz_full", "rcu_nocbs", "rcu_nocb_poll", "nohz", "irqaffinity")
# Arguments that may be given more than once.
REPEATABLE_ARGS = frozenset({"console", "hugepagesz", "hugepages", "modprobe.blacklist"})

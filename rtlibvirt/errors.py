"""One family of exceptions: a message, an optional hint, and an exit code.

Only the CLI turns them into output and an exit status; library code raises.

Exit codes (shared by every command):
  0  success
  1  runtime, libvirt or host error
  2  invalid input or usage
  3  "differs": a check or verify that found findings or drift
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
EXIT_DIFFERS = 3


class RtlibvirtError(Exception):
    """An expected failure: shown to the user as one message, never a traceback."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class InputError(RtlibvirtError):
    """Invalid input or usage (exit 2)."""

    exit_code = EXIT_INVALID


class LibvirtError(RtlibvirtError):
    """libvirt refused, or could not be reached (exit 1)."""


class HostError(RtlibvirtError):
    """The host could not be read or changed (exit 1)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located by key path and line."""

    path: str  # e.g. "cpu.pinning[2]"; "" for the document itself
    message: str
    line: int | None = None
    hint: str | None = None

    def render(self, source: str) -> str:
        where = source if self.line is None else f"{source}:{self.line}"
        key = f" {self.path}:" if self.path else ""
        text = f"{where}:{key} {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class SpecError(InputError):
    """A YAML input file is invalid; carries every problem found in it."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        count = len(self.problems)
        summary = f"{source}: {count} problem{'s' if count != 1 else ''}; nothing was changed"
        super().__init__(summary)

    def render(self) -> str:
        lines = [f"error: {self.problems[0].render(self.source)}"]
        lines += [f"error: {p.render(self.source)}" for p in self.problems[1:]]
        if len(self.problems) > 1:
            lines.append(f"{len(self.problems)} problems in {self.source}; nothing was changed")
        return "\n".join(lines)

"""A loaded input document: plain values, and where each key was written.

Standard library only: the models in ``config`` work on these, and the hook
validates a domain's metadata with the same models without loading a YAML
parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Key = str | int
KeyPath = tuple[Key, ...]


@dataclass(frozen=True)
class Document:
    """A loaded YAML document: plain values, plus the 1-based line of every key."""

    source: str
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def format_path(path: KeyPath) -> str:
    """``("cpu", "pinning", 2)`` -> ``"cpu.pinning[2]"``."""
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else str(key)
    return out

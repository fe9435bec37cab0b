"""Findings: what a check found, how bad it is, and how to fix it.

A finding has a severity (``error``: the VM will fail or real time is broken;
``warning``: latency will suffer; ``info``: advice), a stable ``code`` for
machines and tests, what was found and how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from rtlibvirt.records import frozen_record

Severity = Literal["error", "warning", "info"]
_ORDER = {"error": 0, "warning": 1, "info": 2}


@frozen_record
class Finding:
    """One thing a check found (``code``), how bad it is and how to fix it."""

    severity: Severity
    code: str
    what: str
    fix: str | None = None

    def render(self) -> str:
        text = f"{self.severity}: [{self.code}] {self.what}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"severity": self.severity, "code": self.code, "what": self.what, "fix": self.fix}


def ordered(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then warnings, then infos; otherwise in the order found."""
    return sorted(findings, key=lambda f: _ORDER[f.severity])


def errors(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def counts(findings: Sequence[Finding]) -> dict[str, int]:
    result = {"error": 0, "warning": 0, "info": 0}
    for finding in findings:
        result[finding.severity] += 1
    return result


def summary(findings: Sequence[Finding]) -> str:
    c = counts(findings)
    parts = [
        f"{n} {kind}{'s' if n != 1 else ''}"
        for kind, n in (("error", c["error"]), ("warning", c["warning"]), ("info", c["info"]))
        if n
    ]
    return ", ".join(parts) if parts else "no findings"

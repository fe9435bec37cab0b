"""Kernel command-line arguments as values: their key, and those Linux does not have.

Shared by host.yaml's validation (``config.host``) and the command-line plan
(``hostprep.cmdline``).
"""

from __future__ import annotations

from dataclasses import dataclass

# Arguments often copied from real-time checklists that Linux does not have.
NONEXISTENT: dict[str, str] = {
    "intel.max_cstate": "no such parameter (there is no 'intel' module); "
    "the Intel idle driver's limit is intel_idle.max_cstate",
    "processor_idle.max_cstate": "no such parameter (processor_idle is built into the "
    "ACPI 'processor' module); the ACPI idle limit is processor.max_cstate",
    "noht": "removed from Linux long ago (it was an i386 option); "
    "turn SMT off with nosmt or in the firmware",
}

# Arguments whose value ends in a cpulist, compared as CPU sets.
CPULIST_KEYS = frozenset({"isolcpus", "nohz_full", "rcu_nocbs", "irqaffinity"})


@dataclass(frozen=True)
class KernelArg:
    key: str
    value: str | None
    why: str

    @property
    def text(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"


def arg_key(text: str) -> str:
    """``hugepages=8`` -> ``hugepages``; ``nosoftlockup`` -> ``nosoftlockup``."""
    return text.split("=", 1)[0]


def parse_arg(text: str) -> KernelArg:
    key, sep, value = text.partition("=")
    return KernelArg(key, value if sep else None, "")

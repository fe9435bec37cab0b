"""Machine-check polling: ``check_interval`` 0 while a VM that asks for it runs.

The kernel polls the machine-check banks of every CPU every few minutes
(``kernel.machinecheck``); a poll interrupts a real-time vCPU.
``isolation.machine_check_polling: false`` turns polling off (0) until the
last VM that asked for it stops.
"""

from __future__ import annotations

from rtlibvirt.hook.isolation.base import (
    Host,
    Step,
    ValuePlan,
    forget_refused,
    owned,
    same_text,
)
from rtlibvirt.hook.state import Claim
from rtlibvirt.kernel import machinecheck

NAME = "machine_check_polling"


def plan(host: Host, claims: list[Claim]) -> ValuePlan:
    state = host.state
    wanted: dict[str, str | None] = {}
    if claims:
        paths = machinecheck.interval_paths(host.fs)
        wanted = {path: "0" for path in paths if path not in state.refused}
    else:
        forget_refused(state, machinecheck.owns)
    for path in owned(state, machinecheck.owns):
        wanted.setdefault(path, None)
    return ValuePlan(NAME, wanted, same=same_text, describe=machinecheck.describe)


def check(host: Host, claim: Claim, others: list[Claim]) -> list[str]:
    if not machinecheck.interval_paths(host.fs):
        return [
            "this host has no machine-check devices "
            f"({machinecheck.MC_DIR}): polling cannot be turned off"
        ]
    return []


STEP = Step(NAME, wants=lambda settings: settings.machine_check_off, check=check, plan=plan)

"""Machine-check polling: ``check_interval`` 0 while a VM that asks for it runs.

The kernel polls the machine-check banks of every CPU every few minutes
(``/sys/devices/system/machinecheck/machinecheckN/check_interval``, seconds);
a poll interrupts a real-time vCPU. ``isolation.machine_check_polling: false``
turns polling off (0) until the last VM that asked for it stops.
"""

from __future__ import annotations

from rtlibvirt.hook.isolation import (
    Host,
    ValuePlan,
    converge,
    forget_refused,
    owned,
    same_text,
    verify_values,
)
from rtlibvirt.hook.state import Claim, Settings

NAME = "machine_check_polling"
MC_DIR = "/sys/devices/system/machinecheck"
PREFIXES = (f"{MC_DIR}/",)


def wants(settings: Settings) -> bool:
    return settings.machine_check_off


def paths(host: Host) -> list[str]:
    devices = [d for d in host.fs.listdir(MC_DIR) if d.startswith("machinecheck")]
    devices.sort(key=lambda d: int(d[len("machinecheck") :] or 0))
    return [
        f"{MC_DIR}/{d}/check_interval"
        for d in devices
        if host.fs.exists(f"{MC_DIR}/{d}/check_interval")
    ]


def describe(path: str) -> str:
    return f"{path.split('/')[-2]} check_interval"


def plan(host: Host, claims: list[Claim]) -> ValuePlan:
    wanted: dict[str, str | None] = {}
    if claims:
        wanted = {path: "0" for path in paths(host) if path not in host.state.refused}
    else:
        forget_refused(host.state, PREFIXES)
    for path in owned(host.state, PREFIXES):
        wanted.setdefault(path, None)
    return ValuePlan(NAME, wanted, same=same_text, describe=describe)


def reconcile(host: Host, claims: list[Claim]) -> None:
    converge(host, plan(host, claims))


def verify(host: Host, claims: list[Claim]) -> list[str]:
    return verify_values(host, plan(host, claims))


def check(host: Host, claim: Claim, others: list[Claim]) -> list[str]:
    if not paths(host):
        return [f"this host has no machine-check devices ({MC_DIR}): polling cannot be turned off"]
    return []

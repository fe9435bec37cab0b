"""The runtime part on THIS machine: real /proc/sys and /sys, applied and reverted.

The journal is kept in a temp directory, no file under /etc is touched and no
command is run; every value is put back even if the test fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtlibvirt.config.host import resolve
from rtlibvirt.config.loader import loads
from rtlibvirt.hostprep.apply import apply as apply_plan
from rtlibvirt.hostprep.effects import Effects, canonical_value
from rtlibvirt.hostprep.facts import gather
from rtlibvirt.hostprep.journal import Journal
from rtlibvirt.hostprep.plan import build_plan
from rtlibvirt.hostprep.revert import revert as revert_plan
from rtlibvirt.kernel.cpuset import format_mask
from rtlibvirt.kernel.fs import HostFS

SYSCTL = {
    "/proc/sys/kernel/sched_rt_runtime_us": "-1",
    "/proc/sys/kernel/timer_migration": "0",
    "/proc/sys/kernel/nmi_watchdog": "0",
    "/proc/sys/vm/stat_interval": "10",
}
HUGEPAGES = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
# The rest of the recipe, where this kernel has it (issue 22): real kernel files that
# answer writes as only a kernel does (a selector, cpumasks, ksmd).
RECIPE = (
    "/proc/sys/kernel/numa_balancing",
    "/proc/sys/kernel/hung_task_timeout_secs",
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/sys/kernel/mm/ksm/run",
    "/sys/devices/virtual/workqueue/cpumask",
    "/sys/devices/virtual/workqueue/writeback/cpumask",
    "/sys/devices/virtual/workqueue/blkcg_punt_bio/cpumask",
)


def read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


@pytest.fixture
def originals(live_host: None) -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root to write /proc/sys")
    paths = [p for p in [*SYSCTL, HUGEPAGES, *RECIPE] if read(p) is not None]
    saved = {p: canonical_value(p, read(p) or "") for p in paths}
    yield saved
    for path, value in saved.items():  # whatever happened, put the host back
        if canonical_value(path, read(path) or "") != value:
            with contextlib.suppress(OSError):
                Path(path).write_text(value + "\n")


def test_runtime_values_apply_and_revert_on_this_machine(
    originals: dict[str, str], tmp_path: Path
) -> None:
    fs = HostFS("/")
    facts = gather(fs)
    present = sorted(facts.cpus_present or {0, 1})
    pages = int(originals.get(HUGEPAGES, "0")) + 2
    doc = loads(
        f"isolated_cpus: {present[-1]}\nhugepages: {{size: 2M, count: {pages}}}\n",
        "live-host.yaml",
    )
    host = resolve(doc, facts)
    plan = build_plan(host, facts, runtime_only=True)
    effects = Effects(fs, runtime=True, commands=False)
    journal_dir = str(tmp_path / "journal")
    report = apply_plan(plan, effects, Journal(effects, journal_dir))
    for path, wanted in SYSCTL.items():
        if path not in originals:
            continue
        writable = os.stat(path).st_mode & 0o200
        assert read(path) == (wanted if writable else originals[path]), (path, report.lines)
    if HUGEPAGES in originals:
        assert read(HUGEPAGES) == str(pages), report.warnings
    housekeeping = format_mask(set(present) - {present[-1]})
    wanted = {"transparent_hugepage/enabled": "never", "ksm/run": "2", "/cpumask": housekeeping}
    for path in RECIPE:
        for tail, value in wanted.items():
            if path in originals and path.endswith(tail):
                assert canonical_value(path, read(path) or "") == value, (path, report.lines)
    assert (tmp_path / "journal/journal.json").exists()

    reverted = revert_plan(effects, Journal(effects, journal_dir))
    assert reverted.warnings == []
    for path, value in originals.items():
        assert canonical_value(path, read(path) or "") == value, path
    assert not (tmp_path / "journal").exists()

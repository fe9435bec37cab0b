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
from rtlibvirt.hostprep.effects import Effects
from rtlibvirt.hostprep.facts import gather
from rtlibvirt.hostprep.journal import Journal
from rtlibvirt.hostprep.plan import build_plan
from rtlibvirt.hostprep.revert import revert as revert_plan
from rtlibvirt.kernel.fs import HostFS

SYSCTL = {
    "/proc/sys/kernel/sched_rt_runtime_us": "-1",
    "/proc/sys/kernel/timer_migration": "0",
    "/proc/sys/kernel/nmi_watchdog": "0",
    "/proc/sys/vm/stat_interval": "10",
}
HUGEPAGES = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"


def read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


@pytest.fixture
def originals(live_host: None) -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root to write /proc/sys")
    paths = [p for p in [*SYSCTL, HUGEPAGES] if read(p) is not None]
    saved = {p: read(p) or "" for p in paths}
    yield saved
    for path, value in saved.items():  # whatever happened, put the host back
        if read(path) != value:
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
    assert (tmp_path / "journal/journal.json").exists()

    reverted = revert_plan(effects, Journal(effects, journal_dir))
    assert reverted.warnings == []
    for path, value in originals.items():
        assert read(path) == value, path
    assert not (tmp_path / "journal").exists()

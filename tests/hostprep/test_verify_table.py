"""verify's text table: its columns line up whatever the lengths of the values (issue 21
item 6). Before, each column was cut at 48 characters and a longer value pushed the rest
of its line to the right. --json is not this table and keeps the rows as they are."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rtlibvirt.hostprep.report import render_rows
from rtlibvirt.hostprep.verify import Row
from tests.fakes.hostprep import run_cli
from tests.fakes.roots import make_tree

LONG = "/etc/systemd/system/multi-user.target.wants/rtlibvirt-host.service"
ROWS = [
    Row("cmdline isolcpus", "isolcpus=managed_irq,domain,2-13", "configured", "ok"),
    Row(f"file {LONG}", f"symlink -> {LONG}", "absent", "missing"),
    Row(
        "cmdline rcutree.nohz_full_patience_delay",
        "rcutree.nohz_full_patience_delay=1000",
        "not configured",
        "missing",
    ),
    Row(
        "the other boot entries (1)",
        "the arguments above",
        "0-rescue-2e0e3c8a5b7d4c1f9a6b0d3e8f1c2a4b: isolcpus=managed_irq,domain,2-13 missing "
        "and 30 more",
        "differs",
    ),
    Row("kernel.sched_rt_runtime_us", "-1", "950000 (a tree: set at its boot)", "n/a"),
    *[Row(f"cpufreq policy{n} governor", "performance", "schedutil", "differs") for n in range(12)],
]
STATUSES = {"ok", "MISSING", "DIFFERS", "n/a"}


def columns(text: str) -> tuple[list[int], list[str]]:
    """Where the header's columns start, and the table's lines."""
    lines = text.splitlines()
    starts = [lines[0].index(h) for h in ("WHAT", "WANTED", "FOUND", "STATUS")]
    return starts, lines


def cells(text: str) -> list[list[str]]:
    """Each row's four cells, its continuation lines joined back, read by the header's
    column positions (which only works when every line keeps to them)."""
    starts, lines = columns(text)
    rows: list[list[str]] = []
    for line in lines[1:]:
        parts = [line[a:b] for a, b in zip(starts, [*starts[1:], None], strict=True)]
        for part, start in zip(parts[:-1], starts[1:], strict=True):
            assert len(part) < 2 or part[-2:] == "  " or len(line) <= start, (
                f"a cell runs into the next column: {line!r}"
            )
        if parts[3].strip():
            rows.append([p.strip() for p in parts])
        else:  # a continuation line: no status
            for i in range(3):
                rows[-1][i] += parts[i].strip()
    return rows


@pytest.mark.parametrize("width", [None, 80, 100, 140])
def test_columns_line_up_and_nothing_is_lost(width: int | None) -> None:
    text = render_rows(ROWS, width)
    _, lines = columns(text)
    got = cells(text)
    assert len(got) == len(ROWS)
    for row, (what, wanted, found, status) in zip(ROWS, got, strict=True):
        # wrapped at blanks (dropped there), slashes, commas, '=' or '.': the same text
        assert what.replace(" ", "") == row.what.replace(" ", "")
        assert wanted.replace(" ", "") == row.wanted.replace(" ", "")
        assert found.replace(" ", "") == row.found.replace(" ", "")
        assert status in STATUSES
    if width is None:
        assert len(lines) == len(ROWS) + 1  # one line per row, for grep
    else:
        assert max(len(line) for line in lines) <= width
        assert len(lines) > len(ROWS) + 1  # the long ones wrapped


def test_a_wrapped_path_breaks_after_a_slash() -> None:
    _, lines = columns(render_rows(ROWS, 80))
    first = next(i for i, line in enumerate(lines) if line.startswith("file /etc/"))
    assert lines[first].split("  ")[0].rstrip().endswith("/")


def test_verify_on_a_terminal_wraps_and_json_does_not(tmp_path: Path, monkeypatch) -> None:
    root = make_tree(tmp_path / "root", "rhel", cpus=8)
    spec = tmp_path / "host.yaml"
    spec.write_text("isolated_cpus: 2-5\n")
    monkeypatch.setattr("rtlibvirt.cli.hostprep._terminal_width", lambda: 90)
    code, out, _ = run_cli("host-prep", "verify", str(spec), "--root", str(root))
    assert code == 3
    starts, lines = columns(out)
    assert max(len(line) for line in lines) <= 90
    for line in lines[1:]:
        status = line[starts[3] :].strip()
        assert status in STATUSES | {""}, line
        assert not re.search(r"\S", line[starts[3] - 2 : starts[3]]), line
    code, out, _ = run_cli("host-prep", "verify", str(spec), "--root", str(root), "--json")
    rows = json.loads(out)["rows"]
    assert any(
        r["what"].startswith("file /etc/systemd/system/multi-user.target.wants/") for r in rows
    )
    assert all("\n" not in r["found"] for r in rows)

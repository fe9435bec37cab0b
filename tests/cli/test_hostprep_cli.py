"""The commands as a user runs them on a tree (--root): errors, exit codes, nothing changed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtlibvirt.cli import cli
from tests.fakes.hostprep import Host
from tests.fakes.roots import make_tree, snapshot


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def debian(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "root", "debian")


BAD = [
    ("isolated_cpus: 2-5\nhousekeeping_cpus: 0-3\n", 2, "housekeeping_cpus: CPUs 2-3 are both"),
    ("isolated_cpus: 0-3\n", 1, "isolated_cpus: CPU 0 is isolated"),
    ("isolated_cpus: 0-13\n", 1, "isolates every CPU of the host (0-13)"),
    ("isolated_cpus: 4-20\n", 1, "isolated_cpus: CPUs 14-20 do not exist: the host has CPUs 0-13"),
    ("isolated_cpus: 4\nhousekeeping_cpus: [0, 99]\n", 2, "CPU 99 does not exist"),
    ("isolate_cpus: 4\n", 1, "did you mean `isolated_cpus`?"),
    ("isolated_cpus: 4\nidle: sleepy\n", 2, "idle: must be 'poll', 'shallow' or 'default'"),
    ("isolated_cpus: 4\nhugepages: {size: 1G}\n", 2, "hugepages.count: is required but missing"),
    ("isolated_cpus: 4\nextra_kernel_args: ['a b']\n", 2, "is not one kernel argument"),
    ("isolated_cpus: 4\nlapic_timer_advance_ns: yes\n", 2, "lapic_timer_advance_ns: expected"),
    ("isolated_cpus: 4\ncpu_vendor: amd\n", 2, "cpu_vendor: is amd but /proc/cpuinfo says"),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD)
def test_bad_host_yaml(
    debian: Path, write_host: Callable[..., Path], text: str, line: int, message: str
) -> None:
    spec = write_host(text)
    before = snapshot(debian)
    for command in ("plan", "apply", "verify"):
        extra = ["--yes"] if command == "apply" else []
        code, out, err = run("host-prep", command, str(spec), "--root", str(debian), *extra)
        assert code == 2, (command, out, err)
        assert f"{spec}:{line}:" in err and message in err, err
        assert "Traceback" not in err
    assert snapshot(debian) == before


def test_every_problem_at_once(debian: Path, write_host: Callable[..., Path]) -> None:
    spec = write_host("isolated_cpus: 0-13\nhousekeeping_cpus: 0\nmitigations: 'off'\n")
    code, _, err = run("host-prep", "plan", str(spec), "--root", str(debian))
    assert code == 2
    assert "CPU 0 is isolated" in err and "every CPU" in err and "both isolated" in err
    assert "nothing was changed" in err


def test_unknown_service_is_a_warning(debian: Path, write_host: Callable[..., Path]) -> None:
    spec = write_host("isolated_cpus: 4\ndisable_services: [irqbalance, no-such-thing]\n")
    code, out, err = run("host-prep", "plan", str(spec), "--root", str(debian))
    assert code == 0
    assert f"warning: {spec}:2: disable_services[1]: no-such-thing.service is not installed" in err
    assert "irqbalance.service: disable" in out


def test_unknown_distribution_prints_the_arguments(tmp_path: Path, write_host) -> None:
    root = make_tree(tmp_path / "alpine", "alpine")
    spec = write_host("isolated_cpus: 4\n")
    before = snapshot(root)
    code, _, err = run("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 1
    assert "unknown distribution (Alpine Linux v3.20)" in err
    assert "isolcpus=managed_irq,domain,4 nohz=on" in err  # to add by hand
    assert snapshot(root) == before
    # The runtime part needs no boot loader.
    code, out, _ = run("host-prep", "plan", str(spec), "--root", str(root), "--runtime-only")
    assert code == 0 and "kernel.timer_migration" in out


@pytest.mark.parametrize(
    ("distro", "tool", "message"),
    [
        ("debian", "usr/sbin/update-grub", "GRUB is not installed"),
        ("rhel", "usr/sbin/grubby", "grubby is not installed"),
    ],
)
def test_missing_tools(tmp_path: Path, write_host, distro: str, tool: str, message: str) -> None:
    root = make_tree(tmp_path / distro, distro)
    (root / tool).unlink()
    spec = write_host("isolated_cpus: 4\n")
    before = snapshot(root)
    code, _, err = run("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 1 and message in err and "hint:" in err
    assert snapshot(root) == before


def test_unreadable_files(tmp_path: Path, write_host: Callable[..., Path]) -> None:
    spec = write_host("isolated_cpus: 4\n")
    root = make_tree(tmp_path / "a", "debian")
    (root / "etc/os-release").unlink()
    (root / "etc/os-release").mkdir()
    code, _, err = run("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 1 and "os-release: is a directory" in err
    root = make_tree(tmp_path / "b", "debian")
    (root / "proc/cpuinfo").write_bytes(b"vendor_id\t: \xff\xfe\n")
    code, _, err = run("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 1 and "cpuinfo: not UTF-8" in err
    root = make_tree(tmp_path / "c", "debian")
    (root / "etc/sysctl.d/50-rtlibvirt.conf").mkdir()
    before = snapshot(root)
    code, _, err = run("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 1 and "50-rtlibvirt.conf: is a directory" in err
    assert snapshot(root) == before
    code, _, err = run("host-prep", "plan", str(tmp_path / "missing.yaml"), "--root", str(root))
    assert code == 2 and "no such file" in err


def test_tree_without_proc_needs_vendor_and_housekeeping(tmp_path: Path, write_host) -> None:
    root = make_tree(tmp_path / "image", "debian", proc=False)
    code, _, err = run(
        "host-prep", "plan", str(write_host("isolated_cpus: 4\n")), "--root", str(root)
    )
    assert code == 2
    assert "cpu_vendor: is required here" in err and "housekeeping_cpus: is required here" in err
    spec = write_host("isolated_cpus: 2-7\nhousekeeping_cpus: 0-1\ncpu_vendor: amd\n")
    code, out, err = run("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 0, err
    assert "amd_pstate=disable" in out
    assert "kernel.timer_migration: /proc/sys/kernel/timer_migration does not exist under" in out


def test_apply_without_yes_needs_a_terminal(debian: Path, write_host) -> None:
    before = snapshot(debian)
    code, _, err = run(
        "host-prep",
        "apply",
        str(write_host("isolated_cpus: 4\n")),
        "--root",
        str(debian),
        stdin="y\n",
    )
    assert code == 2 and "without --yes" in err
    assert snapshot(debian) == before


def test_root_apply_verify_revert(debian: Path, write_host, monkeypatch) -> None:
    spec = write_host("isolated_cpus: 4\ndisable_services: [irqbalance]\n")
    before = snapshot(debian)
    code, out, _ = run("host-prep", "verify", str(spec), "--root", str(debian))
    assert code == 3 and "MISSING" in out

    code, out, err = run("host-prep", "apply", str(spec), "--root", str(debian), "--yes")
    assert code == 0, err
    assert "not run (--root): update-grub" in out
    assert "runtime values not written" in out
    assert (debian / "proc/sys/kernel/timer_migration").read_text() == "1\n"
    assert (debian / "etc/default/grub.d/99-rtlibvirt.cfg").exists()

    # A tree has no running kernel: verify compares the configured command line (the
    # drop-in), not the tree's /proc/cmdline, and shows runtime values uncompared.
    code, out, err = run("host-prep", "verify", str(spec), "--root", str(debian))
    assert code == 0, out
    assert "compared: the configured command line" in err
    assert "all" in err and "match" in err
    timer = next(line for line in out.splitlines() if line.startswith("kernel.timer_migration"))
    assert "1 (a tree: set at its boot)" in timer and timer.endswith("n/a")

    code, out, _ = run("host-prep", "revert", "--root", str(debian))
    assert code == 0 and "not run (--root): update-grub" in out
    assert snapshot(debian) == before
    code, out, _ = run("host-prep", "revert", "--root", str(debian))
    assert code == 0 and "nothing to revert" in out


def test_fake_host_runs_the_stand_ins(fake_host: Callable[..., Host]) -> None:
    """The library on a fake root with commands allowed: what the live host would run."""
    host = fake_host("debian")
    report = host.apply()
    assert "ran update-grub" in report.lines
    assert host.commands() == ["update-grub "]


def test_the_example_plans_on_a_seed_shaped_host(debian: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples/host-prep/host.yaml"
    code, out, err = run("host-prep", "plan", str(example), "--root", str(debian))
    assert code == 0, err
    assert "isolcpus=managed_irq,domain,2-13" in out and "CPUAffinity=0-1" in out
    assert "thermald.service is not installed" in err

"""TuneD beside host-prep (issue 22 item 5): plan and verify name the active profile, what
it sets, the two writers and a conflict of isolated CPUs, and how to combine them."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from rtlibvirt.cli import cli
from tests.fakes.roots import make_tree, snapshot, write


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def tree(tmp_path: Path, profile: str, variables: str | None = None) -> Path:
    root = make_tree(tmp_path / "root", "rhel", cpus=8)
    write(root, "/etc/tuned/active_profile", profile + "\n")
    write(root, "/etc/tuned/profile_mode", "manual\n")
    if variables is not None:
        name = profile.split()[0]
        write(root, f"/etc/tuned/{name}-variables.conf", variables)
    return root


def test_realtime_virtual_host_with_other_isolated_cores(tmp_path: Path) -> None:
    root = tree(tmp_path, "realtime-virtual-host", "# Examples:\nisolated_cores=2-7\n")
    spec = tmp_path / "host.yaml"
    spec.write_text("isolated_cpus: 2-5\n")
    before = snapshot(root)
    code, out, err = run("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 0, err
    notes = [line for line in out.splitlines() if line.startswith("  tuned:")]
    text = "\n".join(notes)
    assert "realtime-virtual-host < realtime < network-latency < latency-performance" in text
    assert "KSM stopped" in text and "transparent hugepages never" in text
    assert "two writers" in text and "isolcpus" in text
    assert "conflict: TuneD's realtime-virtual-host isolates CPUs 2-7" in text
    assert "host.yaml 2-5" in text and "to combine them" in text
    assert snapshot(root) == before  # notes only
    code, out, err = run("host-prep", "verify", str(spec), "--root", str(root))
    assert "note: TuneD's active profile realtime-virtual-host" in err


def test_same_isolated_cores_is_no_conflict(tmp_path: Path) -> None:
    root = tree(tmp_path, "cpu-partitioning", "isolated_cores=2-5\n")
    spec = tmp_path / "host.yaml"
    spec.write_text("isolated_cpus: 2-5\n")
    code, out, err = run("host-prep", "plan", str(spec), "--root", str(root), "--json")
    assert code == 0, err
    assert "two writers" in out and "conflict:" not in out


def test_a_profile_without_a_command_line_and_an_unknown_one(tmp_path: Path) -> None:
    spec = tmp_path / "host.yaml"
    spec.write_text("isolated_cpus: 2-5\n")
    root = tree(tmp_path, "throughput-performance")
    code, out, err = run("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 0, err
    assert "transparent hugepages always" in out and "two writers" not in out
    (root / "etc/tuned/active_profile").write_text("my-site-profile\n")
    code, out, err = run("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 0, err
    assert "my-site-profile" in out and "tuned-adm verify" in out
    (root / "etc/tuned/active_profile").write_text("$(reboot)\n")  # not a profile name
    code, out, _err = run("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 0 and "tuned:" not in out

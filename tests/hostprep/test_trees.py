"""host-prep on trees and hosts without GRUB, and verify/revert on a tree (issue 21 item 7).

Each test failed before the fix: plan printed no plan without update-grub; verify --root
compared the tree's /proc/cmdline and could never pass; the unit ran a hard-coded
/usr/local/bin/rtlibvirt; README's table said `revert HOST.yaml`; revert --root left
the var/lib folders it created.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.fakes.hostprep import run_cli
from tests.fakes.roots import make_tree, snapshot, write

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "host.yaml"
    path.write_text("isolated_cpus: 2-5\n")
    return path


@pytest.mark.parametrize("distro", ["alpine", "debian-without-grub"])
def test_plan_without_a_boot_loader_tool_shows_the_whole_plan(
    tmp_path: Path, spec: Path, distro: str
) -> None:
    root = make_tree(tmp_path / "root", "debian" if distro.startswith("debian") else distro, cpus=8)
    if distro == "debian-without-grub":
        (root / "usr/sbin/update-grub").unlink()
    before = snapshot(root)
    code, out, err = run_cli("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 0, err
    assert "NOT APPLIABLE" in out and "isolcpus=managed_irq,domain,2-5" in out
    assert "create /etc/sysctl.d/50-rtlibvirt.conf" in out  # the rest of the plan is there
    assert "/etc/default/grub.d/99-rtlibvirt.cfg" not in out
    assert snapshot(root) == before

    code, out, err = run_cli("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 1 and "--skip-cmdline" in err and "Traceback" not in err
    assert snapshot(root) == before  # refused: nothing changed

    code, out, err = run_cli(
        "host-prep", "apply", str(spec), "--root", str(root), "--yes", "--skip-cmdline"
    )
    assert code == 0, err
    assert (root / "etc/sysctl.d/50-rtlibvirt.conf").is_file()
    assert not (root / "etc/default/grub.d/99-rtlibvirt.cfg").exists()
    code, out, err = run_cli("host-prep", "revert", "--root", str(root))
    assert code == 0, err
    assert snapshot(root) == before


@pytest.mark.parametrize("distro", ["debian", "ubuntu"])
def test_verify_on_a_tree_compares_the_configured_command_line(
    tmp_path: Path, spec: Path, distro: str
) -> None:
    root = make_tree(tmp_path / "root", distro, cpus=8)
    code, out, err = run_cli("host-prep", "verify", str(spec), "--root", str(root))
    assert code == 3 and "cmdline isolcpus" in out
    code, out, err = run_cli("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 0, err
    code, out, err = run_cli("host-prep", "verify", str(spec), "--root", str(root))
    assert code == 0, out + err
    assert "compared: the configured command line: the GRUB drop-in" in err
    assert re.search(r"cmdline isolcpus\s+\S+\s+configured\s+ok", out), out
    code, out, err = run_cli("host-prep", "verify", str(spec), "--root", str(root), "--json")
    assert code == 0
    assert '"cmdline_compared": "the configured command line' in out


def test_the_unit_runs_the_rtlibvirt_of_the_tree(tmp_path: Path, spec: Path) -> None:
    root = make_tree(tmp_path / "root", "debian", cpus=8)
    code, out, err = run_cli("host-prep", "plan", str(spec), "--root", str(root))
    assert "no rtlibvirt in the tree" in out  # the plan says the unit would fail
    write(root, "/usr/bin/rtlibvirt", "#!/usr/bin/python3\n", 0o755)
    code, out, err = run_cli("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 0, err
    unit = (root / "etc/systemd/system/rtlibvirt-host.service").read_text()
    assert "ExecStart=/usr/bin/rtlibvirt host-prep apply --runtime-only" in unit
    code, out, err = run_cli("host-prep", "plan", str(spec), "--root", str(root))
    assert "rtlibvirt-host.service runs /usr/bin/rtlibvirt: found in the tree" in out


def test_the_readme_revert_command_is_accepted(tmp_path: Path) -> None:
    row = next(line for line in README.read_text().splitlines() if "host-prep revert" in line)
    usage = re.findall(r"`rtlibvirt host-prep revert[^`]*`|`host-prep revert[^`]*`", row)
    assert usage, row
    words = usage[0].strip("`").split()
    words = words[1:] if words[0] == "rtlibvirt" else words
    root = make_tree(tmp_path / "root", "debian", cpus=4)
    code, _out, err = run_cli(*words, "--root", str(root))
    assert code == 0, (words, err)


def test_revert_on_a_tree_removes_the_folders_it_created(tmp_path: Path, spec: Path) -> None:
    root = make_tree(tmp_path / "root", "debian", cpus=8)
    shutil.rmtree(root / "var")  # an image without /var/lib yet
    before = snapshot(root)
    code, _out, err = run_cli("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 0, err
    assert (root / "var/lib/rtlibvirt/host-prep/journal.json").is_file()
    code, _out, err = run_cli("host-prep", "revert", "--root", str(root))
    assert code == 0, err
    assert snapshot(root) == before


@pytest.mark.parametrize(("distro", "rt"), [("debian", False), ("debian", True), ("rhel", True)])
def test_verify_says_when_the_kernel_is_not_preempt_rt(
    tmp_path: Path, spec: Path, distro: str, rt: bool
) -> None:
    root = make_tree(tmp_path / "root", distro, cpus=8, rt=rt)
    code, out, err = run_cli("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 0, err
    code, out, err = run_cli("host-prep", "verify", str(spec), "--root", str(root))
    line = next(line for line in out.splitlines() if line.startswith("kernel "))
    if rt:
        assert line.endswith(" ok")
        assert code == 0, out  # RHEL too: apply --root writes the boot entries grubby would
    else:
        # shown and explained, but not drift: host.yaml does not choose the kernel
        assert "not PREEMPT_RT" in line and "PREEMPT_DYNAMIC" in line and line.endswith("WARNING")
        assert "linux-image-rt-amd64" in err
        assert code == 0, out


def test_fifos_where_kernel_files_are_expected_do_not_hang(tmp_path: Path, spec: Path) -> None:
    root = make_tree(tmp_path / "root", "debian", cpus=8)
    for host_path in (
        "sys/kernel/realtime",
        "etc/tuned/active_profile",
        "sys/devices/system/cpu/cpufreq/policy0/scaling_available_governors",
        "sys/devices/system/cpu/vulnerabilities/itlb_multihit",
    ):
        (root / host_path).parent.mkdir(parents=True, exist_ok=True)
        (root / host_path).unlink(missing_ok=True)
        os.mkfifo(root / host_path)  # opening one for reading would block
    code, out, err = run_cli("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 0, err
    code, out, err = run_cli("host-prep", "verify", str(spec), "--root", str(root))
    assert "kernel " in out and "Traceback" not in err
    # a runtime value host-prep would compare: refused in one line, not read
    (root / "sys/kernel/mm/transparent_hugepage/enabled").unlink()
    os.mkfifo(root / "sys/kernel/mm/transparent_hugepage/enabled")
    code, out, err = run_cli("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 1 and "enabled: not a regular file" in err and "Traceback" not in err

"""Services are disabled and masked as systemd does it: host-prep's result equals the
real `systemctl --root` on a copy of the same tree, and revert puts the tree back byte
for byte.

The trees hold units shaped like Debian's (avahi-daemon with its socket and D-Bus
alias, cups with its socket and path units, getty@ instances, a static unit, a
unit linked in from /opt), enabled by the real systemctl.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtlibvirt.cli import cli
from rtlibvirt.hostprep import systemd
from rtlibvirt.hostprep.plan import DEFAULT_PROGRAM
from tests.fakes.roots import (
    add_service_units,
    make_tree,
    real_systemctl,
    snapshot,
    systemctl,
)

pytestmark = pytest.mark.skipif(
    shutil.which("systemctl") is None, reason="needs systemd's systemctl (Debian: systemd)"
)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def units_tree(root: Path) -> dict[str, tuple[str, int, bytes]]:
    return {k: v for k, v in snapshot(root).items() if k.startswith("etc/systemd/system/")}


def is_enabled(root: Path, unit: str) -> str:
    done = subprocess.run(
        [real_systemctl(), f"--root={root}", "is-enabled", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    return (done.stdout.strip() or done.stderr.strip()).splitlines()[-1]


def expected_by_systemctl(root: Path, tmp: Path, disable: list[str], mask: list[str]) -> Path:
    """A copy of ``root`` changed by the real systemctl as host-prep would: our unit
    enabled, ``disable`` disabled, ``mask`` masked."""
    copy = tmp / "expected"
    shutil.copytree(root, copy, symlinks=True)
    unit = copy / systemd.UNIT_PATH.lstrip("/")
    unit.write_bytes(systemd.unit_text(DEFAULT_PROGRAM))
    unit.chmod(0o644)
    systemctl(copy, "enable", systemd.UNIT)
    if disable:
        systemctl(copy, "disable", *disable)
    if mask:
        systemctl(copy, "mask", *mask)
    return copy


CASES = [
    # (disable_services, mask_services, unit states asked of systemctl afterwards)
    (["avahi-daemon"], [], {"avahi-daemon.service": "disabled", "avahi-daemon.socket": "disabled"}),
    (
        ["cups"],
        [],
        {"cups.socket": "disabled", "cups.path": "disabled", "cups.service": "disabled"},
    ),
    (["getty@tty2"], [], {"getty@tty2.service": "disabled", "getty@tty1.service": "enabled"}),
    (["getty@"], [], {"getty@tty1.service": "disabled", "getty@tty2.service": "disabled"}),
    (["dbus-org.freedesktop.Avahi"], [], {"avahi-daemon.service": "disabled"}),
    (["thermald", "tuned", "irqbalance"], [], {"tuned.service": "disabled"}),
    (["plc-bridge"], [], {}),  # a linked unit: disable removes the link as well
    (["ksm"], [], {"ksm.service": "static"}),
    ([], ["ksm"], {"ksm.service": "masked"}),
    (["cups"], ["avahi-daemon.socket", "ksm"], {"avahi-daemon.socket": "masked"}),
    (["wpa_supplicant", "avahi-daemon", "cups", "getty@tty1"], [], {"cups.path": "disabled"}),
]


@pytest.mark.parametrize("distro", ["debian", "rhel"])
@pytest.mark.parametrize(("disable", "mask", "states"), CASES)
def test_disable_and_mask_equal_systemctl_and_revert_is_exact(
    tmp_path: Path,
    distro: str,
    disable: list[str],
    mask: list[str],
    states: dict[str, str],
) -> None:
    root = make_tree(tmp_path / "root", distro)
    add_service_units(root, distro)
    original = snapshot(root)
    expected = expected_by_systemctl(root, tmp_path, disable, mask)
    spec = tmp_path / "host.yaml"
    spec.write_text(  # ksm: true: only the units listed here
        f"isolated_cpus: 4\nksm: true\ndisable_services: {disable}\nmask_services: {mask}\n"
    )

    code, out, err = run("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 0, err
    assert units_tree(root) == units_tree(expected)
    for unit, state in states.items():
        assert is_enabled(root, unit) == state, unit
    for unit in [*disable, *mask]:
        assert is_enabled(root, unit) == is_enabled(expected, unit), unit
    code, out, err = run("host-prep", "verify", str(spec), "--root", str(root))
    service_rows = [line for line in out.splitlines() if line.startswith("service ")]
    assert len(service_rows) == len(disable) + len(mask), out
    assert all(line.endswith(" ok") for line in service_rows), service_rows

    applied = snapshot(root)
    code, out, err = run("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 0 and snapshot(root) == applied  # idempotent

    code, out, err = run("host-prep", "revert", "--root", str(root))
    assert code == 0, err
    assert snapshot(root) == original


def test_a_static_unit_to_disable_is_noted_with_the_way_to_mask_it(
    tmp_path: Path,
) -> None:
    root = make_tree(tmp_path / "root", "debian")
    add_service_units(root)
    spec = tmp_path / "host.yaml"
    spec.write_text("isolated_cpus: 4\ndisable_services: [ksm]\n")
    code, out, err = run("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 0, err
    assert "ksm.service is static (no [Install] section)" in out
    assert "list it in mask_services" in out


def test_a_template_instance_is_installed_and_enabled(tmp_path: Path) -> None:
    """getty@tty2 has no file of its own: its template's counts (it was 'not installed')."""
    root = make_tree(tmp_path / "root", "debian")
    add_service_units(root)
    spec = tmp_path / "host.yaml"
    spec.write_text("isolated_cpus: 4\ndisable_services: [getty@tty2]\n")
    code, out, err = run("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 0, err
    assert "not installed" not in err
    assert "remove /etc/systemd/system/getty.target.wants/getty@tty2.service" in out


def test_a_changed_list_re_enables_what_is_no_longer_listed(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", "debian")
    add_service_units(root)
    original = snapshot(root)
    spec = tmp_path / "host.yaml"
    spec.write_text("isolated_cpus: 4\ndisable_services: [cups, avahi-daemon]\n")
    assert run("host-prep", "apply", str(spec), "--root", str(root), "--yes")[0] == 0
    spec.write_text("isolated_cpus: 4\ndisable_services: [cups]\n")
    code, _, err = run("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 0, err
    assert is_enabled(root, "avahi-daemon.service") == "enabled"
    assert is_enabled(root, "avahi-daemon.socket") == "enabled"
    assert is_enabled(root, "cups.socket") == "disabled"
    expected = expected_by_systemctl(root, tmp_path, [], [])  # from the current tree
    assert units_tree(root) == units_tree(expected)
    assert run("host-prep", "revert", "--root", str(root))[0] == 0
    assert snapshot(root) == original


def test_apply_killed_after_any_change_still_reverts(
    fake_host: Callable[..., object], tmp_path: Path
) -> None:
    from tests.fakes.hostprep import Host
    from tests.hostprep.test_plan_apply_revert import Killed, kill_after

    host = fake_host("debian", "isolated_cpus: 4\ndisable_services: [avahi-daemon, cups]\n")
    assert isinstance(host, Host)
    add_service_units(host.root)
    original = snapshot(host.root)
    counted = host.effects()
    from rtlibvirt.hostprep.apply import apply as apply_plan
    from rtlibvirt.hostprep.journal import Journal

    apply_plan(host.plan(), counted, Journal(counted))
    host.revert()
    assert snapshot(host.root) == original
    for n in range(counted.changes):
        with pytest.raises(Killed):
            host.apply(before_change=kill_after(n))
        host.revert()
        assert snapshot(host.root) == original, f"killed after {n} of {counted.changes}"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("disable_services: [cups]\nmask_services: [cups]\n", 3, "in both disable_services"),
        ("disable_services: ['../../etc/passwd']\n", 2, "is not a systemd unit name"),
        ('disable_services: ["cups\\n"]\n', 2, "contains a newline"),
        ("disable_services: ['-cups']\n", 2, "is not a systemd unit name"),
        ("mask_services: ['" + "a" * 300 + "']\n", 2, "is too long: at most 255"),
        ("disable_services: [rtlibvirt-host]\n", 2, "host-prep's own boot-time unit"),
    ],
)
def test_bad_unit_names(tmp_path: Path, text: str, line: int, message: str) -> None:
    root = make_tree(tmp_path / "root", "debian")
    spec = tmp_path / "host.yaml"
    spec.write_text("isolated_cpus: 4\n" + text)
    before = snapshot(root)
    code, out, err = run("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 2, err
    assert f"{spec}:{line}:" in err and message in err, err
    assert out == "" and snapshot(root) == before

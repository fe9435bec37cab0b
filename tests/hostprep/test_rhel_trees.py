"""host-prep and guest-prep on a RHEL-family tree (--root): the boot entries (issue 21 item 7).

grubby is not run in a tree. Before the fix apply --root listed its commands and wrote
nothing, so verify --root could only say "not configured". Now apply --root writes what
`grubby --update-kernel=ALL` leaves: every BootLoaderSpec entry's options (RHEL 9), or
kernelopts= in grubenv where the entries say $kernelopts (RHEL 8), and GRUB_CMDLINE_LINUX;
verify compares those files and names the one it compared.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from rtlibvirt.hostprep import grub
from rtlibvirt.kernel.fs import HostFS
from tests.fakes.hostprep import Host, run_cli
from tests.fakes.roots import RHEL_KERNEL, RHEL_MACHINE_ID, make_tree, snapshot, write

ENTRIES = "boot/loader/entries"
DEFAULT = f"/{ENTRIES}/{RHEL_MACHINE_ID}-{RHEL_KERNEL}.conf"
RESCUE = f"/{ENTRIES}/{RHEL_MACHINE_ID}-0-rescue-{RHEL_MACHINE_ID}.conf"
USERS = ["crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M", "rd.lvm.lv=rhel/swap"]


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "host.yaml"
    path.write_text("isolated_cpus: 2-5\nhugepages: {size: 1G, count: 2}\ncache_allocation: true\n")
    return path


def options(root: Path, entry: str) -> list[str]:
    return grub.bls_entries(HostFS(root))[entry].split()


def planned(spec: Path, root: Path) -> list[str]:
    code, out, err = run_cli("host-prep", "plan", str(spec), "--root", str(root), "--json")
    assert code == 0, err
    return [a["arg"] for a in json.loads(out)["kernel_args"]]


def test_apply_root_writes_the_entries_verify_compares_them_revert_restores(
    tmp_path: Path, spec: Path
) -> None:
    root = make_tree(tmp_path / "root", "rhel", cpus=8)
    before = snapshot(root)
    args = planned(spec, root)
    code, out, err = run_cli("host-prep", "verify", str(spec), "--root", str(root))
    assert code == 3
    assert "cmdline isolcpus" in out and "not configured" in out
    assert "the other boot entries (1)" in out and "isolcpus=managed_irq,domain,2-5 missing" in out

    code, out, err = run_cli("host-prep", "plan", str(spec), "--root", str(root))
    assert f"update {DEFAULT}: boot entry" in out and "grubby is not run in a tree" in out
    assert "grubby --update-kernel" not in out.split("Commands:")[1].split("Services:")[0]
    code, out, err = run_cli("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 0, err
    for entry in (DEFAULT, RESCUE):
        words = options(root, entry)
        assert grub.entry_problems(" ".join(words), args) == [], entry
        assert "hugepages=4" not in words and "hugepages=4" in before[f"{entry[1:]}"][2].decode()
        assert [w for w in words if w in USERS] == USERS  # the user's own stay, in order
    defaults = (root / "etc/default/grub").read_text()
    line = next(x for x in defaults.splitlines() if x.startswith("GRUB_CMDLINE_LINUX="))
    assert grub.entry_problems(line.split("=", 1)[1].strip('"'), args) == []

    code, out, err = run_cli("host-prep", "verify", str(spec), "--root", str(root))
    assert code == 0, out + err
    assert (
        f"compared: the configured command line: the options of the default boot entry {DEFAULT}"
        in err
    )
    code, out, _ = run_cli("host-prep", "verify", str(spec), "--root", str(root), "--json")
    data = json.loads(out)
    assert data["matches"] and DEFAULT in data["cmdline_compared"]
    rows = {r["what"]: r for r in data["rows"]}
    assert rows["cmdline hugepages"] == {
        "what": "cmdline hugepages",
        "wanted": "hugepages=2",
        "found": "configured",
        "status": "ok",
    }

    code, out, _ = run_cli("host-prep", "apply", str(spec), "--root", str(root), "--yes", "--json")
    assert code == 0 and json.loads(out)["changed"] is False  # twice = once
    code, out, err = run_cli("host-prep", "revert", "--root", str(root))
    assert code == 0, err
    assert snapshot(root) == before


def test_the_same_arguments_as_grubby_itself(fake_host: Callable[..., Host]) -> None:
    """The tree's entries after apply --root hold what the grubby stand-in (grubby-bls's
    update_args) gives them on the live path: each argument once, the same words."""
    host = fake_host("rhel")
    host.apply(live=False)
    tree = {e: sorted(o.split()) for e, o in grub.bls_entries(HostFS(host.root)).items()}
    assert not any(c.startswith("grubby") for c in host.commands())
    host.revert(live=False)
    host.apply(live=True)
    assert any(c.startswith("grubby") for c in host.commands())
    live = {e: sorted(o.split()) for e, o in grub.bls_entries(HostFS(host.root)).items()}
    assert tree == live


def rhel8(root: Path) -> None:
    """RHEL 8's layout: entries with `options $kernelopts $tuned_params`, the arguments in
    grubenv's kernelopts=, grubenv a link to the EFI system partition's copy."""
    for entry in (DEFAULT, RESCUE):
        path = root / entry[1:]
        path.write_text(
            "\n".join(
                "options $kernelopts $tuned_params" if x.startswith("options ") else x
                for x in path.read_text().splitlines()
            )
            + "\n"
        )
    block = (
        "# GRUB Environment Block\n"
        f"saved_entry={RHEL_MACHINE_ID}-{RHEL_KERNEL}\n"
        "kernelopts=root=/dev/mapper/rhel-root ro crashkernel=auto hugepages=4 rhgb quiet\n"
        "boot_success=0\n"
    )
    write(root, "/boot/efi/EFI/redhat/grubenv", block + "#" * (1024 - len(block)))
    (root / "boot/grub2").mkdir(parents=True, exist_ok=True)
    os.symlink("../efi/EFI/redhat/grubenv", root / "boot/grub2/grubenv")


def test_rhel8_kernelopts_in_grubenv(tmp_path: Path, spec: Path) -> None:
    root = make_tree(tmp_path / "root", "rhel", cpus=8)
    rhel8(root)
    before = snapshot(root)
    args = planned(spec, root)
    code, out, err = run_cli("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 0, err
    assert "update /boot/efi/EFI/redhat/grubenv: kernelopts=" in out
    link = root / "boot/grub2/grubenv"
    assert link.is_symlink()  # written through the link, as grub2-editenv does
    block = (root / "boot/efi/EFI/redhat/grubenv").read_bytes()
    assert len(block) == 1024 and block.startswith(b"# GRUB Environment Block\n")
    env = grub.grubenv(HostFS(root))
    assert env["saved_entry"] == f"{RHEL_MACHINE_ID}-{RHEL_KERNEL}" and env["boot_success"] == "0"
    assert grub.entry_problems(env["kernelopts"], args) == []
    assert env["kernelopts"].startswith(
        "root=/dev/mapper/rhel-root ro crashkernel=auto rhgb quiet "
    )
    for entry in (DEFAULT, RESCUE):  # the entries still say $kernelopts
        assert (root / entry[1:]).read_bytes() == before[entry[1:]][2]

    code, out, err = run_cli("host-prep", "verify", str(spec), "--root", str(root))
    assert code == 0, out + err
    assert f"{DEFAULT} (its $kernelopts: kernelopts= in /boot/grub2/grubenv)" in err
    code, out, err = run_cli("host-prep", "revert", "--root", str(root))
    assert code == 0, err
    assert snapshot(root) == before


def test_grubenv_that_would_overflow_is_refused(tmp_path: Path, spec: Path) -> None:
    root = make_tree(tmp_path / "root", "rhel", cpus=8)
    rhel8(root)
    block = "# GRUB Environment Block\nkernelopts=" + "x" * 700 + "\n"
    (root / "boot/efi/EFI/redhat/grubenv").write_text(block + "#" * (1024 - len(block)))
    before = snapshot(root)
    code, _out, err = run_cli("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 1 and "GRUB's environment block holds 1024" in err and "Traceback" not in err
    assert snapshot(root) == before


def test_an_argument_host_yaml_drops_goes_away_and_an_edited_entry_is_kept(
    tmp_path: Path, spec: Path
) -> None:
    root = make_tree(tmp_path / "root", "rhel", cpus=8)
    before = snapshot(root)
    assert run_cli("host-prep", "apply", str(spec), "--root", str(root), "--yes")[0] == 0
    assert "rdt=l3cat" in options(root, DEFAULT)
    spec.write_text(spec.read_text().replace("cache_allocation: true", "cache_allocation: false"))
    code, out, err = run_cli("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 0, err
    assert "rdt=l3cat" not in options(root, DEFAULT) and "rdt=l3cat" not in options(root, RESCUE)
    assert run_cli("host-prep", "verify", str(spec), "--root", str(root))[0] == 0

    # the user edits an entry afterwards: revert keeps their file and says so
    entry = root / DEFAULT[1:]
    entry.write_text(entry.read_text() + "grub_arg --users-edit\n")
    code, out, err = run_cli("host-prep", "revert", "--root", str(root))
    assert code == 0, err
    assert f"{DEFAULT}: kept as it is: edited since host-prep changed it" in out + err
    assert "grub_arg --users-edit" in entry.read_text()
    after = snapshot(root)
    assert after[RESCUE[1:]] == before[RESCUE[1:]]
    assert after["etc/default/grub"] == before["etc/default/grub"]


def test_guest_prep_verify_root_compares_the_entries(tmp_path: Path) -> None:
    """guest-prep is the same engine with the guest profile: the same on a RHEL guest tree."""
    from tests.conftest import EXAMPLES

    root = make_tree(tmp_path / "root", "rhel", cpus=4)
    before = snapshot(root)
    vm = str(EXAMPLES / "plc.yaml")
    code, out, err = run_cli("guest-prep", "verify", vm, "--root", str(root))
    assert code == 3 and "not configured" in out
    code, out, err = run_cli("guest-prep", "apply", vm, "--root", str(root), "--yes")
    assert code == 0, err
    code, out, err = run_cli("guest-prep", "verify", vm, "--root", str(root))
    assert code == 0, out + err
    assert f"the options of the default boot entry {DEFAULT}" in err
    assert "isolcpus=managed_irq,domain,1-3" in options(root, DEFAULT)
    assert run_cli("guest-prep", "revert", "--root", str(root))[0] == 0
    assert snapshot(root) == before


def test_a_tree_without_boot_entries_says_so(tmp_path: Path, spec: Path) -> None:
    root = make_tree(tmp_path / "root", "rhel", cpus=8)
    for entry in (root / ENTRIES).iterdir():
        entry.unlink()
    code, out, err = run_cli("host-prep", "plan", str(spec), "--root", str(root))
    assert code == 0, err
    assert "boot loader: no boot entries under /boot/loader/entries in the tree" in out
    assert "update /etc/default/grub: GRUB_CMDLINE_LINUX" in out
    code, out, err = run_cli("host-prep", "verify", str(spec), "--root", str(root))
    assert code == 3 and "(there are none)" in err

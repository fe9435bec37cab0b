"""GRUB on Debian and Ubuntu, grubby on RHEL: each planned argument exactly once,
the user's own arguments kept, as grub-mkconfig (a real shell sourcing the files) sees it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.fakes.hostprep import Host
from tests.fakes.roots import sourced_cmdline

USER_ARGS = {
    "debian": ["console=ttyS0,115200n8", "net.ifnames=0"],
    "ubuntu": ["console=tty1", "console=ttyS0"],  # from 50-cloudimg-settings.cfg
    "rhel": ["crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M", "rd.lvm.lv=rhel/root"],
}


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize("distro", ["debian", "ubuntu", "rhel"])
def test_sourced_cmdline_has_every_arg_once(
    fake_host: Callable[..., Host], distro: str, shell: str
) -> None:
    host = fake_host(distro)
    planned = host.plan().cmdline.texts
    host.apply()
    linux, default = sourced_cmdline(host.root, shell).split("\n")
    words = linux.split()
    for arg in planned:
        assert words.count(arg) == 1, (arg, words)
    for arg in USER_ARGS[distro]:
        assert arg in words, (arg, words)
    # The user's hugepages=4 is replaced, not doubled: hugepages= counts pages of
    # the hugepagesz= before it, so ours come in order after the user's arguments.
    assert "hugepages=4" not in words
    assert words.index("hugepagesz=1G") < words.index("hugepages=8")
    assert default in ("quiet", "quiet splash", "")


def test_ubuntu_dropin_comes_after_cloudimg(fake_host: Callable[..., Host]) -> None:
    host = fake_host("ubuntu")
    host.apply()
    names = sorted(p.name for p in (host.root / "etc/default/grub.d").iterdir())
    assert names == ["50-cloudimg-settings.cfg", "99-rtlibvirt.cfg"]
    assert "this_is_overwritten_by_cloudimg" not in sourced_cmdline(host.root)


def test_debian_runs_update_grub_and_the_boot_entry_has_the_args(
    fake_host: Callable[..., Host],
) -> None:
    host = fake_host("debian")
    host.apply()
    assert host.commands() == ["update-grub "]
    grub_cfg = (host.root / "boot/grub/grub.cfg").read_text()
    for arg in host.plan().cmdline.texts:
        assert f" {arg} " in grub_cfg or f" {arg}\n" in grub_cfg


def test_rhel_uses_grubby_on_every_kernel(fake_host: Callable[..., Host]) -> None:
    host = fake_host("rhel")
    planned = host.plan().cmdline.texts
    host.apply()
    grubby = [c for c in host.commands() if c.startswith("grubby")]
    assert grubby == [
        "grubby --update-kernel=ALL --remove-args=default_hugepagesz hugepagesz hugepages "
        f"--args={' '.join(planned)}"
    ]
    for entry in (host.root / "boot/loader/entries").iterdir():
        options = next(
            line.split()[1:]
            for line in entry.read_text().splitlines()
            if line.startswith("options")
        )
        assert all(options.count(arg) == 1 for arg in planned)
        assert "rd.lvm.lv=rhel/swap" in options
    host.revert()
    # The entries were put back byte for byte from the journal: no grubby needed.
    assert [c for c in host.commands() if c.startswith("grubby")] == grubby


def test_rhel_revert_uses_grubby_for_an_entry_edited_since(fake_host: Callable[..., Host]) -> None:
    host = fake_host("rhel")
    host.apply()
    entries = sorted((host.root / "boot/loader/entries").iterdir())
    main = next(e for e in entries if "rescue" not in e.name)
    main.write_text(main.read_text().replace("grub_class rhel", "grub_class rhel-edited"))
    host.revert()
    removals = [c for c in host.commands() if "--remove-args" in c and "ALL" not in c]
    assert len(removals) == 1 and "/boot/vmlinuz-5.14.0-427.13.1.el9_4.x86_64" in removals[0]
    text = main.read_text()
    assert "grub_class rhel-edited" in text  # the admin's edit is kept
    options = next(line for line in text.splitlines() if line.startswith("options")).split()
    assert "hugepages=4" in options and "isolcpus=managed_irq,domain,4" not in options

"""GRUB on Debian and Ubuntu, grubby on RHEL: each planned argument exactly once,
the user's own arguments kept, as grub-mkconfig (a real shell sourcing the files) sees it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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


def options(entry: Path) -> list[str]:
    return next(
        line.split()[1:] for line in entry.read_text().splitlines() if line.startswith("options")
    )


@pytest.mark.parametrize("grubby", ["bls", "c"])
def test_rhel_uses_grubby_on_every_kernel(
    fake_host: Callable[..., Host], monkeypatch: pytest.MonkeyPatch, grubby: str
) -> None:
    monkeypatch.setenv("RTLIBVIRT_FAKE_GRUBBY", grubby)
    host = fake_host("rhel")
    planned = host.plan().cmdline.texts
    host.apply()
    ran = [c for c in host.commands() if c.startswith("grubby")]
    # Two calls, never --remove-args and --args together: grubby.c adds before it
    # removes, and would take out the hugepages=8 it had just put in.
    assert ran[0] == "grubby --update-kernel=ALL --remove-args=hugepages=4"
    assert ran[1].startswith("grubby --update-kernel=ALL --args=") and len(ran) == 2
    added = ran[1].split("--args=", 1)[1].split()
    assert sorted(added) == sorted(planned)
    assert added.index("iommu=pt") < added.index("intel_iommu=on")  # "iommu=" is in it
    for entry in (host.root / "boot/loader/entries").iterdir():
        words = options(entry)
        assert all(words.count(arg) == 1 for arg in planned), words
        assert "rd.lvm.lv=rhel/swap" in words and "hugepages=4" not in words
    host.revert()
    # The entries were put back byte for byte from the journal: no grubby needed.
    assert [c for c in host.commands() if c.startswith("grubby")] == ran


REPEATED = (
    "crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap "
    "hugepagesz=1G hugepages=4 hugepagesz=2M hugepages=512 default_hugepagesz=2M amd_iommu=on"
)


@pytest.mark.parametrize("grubby", ["bls", "c"])
def test_rhel_repeated_hugepage_keys_are_all_replaced(
    fake_host: Callable[..., Host], monkeypatch: pytest.MonkeyPatch, grubby: str
) -> None:
    """hugepagesz=1G hugepages=4 hugepagesz=2M hugepages=512: every occurrence goes,
    ours come once and in order, under both of grubby's ways with arguments."""
    monkeypatch.setenv("RTLIBVIRT_FAKE_GRUBBY", grubby)
    host = fake_host("rhel")
    for entry in (host.root / "boot/loader/entries").iterdir():
        text = entry.read_text()
        entry.write_text(
            text.replace("rd.lvm.lv=rhel/swap hugepages=4", "rd.lvm.lv=rhel/swap " + REPEATED)
        )
    planned = host.plan().cmdline.texts
    host.apply()
    for entry in (host.root / "boot/loader/entries").iterdir():
        words = options(entry)
        hugepage_words = [
            w for w in words if w.split("=")[0] in ("hugepagesz", "hugepages", "default_hugepagesz")
        ]
        assert sorted(hugepage_words) == ["default_hugepagesz=1G", "hugepages=8", "hugepagesz=1G"]
        assert hugepage_words.index("hugepagesz=1G") < hugepage_words.index("hugepages=8")
        assert all(words.count(arg) == 1 for arg in planned), words
        assert "amd_iommu=on" in words  # the user's own stays


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


@pytest.mark.parametrize("grubby", ["bls", "c"])
def test_rhel_revert_of_an_edited_entry_with_repeated_keys(
    fake_host: Callable[..., Host], monkeypatch: pytest.MonkeyPatch, grubby: str
) -> None:
    """grubby.c puts back hugepagesz=1G hugepages=4 hugepagesz=2M hugepages=512 as they
    were; grubby-bls cannot add a name twice, and revert says so for the entry."""
    monkeypatch.setenv("RTLIBVIRT_FAKE_GRUBBY", grubby)
    host = fake_host("rhel")
    entries = sorted((host.root / "boot/loader/entries").iterdir())
    for entry in entries:
        text = entry.read_text()
        entry.write_text(
            text.replace("rd.lvm.lv=rhel/swap hugepages=4", "rd.lvm.lv=rhel/swap " + REPEATED)
        )
    host.apply()
    main = next(e for e in entries if "rescue" not in e.name)
    main.write_text(main.read_text().replace("grub_class rhel", "grub_class rhel-edited"))
    report = host.revert()
    words = options(main)
    mine = [
        w for w in words if w.split("=")[0] in ("hugepagesz", "hugepages", "default_hugepagesz")
    ]
    if grubby == "c":
        assert mine == [
            "hugepagesz=1G",
            "hugepages=4",
            "hugepagesz=2M",
            "hugepages=512",
            "default_hugepagesz=2M",
        ]
        assert not [w for w in report.warnings if "did not put back" in w]
    else:
        assert any(main.name in w and "did not put back" in w for w in report.warnings), (
            report.warnings
        )
    assert "isolcpus=managed_irq,domain,4" not in words and "amd_iommu=on" in words


def test_an_entrys_own_hugepages_are_no_problem_when_none_are_planned() -> None:
    """A plan without hugepages (a guest's, or iommu-only host) leaves the user's alone."""
    from rtlibvirt.hostprep.grub import entry_problems

    options = "root=/dev/vda1 ro hugepages=4 isolcpus=1-3"
    assert entry_problems(options, ["isolcpus=1-3"]) == []
    assert entry_problems(options, ["isolcpus=1-3", "hugepagesz=1G", "hugepages=8"]) != []

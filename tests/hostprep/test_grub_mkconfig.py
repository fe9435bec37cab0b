"""The GRUB drop-in judged by Debian's real grub-mkconfig (see realgrub.py).

For each tree: host-prep apply --root, then grub-mkconfig over the tree: every
generated `linux` line (default entry, advanced entry, recovery entry) carries
each planned argument exactly once, keeps every argument of the user's whose
name host-prep does not set, and has no other value of one it sets. grub-mkconfig
itself runs grub-script-check on what it generated. After revert, grub-mkconfig
generates the same grub.cfg as before apply.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtlibvirt.cli import cli
from rtlibvirt.config.kernelargs import arg_key
from tests.fakes.roots import make_tree, snapshot
from tests.hostprep import realgrub

REQUIRED = os.environ.get("RTLIBVIRT_REQUIRE_DAEMON") == "1"  # under `make test`


@pytest.fixture(scope="session")
def grub() -> Iterator[realgrub.Grub]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        if REQUIRED:
            pytest.fail("the grub-mkconfig test needs root and unshare (util-linux)")
        pytest.skip("needs root and unshare for a private mount namespace")
    try:
        yield realgrub.fetch()
    except realgrub.Unavailable as exc:
        if REQUIRED:
            pytest.fail(f"cannot fetch grub-common/grub2-common: {exc}")
        pytest.skip(str(exc))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


DEBIAN_USER = 'GRUB_CMDLINE_LINUX="console=ttyS0,115200n8 hugepages=4 net.ifnames=0"'
SPEC = "isolated_cpus: 4\nhugepages: {size: 1G, count: 8}\n"

CASES = {
    # name: (distro, GRUB_CMDLINE_LINUX line or None for the tree's own, the DEFAULT line, spec)
    "debian": ("debian", None, None, SPEC),
    "ubuntu-cloudimg": ("ubuntu", None, None, SPEC),
    "user-sets-ours-differently": (
        "debian",
        'GRUB_CMDLINE_LINUX="intel_iommu=off idle=halt isolcpus=1 nohz_full=1-3 audit=1"',
        'GRUB_CMDLINE_LINUX_DEFAULT="quiet irqaffinity=0 iommu=pt rcu_nocbs=1"',
        SPEC,
    ),
    "user-hugepages-of-two-sizes": (
        "debian",
        'GRUB_CMDLINE_LINUX="hugepagesz=1G hugepages=4 hugepagesz=2M hugepages=512 foo=bar"',
        None,
        SPEC,
    ),
    "odd-blanks-and-repeats": (
        "debian",
        "GRUB_CMDLINE_LINUX='  console=tty0\tconsole=ttyS0   net.ifnames=0  net.ifnames=0 '",
        'GRUB_CMDLINE_LINUX_DEFAULT=""',
        SPEC,
    ),
    "extra-args-replace-and-add": (
        "debian",
        None,
        None,
        SPEC + "idle: shallow\nmitigations: 'off'\nextra_kernel_args: [audit=1, nosmt, "
        "'console=ttyS1,115200']\n",
    ),
    "amd-no-iommu": ("debian", None, None, "isolated_cpus: 2-13\niommu: false\ncpu_vendor: amd\n"),
}


def shaped(tmp_path: Path, grub: realgrub.Grub, case: str) -> tuple[Path, Path]:
    distro, linux, default, spec_text = CASES[case]
    vendor = "AuthenticAMD" if "cpu_vendor: amd" in spec_text else "GenuineIntel"
    root = make_tree(tmp_path / "root", distro, vendor=vendor)
    grub_file = root / "etc/default/grub"
    text = grub_file.read_text()
    if linux is not None:
        text = "\n".join(
            linux if line.startswith("GRUB_CMDLINE_LINUX=") else line for line in text.splitlines()
        )
    if default is not None:
        text = "\n".join(
            default if line.startswith("GRUB_CMDLINE_LINUX_DEFAULT=") else line
            for line in text.splitlines()
        )
    grub_file.write_text(text + "\n")
    realgrub.prepare_root(root, grub)
    spec = tmp_path / "host.yaml"
    spec.write_text(spec_text)
    return root, spec


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_linux_line_has_each_argument_once(
    tmp_path: Path, grub: realgrub.Grub, case: str
) -> None:
    root, spec = shaped(tmp_path, grub, case)
    before_cfg = realgrub.mkconfig(root, grub)
    user_lines = realgrub.linux_lines(before_cfg)
    assert len(user_lines) == 3, before_cfg  # default, advanced, recovery
    original = snapshot(root)

    code, out, err = run("host-prep", "apply", str(spec), "--root", str(root), "--yes")
    assert code == 0, err
    planned = [
        line.split()[0]
        for line in out.split("Kernel command line (takes effect at the next boot):\n", 1)[1]
        .split("  left out,", 1)[0]
        .splitlines()
    ]
    keys = {arg_key(a) for a in planned}
    cfg = realgrub.mkconfig(root, grub)
    lines = realgrub.linux_lines(cfg)
    assert len(lines) == 3, cfg
    for words, user_words in zip(lines, user_lines, strict=True):
        for arg in planned:
            assert words.count(arg) == 1, (arg, words)
        for word in words:
            if arg_key(word) in keys:
                assert word in planned, (word, "a value of the user's for a key host-prep sets")
        for word in user_words:
            if arg_key(word) not in keys:
                assert word in words, (word, "an argument of the user's was lost")
        if "hugepages=8" in planned:  # hugepages= counts pages of the hugepagesz= before it
            assert words.index("hugepagesz=1G") < words.index("hugepages=8")

    code, _, err = run("host-prep", "revert", "--root", str(root))
    assert code == 0, err
    (root / "boot/grub/grub.cfg").unlink()
    assert realgrub.mkconfig(root, grub) == before_cfg
    (root / "boot/grub/grub.cfg").write_text(before_cfg)
    assert snapshot(root) == original


def test_the_packages_are_unpacked_not_installed(grub: realgrub.Grub) -> None:
    """The machine itself has no update-grub: a live host-prep cannot regenerate its grub.cfg."""
    assert (grub.tree / "usr/sbin/update-grub").exists()
    assert not Path("/usr/sbin/update-grub").exists()
    assert not Path("/etc/grub.d").exists()

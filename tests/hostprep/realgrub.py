"""Debian's real grub-mkconfig, run over a fake root without installing GRUB.

grub-common and grub2-common are fetched with ``apt-get download`` and unpacked
with ``dpkg -x`` into a cache on this machine (never installed: that would create
/usr/sbin/update-grub, and a live host-prep would then regenerate the machine's
/boot/grub/grub.cfg). grub-mkconfig has /etc, /usr/share/grub and /boot compiled
in, so it runs in a private mount namespace (``unshare --mount``) where:

- /usr is an overlay of the unpacked packages' usr/ over the machine's own
  (read-only: nothing is written to either),
- /etc is the fake root's etc/ (bind mount): /etc/default/grub, the drop-ins,
  /etc/grub.d from the package, os-release,
- /boot is the fake root's boot/ (bind mount), where grub.cfg is written.

Nothing of it is visible outside the namespace, and it is gone when the command
ends. grub-mkconfig checks what it generates with grub-script-check, GRUB's own
parser of grub.cfg, and fails on a syntax error.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rtlibvirt.probe import debs

PACKAGES = ("grub-common", "grub2-common")
CACHE = Path("/var/cache/rtlibvirt/test-debs")
KERNEL = "6.1.0-26-amd64"


class Unavailable(Exception):
    """The packages could not be fetched here (no network, no apt)."""


@dataclass(frozen=True)
class Grub:
    """The unpacked packages: ``tree/usr``, ``tree/etc/grub.d``."""

    tree: Path
    version: str


def cache_dir() -> Path:
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        probe = CACHE / ".writable"
        probe.touch()
        return CACHE
    except OSError:
        return Path(tempfile.gettempdir()) / "rtlibvirt-test-debs"


def fetch() -> Grub:
    """The unpacked grub packages, from the cache or fetched now (once per machine)."""
    tree, version = unpacked(PACKAGES, "grub", "usr/sbin/grub-mkconfig")
    return Grub(tree, version)


def unpacked(packages: tuple[str, ...], name: str, marker: str) -> tuple[Path, str]:
    """Debian ``packages`` unpacked together into the cache (never installed), once per
    machine and version: the tree (``name-VERSION``, complete when ``marker`` is in
    it) and the first package's version. Unavailable when apt cannot get them."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:  # several test runs at once take turns
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            found = [debs.candidate(package)[0] for package in packages]
        except (debs.PackageError, OSError) as exc:
            raise Unavailable(f"apt cannot look up {', '.join(packages)}: {exc}") from exc
        version = found[0].version
        tree = folder / f"{name}-{re.sub(r'[^A-Za-z0-9.+~-]', '_', version)}"
        if (tree / marker).is_file():
            return tree, version
        scratch = Path(tempfile.mkdtemp(prefix=".unpack-", dir=folder))
        try:
            for package in found:
                try:
                    deb = debs.download(package, folder)
                except (debs.PackageError, OSError) as exc:
                    raise Unavailable(f"cannot download {package.name}: {exc}") from exc
                subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch)], check=True)
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(tree)
            os.replace(scratch, tree)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return tree, version


def prepare_root(root: Path, grub: Grub) -> None:
    """What a Debian host with GRUB has besides host-prep's fake tree: /etc/grub.d, a kernel."""
    shutil.copytree(grub.tree / "etc/grub.d", root / "etc/grub.d", symlinks=True)
    boot = root / "boot"
    (boot / "grub").mkdir(parents=True, exist_ok=True)
    (boot / f"vmlinuz-{KERNEL}").write_bytes(b"\x00" * 512)
    (boot / f"initrd.img-{KERNEL}").write_bytes(b"\x00" * 512)


def mkconfig(root: Path, grub: Grub, timeout: float = 120) -> str:
    """Run grub-mkconfig -o /boot/grub/grub.cfg over ``root``; the file it wrote."""
    script = (
        "set -e\n"
        f'mount -t overlay overlay -o "lowerdir={grub.tree}/usr:/usr" /usr\n'
        f'mount --bind "{root}/etc" /etc\n'
        f'mount --bind "{root}/boot" /boot\n'
        "exec /usr/sbin/grub-mkconfig -o /boot/grub/grub.cfg\n"
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
    )
    if done.returncode != 0:
        raise AssertionError(f"grub-mkconfig failed ({done.returncode}):\n{done.stderr}")
    return (root / "boot/grub/grub.cfg").read_text()


def linux_lines(cfg: str) -> list[list[str]]:
    """The arguments of every ``linux`` line (after the kernel path), as GRUB splits them."""
    lines = []
    for line in cfg.splitlines():
        words = line.split()
        if words[:1] == ["linux"]:
            lines.append(words[2:])
    return lines

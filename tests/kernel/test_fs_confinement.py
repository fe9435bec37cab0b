"""HostFS under a root resolves every path the way the kernel does after chroot(root),
and never outside the root.

The kernel is the judge: a forked child chroots into the tree and opens each path
(O_PATH); the inode it reaches must be the one HostFS.path() names, for trees of
random directories and links (absolute, relative, "..", loops, dangling).
"""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

from rtlibvirt.kernel.fs import HostFS

NAMES = ["a", "b", "c", "etc", "run"]


def kernel_inodes(
    root: Path, paths: list[str], follow: bool, extra: int = 0
) -> list[tuple[int, int] | str]:
    """(st_dev, st_ino) of each path as the kernel resolves it inside chroot(root)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            os.chroot(root)
            os.chdir("/")
            out = []
            for path in paths:
                flags = os.O_PATH | extra | (0 if follow else os.O_NOFOLLOW)
                try:
                    fd = os.open(path, flags)
                    st = os.fstat(fd)
                    os.close(fd)
                    out.append(f"{st.st_dev}:{st.st_ino}")
                except OSError as exc:
                    out.append(errno.errorcode.get(exc.errno or 0, "E?"))
            os.write(write, "\n".join(out).encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    result: list[tuple[int, int] | str] = []
    for line in b"".join(chunks).decode().split("\n"):
        if ":" in line:
            dev, ino = line.split(":")
            result.append((int(dev), int(ino)))
        else:
            result.append(line)
    return result


def ours(fs: HostFS, path: str, follow: bool) -> tuple[int, int] | str:
    try:
        real = fs.path(path, follow=follow)
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, "E?")
    try:
        st = os.lstat(real) if not follow else os.stat(real)
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, "E?")
    return (st.st_dev, st.st_ino)


def random_tree(root: Path, rng: random.Random) -> None:
    root.mkdir()
    dirs = [""]
    for _ in range(rng.randint(3, 10)):
        parent = rng.choice(dirs)
        name = f"{parent}/{rng.choice(NAMES)}".lstrip("/")
        path = root / name
        if path.exists() or path.is_symlink():
            continue
        if rng.random() < 0.6:
            path.mkdir()
            dirs.append(name)
        else:
            (path).write_text(name)
    for _ in range(rng.randint(2, 8)):
        parent = rng.choice(dirs)
        link = root / parent / f"l{rng.randint(0, 5)}"
        if link.exists() or link.is_symlink():
            continue
        parts = [
            rng.choice([*NAMES, "..", ".", "l0", "l1", "l2"]) for _ in range(rng.randint(1, 4))
        ]
        target = ("/" if rng.random() < 0.5 else "") + "/".join(parts)
        os.symlink(target, link)


def random_paths(rng: random.Random, count: int) -> list[str]:
    pieces = [*NAMES, "..", ".", "l0", "l1", "l2", "l3", "l4", "l5", "zz"]
    return [
        "/" + "/".join(rng.choice(pieces) for _ in range(rng.randint(1, 5))) for _ in range(count)
    ]


@pytest.mark.parametrize("seed", range(100))
def test_resolution_matches_the_kernel_in_a_chroot(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    root = tmp_path / "root"
    random_tree(root, rng)
    fs = HostFS(root)
    paths = random_paths(rng, 60)
    for follow in (True, False):
        want = kernel_inodes(root, paths, follow)
        got = [ours(fs, p, follow) for p in paths]
        for path, w, g in zip(paths, want, got, strict=True):
            if isinstance(w, str) and w in ("ENOENT", "ENOTDIR"):
                # the kernel cannot reach it; ours fails, or names a path that does not exist
                assert isinstance(g, str), (path, w, g)
                continue
            assert g == w, (seed, path, follow, w, g)
    # parent(): the directory descriptor is the kernel's resolution of the dirname
    named = [p for p in paths if p.rstrip("/").rpartition("/")[2] not in ("", ".", "..")]
    want_dirs = kernel_inodes(
        root, [p.rstrip("/").rpartition("/")[0] or "/" for p in named], True, os.O_DIRECTORY
    )
    for path, w in zip(named, want_dirs, strict=True):
        try:
            with fs.parent(path) as (fd, _name):
                st = os.fstat(fd)
                g: tuple[int, int] | str = (st.st_dev, st.st_ino)
        except OSError as exc:
            g = errno.errorcode.get(exc.errno or 0, "E?")
        assert g == w, (seed, path, w, g)


def test_an_absolute_link_stays_in_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    (root / "etc/default").mkdir(parents=True)
    (root / str(outside).lstrip("/")).mkdir(parents=True)
    os.symlink(str(outside), root / "etc/default/grub.d")  # what an image may hold
    fs = HostFS(root)
    assert fs.path("/etc/default/grub.d/99.cfg") == root / str(outside).lstrip("/") / "99.cfg"
    with fs.parent("/etc/default/grub.d/99.cfg") as (fd, name):
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    assert list(outside.iterdir()) == []
    assert (root / str(outside).lstrip("/") / "99.cfg").exists()


@pytest.mark.parametrize("target", ["../../../../../../../..", "/..", "/../../etc/..", "."])
def test_dotdot_stops_at_the_root(tmp_path: Path, target: str) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "tmp").mkdir()
    os.symlink(target, root / "etc/up")
    fs = HostFS(root)
    want = root / "etc/tmp" if target == "." else root / "tmp"
    assert fs.path("/etc/up/tmp") == want
    if want.exists():
        with fs.parent("/etc/up/tmp/file") as (fd, name):
            assert name == "file"
            assert os.readlink(f"/proc/self/fd/{fd}") == str(want)


def test_a_link_loop_is_eloop(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/b", root / "a")
    os.symlink("/a", root / "b")
    fs = HostFS(root)
    with pytest.raises(OSError) as info:
        fs.path("/a/x")
    assert info.value.errno == errno.ELOOP
    with pytest.raises(OSError) as info, fs.parent("/a/x"):
        pass
    assert info.value.errno == errno.ELOOP


def test_a_link_swapped_in_after_resolution_does_not_redirect_a_write(tmp_path: Path) -> None:
    """parent() holds the directory itself: a rename of a link over it afterwards changes nothing."""
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    (root / "etc/sysctl.d").mkdir(parents=True)
    fs = HostFS(root)
    with fs.parent("/etc/sysctl.d/50.conf") as (fd, name):
        os.rename(root / "etc/sysctl.d", root / "etc/moved")
        os.symlink(str(outside), root / "etc/sysctl.d")
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    assert list(outside.iterdir()) == []
    assert (root / "etc/moved/50.conf").exists()


def test_long_paths_are_refused(tmp_path: Path) -> None:
    fs = HostFS(tmp_path)
    with pytest.raises(OSError) as info:
        fs.path("/" + "a" * 5000)
    assert info.value.errno == errno.ENAMETOOLONG


def test_the_live_root_is_left_to_the_kernel() -> None:
    fs = HostFS("/")
    assert fs.path("/proc/self/../1/comm") == Path("/proc/self/../1/comm")

"""The probe image: Debian's packages -> a reproducible initramfs that holds what cyclictest needs."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import pytest

from rtlibvirt.probe import cpio, debs, elf, guest, image
from rtlibvirt.probe.debs import Entry, PackageError


def members_by_path(members: list[cpio.Member]) -> dict[str, cpio.Member]:
    return {m.path: m for m in members}


def test_the_initramfs_holds_init_busybox_cyclictest_and_every_library_it_needs(
    userspace_trees: list[dict[str, Entry]],
) -> None:
    members = members_by_path(image.initramfs_members(userspace_trees))
    assert members["init"].kind == cpio.FILE and members["init"].mode == 0o755
    assert members["init"].data == guest.INIT.encode()
    assert members["dev/console"].kind == cpio.CHARDEV and members["dev/console"].rdev == (5, 1)
    for folder in ("proc", "sys", "dev", "tmp"):
        assert members[folder].kind == cpio.DIR
    busybox = members["bin/busybox"]
    assert elf.linkage(busybox.data) == elf.Linkage(None, ())  # static: needs nothing
    cyclictest = members["usr/bin/cyclictest"]
    linkage = elf.linkage(cyclictest.data)
    assert linkage.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert {"libc.so.6", "libnuma.so.1"} <= set(linkage.needed)

    def lookup(path: str) -> cpio.Member:  # as the dynamic loader would, following links
        for _ in range(8):
            member = members[path]
            if member.kind != cpio.SYMLINK:
                return member
            path = os.path.normpath(os.path.join(os.path.dirname(path), member.data.decode()))
        raise AssertionError(f"{path}: a link loop")

    assert lookup("lib64/ld-linux-x86-64.so.2").kind == cpio.FILE
    for soname in linkage.needed:
        found = [
            lookup(f"{d}/{soname}")
            for d in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu")
            if f"{d}/{soname}" in members
        ]
        assert found and found[0].kind == cpio.FILE, f"{soname} is missing"
        # and what the library needs in turn
        for inner in elf.linkage(found[0].data).needed:
            assert any(
                f"{d}/{inner}" in members
                for d in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu")
            ), f"{soname} needs {inner}, which is missing"


def test_the_elf_reader_agrees_with_readelf(
    userspace_debs: dict[str, Path], tmp_path: Path
) -> None:
    entries = debs.read(userspace_debs["rt-tests"], lambda p: p == "usr/bin/cyclictest")
    program = tmp_path / "cyclictest"
    program.write_bytes(entries["usr/bin/cyclictest"].data)
    dynamic = subprocess.run(
        ["readelf", "-d", str(program)], capture_output=True, text=True, check=True
    )
    needed = [
        line.split("[", 1)[1].rstrip("]")
        for line in dynamic.stdout.splitlines()
        if "(NEEDED)" in line
    ]
    headers = subprocess.run(
        ["readelf", "-l", str(program)], capture_output=True, text=True, check=True
    )
    interpreter = headers.stdout.split("interpreter: ", 1)[1].split("]", 1)[0]
    assert elf.linkage(program.read_bytes()) == elf.Linkage(interpreter, tuple(needed))


def test_the_same_packages_give_the_same_bytes(userspace_trees: list[dict[str, Entry]]) -> None:
    first = cpio.gzipped(cpio.archive(image.initramfs_members(userspace_trees)))
    again = cpio.gzipped(
        cpio.archive(reversed(image.initramfs_members(list(reversed(userspace_trees)))))
    )
    assert first == again
    assert first[4:8] == b"\0\0\0\0", "no time stamp in the gzip header"
    assert first[3] & 0x08 == 0, "no file name in the gzip header"


def test_busybox_reads_the_archive_and_the_init_is_valid_shell(
    userspace_trees: list[dict[str, Entry]], tmp_path: Path
) -> None:
    members = image.initramfs_members(userspace_trees)
    busybox = tmp_path / "busybox"
    busybox.write_bytes(members_by_path(members)["bin/busybox"].data)
    busybox.chmod(0o755)
    archive = cpio.archive(members)
    listed = (
        subprocess.run([str(busybox), "cpio", "-t"], input=archive, capture_output=True, check=True)
        .stdout.decode()
        .split()
    )
    assert sorted(listed) == sorted(m.path for m in members)
    init = tmp_path / "init"
    init.write_text(guest.INIT)
    checked = subprocess.run([str(busybox), "sh", "-n", str(init)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_images_cyclictest_runs_on_the_host_with_its_own_libraries(
    userspace_trees: list[dict[str, Entry]], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("cyclictest needs root for SCHED_FIFO and mlockall")
    for relative, data in image.host_files(image.initramfs_members(userspace_trees)).items():
        path = tmp_path / "initramfs" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o755)
    probe_image = image.Image(
        tmp_path / "k", tmp_path / "i", "", host=tmp_path / "initramfs" / "host"
    )
    cpu = min(os.sched_getaffinity(0))
    measurement = guest.Measurement(cpus=(cpu,), main=cpu, duration_s=1, histogram_us=1000)
    out = tmp_path / "out.json"
    done = subprocess.run(
        [*probe_image.host_cyclictest(), *measurement.argv(), f"--json={out}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},  # nothing of the host's library path
    )
    assert done.returncode == 0, done.stderr
    assert '"rt_test_version:"' in out.read_text()


def test_a_package_apt_does_not_know_is_one_line_with_a_hint() -> None:
    with pytest.raises(PackageError) as caught:
        debs.candidate("rtlibvirt-no-such-package")
    error = caught.value
    assert error.message.startswith("cannot look up rtlibvirt-no-such-package:")
    assert "\n" not in error.message
    assert error.hint is not None and "apt-get update" in error.hint and "--kernel" in error.hint


def test_a_missing_package_stops_the_build_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(image, "USERSPACE", ("rtlibvirt-no-such-package", *image.USERSPACE))
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"a kernel of one's own")
    with pytest.raises(PackageError, match="rtlibvirt-no-such-package"):
        image.ensure("rt", kernel=kernel, cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_bad_name_never_reaches_apt() -> None:
    with pytest.raises(PackageError, match="not a Debian package name"):
        debs.candidate("rt-tests; rm -rf /")


def test_the_initramfs_is_built_once_and_then_taken_from_the_cache(
    tmp_path: Path, userspace_debs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    (cache / "debs").mkdir(parents=True)
    for path in userspace_debs.values():  # already downloaded once this session
        (cache / "debs" / path.name).write_bytes(path.read_bytes())
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"a kernel of one's own")
    said: list[str] = []
    first = image.ensure("rt", kernel=kernel, cache=cache, say=said.append)
    assert first.built == ("initramfs",) and first.kernel == kernel.resolve()
    assert said and said[0].startswith("building the probe initramfs from busybox-static")
    assert gzip.decompress(first.initrd.read_bytes())[:6] == cpio.MAGIC
    assert first.host is not None and (first.host / "cyclictest").is_file()
    assert oct(first.initrd.stat().st_mode & 0o777) == "0o644"
    assert not list((cache / "debs").glob("*.deb")), "the packages are not kept once built"

    second = image.ensure("rt", kernel=kernel, cache=cache)
    assert second.built == () and second.initrd == first.initrd

    # apt cannot be asked (no lists, no network): the newest cached build, said so
    def offline(name: str) -> object:
        raise PackageError(f"cannot look up {name}: no network")

    monkeypatch.setattr(image, "candidate", offline)
    third = image.ensure("rt", kernel=kernel, cache=cache)
    assert third.initrd == first.initrd
    assert third.notes == (
        "cannot look up busybox-static: no network; using the newest cached initramfs",
    )


def test_a_given_file_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(image.ImageError, match=r"--kernel .*: no such file"):
        image.ensure("rt", kernel=tmp_path / "nope", cache=tmp_path)
    with pytest.raises(image.ImageError, match="unknown guest kernel"):
        image.ensure("lowlatency", cache=tmp_path)


def test_symbolic_links_resolve_inside_the_package_tree_only() -> None:
    tree = {
        "lib64": Entry("dir", 0o755),
        "lib64/ld.so": Entry("symlink", 0o777, b"/lib/x/ld.so"),
        "lib/x/ld.so": Entry("file", 0o755, b"elf"),
        "usr/lib/a.so": Entry("symlink", 0o777, b"../../lib/x/ld.so"),
        "loop": Entry("symlink", 0o777, b"loop"),
        "escape": Entry("symlink", 0o777, b"../../../../etc/passwd"),
    }
    assert debs.resolve(tree, "lib64/ld.so") == "lib/x/ld.so"
    assert debs.resolve(tree, "/usr/lib/a.so") == "lib/x/ld.so"
    assert debs.resolve(tree, "loop") is None
    assert debs.resolve(tree, "escape") is None  # "etc/passwd" is not in the tree


def test_ones_own_kernel_and_initramfs_need_no_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(name: str) -> object:
        raise PackageError(f"cannot look up {name}: no network")

    monkeypatch.setattr(image, "candidate", offline)
    monkeypatch.setattr(image, "kernel_package", offline)
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    kernel.write_bytes(b"k")
    initrd.write_bytes(b"i")
    got = image.ensure("rt", kernel=kernel, initrd=initrd, host=False, cache=tmp_path / "cache")
    assert (got.kernel, got.initrd, got.host, got.built) == (kernel, initrd, None, ())
    assert got.description == f"kernel {kernel}; initramfs {initrd}"
    with pytest.raises(image.ImageError, match="no cyclictest for the host"):
        got.host_cyclictest()
    # --baseline needs the image's cyclictest: the packages again
    with pytest.raises(PackageError, match="no network"):
        image.ensure("rt", kernel=kernel, initrd=initrd, host=True, cache=tmp_path / "cache")


def test_the_cache_lock_is_kernel_files_one_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second builder waits on kernel/files' lock and, past its patience, says who holds it."""
    from rtlibvirt.kernel import files

    held = files.lock(tmp_path / "lock", 0)
    try:
        monkeypatch.setattr(image, "LOCK_WAIT", 0.05)
        with pytest.raises(image.ImageError) as caught, image._locked(tmp_path):
            pass
        assert str(tmp_path / "lock") in caught.value.message
        assert caught.value.hint
    finally:
        os.close(held)
    with image._locked(tmp_path):  # free again: taken at once
        assert (tmp_path / "lock").exists()

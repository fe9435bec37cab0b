"""The probe image: a Debian kernel and an initramfs that runs cyclictest and powers off.

Built on first use from Debian packages (see ``debs``), never installed:

- the kernel: ``/boot/vmlinuz-*`` of ``linux-image-rt-amd64`` (PREEMPT_RT, what a
  real-time guest runs) or of ``linux-image-amd64``;
- the initramfs: ``busybox`` from ``busybox-static``, ``cyclictest`` from
  ``rt-tests``, the shared libraries they need (read from the ELF files, taken
  from ``libc6`` and ``libnuma1``), the init of ``guest.INIT`` and
  ``/dev/console``, written by ``cpio`` (reproducible: the same packages give
  the same bytes).

The result is cached under ``/var/cache/rtlibvirt/probe/images/KEY/``, where KEY
is a digest of the package versions, the image format and the init, so a new
Debian kernel or rt-tests makes a new image and an old one is never reused by
mistake. ``$RTLIBVIRT_PROBE_CACHE`` chooses another folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rtlibvirt.errors import HostError
from rtlibvirt.kernel.files import LockBusy, atomic_write, lock
from rtlibvirt.probe import cpio, elf
from rtlibvirt.probe import guest as guestinit
from rtlibvirt.probe.debs import Entry, Package, PackageError, candidate, kernel_package
from rtlibvirt.probe.debs import download as download_deb
from rtlibvirt.probe.debs import read as read_deb
from rtlibvirt.probe.debs import resolve as resolve_path

FORMAT = 1  # the image's layout; part of the cache key
KERNELS = {"rt": "linux-image-rt-amd64", "standard": "linux-image-amd64"}
USERSPACE = ("busybox-static", "rt-tests", "libc6", "libnuma1")
PROGRAMS = {"bin/busybox": "busybox-static", "usr/bin/cyclictest": "rt-tests"}
LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib")
MAX_LIBRARIES = 64
CACHE_ENV = "RTLIBVIRT_PROBE_CACHE"
SYSTEM_CACHE = Path("/var/cache/rtlibvirt/probe")
MANIFEST = "manifest.json"
LOCK_WAIT = 30 * 60.0  # seconds to wait for another probe building the same cache
LOADER = "ld-linux-x86-64.so.2"


class ImageError(HostError):
    """The image cannot be built from what the packages hold."""


@dataclass(frozen=True)
class Image:
    """A kernel and an initramfs to boot, and where they came from."""

    kernel: Path
    initrd: Path
    description: str  # e.g. "Debian linux-image-6.1.0-57-rt-amd64 6.1.192-3; rt-tests 2.4-1"
    host: Path | None = None  # cyclictest and its libraries, to run on the host (baseline)
    built: tuple[str, ...] = ()  # what this call built ("kernel", "initramfs")
    notes: tuple[str, ...] = ()  # e.g. "apt could not be asked; using the cached kernel"

    def host_cyclictest(self) -> list[str]:
        """The command that runs the image's cyclictest on the host, with its own libraries.

        The package's dynamic loader runs it with ``--library-path``, so it needs
        none of the host's libraries (nor rt-tests installed).
        """
        if self.host is None:
            raise ImageError("this probe image has no cyclictest for the host")
        lib = self.host / "lib"
        return [str(lib / LOADER), "--library-path", str(lib), str(self.host / "cyclictest")]


def cache_root() -> Path:
    """$RTLIBVIRT_PROBE_CACHE, else /var/cache/rtlibvirt/probe (root), else ~/.cache."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return SYSTEM_CACHE
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rtlibvirt" / "probe"


def initramfs_key(packages: list[Package]) -> str:
    """A digest of what makes the initramfs: its packages, the init, the format."""
    recipe = {
        "format": FORMAT,
        "init": hashlib.sha256(guestinit.INIT.encode()).hexdigest(),
        "packages": [[p.name, p.version, p.arch] for p in packages],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:20]


def ensure(
    flavour: str = "rt",
    *,
    kernel: Path | None = None,
    initrd: Path | None = None,
    host: bool = True,
    cache: Path | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Image:
    """The probe image: the user's files where given, else the cached builds (built first).

    ``host``: also the cyclictest that runs on the host (``--baseline``); it comes
    with rtlibvirt's initramfs, which is then built even when ``initrd`` is given.
    """
    if flavour not in KERNELS:
        raise ImageError(f"unknown guest kernel {flavour!r}: choose one of {', '.join(KERNELS)}")
    cache = cache or cache_root()
    built: list[str] = []
    notes: list[str] = []
    parts: list[str] = []
    for what, path in (("--kernel", kernel), ("--initrd", initrd)):
        if path is not None and not path.is_file():
            raise ImageError(f"{what} {path}: no such file", None)
    if kernel is None:
        kernel, text, new, note = _cached_part(cache, "kernels", flavour, say)
        built += ["kernel"] if new else []
        notes += [note] if note else []
        parts.append(text)
    else:
        kernel = kernel.resolve()
        parts.append(f"kernel {kernel}")
    host_files: Path | None = None
    ours, text = None, ""
    if initrd is None or host:
        ours, text, new, note = _cached_part(cache, "initramfs", "initramfs", say)
        built += ["initramfs"] if new else []
        notes += [note] if note else []
        host_files = ours.parent / "host" if (ours.parent / "host").is_dir() else None
    if initrd is None:
        assert ours is not None
        initrd = ours
        parts.append(text)
    else:
        initrd = initrd.resolve()
        parts.append(f"initramfs {initrd}")
    return Image(kernel, initrd, "; ".join(parts), host_files, tuple(built), tuple(notes))


def _cached_part(
    cache: Path, kind: str, flavour: str, say: Callable[[str], None]
) -> tuple[Path, str, bool, str | None]:
    """(file, description, built now, note) of the cached kernel or initramfs."""
    filename = "vmlinuz" if kind == "kernels" else "initrd.img"
    part = "kernel" if kind == "kernels" else "initramfs"
    try:
        if kind == "kernels":
            packages = [kernel_package(KERNELS[flavour])]
            key = f"{packages[0].name}_{packages[0].version}"
        else:
            packages = [candidate(name)[0] for name in USERSPACE]
            key = initramfs_key(packages)
    except PackageError as exc:
        cached = _newest(cache / kind, flavour)
        if cached is None:
            raise
        return (*cached, False, f"{exc.message}; using the newest cached {part}")
    folder = cache / kind / key
    found = _load(folder, filename)
    if found is not None:
        return (*found, False, None)
    with _locked(cache):
        found = _load(folder, filename)  # another probe built it while we waited
        if found is not None:
            return (*found, False, None)
        names = ", ".join(f"{p.name} {p.version}" for p in packages)
        say(f"building the probe {part} from {names}")
        debs = [download_deb(p, cache / "debs") for p in packages]
        if kind == "kernels":
            data, release = read_kernel(debs[0])
            description = f"Debian {packages[0].name} {packages[0].version}"
            extra: dict[str, bytes] = {}
        else:
            trees = [read_deb(path, _wanted) for path in debs]
            members = initramfs_members(trees)
            data = cpio.gzipped(cpio.archive(members))
            release = ""
            description = f"rt-tests {packages[1].version}, busybox {packages[0].version}"
            extra = host_files(members)
        _store(folder, filename, data, flavour, release, packages, description, extra)
        for path in debs:  # the part is what is cached; its packages are not needed again
            with contextlib.suppress(OSError):
                path.unlink()
    found = _load(folder, filename)
    if found is None:  # pragma: no cover - _store just wrote it
        raise ImageError(f"{folder}: the probe {part} vanished right after it was built")
    return (*found, True, None)


def read_kernel(deb: Path) -> tuple[bytes, str]:
    """The ``/boot/vmlinuz-RELEASE`` of a kernel package, and RELEASE."""
    entries = read_deb(deb, lambda path: path.startswith("boot/vmlinuz-"))
    found = sorted(
        (p, e) for p, e in entries.items() if p.startswith("boot/vmlinuz-") and e.kind == "file"
    )
    if not found:
        raise ImageError(f"{deb.name} holds no /boot/vmlinuz-*: not a kernel image package")
    path, entry = found[0]
    return entry.data, path.removeprefix("boot/vmlinuz-")


def _wanted(path: str) -> bool:
    """The files of the userspace packages whose content the image may take."""
    if path in PROGRAMS:
        return True
    folder, name = posixpath.split(path)
    return folder in LIBRARY_DIRS and ".so" in name


def initramfs_members(trees: list[dict[str, Entry]]) -> list[cpio.Member]:
    """Every member of the probe's initramfs, from the userspace packages' files."""
    tree: dict[str, Entry] = {}
    for entries in trees:
        tree.update(entries)
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    for program, package in PROGRAMS.items():
        real = resolve_path(tree, program)
        if real is None or tree[real].kind != "file" or not tree[real].data:
            raise ImageError(f"/{program} is not in the {package} package")
        files[program] = tree[real].data
    _add_libraries(tree, files, links)
    members = [
        cpio.Member("init", cpio.FILE, 0o755, guestinit.INIT.encode()),
        cpio.Member("dev/console", cpio.CHARDEV, 0o600, rdev=(5, 1)),
    ]
    for path, data in files.items():
        members.append(cpio.Member(path, cpio.FILE, 0o755, data))
    for path, target in links.items():
        members.append(cpio.Member(path, cpio.SYMLINK, 0o777, target.encode()))
    folders = {"dev", "proc", "sys", "tmp", "run"}
    for member in members:
        parent = posixpath.dirname(member.path)
        while parent:
            folders.add(parent)
            parent = posixpath.dirname(parent)
    members += [cpio.Member(path, cpio.DIR, 0o755) for path in folders]
    return members


def _add_libraries(tree: dict[str, Entry], files: dict[str, bytes], links: dict[str, str]) -> None:
    """Add the interpreter and DT_NEEDED libraries of every file, recursively."""
    pending = list(files)
    while pending:
        path = pending.pop()
        try:
            linkage = elf.linkage(files[path])
        except elf.ElfError as exc:
            raise ImageError(f"/{path}: {exc}") from None
        wanted: list[str] = []
        if linkage.interpreter:
            wanted.append(linkage.interpreter.lstrip("/"))
        for soname in linkage.needed:
            if "/" in soname:
                raise ImageError(f"/{path} needs {soname!r}: a library name with a path")
            found = next(
                (f"{d}/{soname}" for d in LIBRARY_DIRS if resolve_path(tree, f"{d}/{soname}")),
                None,
            )
            if found is None:
                raise ImageError(
                    f"/{path} needs {soname}, which none of {', '.join(USERSPACE)} holds"
                )
            wanted.append(found)
        for name in wanted:
            real = resolve_path(tree, name)
            if real is None or tree[real].kind != "file":
                raise ImageError(f"/{path} needs /{name}, which no package of the image holds")
            if real not in files:
                if len(files) >= MAX_LIBRARIES:
                    raise ImageError(f"more than {MAX_LIBRARIES} libraries: not a small image")
                files[real] = tree[real].data
                pending.append(real)
            if name != real and name not in files:
                # the name the program asks for, pointing at the file (relative: inside the image)
                links[name] = posixpath.relpath(real, posixpath.dirname(name))


def host_files(members: list[cpio.Member]) -> dict[str, bytes]:
    """cyclictest and its libraries, flat, for running on the host: ``host/cyclictest``,
    ``host/lib/*`` (the symbolic links' names as copies: the loader looks names up)."""
    by_path = {m.path: m for m in members}
    files: dict[str, bytes] = {"host/cyclictest": by_path["usr/bin/cyclictest"].data}
    for member in members:
        folder, name = posixpath.split(member.path)
        if folder not in LIBRARY_DIRS or ".so" not in name:
            continue
        real = member
        for _ in range(8):  # a link inside the image: its target's content
            if real.kind != cpio.SYMLINK:
                break
            target = posixpath.normpath(posixpath.join(folder, real.data.decode()))
            real = by_path[target]
        if real.kind == cpio.FILE:
            files[f"host/lib/{name}"] = real.data
    return files


# ---- the cache ------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One builder at a time per cache folder (kernel/files' one lock)."""
    path = cache / "lock"
    try:
        if not cache.exists():
            cache.mkdir(parents=True)
            os.chmod(cache, 0o755)  # libvirt's QEMU user reads the images below
        fd = lock(path, LOCK_WAIT)
    except LockBusy:
        raise ImageError(
            f"another rtlibvirt probe has been building in {cache} for more than "
            f"{LOCK_WAIT:.0f} s (it holds {path})",
            "wait for it to finish, or stop it; the lock goes with its process",
        ) from None
    except OSError as exc:
        raise ImageError(
            f"cannot use the probe cache {cache}: {exc.strerror}",
            f"run as root, or set {CACHE_ENV} to a folder you may write",
        ) from None
    try:
        yield
    finally:
        os.close(fd)


def _store(
    folder: Path,
    filename: str,
    data: bytes,
    flavour: str,
    release: str,
    packages: list[Package],
    description: str,
    extra: dict[str, bytes],
) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(folder.parent, 0o755)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=folder.parent))
    try:
        atomic_write(scratch / filename, data, mode=0o644)
        for relative, content in sorted(extra.items()):
            path = scratch / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, content, mode=0o755)
        manifest = {
            "format": FORMAT,
            "flavour": flavour,
            "release": release,
            "description": description,
            "packages": [[p.name, p.version, p.arch] for p in packages],
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        atomic_write(scratch / MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n", 0o644)
        os.chmod(scratch, 0o755)
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(scratch, folder)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _load(folder: Path, filename: str) -> tuple[Path, str] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        path = folder / filename
        if manifest.get("format") != FORMAT or not path.is_file():
            return None
        return path, str(manifest.get("description", ""))
    except (OSError, ValueError, AttributeError):
        return None


def _newest(folder: Path, flavour: str) -> tuple[Path, str] | None:
    """The most recently built cached part of ``flavour`` in ``folder``, if any."""
    best: tuple[float, tuple[Path, str]] | None = None
    if not folder.is_dir():
        return None
    for sub in folder.iterdir():
        filename = "vmlinuz" if folder.name == "kernels" else "initrd.img"
        found = _load(sub, filename)
        if found is None:
            continue
        try:
            manifest = json.loads((sub / MANIFEST).read_text())
            stamp = (sub / MANIFEST).stat().st_mtime
        except (OSError, ValueError):
            continue
        if manifest.get("flavour") == flavour and (best is None or stamp > best[0]):
            best = (stamp, found)
    return best[1] if best else None

"""Debian packages for the probe image: looked up, downloaded, read, never installed.

``apt-cache show`` gives the candidate version of a package (the image's
cache key), ``apt-get download`` fetches its ``.deb`` with apt's own signature
and hash checks into a folder of ours, and ``dpkg-deb --fsys-tarfile`` streams
its files, of which we keep only the ones the image needs: the 400 MB of a
kernel package's modules are read past, never written anywhere. Nothing is
installed on the host and nothing needs root except writing the cache folder.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rtlibvirt.errors import HostError

_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]{0,99}\Z")  # \Z: "$" passes a final newline
_VERSION = re.compile(r"^[A-Za-z0-9.+~:-]{1,100}\Z")
MAX_MEMBER = 256 * 1024 * 1024  # no file the image takes is near this (a kernel is ~8 MB)
MAX_LINK_HOPS = 40  # as the kernel's MAXSYMLINKS
APT_TIMEOUT = 900.0  # seconds: a slow mirror and a 70 MB kernel package

HINT = (
    "the probe image is built from Debian 12 packages: run `apt-get update` and try again, "
    "or bring your own image with --kernel FILE --initrd FILE"
)


class PackageError(HostError):
    """A package that cannot be looked up, downloaded or read (one line, with a hint)."""

    def __init__(self, message: str, hint: str | None = HINT) -> None:
        super().__init__(message, hint)


@dataclass(frozen=True, order=True)
class Package:
    name: str
    version: str
    arch: str

    @property
    def filename(self) -> str:
        """The file name ``apt-get download`` gives it (an epoch's ':' is quoted)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
            timeout=APT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise PackageError(
            f"{what}: `{argv[0]}` is not installed", "the probe image needs apt and dpkg (Debian)"
        ) from None
    except subprocess.TimeoutExpired:
        raise PackageError(f"{what}: `{argv[0]}` took more than {APT_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.startswith("E:")]
        detail = lines[0][2:].strip() if lines else (done.stderr.strip().splitlines() or ["?"])[-1]
        raise PackageError(f"{what}: {detail}")
    return done.stdout


def _fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in stanza.splitlines():
        if line[:1] in (" ", "\t") and key is not None:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def candidate(name: str) -> tuple[Package, dict[str, str]]:
    """The version apt would install of ``name``, and its control fields."""
    if not _PACKAGE.match(name):
        raise PackageError(f"{name!r} is not a Debian package name", None)
    text = _run(["apt-cache", "show", "--no-all-versions", name], f"cannot look up {name}")
    fields = _fields(text.split("\n\n", 1)[0])
    version, arch = fields.get("Version", ""), fields.get("Architecture", "")
    if fields.get("Package") != name or not _VERSION.match(version) or not arch:
        raise PackageError(f"cannot look up {name}: apt knows no version of it")
    return Package(name, version, arch), fields


def kernel_package(meta: str) -> Package:
    """The versioned kernel package a metapackage (``linux-image-rt-amd64``) depends on."""
    _, fields = candidate(meta)
    for alternative in re.split(r"[,|]", fields.get("Depends", "")):
        name = alternative.strip().split(" ", 1)[0]
        if name.startswith("linux-image-") and name != meta:
            return candidate(name)[0]
    raise PackageError(f"{meta} depends on no linux-image package", None)


def download(package: Package, folder: Path) -> Path:
    """``folder/<package file>``: fetched with ``apt-get download`` unless already there."""
    target = folder / package.filename
    if target.is_file() and _is_deb_of(target, package):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
    try:
        argv = ["apt-get", "-q", "download", f"{package.name}={package.version}"]
        if os.geteuid() == 0:  # apt's _apt user cannot write our folder; say so, not warn
            argv[1:1] = ["-o", "APT::Sandbox::User=root"]
        _run(argv, f"cannot download {package.name} {package.version}", cwd=scratch)
        got = scratch / package.filename
        if not got.is_file() or not _is_deb_of(got, package):
            raise PackageError(f"apt-get download of {package.name} gave no {package.filename}")
        os.replace(got, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _is_deb_of(path: Path, package: Package) -> bool:
    try:
        done = subprocess.run(
            ["dpkg-deb", "--field", str(path), "Package", "Version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    fields = _fields(done.stdout)
    return (
        done.returncode == 0
        and fields.get("Package") == package.name
        and fields.get("Version") == package.version
    )


@dataclass(frozen=True)
class Entry:
    """A file, symbolic link or directory of a package."""

    kind: str  # "file", "symlink" or "dir"
    mode: int
    data: bytes = b""  # a file's content (if it was asked for) or a link's target


def normalize(name: str) -> str:
    """``./usr/bin/x`` or ``/usr/bin/x`` -> ``usr/bin/x``; '' for the root."""
    return posixpath.normpath("/" + name).lstrip("/")


def read(deb: Path, want: Callable[[str], bool]) -> dict[str, Entry]:
    """The files, links and folders of a ``.deb``; file contents only where ``want(path)``."""
    proc = subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    entries: dict[str, Entry] = {}
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                path = normalize(member.name)
                if not path:
                    continue
                mode = member.mode & 0o7777
                if member.isdir():
                    entries[path] = Entry("dir", mode)
                elif member.issym():
                    entries[path] = Entry("symlink", 0o777, member.linkname.encode())
                elif member.islnk():  # a hard link: the same content as an earlier member
                    source = entries.get(normalize(member.linkname))
                    if source is not None:
                        entries[path] = Entry(source.kind, mode, source.data)
                elif member.isfile():
                    data = b""
                    if want(path):
                        if member.size > MAX_MEMBER:
                            raise PackageError(
                                f"{deb.name}: {path} is {member.size} bytes, more than the "
                                f"{MAX_MEMBER} the probe image takes",
                                None,
                            )
                        handle = tar.extractfile(member)
                        data = handle.read() if handle is not None else b""
                    entries[path] = Entry("file", mode, data)
    except tarfile.TarError as exc:
        raise PackageError(f"{deb.name} cannot be read: {exc}", "delete it and try again") from None
    finally:
        proc.stdout.close()
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        code = proc.wait()
    if code != 0:
        raise PackageError(f"dpkg-deb cannot read {deb.name}: {stderr.strip()}", None)
    return entries


def resolve(entries: dict[str, Entry], path: str) -> str | None:
    """Follow symbolic links inside the package tree; None if it leads nowhere in it."""
    path = normalize(path)
    for _ in range(MAX_LINK_HOPS):
        # resolve the folders first, then the last component
        parts = path.split("/")
        for i in range(1, len(parts)):
            head = "/".join(parts[:i])
            entry = entries.get(head)
            if entry is not None and entry.kind == "symlink":
                target = entry.data.decode()
                base = "" if target.startswith("/") else posixpath.dirname(head)
                path = normalize(posixpath.join(base, target) + "/" + "/".join(parts[i:]))
                break
        else:
            entry = entries.get(path)
            if entry is None:
                return None
            if entry.kind != "symlink":
                return path
            target = entry.data.decode()
            base = "" if target.startswith("/") else posixpath.dirname(path)
            path = normalize(posixpath.join(base, target))
    return None

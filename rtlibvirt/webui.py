"""Install and remove rtlibvirt's Cockpit page (``rtlibvirt cockpit install|uninstall``).

The page's files ship inside the package (``cockpit/`` in the repository,
``rtlibvirt.cockpit`` when installed). Installing copies them to
``DIR/rtlibvirt/`` (Cockpit looks in ``/usr/share/cockpit``,
``~/.local/share/cockpit`` and ``$XDG_DATA_HOME/cockpit``) and writes
``config.json`` beside them: the absolute path of the ``rtlibvirt`` that
installed it (the page runs that one, as the hook runs the Python that installed
it, so a venv works), the folder of the kept probe results, and the list of
files installed, which marks the folder as rtlibvirt's: a folder without it is
someone else's and is never touched. Uninstalling removes exactly the files
listed there.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from rtlibvirt import __version__
from rtlibvirt.errors import HostError
from rtlibvirt.kernel.files import atomic_write, read_bytes

DEFAULT_DIR = Path("/usr/share/cockpit")
PACKAGE = "rtlibvirt"  # the folder under DIR: Cockpit's package name, the page's URL
CONFIG = "config.json"
MARKER = "rtlibvirt-cockpit-package"
MAX_CONFIG = 64 * 1024
# Every file of the page: what is shipped, what is installed, nothing else.
FILES = ("manifest.json", "index.html", "rtlibvirt.js", "rtlibvirt.css", "patternfly.css")


def page_files() -> dict[str, bytes]:
    """The shipped page: file name -> content."""
    folder = files("rtlibvirt.cockpit")
    return {name: folder.joinpath(name).read_bytes() for name in FILES}


def rtlibvirt_command() -> str:
    """The absolute path of the running ``rtlibvirt`` (the one the page should run)."""
    argv0 = sys.argv[0] if sys.argv else ""
    candidates = [Path(sys.executable).with_name("rtlibvirt")]
    if os.path.basename(argv0) == "rtlibvirt":
        candidates.insert(0, Path(os.path.abspath(argv0)))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            text = str(path)
            if "\n" in text or "\r" in text or "\0" in text:
                break
            return text
    raise HostError(
        f"cannot find the rtlibvirt command beside {sys.executable}",
        "install rtlibvirt with pip (which makes the `rtlibvirt` command), then run "
        "`rtlibvirt cockpit install` with it",
    )


def probe_results_dir() -> str:
    from rtlibvirt.probe.saved import results_dir

    return str(results_dir())


@dataclass(frozen=True)
class Installed:
    path: Path
    changed: bool  # False: the same page and config were already there
    command: str


def _read_config(folder: Path) -> dict[str, object] | None:
    """The config of a page rtlibvirt installed in ``folder``; None if it has none."""
    data = read_bytes(folder / CONFIG, HostError, limit=MAX_CONFIG, missing_ok=True, kind=CONFIG)
    if data is None:
        return None
    try:
        config = json.loads(data)
    except ValueError:
        return None
    if not isinstance(config, dict) or config.get("installed_by") != MARKER:
        return None
    return config


def _owned(folder: Path) -> dict[str, object] | None:
    """Refuse a folder that is not rtlibvirt's; its config if it is, None if it is absent."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise HostError(
            f"{folder} exists and is not a folder; nothing was changed",
            "move it away, or pass another --dir",
        )
    if not folder.exists() or not any(folder.iterdir()):  # an empty folder holds nothing to lose
        return None
    config = _read_config(folder)
    if config is None:
        raise HostError(
            f"{folder} exists and was not installed by rtlibvirt (no {CONFIG} of ours); "
            "nothing was changed",
            "move it away, or pass another --dir",
        )
    return config


def install(directory: Path = DEFAULT_DIR) -> Installed:
    folder = directory / PACKAGE
    config = _owned(folder)
    command = rtlibvirt_command()
    page = page_files()
    wanted = {
        "installed_by": MARKER,
        "version": __version__,
        "rtlibvirt": command,
        "probe_results": probe_results_dir(),
        "files": sorted(page),
    }
    content = (json.dumps(wanted, indent=2) + "\n").encode()
    changed = config != wanted
    try:
        directory.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o755, exist_ok=True)
        for name, data in page.items():
            target = folder / name
            if target.is_symlink() or (target.exists() and not target.is_file()):
                raise HostError(f"{target} is not a regular file; the page was not updated")
            old = read_bytes(target, HostError, limit=len(data) + 1, missing_ok=True)
            if old != data:
                atomic_write(target, data, mode=0o644)
                changed = True
        # files of an older page that this one no longer has
        listed = config.get("files") if config else None
        for name in listed if isinstance(listed, list) else ():
            if isinstance(name, str) and name in _old_names(name) and name not in page:
                with contextlib.suppress(FileNotFoundError):
                    (folder / name).unlink()
        # the config last: a folder with a config of ours holds a whole page
        old = read_bytes(folder / CONFIG, HostError, limit=MAX_CONFIG, missing_ok=True)
        if old != content:
            atomic_write(folder / CONFIG, content, mode=0o644)
    except OSError as exc:
        raise HostError(
            f"cannot install the Cockpit page in {folder}: {exc.strerror or exc}",
            "run as root for /usr/share/cockpit, or pass --dir ~/.local/share/cockpit",
        ) from None
    return Installed(folder, changed, command)


def _old_names(name: str) -> set[str]:
    """Names an older page may have listed that may be removed: plain file names only."""
    if "/" in name or name.startswith(".") or name == CONFIG or len(name) > 100:
        return set()
    return {name}


def uninstall(directory: Path = DEFAULT_DIR) -> Path | None:
    """Remove the page rtlibvirt installed; None when there is none. Other files stay."""
    folder = directory / PACKAGE
    config = _owned(folder)
    if config is None:
        return None
    listed = config.get("files")
    names = [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []
    try:
        for name in names:
            if name in _old_names(name):
                with contextlib.suppress(FileNotFoundError):
                    (folder / name).unlink()
        (folder / CONFIG).unlink()
        with contextlib.suppress(OSError):  # not empty: files of someone else's stay
            folder.rmdir()
    except OSError as exc:
        raise HostError(
            f"cannot remove the Cockpit page from {folder}: {exc.strerror or exc}"
        ) from None
    return folder

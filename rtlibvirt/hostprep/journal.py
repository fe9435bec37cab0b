"""The journal: what the host was like before host-prep changed it.

Kept under ``/var/lib/rtlibvirt/host-prep/`` (under the root): ``journal.json``
and ``blobs/<sha256>``, the pre-image of every file. Each record is made
durable *before* the change it describes, and only the first record of a path
is kept (the original, not an earlier rtlibvirt version), so an apply stopped
after any number of changes, or applied again and again, still reverts to the
host as it was before the first apply.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

from rtlibvirt.errors import HostError
from rtlibvirt.hostprep.effects import Effects, FileState
from rtlibvirt.kernel.files import LockBusy, lock

JOURNAL_DIR = "/var/lib/rtlibvirt/host-prep"
OWN_DIRS = ("/var/lib/rtlibvirt/host-prep", "/var/lib/rtlibvirt")  # removed when empty
VERSION = 1


class Journal:
    """The journal under one root; created on the first record."""

    def __init__(self, effects: Effects, directory: str = JOURNAL_DIR) -> None:
        self.dir = directory
        self.own_dirs = OWN_DIRS if directory == JOURNAL_DIR else (directory,)
        self.effects = effects
        self.fs = effects.fs
        self.data: dict[str, Any] = _empty()
        self._lock_fd: int | None = None
        self._created: list[str] = []  # folders above our own that _mkdir made
        self.exists = False
        self._load()

    # ---- reading ---------------------------------------------------------

    @property
    def path(self) -> str:
        return f"{self.dir}/journal.json"

    def _load(self) -> None:
        real = self.fs.path(self.path)
        state = self.effects.state(self.path)
        if state.kind == "absent":
            return
        if state.kind != "file":
            raise HostError(f"{real}: not a file: {state.describe()}; not a journal of ours")
        try:
            text = state.data.decode("utf-8")
        except UnicodeDecodeError:
            raise HostError(
                f"{real}: the journal is damaged (not UTF-8)",
                "it holds what revert needs: inspect it before removing it",
            ) from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise HostError(
                f"{real}: the journal is damaged ({exc})",
                "it holds what revert needs: inspect it before removing it",
            ) from None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise HostError(f"{real}: unknown journal version; written by another rtlibvirt?")
        base = _empty()
        base.update(data)
        self.data = base
        self.exists = True

    @property
    def files(self) -> list[dict[str, Any]]:
        return self.data["files"]  # type: ignore[no-any-return]

    @property
    def runtime(self) -> list[dict[str, Any]]:
        return self.data["runtime"]  # type: ignore[no-any-return]

    @property
    def services(self) -> list[dict[str, Any]]:
        return self.data["services"]  # type: ignore[no-any-return]

    @property
    def mounts(self) -> list[dict[str, Any]]:
        return self.data["mounts"]  # type: ignore[no-any-return]

    @property
    def pending(self) -> list[list[str]]:
        return self.data["pending"]  # type: ignore[no-any-return]

    @property
    def grubby(self) -> dict[str, Any] | None:
        return self.data.get("grubby")

    def file_entry(self, host_path: str) -> dict[str, Any] | None:
        return next((e for e in self.files if e["path"] == host_path), None)

    def runtime_entry(self, host_path: str) -> dict[str, Any] | None:
        return next((e for e in self.runtime if e["path"] == host_path), None)

    def pre_image(self, entry: dict[str, Any]) -> FileState:
        """The recorded original of a file entry."""
        kind = entry["kind"]
        if kind == "file":
            blob = self.fs.path(f"{self.dir}/blobs/{entry['blob']}")
            found = self.effects.state(f"{self.dir}/blobs/{entry['blob']}")
            if found.kind != "file":
                raise HostError(f"{blob}: the pre-image of {entry['path']} is missing")
            data = found.data
            if hashlib.sha256(data).hexdigest() != entry["blob"]:
                raise HostError(f"{blob}: the pre-image of {entry['path']} is damaged")
            return FileState.file(data, entry["mode"])
        if kind == "symlink":
            return FileState.symlink(entry["target"])
        if kind == "dir":
            return FileState("dir", mode=entry["mode"])
        return FileState(kind)

    def originals(self, under: str) -> dict[str, FileState]:
        """The recorded original of every path under ``under`` (a folder), by host path."""
        prefix = under.rstrip("/") + "/"
        return {e["path"]: self.pre_image(e) for e in self.files if e["path"].startswith(prefix)}

    def empty(self) -> bool:
        return not any(
            self.data[k] for k in ("files", "runtime", "services", "mounts", "pending")
        ) and not self.data.get("grubby")

    # ---- writing ---------------------------------------------------------

    def _ensure(self) -> None:
        """Create the journal's directory (once) and hold its lock."""
        if self._lock_fd is not None:
            return
        self._mkdir(self.dir)
        self.lock()

    def _mkdir(self, host_path: str) -> None:
        if not self.fs.path(host_path).is_dir():
            if not self.fs.path(os.path.dirname(host_path)).is_dir():
                self._mkdir(os.path.dirname(host_path))
            self.effects.put(host_path, FileState("dir", mode=0o700))
            if host_path not in self.own_dirs and not host_path.startswith(self.dir + "/"):
                self._created.append(host_path)  # e.g. a tree's /var/lib: removed with ours

    def lock(self) -> None:
        """Hold the journal's lock (released by the kernel if we die)."""
        if self._lock_fd is not None or not self.fs.path(self.dir).is_dir():
            return
        try:
            fd = lock(self.fs.path(self.dir), timeout=0, directory=True)
        except LockBusy:
            raise HostError(
                "another `rtlibvirt host-prep` is changing this host right now",
                "wait for it to finish, then run the command again",
            ) from None
        self._lock_fd = fd
        self.data = _empty()
        self.exists = False
        self._load()  # what the previous holder left

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def save(self) -> None:
        self._ensure()
        if self._created:  # recorded in the first save after they were made
            made = self.data.setdefault("created_dirs", [])
            made.extend(p for p in self._created if p not in made)
            self._created = []
        text = json.dumps(self.data, indent=1, sort_keys=True) + "\n"
        self.effects.put(self.path, FileState.file(text.encode("utf-8"), 0o600))
        self.exists = True

    @staticmethod
    def fingerprint(state: FileState) -> str:
        return hashlib.sha256(
            f"{state.kind}:{state.target}:{state.mode:o}:".encode() + state.data
        ).hexdigest()

    def set_after(self, host_path: str, now: FileState) -> None:
        """For a guarded entry: what the file was right after our change."""
        entry = self.file_entry(host_path)
        if (
            entry is not None
            and entry.get("guarded")
            and entry.get("after") != (fingerprint := self.fingerprint(now))
        ):
            entry["after"] = fingerprint
            self.save()

    def record_file(
        self,
        host_path: str,
        now: FileState,
        then: Sequence[Sequence[str]] = (),
        guarded: bool = False,
    ) -> None:
        """Record ``now`` as the original of ``host_path`` unless already recorded.

        ``then``: the commands to run after the file is put back (``update-grub``).
        """
        if self.file_entry(host_path) is not None:
            return
        self._ensure()
        entry: dict[str, Any] = {"path": host_path, "kind": now.kind}
        if then:
            entry["then"] = [list(argv) for argv in then]
        if guarded:  # changed by a tool, not by us: restored only if unchanged since
            entry["guarded"] = True
        if now.kind == "file":
            digest = hashlib.sha256(now.data).hexdigest()
            self._mkdir(f"{self.dir}/blobs")
            blob = f"{self.dir}/blobs/{digest}"
            if not self.fs.path(blob).exists():
                self.effects.put(blob, FileState.file(now.data, 0o600))
            uid, gid = self.effects.owner(host_path)
            entry.update(blob=digest, mode=now.mode, uid=uid, gid=gid)
        elif now.kind == "symlink":
            entry["target"] = now.target
        elif now.kind == "dir":  # a folder systemctl removes (an emptied .wants/)
            uid, gid = self.effects.owner(host_path)
            entry.update(mode=now.mode, uid=uid, gid=gid)
        self.files.append(entry)
        self.save()

    def forget_file(self, host_path: str) -> None:
        self.data["files"] = [e for e in self.files if e["path"] != host_path]

    def record_runtime(self, host_path: str, previous: str, wanted: str) -> None:
        self._ensure()  # before changing data: taking the lock reloads it
        entry = self.runtime_entry(host_path)
        if entry is None:
            self.runtime.append({"path": host_path, "previous": previous, "wanted": wanted})
        elif entry["wanted"] == wanted:
            return
        else:
            entry["wanted"] = wanted
        self.save()

    def forget_runtime(self, host_path: str) -> None:
        self.data["runtime"] = [e for e in self.runtime if e["path"] != host_path]

    def record_service(self, unit: str, was_active: bool) -> None:
        self._ensure()  # before changing data: taking the lock reloads it
        if any(e["unit"] == unit for e in self.services):
            return
        self.services.append({"unit": unit, "was_active": was_active})
        self.save()

    def forget_service(self, unit: str) -> None:
        self.data["services"] = [e for e in self.services if e["unit"] != unit]

    def record_mount(self, host_path: str, fstype: str) -> None:
        self._ensure()  # before changing data: taking the lock reloads it
        if any(e["path"] == host_path for e in self.mounts):
            return
        self.mounts.append({"path": host_path, "fstype": fstype})
        self.save()

    def forget_mount(self, host_path: str) -> None:
        self.data["mounts"] = [e for e in self.mounts if e["path"] != host_path]

    def set_grubby(self, record: dict[str, Any] | None) -> None:
        self._ensure()  # before changing data: taking the lock reloads it
        self.data["grubby"] = record
        self.save()

    def add_pending(self, argv: list[str]) -> None:
        self._ensure()  # before changing data: taking the lock reloads it
        if argv not in self.pending:
            self.pending.append(argv)
            self.save()

    def done_pending(self, argv: list[str]) -> None:
        if argv in self.pending:
            self.pending.remove(argv)
            self.save()

    def remove(self) -> None:
        """Remove the journal and our own directories (once everything is reverted)."""
        self.close()
        self.effects.remove_tree(self.dir)
        made = sorted(
            (
                p
                for p in self.data.get("created_dirs", [])
                if isinstance(p, str)
                and (p == "/var" or p.startswith("/var/"))
                and os.path.normpath(p) == p
            ),
            key=len,
            reverse=True,
        )
        for own in [*self.own_dirs[1:], *made]:  # deepest first; only when empty
            with contextlib.suppress(OSError):
                if self.fs.path(own).is_dir() and not any(self.fs.path(own).iterdir()):
                    self.effects.put(own, FileState.absent())
        self.data = _empty()
        self.exists = False


def _empty() -> dict[str, Any]:
    return {
        "version": VERSION,
        "files": [],
        "runtime": [],
        "services": [],
        "mounts": [],
        "grubby": None,
        "pending": [],
    }

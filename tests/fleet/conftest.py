"""Fixtures of the Ansible collection's tests: the built collection, rtlibvirt's wheel,
ansible-playbook runs with their recaps, and the hosts' trees.

Everything Ansible writes (its home, temp files, SSH control sockets) stays in the
test's temp folder; the collection is the one ``ansible-galaxy collection build``
makes from ansible/, installed with ``ansible-galaxy collection install``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

pytest.importorskip(
    "ansible", reason="ansible-core is in the test extras: pip install -e '.[test]'"
)

BIN = Path(sys.executable).parent
COLLECTION_SRC = REPO / "ansible"
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
# host : ok=9    changed=5    unreachable=0    failed=0    skipped=4    rescued=0    ignored=0
RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")


@dataclass
class Run:
    """One ansible-playbook run: its exit status, output and recap per host."""

    returncode: int
    output: str
    recap: dict[str, dict[str, int]]

    def changed(self, host: str) -> int:
        return self.recap[host]["changed"]

    def check(self) -> Run:
        assert self.returncode == 0, self.output[-6000:]
        for host, counts in self.recap.items():
            assert counts["failed"] == 0 and counts["unreachable"] == 0, (host, self.output[-6000:])
        return self


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    recap: dict[str, dict[str, int]] = {}
    lines = output.splitlines()
    if "PLAY RECAP" not in output:
        return recap
    start = max(i for i, line in enumerate(lines) if line.startswith("PLAY RECAP"))
    for line in lines[start + 1 :]:
        m = RECAP.match(line.strip())
        if m:
            recap[m.group("host")] = {
                key: int(value)
                for key, value in (pair.split("=") for pair in m.group("counts").split())
            }
    return recap


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The second host: Debian's sshd on 127.0.0.2 (sshd.py), for one test module."""
    from tests.fleet import sshd

    unpacked = sshd.unpack(Path(sys.prefix) / "cache" / "openssh-server")
    running = sshd.start(unpacked, tmp_path_factory.mktemp("sshd"))
    try:
        yield running
    finally:
        running.stop()
    assert running.process.poll() is not None


@pytest.fixture(scope="session")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection built from ansible/ and installed: the ANSIBLE_COLLECTIONS_PATH."""
    work = tmp_path_factory.mktemp("collection")
    subprocess.run(
        [
            BIN / "ansible-galaxy",
            "collection",
            "build",
            str(COLLECTION_SRC),
            "--output-path",
            str(work),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (tarball,) = work.glob("rtlibvirt-realtime-*.tar.gz")
    installed = work / "collections"
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "install", "-p", str(installed), str(tarball)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return installed


@pytest.fixture
def ansible(collection: Path, tmp_path: Path) -> Iterator[Any]:
    """Run ansible-playbook with the built collection; returns a Run."""
    home = tmp_path / "ansible-home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "ANSIBLE_CONFIG": str(home / "ansible.cfg"),  # absent: nothing from the cwd or /etc
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_COLLECTIONS_PATH": str(collection),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TMP": str(tmp_path / "remote-tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_PIPELINING": "True",
    }
    for name in ("RTLIBVIRT_HOST_LOCK_HELD", "LIBVIRT_DEFAULT_URI"):
        if name in os.environ:
            env[name] = os.environ[name]

    def run(playbook: str | Path, inventory: Path, *args: str, timeout: int = 900) -> Run:
        path = Path(playbook) if Path(playbook).is_absolute() else PLAYBOOKS / playbook
        done = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(inventory), str(path), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = done.stdout + done.stderr
        saved = os.environ.get("RTLIBVIRT_FLEET_OUTPUT")
        if saved:  # keep the output of every run (docs quote the two-host run)
            target = Path(saved)
            target.mkdir(parents=True, exist_ok=True)
            count = len(list(target.glob("*.txt")))
            name = f"{count:02d}-{path.stem}{''.join(a for a in args if a.startswith('--'))}.txt"
            (target / name).write_text(output)
        return Run(done.returncode, output, parse_recap(done.stdout))

    yield run
    # ssh ControlPersist masters of this test: ask them to exit (their own sockets)
    for socket_path in (home / "cp").glob("*") if (home / "cp").exists() else []:
        subprocess.run(
            ["ssh", "-O", "exit", "-o", f"ControlPath={socket_path}", "x"], capture_output=True
        )


def tree(root: Path) -> dict[str, Any]:
    """Every file, link and directory under ``root``: its bytes, target and mode."""
    state: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            state[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            state[rel] = ("dir", path.stat().st_mode)
        else:
            state[rel] = ("file", path.read_bytes(), path.stat().st_mode)
    return state


def results(directory: Path) -> dict[str, Any]:
    """The registered results the test playbooks save as NAME.json."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def write_inventory(path: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    """An inventory (JSON is YAML) of ``hosts`` in the group ``hypervisors``."""
    path.write_text(json.dumps({"all": {"children": {"hypervisors": {"hosts": hosts}}}}, indent=2))
    return path


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path

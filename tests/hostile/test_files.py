"""Hostile files given as the input of each command: endless, huge, not text, not files.

Read with a limit (1 MiB), never to the end of /dev/zero or a FIFO; exit 2 naming
the file; nothing on stdout; no traceback; bounded memory; no hang.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes.roots import make_tree
from tests.hostile.runner import assert_refused, run


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("files") / "root", "debian")


COMMANDS: dict[str, Callable[[str, Path], list[str]]] = {
    "render": lambda f, _: ["render", f],
    "host-prep": lambda f, tree: ["host-prep", "plan", f, "--root", str(tree)],
    "tune": lambda f, _: ["tune", "test", f, "-c", "test:///default", "--dry-run"],
}


def sparse(tmp_path: Path) -> str:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(100 << 30)  # 100 GiB of nothing: read to the end, it never ends
    return str(path)


def big(tmp_path: Path) -> str:
    path = tmp_path / "big.yaml"
    path.write_text("name: plc\n" + "# padding\n" * 120_000)  # 1.2 MB, made now
    return str(path)


def fifo(tmp_path: Path) -> str:
    path = tmp_path / "fifo.yaml"
    os.mkfifo(path)  # nobody writes: it reads as empty, at once
    return str(path)


def binary(tmp_path: Path) -> str:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"name: \xff\xfe\x00plc\n")
    return str(path)


def nul(tmp_path: Path) -> str:
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"name: plc\x00\nvcpus: 4\n")
    return str(path)


def loop(tmp_path: Path) -> str:
    path = tmp_path / "loop.yaml"
    os.symlink(path.name, path)
    return str(path)


def directory(tmp_path: Path) -> str:
    path = tmp_path / "dir.yaml"
    path.mkdir()
    return str(path)


INPUTS: dict[str, tuple[Callable[[Path], str], str]] = {
    "dev-zero": (lambda _: "/dev/zero", "larger than 1 MiB"),
    "dev-urandom": (lambda _: "/dev/urandom", "larger than 1 MiB|not UTF-8"),
    "dev-null": (lambda _: "/dev/null", "the file is empty"),
    "sparse-100GiB": (sparse, "larger than 1 MiB"),
    "big": (big, "larger than 1 MiB"),
    "fifo": (fifo, "the file is empty"),
    "binary": (binary, "not UTF-8 text"),
    "nul": (nul, "U\\+0000 is not allowed"),
    "loop": (loop, "Too many levels of symbolic links"),
    "directory": (directory, "is a directory"),
    "missing": (lambda p: str(p / "missing.yaml"), "no such file"),
    "path-max": (lambda p: "/" + "a/" * 2100 + "x.yaml", "longer than 4095 bytes"),
    "proc-mem": (lambda _: "/proc/self/mem", "cannot read|empty"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_files(tmp_path: Path, tree: Path, command: str, name: str) -> None:
    make, message = INPUTS[name]
    path = make(tmp_path)
    ran = run(*COMMANDS[command](path, tree))
    shown = path if len(path) < 200 else path[:80]
    assert_refused(ran, shown, message=message)


@pytest.fixture
def endless_fifo(tmp_path: Path) -> Iterator[str]:
    """A FIFO someone keeps writing YAML comments into, forever."""
    path = tmp_path / "endless.yaml"
    os.mkfifo(path)
    keep = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # so the writer need not wait
    write_fd = os.open(path, os.O_WRONLY)
    stop = threading.Event()

    def write() -> None:
        try:
            while not stop.is_set():
                os.write(write_fd, b"# " + b"y" * 4093 + b"\n")
        except OSError:
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield str(path)
    finally:
        stop.set()
        os.close(keep)
        writer.join(timeout=30)
        os.close(write_fd)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_endless_fifo_is_read_to_the_limit(tree: Path, endless_fifo: str, command: str) -> None:
    ran = run(*COMMANDS[command](endless_fifo, tree))
    assert_refused(ran, endless_fifo, message="larger than 1 MiB")


def test_a_file_name_cannot_forge_a_line(tmp_path: Path) -> None:
    path = tmp_path / "vm\nerror: all is well.yaml"
    path.write_text("name: [\n")
    ran = run("render", str(path))
    assert ran.code == 2
    assert "\nerror: all is well" not in ran.err
    assert "vm\\nerror: all is well.yaml" in ran.err

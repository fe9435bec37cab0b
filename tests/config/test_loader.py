"""The YAML loader: YAML 1.2 values, key lines, and every bound before the work."""

from __future__ import annotations

import contextlib
import math
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtlibvirt.config import loader
from rtlibvirt.config.loader import load, loads
from rtlibvirt.config.vm import validate_document
from rtlibvirt.errors import InputError, SpecError


def problem(text: str) -> tuple[str, int | None, str]:
    with pytest.raises(SpecError) as info:
        loads(text, "t.yaml")
    (first,) = info.value.problems[:1]
    return first.path, first.line, first.message


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a: 012", 12),
        ("a: 1_000", 1000),
        ("a: 0b11", 3),
        ("a: 0o17", 15),
        ("a: 0x1F", 31),
        ("a: -0x10", -16),
        ("a: +12", 12),
        ("a: 1.5", 1.5),
        ("a: 1e3", 1000.0),
        ("a: .inf", math.inf),
        ("a: -.inf", -math.inf),
        ("a: ~", None),
        ("a: null", None),
        ("a:", None),
        ("a: true", True),
        ("a: False", False),
        ("a: no", "no"),  # YAML 1.2: not a boolean
        ("a: yes", "yes"),
        ("a: on", "on"),
        ("a: 0-1", "0-1"),
        ("a: 0000:03:00.0", "0000:03:00.0"),  # YAML 1.1 would read 180.0
        ("a: 2024-01-01", "2024-01-01"),  # a timestamp stays as written
        ("a: 2024-01-01 10:00:00", "2024-01-01 10:00:00"),
        ("a: =", "="),
        ("a: '12'", "12"),
        ('a: "true"', "true"),
        ("a: !!str 12", "12"),
        ("a: ! 12", "12"),
        ("a: !!int '12'", 12),
        ("a: !!float 1", 1.0),
        ("a: !!bool true", True),
        ("a: !!null ~", None),
        ("a: !!map {b: 1}", {"b": 1}),
        ("a: !!seq [1]", [1]),
        ("a: |\n  two\n  lines\n", "two\nlines\n"),
    ],
)
def test_yaml_12_values(text: str, value: object) -> None:
    assert loads(text).data == {"a": value}


def test_keys_are_strings_as_written() -> None:
    doc = loads("1: a\ntrue: b\nnull: c\n0x10: d\n")
    assert doc.data == {"1": "a", "true": "b", "null": "c", "0x10": "d"}


def test_key_lines() -> None:
    doc = loads("a:\n  b: 1\n  c:\n    - x\n    - y: 2\n")
    assert doc.lines[("a",)] == 1
    assert doc.lines[("a", "b")] == 2
    assert doc.lines[("a", "c", 1)] == 5
    assert doc.lines[("a", "c", 1, "y")] == 5


def test_merge_keys_work_as_yaml_says() -> None:
    doc = loads(
        "base: &b {x: 1, y: 2}\n"
        "more: &m {y: 3, z: 4}\n"
        "one:\n  <<: *b\n  x: 9\n"  # a key written in the mapping wins
        "two:\n  <<: [*b, *m]\n"  # an earlier merge wins
        "three: {<<: {q: 1}, r: 2}\n"
    )
    assert doc.data["one"] == {"x": 9, "y": 2}
    assert doc.data["two"] == {"x": 1, "y": 2, "z": 4}
    assert doc.data["three"] == {"q": 1, "r": 2}
    assert doc.lines[("one", "y")] == 4  # the line of the `<<`


@pytest.mark.parametrize(
    ("text", "path", "line", "message"),
    [
        ("a: 1\na: 2\n", "a", 2, "found duplicate key 'a' (first on line 1)"),
        ("a:\n  <<: 5\n", "a.<<", 2, "a merge key (<<) takes a mapping"),
        ("a:\n  <<: [x]\n", "a.<<", 2, "a merge key (<<) takes a mapping"),
        ("a: !!python/object:os.system x\n", "a", 1, "the tag !!python/object:os.system"),
        ("a: !!python/name:os.system\n", "a", 1, "is not supported"),
        ("a: !!binary aGVsbG8=\n", "a", 1, "the tag !!binary"),
        ("a: !!set {x}\n", "a", 1, "the tag !!set on a mapping"),
        ("a: !!omap [x: 1]\n", "a", 1, "the tag !!omap on a list"),
        ("a: !custom x\n", "a", 1, "the tag !custom"),
        ("a:\n  b: !!int nope\n", "a.b", 2, "'nope' is not a valid int"),
        ("a: !!bool yes\n", "a", 1, "'yes' is not a valid bool"),
        ("a: !!null x\n", "a", 1, "not a valid null"),
        ("a: !!float x\n", "a", 1, "not a valid float"),
        ("a: *nothing\n", "a", 1, "the alias *nothing has no anchor"),
        ("a: &x [*x]\n", "a[0]", 1, "inside its own anchor"),
        ("? [a]\n: b\n", "", 1, "a key must be a plain string, not a list"),
        ("? {a: 1}\n: b\n", "", 1, "a key must be a plain string, not a mapping"),
        ("%YAML 1.1\n---\na: 1\n", "", 2, "%YAML 1.1 is not supported"),
        ("a: 1\n---\nb: 2\n", "", 2, "more than one YAML document"),
        ("a: [1\n", "", 2, "YAML syntax error"),
        ("a: 1\n\tb: 2\n", "", 2, "YAML syntax error"),
        ("a: 1\x07\n", "", 1, "U+0007 is not allowed in YAML"),
    ],
)
def test_refused_with_line_and_key(text: str, path: str, line: int, message: str) -> None:
    got_path, got_line, got_message = problem(text)
    assert (got_path, got_line) == (path, line), got_message
    assert message in got_message


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The billion laughs: ``levels`` anchors each repeating the one before ``width`` times."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for n in range(1, levels):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (alias_bomb(), 5, f"more than {loader.MAX_VALUES} values"),
        ("a: " + "[" * 10_000 + "]" * 10_000 + "\n", 1, f"nest more than {loader.MAX_DEPTH}"),
        ("a: " + "{b: " * 5_000 + "1" + "}" * 5_000 + "\n", 1, "nest more than"),
        ("".join(f"{'  ' * n}k{n}:\n" for n in range(40)), 33, "nest more than"),
        ("a: " + "9" * 5_000 + "\n", 1, "an integer of 5000 characters"),
        ("a: -" + "1_" * 100 + "1\n", 1, "an integer of"),
        ("a: " + "x" * 100_000 + "\n", 1, "a value of 100000 characters"),
        ("a: [" + ", ".join(["1"] * 30_000) + "]\n", 1, "more than 20000 values"),
        ("\n" * 30_000 + "a: 1\n", 20_001, "the file has 30001 lines"),
    ],
    ids=[
        "alias-bomb",
        "brackets",
        "braces",
        "block-nesting",
        "long-int",
        "long-int-underscores",
        "long-scalar",
        "many-values",
        "many-lines",
    ],
)
def test_bounds_before_work(text: str, line: int, message: str) -> None:
    _got_path, got_line, got_message = problem(text)
    assert got_line == line
    assert message in got_message


def test_an_alias_nested_deep_counts_its_depth() -> None:
    deep = "x: &d " + "[" * 20 + "]" * 20 + "\n"
    _path, line, message = problem(deep + "y: " + "[" * 20 + "*d" + "]" * 20 + "\n")
    assert line == 2 and "nests more than" in message


def test_aliases_within_bounds_work() -> None:
    doc = loads("base: &b {x: 1}\nuse: [*b, *b]\n")
    assert doc.data["use"] == [{"x": 1}, {"x": 1}]


# ---- reading the file ------------------------------------------------------


def test_a_file_over_the_limit_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(100 << 30)  # a sparse 100 GiB file: reading it would never end
    with pytest.raises(InputError, match="larger than 1 MiB"):
        load(big)


def test_dev_zero_is_read_only_up_to_the_limit() -> None:
    with pytest.raises(InputError, match="/dev/zero: larger than 1 MiB"):
        load("/dev/zero")


def test_a_fifo_without_a_writer_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="1 problem"):
        load(fifo)  # no writer: empty, at once


def test_a_fifo_with_an_endless_writer_stops_at_the_limit(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    # A reader of our own first, so that the writer is connected before load() opens it.
    keep = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    write_fd = os.open(fifo, os.O_WRONLY)
    stop = threading.Event()

    def write_forever() -> None:
        try:
            while not stop.is_set():
                os.write(write_fd, b"# " + b"x" * 4094 + b"\n")
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=write_forever, daemon=True)
    writer.start()
    try:
        with pytest.raises(InputError, match="larger than 1 MiB"):
            load(fifo)
    finally:
        stop.set()
        os.close(keep)  # the writer's next write fails: no reader left
        writer.join(timeout=10)
        os.close(write_fd)
    assert not writer.is_alive()


def test_a_path_longer_than_path_max_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="longer than 4095 bytes"):
        load("/" + "a/" * 3000 + "vm.yaml")


def test_a_file_name_with_a_newline_is_shown_escaped(tmp_path: Path) -> None:
    path = tmp_path / "vm\nerror: forged.yaml"
    path.write_text("name: [\n")
    with pytest.raises(SpecError) as info:
        load(path)
    rendered = info.value.render()
    assert "\nerror: forged" not in rendered and "vm\\nerror: forged.yaml" in rendered


# ---- any text: a document, or a SpecError; never another exception ----------------

SEED = (
    "name: plc\nmemory: 2GiB\nvcpus: 4\ncpu:\n  pinning: [2, 3, 4, 5]\n  emulator: 0-1\n"
    "  realtime: {vcpus: 1-3}\nbase: &b {locked: false}\nmemory_backing:\n  <<: *b\n"
    "devices:\n  disks:\n    - source: /var/lib/x.qcow2\n"
)
PIECES = [
    *"{}[]:,-&*!|>'\"#%@`?\n \t.0123456789abcxyz<=~\\",
    "\x00",
    "\x85",
    "\ufeff",
    "---",
    "!!str",
    "!!python/object:x",
    "&a",
    "*a",
    "*b",
    "<<",
    "%YAML 1.1\n",
    "? ",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(SEED)), st.sampled_from(PIECES), st.booleans()), max_size=10
    )
)
def test_mutated_documents_never_crash(edits: list[tuple[int, str, bool]]) -> None:
    text = SEED
    for position, piece, delete in edits:
        position = min(position, len(text))
        text = text[:position] + ("" if delete else piece) + text[position + (1 if delete else 0) :]
    try:
        doc = loads(text, "fuzz.yaml")
    except SpecError:
        return
    if isinstance(doc.data, dict):
        with contextlib.suppress(SpecError):
            validate_document(doc)

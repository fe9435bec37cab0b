"""Hostile vm.yaml files, through `rtlibvirt render` as a user runs it.

Every case: exit 2, FILE:LINE: KEY: in the message, nothing on stdout, no
traceback or internal error, bounded memory, no hang, nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.roots import snapshot
from tests.hostile import cases
from tests.hostile.cases import VM, VM_SPOTS, spoiled, yaml_string
from tests.hostile.runner import assert_refused, run


def refused(
    tmp_path: Path, text: str, line: int | None, key: str | None, message: str | None = None
) -> None:
    path = tmp_path / "vm.yaml"
    path.write_text(text, encoding="utf-8")
    before = snapshot(tmp_path)
    ran = run("render", str(path))
    assert_refused(ran, path, line=line, key=key, message=message)
    assert snapshot(tmp_path) == before


def test_the_base_file_renders(tmp_path: Path) -> None:
    path = tmp_path / "vm.yaml"
    path.write_text(cases.base(VM))
    ran = run("render", str(path))
    assert ran.code == 0, str(ran)
    assert "<domain" in ran.out


# ---- strings: no control character reaches XML, a file or a log line ----------------

STRING_SPOTS = {
    "name": ("name: {}", "plc"),
    "model": ("  model: {}", "Skylake-Server"),
    "source": ("    - source: {}", "/var/lib/libvirt/images/plc.qcow2"),
    "bridge": ("    - bridge: {}", "br0"),
    "mac": ("      mac: {}", "52:54:00:12:34:56"),
    "network": ("    - network: {}", "default"),
    "hostdev": ("    - {}", "0000:03:00.0"),
    "memory": ("memory: {}", "2GiB"),
    "emulator": ("  emulator: {}", "0-1"),
}


@pytest.mark.parametrize("control", sorted(cases.CONTROL))
@pytest.mark.parametrize("spot", sorted(STRING_SPOTS))
def test_control_characters(tmp_path: Path, spot: str, control: str) -> None:
    form, value = STRING_SPOTS[spot]
    text = spoiled(VM, VM_SPOTS[spot], form.format(yaml_string(cases.CONTROL[control](value))))
    refused(tmp_path, text, VM_SPOTS[spot].line, VM_SPOTS[spot].key)


@pytest.mark.parametrize("control", ["newline-at-end", "tab", "escape", "bidi-override"])
def test_control_characters_in_a_feature_name(tmp_path: Path, control: str) -> None:
    name = yaml_string(cases.CONTROL[control]("arch-capabilities"))
    text = spoiled(VM, VM_SPOTS["features"], f"  features: {{{name}: require}}")
    refused(tmp_path, text, VM_SPOTS["features"].line, None)


@pytest.mark.parametrize(
    ("spot", "line_text", "message"),
    [
        ("name", 'name: "plc\\n"', "newline"),  # `$` matched before a final newline
        ("name", "name: ../../etc", "is not a valid name"),
        ("name", "name: a/b", "is not a valid name"),
        ("name", "name: " + "a" * 65, "is not a valid name"),
        ("name", "name: -plc", "is not a valid name"),
        ("name", 'name: "pl c"', "is not a valid name"),
        ("model", "  model: 'Sky lake'", "is not a valid CPU model name"),
        ("model", "  model: " + "a" * 65, "is not a valid CPU model"),
        ("bridge", "    - bridge: a-very-long-bridge-name", "is not a Linux interface name"),
        ("bridge", "    - bridge: 'br 0'", "is not a Linux interface name"),
        ("mac", "      mac: 52:54:00:12:34:5", "MAC address"),
        ("mac", "      mac: 53:54:00:12:34:56", "multicast"),
        ("mac", '      mac: "52:54:00:12:34:56\\n"', "MAC address"),
        ("hostdev", "    - 0000:03:20.0", "slot"),
        ("hostdev", '    - "03:00.0\\n"', "not a PCI address"),
        ("source", "    - source: relative/plc.qcow2", "is not an absolute path"),
        ("source", "    - source: /" + "a" * 5000, "is too long"),
        ("source", "    - source: /" + "a" * 300 + "/x", "longer than 255 bytes"),
        (
            "source",
            "    - source: /" + "/".join(["ä" * 100] * 21),
            "bytes long: a path",
        ),
    ],
    ids=lambda v: v if len(str(v)) < 30 else str(v)[:30],
)
def test_bad_strings(tmp_path: Path, spot: str, line_text: str, message: str) -> None:
    text = spoiled(VM, VM_SPOTS[spot], line_text)
    refused(tmp_path, text, VM_SPOTS[spot].line, VM_SPOTS[spot].key, message)


# ---- CPU ids: non-negative integers, never booleans ------------------------------------


@pytest.mark.parametrize(
    ("spot", "line_text"),
    [
        ("pinning", "  pinning: [2, 3, 4, true]"),  # true is the int 1 in Python
        ("pinning", "  pinning: [2, 3, 4, false]"),
        ("pinning", "  pinning: [2, 3, 4, -1]"),
        ("pinning", "  pinning: [2, 3, 4, 8192]"),
        ("pinning", "  pinning: [2, 3, 4, 5.0]"),
        ("pinning", "  pinning: [2, 3, 4, '5']"),
        ("pinning", "  pinning: [2, 3, 4, null]"),
        ("pinning", "  pinning: [2, 3, 4, [5]]"),
        ("pinning", "  pinning: true"),
        ("pinning", "  pinning: '2-3,4-99999999'"),
        ("pinning", "  pinning: '0-8191:1/0'"),
        ("pinning", "  pinning: '5-2'"),
        ("pinning", "  pinning: '٣'"),  # a digit of another script
        ("pinning", "  pinning: '" + ",".join(["0-8191"] * 100) + "'"),
        ("emulator", "  emulator: 0-99999999"),
        ("emulator", "  emulator: " + "9" * 5000),
        ("emulator", "  emulator: true"),
        ("emulator", "  emulator: -1"),
        ("rt-vcpus", "    vcpus: [true]"),
        ("rt-vcpus", "    vcpus: [-1]"),
        ("rt-vcpus", "    vcpus: 0-4096000"),
    ],
)
def test_cpu_ids(tmp_path: Path, spot: str, line_text: str) -> None:
    refused(
        tmp_path, spoiled(VM, VM_SPOTS[spot], line_text), VM_SPOTS[spot].line, VM_SPOTS[spot].key
    )


# ---- sizes and numbers within what libvirt and the kernel take ---------------------------


@pytest.mark.parametrize(
    ("spot", "line_text"),
    [
        ("memory", "memory: 100000000000000000GiB"),
        ("memory", "memory: 9007199254740992KiB"),  # one KiB past libvirt's LLONG_MAX bytes
        ("memory", "memory: 8796093022208"),  # MiB
        ("memory", "memory: " + "9" * 40 + "MiB"),
        ("memory", "memory: 1e30"),
        ("memory", "memory: .inf"),
        ("memory", "memory: -1"),
        ("memory", "memory: 0"),
        ("memory", "memory: 2GiB5"),
        ("memory", "memory: 1.5KiB"),
        ("vcpus", "vcpus: 4097"),
        ("vcpus", "vcpus: " + "9" * 5000),
        ("vcpus", "vcpus: true"),
        ("vcpus", "vcpus: 0x" + "f" * 40),
        ("priority", "    priority: 100"),
        ("priority", "    priority: false"),
        ("priority", "    priority: 99"),  # no room above it for the kernel threads
        ("priority", "    priority: 97"),  # rcuc/rcub at the default +3 would need 100
        ("cache-ways", "  cache_ways: 65"),
        ("cache-ways", "  cache_ways: -1"),
    ],
)
def test_numbers(tmp_path: Path, spot: str, line_text: str) -> None:
    refused(
        tmp_path, spoiled(VM, VM_SPOTS[spot], line_text), VM_SPOTS[spot].line, VM_SPOTS[spot].key
    )


def test_memory_at_libvirts_limit_renders(tmp_path: Path) -> None:
    path = tmp_path / "vm.yaml"
    text = spoiled(VM, VM_SPOTS["memory"], "memory: 8796093022207")  # the most libvirt takes
    path.write_text(text.replace("hugepages: 1G", "hugepages: none"))
    assert run("render", str(path)).code == 0


# ---- YAML: bounds before work, tags, merge keys ---------------------------------------------


def test_alias_bomb(tmp_path: Path) -> None:
    bomb = cases.alias_bomb(indent="    ")
    text = cases.base(VM).replace(
        "  features: {arch-capabilities: require}\n", "  features:\n" + "\n".join(bomb) + "\n"
    )
    # a0 is on line 9; the values pass 20,000 on the line of a4 (9 x 6,561 each)
    refused(tmp_path, text, 13, None, r"a4\[\d\]: the file holds more than 20000 values")


@pytest.mark.parametrize("depth", [40, 1000, 100_000])
def test_nesting(tmp_path: Path, depth: int) -> None:
    text = spoiled(VM, VM_SPOTS["name"], "name: " + "[" * depth + "]" * depth)
    refused(tmp_path, text, 1, None, r"name(\[0\])+: mappings and lists nest more than 32")


def test_block_nesting(tmp_path: Path) -> None:
    deep = "".join(f"{'  ' * (n + 1)}k{n}:\n" for n in range(40))
    text = (
        cases.base(VM)
        .replace("isolation:\n", "isolation:\n" + deep, 1)
        .replace("  cache_ways: 0\n", "")
    )
    refused(tmp_path, text, 24 + 31, None, "nest more than 32")


def test_many_values(tmp_path: Path) -> None:
    text = spoiled(VM, VM_SPOTS["pinning"], "  pinning: [" + ", ".join(["2"] * 30_000) + "]")
    refused(tmp_path, text, 5, None, r"cpu\.pinning\[\d+\]: the file holds more than 20000 values")


def test_many_lines(tmp_path: Path) -> None:
    refused(tmp_path, cases.base(VM) + "\n" * 30_000, 20_001, None, "lines: at most 20000")


def test_a_long_value(tmp_path: Path) -> None:
    text = spoiled(VM, VM_SPOTS["name"], "name: " + "x" * 500_000)
    refused(tmp_path, text, 1, "name", "a value of 500000 characters")


@pytest.mark.parametrize(
    ("line_text", "message"),
    [
        ("name: !!python/object:os.system plc", "the tag !!python/object:os.system"),
        ("name: !!python/object/apply:os.system [id]", "the tag !!python/object/apply:os.system"),
        ("name: !!python/name:os.system", "the tag !!python/name:os.system"),
        ("name: !!binary cGxj", "the tag !!binary"),
        ("name: !!timestamp 2024-01-01", "the tag !!timestamp"),
        ("name: !local plc", "the tag !local"),
        ("name: !!set {plc}", "the tag !!set"),
        ("name: !!omap [plc: 1]", "the tag !!omap"),
        ("name: !<tag:example.com,2024:x> plc", "the tag tag:example.com,2024:x"),
        ("name: !!int plc", "'plc' is not a valid int"),
    ],
)
def test_tags(tmp_path: Path, line_text: str, message: str) -> None:
    refused(tmp_path, spoiled(VM, VM_SPOTS["name"], line_text), 1, "name", message)


def test_merge_keys_work(tmp_path: Path) -> None:
    path = tmp_path / "vm.yaml"
    text = cases.base(VM).replace(
        "memory_backing:\n  hugepages: 1G\n",
        "memory_backing:\n  <<: {hugepages: 2M, locked: false}\n  hugepages: 1G\n",
    )
    path.write_text(text)
    ran = run("render", str(path))
    assert ran.code == 0, str(ran)
    assert "<locked" not in ran.out and "size='1048576'" in ran.out.replace('"', "'")


@pytest.mark.parametrize(
    ("insert", "line", "message"),
    [
        ("  <<: 5\n", 13, "a merge key .<<. takes a mapping"),
        ("  <<: [a]\n", 13, "a merge key"),
        ("  <<: *nowhere\n", 13, "the alias \\*nowhere has no anchor"),
        ("  <<: {size: 1G}\n", 13, "unknown key"),
    ],
)
def test_merge_keys_refused(tmp_path: Path, insert: str, line: int, message: str) -> None:
    text = cases.base(VM).replace("memory_backing:\n", "memory_backing:\n" + insert)
    refused(tmp_path, text, line, None, message)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("%YAML 1.1\n---\n" + cases.base(VM), 2, "%YAML 1.1 is not supported"),
        (cases.base(VM) + "---\nname: other\n", 25, "more than one YAML document"),
        (
            cases.base(VM).replace("vcpus: 4", "vcpus: 4\nvcpus: 5"),
            4,
            "found duplicate key 'vcpus'",
        ),
        (cases.base(VM).replace("name: plc", "name: plc\x07"), 1, "U\\+0007 is not allowed"),
        (cases.base(VM).replace("vcpus: 4", "vcpus: [4"), 4, "YAML syntax error"),
        (cases.base(VM).replace("vcpus: 4", "\tvcpus: 4"), 3, "YAML syntax error"),
        ("? [a]\n: b\n", 1, "a key must be a plain string"),
        ("a: &x [*x]\n", 1, "inside its own anchor"),
        ("- a\n- b\n", 1, "the top level must be a mapping"),
        ("plc\n", 1, "the top level must be a mapping"),
        ("# nothing\n", 1, "the file is empty"),
    ],
    ids=[
        "yaml-1.1",
        "two-documents",
        "duplicate",
        "bell",
        "syntax",
        "tab",
        "complex-key",
        "recursive-alias",
        "list",
        "scalar",
        "empty",
    ],
)
def test_documents(tmp_path: Path, text: str, line: int, message: str) -> None:
    refused(tmp_path, text, line, None, message)

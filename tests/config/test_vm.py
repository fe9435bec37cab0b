"""vm.yaml: every rule, and every bad input, through the CLI and the library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from pytest_mock import MockerFixture

from rtlibvirt.cli import cli
from rtlibvirt.config.loader import loads
from rtlibvirt.config.vm import json_schema, load_spec, validate_data
from rtlibvirt.errors import SpecError
from tests.conftest import EXAMPLES

PLC = (EXAMPLES / "plc.yaml").read_text()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


# ---- good specs ---------------------------------------------------------------


def test_plc_example_is_the_issue_text() -> None:
    """examples/plc.yaml is exactly the spec users are promised to be able to use."""
    spec = load_spec(EXAMPLES / "plc.yaml").spec
    assert spec.name == "plc"
    assert spec.memory == 2 * 1024 * 1024
    assert spec.cpu.pinning == (2, 3, 4, 5)
    assert spec.cpu.emulator == (0, 1)
    assert spec.realtime_vcpus == (1, 2, 3)
    assert spec.realtime_host_cpus == frozenset({3, 4, 5})
    assert spec.cpu.realtime is not None and spec.cpu.realtime.policy == "fifo"
    assert spec.memory_backing.hugepages == "1G" and spec.memory_backing.locked
    assert spec.devices.hostdevs[0].address == "0000:03:00.0"
    assert spec.devices.hostdevs[0].managed is True


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_normalized_spec_is_itself_a_valid_spec(example: Path) -> None:
    spec = load_spec(example).spec
    normalized = spec.normalized()
    again = validate_data(json.loads(json.dumps(normalized)))
    assert again.normalized() == normalized


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_json_schema_accepts_examples(example: Path) -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())
    data = loads(example.read_text()).data
    jsonschema.validate(data, json_schema())


def test_json_schema_rejects_unknown_keys_and_bad_enums() -> None:
    schema = json_schema()
    data = loads(PLC).data
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**data, "memroy": "1G"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**data, "machine": "virt"}, schema)


def test_schema_command_prints_the_schema() -> None:
    code, out, _ = run("schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["required"]) == {"name", "memory", "vcpus", "cpu"}


@pytest.mark.parametrize(
    ("yaml_text", "check"),
    [
        ("memory: 1024", lambda s: s.memory == 1024 * 1024),
        ("memory: 1.5GiB\nmemory_backing: {hugepages: 2M}", lambda s: s.memory == 1536 * 1024),
        ("cpu: {pinning: '1-2', emulator: 0, realtime: false}", lambda s: s.realtime_vcpus == ()),
        (
            "cpu: {pinning: [1, 2], emulator: [0], realtime: true}",
            lambda s: s.realtime_vcpus == (0, 1),
        ),
        ("cpu: {pinning: [2, 1], emulator: 0}", lambda s: s.cpu.pinning == (2, 1)),
        (
            "devices: {hostdevs: ['3:00.1']}",
            lambda s: s.devices.hostdevs[0].address == "0000:03:00.1",
        ),
        (
            "devices: {hostdevs: [{address: 'ABCD:FF:1F.7', managed: false}]}",
            lambda s: (
                (s.devices.hostdevs[0].address, s.devices.hostdevs[0].managed)
                == ("abcd:ff:1f.7", False)
            ),
        ),
        (
            "devices: {networks: [{network: default, mac: '52:54:00:AA:bb:01'}]}",
            lambda s: s.devices.networks[0].mac == "52:54:00:aa:bb:01",
        ),
        ("memory_backing: {hugepages: none}\nmemory: 100", lambda s: s.hugepage_kib is None),
        (
            "cpu: {pinning: [1, 2], emulator: 0, model: Skylake-Server}",
            lambda s: s.cpu.model == "Skylake-Server",
        ),
    ],
)
def test_accepted_variants(
    write_spec: Callable[..., Path], yaml_text: str, check: Callable[..., bool]
) -> None:
    base = "name: v\nmemory: 2GiB\nvcpus: 2\ncpu: {pinning: [1, 2], emulator: 0, realtime: {vcpus: 1}}\n"
    data = loads(base).data
    data.update(loads(yaml_text).data)
    spec = validate_data(data)
    assert check(spec)


def test_every_vcpu_realtime_is_a_warning_not_an_error(write_spec: Callable[..., Path]) -> None:
    path = write_spec("name: v\nmemory: 1GiB\nvcpus: 2\ncpu: {pinning: [1, 2], emulator: 0}\n")
    loaded = load_spec(path)
    assert [(w.path, w.line) for w in loaded.warnings] == [("cpu.realtime", 4)]
    code, out, err = run("render", str(path))
    assert code == 0
    assert "warning:" in err and "every vCPU is real-time" in err
    assert "cpu.realtime.vcpus: 1" in err
    assert out.startswith("<domain")


# ---- bad specs: exit 2, file, line, key path, message, no traceback ------------------------

BAD = [
    # (id, yaml, key path, line, message fragment)
    ("syntax", "name: plc\ncpu: [1, 2\nvcpus: 2\n", "", 3, "YAML syntax error"),
    ("not-a-mapping", "- name: plc\n", "", 1, "top level must be a mapping"),
    ("scalar-top", "just text\n", "", 1, "top level must be a mapping"),
    ("empty", "", "", 1, "the file is empty"),
    ("duplicate-key", "name: a\nname: b\n", "name", 2, "duplicate key"),
    ("unknown-top", PLC + "memroy: 1G\n", "memroy", 18, "unknown key"),
    (
        "unknown-nested",
        PLC.replace("priority: 1", "prority: 1"),
        "cpu.realtime.prority",
        9,
        "did you mean `priority`",
    ),
    ("missing-name", PLC.replace("name: plc\n", ""), "name", None, "is required but missing"),
    (
        "missing-pinning",
        PLC.replace("  pinning: [2, 3, 4, 5]    # host CPU of each vCPU, in vCPU order\n", ""),
        "cpu.pinning",
        4,
        "is required but missing",
    ),
    ("wrong-type-vcpus", PLC.replace("vcpus: 4", 'vcpus: "4"'), "vcpus", 3, "expected an integer"),
    (
        "wrong-type-bool",
        PLC.replace("locked: true", "locked: yes"),
        "memory_backing.locked",
        12,
        "expected true or false",
    ),
    ("cpu-not-mapping", PLC.replace("cpu:\n", "cpu: 3\nx:\n"), "cpu", 4, "expected a mapping"),
    (
        "pinning-length",
        PLC.replace("[2, 3, 4, 5]", "[2, 3, 4]"),
        "cpu.pinning",
        5,
        "lists 3 host CPUs but vcpus is 4",
    ),
    (
        "pinning-twice",
        PLC.replace("[2, 3, 4, 5]", "[2, 3, 3, 5]"),
        "cpu.pinning[2]",
        5,
        "host CPU 3 is used twice (vCPU 1 and vCPU 2)",
    ),
    (
        "pinning-twice-cpulist",
        PLC.replace("[2, 3, 4, 5]", "'2-4,2'"),
        "cpu.pinning",
        5,
        "lists 3 host CPUs",
    ),
    (
        "pinning-not-cpus",
        PLC.replace("[2, 3, 4, 5]", "[2, a, 4, 5]"),
        "cpu.pinning",
        5,
        "CPU lists hold integers",
    ),
    (
        "pinning-bad-cpulist",
        PLC.replace("[2, 3, 4, 5]", "'2-'"),
        "cpu.pinning",
        5,
        "is not a CPU number or range",
    ),
    (
        "rt-vcpu-out-of-range",
        PLC.replace("vcpus: 1-3 ", "vcpus: 1-4 "),
        "cpu.realtime.vcpus",
        8,
        "vCPU 4 does not exist",
    ),
    (
        "rt-vcpu-out-of-range-list",
        PLC.replace("vcpus: 1-3 ", "vcpus: [1, 7] "),
        "cpu.realtime.vcpus[1]",
        8,
        "vCPU 7 does not exist",
    ),
    (
        "emulator-shares-rt",
        PLC.replace("emulator: 0-1", "emulator: 0-3"),
        "cpu.emulator",
        6,
        "shares host CPU 3 with realtime vCPU 1",
    ),
    (
        "topology-product",
        PLC.replace(
            "  realtime:\n", "  topology: {sockets: 2, cores: 3, threads: 1}\n  realtime:\n"
        ),
        "cpu.topology",
        7,
        "= 6, but vcpus is 4",
    ),
    (
        "priority-high",
        PLC.replace("priority: 1", "priority: 100"),
        "cpu.realtime.priority",
        9,
        "out of range",
    ),
    (
        "priority-zero",
        PLC.replace("priority: 1", "priority: 0"),
        "cpu.realtime.priority",
        9,
        "out of range",
    ),
    (
        "policy",
        PLC.replace("priority: 1", "priority: 1\n    policy: idle"),
        "cpu.realtime.policy",
        10,
        "must be 'fifo' or 'rr'",
    ),
    (
        "memory-not-multiple",
        PLC.replace("memory: 2GiB", "memory: 1536MiB"),
        "memory",
        2,
        "not a multiple of the 1G hugepage size",
    ),
    (
        "memory-no-unit",
        PLC.replace("memory: 2GiB", "memory: 2 gigs"),
        "memory",
        2,
        "unknown unit 'gigs'",
    ),
    (
        "memory-decimal-unit",
        PLC.replace("memory: 2GiB", "memory: 2GB"),
        "memory",
        2,
        "did you mean KiB, MiB, GiB, TiB",
    ),
    ("memory-bool", PLC.replace("memory: 2GiB", "memory: true"), "memory", 2, "expected a size"),
    (
        "hugepages-size",
        PLC.replace("hugepages: 1G", "hugepages: 4M"),
        "memory_backing.hugepages",
        11,
        "must be '2M', '1G' or 'none'",
    ),
    (
        "pci-malformed",
        PLC.replace("- 0000:03:00.0 ", "- 0000:03:00 "),
        "devices.hostdevs[0]",
        17,
        "is not a PCI address",
    ),
    (
        "pci-slot",
        PLC.replace("- 0000:03:00.0 ", "- 0000:03:20.0 "),
        "devices.hostdevs[0]",
        17,
        "slot 0x20 is out of range",
    ),
    (
        "pci-duplicate",
        PLC.replace("    - 0000:03:00.0 ", "    - 03:00.0\n    - 0000:03:00.0 "),
        "devices.hostdevs[1]",
        18,
        "listed twice",
    ),
    (
        "disk-no-source",
        PLC.replace("- source: /var/lib/libvirt/images/plc.qcow2", "- bus: virtio"),
        "devices.disks[0].source",
        15,
        "is required but missing",
    ),
    (
        "disk-relative",
        PLC.replace("/var/lib/libvirt/images/plc.qcow2", "plc.qcow2"),
        "devices.disks[0].source",
        15,
        "is not an absolute path",
    ),
    (
        "disk-ide-q35",
        PLC.replace("plc.qcow2\n", "plc.qcow2\n      bus: ide\n"),
        "devices.disks[0].bus",
        16,
        "q35 machine has no IDE bus",
    ),
    (
        "disk-readonly-sata",
        PLC.replace("plc.qcow2\n", "plc.qcow2\n      bus: sata\n      readonly: true\n"),
        "devices.disks[0].readonly",
        17,
        "no read-only SATA",
    ),
    (
        "network-both",
        PLC + "  networks:\n    - {bridge: br0, network: default}\n",
        "devices.networks[0]",
        19,
        "exactly one of `bridge` or `network`",
    ),
    (
        "network-none",
        PLC + "  networks:\n    - {model: virtio}\n",
        "devices.networks[0]",
        19,
        "exactly one of `bridge` or `network`",
    ),
    (
        "mac-multicast",
        PLC + "  networks:\n    - {bridge: br0, mac: '01:00:5e:00:00:01'}\n",
        "devices.networks[0].mac",
        19,
        "multicast",
    ),
    (
        "bridge-name",
        PLC + "  networks:\n    - {bridge: 'br0/../x'}\n",
        "devices.networks[0].bridge",
        19,
        "not a Linux interface name",
    ),
    (
        "name-injection",
        PLC.replace("name: plc", 'name: "a</name><devices>"'),
        "name",
        1,
        "is not a valid name",
    ),
    ("name-quote", PLC.replace("name: plc", 'name: "pl\'c"'), "name", 1, "is not a valid name"),
    ("name-amp", PLC.replace("name: plc", 'name: "a&b"'), "name", 1, "is not a valid name"),
    (
        "control-char",
        PLC.replace("plc.qcow2", 'plc\\u0001.qcow2"').replace("- source: /var", '- source: "/var'),
        "devices.disks[0].source",
        15,
        "control characters",
    ),
]


@pytest.mark.parametrize(
    ("yaml_text", "path", "line", "fragment"), [pytest.param(*case[1:], id=case[0]) for case in BAD]
)
def test_bad_spec(
    write_spec: Callable[..., Path], yaml_text: str, path: str, line: int | None, fragment: str
) -> None:
    spec_file = write_spec(yaml_text, name="bad.yaml")
    code, out, err = run("render", str(spec_file))
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    assert fragment in err
    location = f"{spec_file}:{line}:" if line is not None else f"{spec_file}:"
    assert location in err
    if path:
        assert f" {path}: " in err
    with pytest.raises(SpecError) as info:
        load_spec(spec_file)
    paths = [p.path for p in info.value.problems]
    assert path in paths


def test_all_problems_are_reported_at_once(write_spec: Callable[..., Path]) -> None:
    spec_file = write_spec(
        PLC.replace("vcpus: 4", "vcpus: x")
        .replace("emulator: 0-1", "emulatr: 0-1")
        .replace("priority: 1", "priority: 200"),
        name="bad.yaml",
    )
    with pytest.raises(SpecError) as info:
        load_spec(spec_file)
    # the misspelled required key is one problem (not "unknown" and "missing" twice)
    assert [p.path for p in info.value.problems] == [
        "vcpus",
        "cpu.emulatr",
        "cpu.realtime.priority",
    ]
    assert [p.line for p in info.value.problems] == [3, 6, 9]
    misspelled = info.value.problems[1]
    assert "`emulator`" in misspelled.message and "required" in misspelled.message
    code, _, err = run("render", str(spec_file))
    assert code == 2
    assert "3 problems in" in err and "nothing was changed" in err


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b"name: \xff\xfe\n"), "not UTF-8"),
    ],
    ids=["missing", "directory", "binary"],
)
def test_unreadable_files_are_one_line(
    tmp_path: Path, setup: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "vm.yaml"
    setup(path)
    code, _, err = run("render", str(path))
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unreadable_permission(tmp_path: Path, mocker: MockerFixture) -> None:
    """EACCES is one line, exit 2. (Root reads any file, so the kernel's error is simulated.)"""
    path = tmp_path / "vm.yaml"
    path.write_text(PLC)
    real_open = os.open

    def refuse(name: object, *args: object, **kwargs: object) -> int:
        if os.fspath(name) == str(path):  # type: ignore[call-overload]
            raise PermissionError(13, "Permission denied")
        return real_open(name, *args, **kwargs)  # type: ignore[arg-type]

    mocker.patch("rtlibvirt.kernel.files.os.open", side_effect=refuse)
    code, _, err = run("render", str(path))
    assert code == 2
    assert err == f"error: {path}: permission denied\n"


def test_real_process_prints_no_traceback(write_spec: Callable[..., Path]) -> None:
    """The installed entry point, as a user runs it."""
    spec_file = write_spec(PLC.replace("vcpus: 4", "vcpus: -1"), name="bad.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "rtlibvirt.cli", "render", str(spec_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{spec_file}:3: vcpus: -1 is out of range" in proc.stderr


def test_every_problem_judgeable_is_reported_in_one_run(write_spec: Callable[..., Path]) -> None:
    """The first hour took three rounds: shape, then the pinning and memory rules, then the
    emulator rule. Every rule that can be judged from the valid values runs at once."""
    spec_file = write_spec(
        """\
        name: trial plc
        memory: 1025MiB
        vcpus: 3
        cpu:
          pinning: [0, 1]
          emulator: 1
          realtime:
            vcpus: [1]
        memory_backing:
          hugepages: 4M
        """,
        name="trial.yaml",
    )
    with pytest.raises(SpecError) as info:
        load_spec(spec_file)
    found = {(p.path, p.message.split(":")[0]) for p in info.value.problems}
    paths = [p.path for p in info.value.problems]
    assert "name" in paths and "memory_backing.hugepages" in paths  # the shape
    assert any(
        p.path == "cpu.pinning" and "but vcpus is 3" in p.message for p in info.value.problems
    )
    assert any(
        p.path == "cpu.emulator" and "realtime vCPU 1" in p.message for p in info.value.problems
    ), found
    # memory vs the page size cannot be judged: the page size is not valid
    assert not any(p.path == "memory" for p in info.value.problems)
    assert len(paths) == 4


def test_rules_never_judge_an_invalid_value(write_spec: Callable[..., Path]) -> None:
    """vcpus invalid: the rules that need it stay silent instead of guessing."""
    spec_file = write_spec(PLC.replace("vcpus: 4", "vcpus: many"), name="bad.yaml")
    with pytest.raises(SpecError) as info:
        load_spec(spec_file)
    assert [p.path for p in info.value.problems] == ["vcpus"]


RICH = {
    "name": "rich",
    "memory": "2GiB",
    "vcpus": 4,
    "cpu": {
        "pinning": [2, 3, 4, 5],
        "emulator": "0-1",
        "realtime": {"vcpus": "1-3", "priority": 1, "kernel_threads": {"ksoftirqd": 1}},
        "features": {"tsc-deadline": "optional"},
        "share_with": ["other"],
    },
    "memory_backing": {"hugepages": "1G", "locked": False},
    "guest": {
        "extra_kernel_args": ["quiet"],
        "disable_services": ["irqbalance.service"],
        "mask_services": ["ksm.service"],
        "kthreads": {"ksoftirqd": 2},
    },
}


def _leaves(node: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _leaves(value, (*path, key))]
    if isinstance(node, list):
        return [p for i, value in enumerate(node) for p in _leaves(value, (*path, i))]
    return [path]


def _replaced(path: tuple[object, ...], value: object) -> dict[str, object]:
    data = json.loads(json.dumps(RICH))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize("path", _leaves(RICH), ids=lambda p: ".".join(map(str, p)))
def test_a_wrong_value_anywhere_is_a_spec_error_never_a_crash(path: tuple[object, ...]) -> None:
    """The rules run on partial specs (every problem in one run): each must skip the values the
    shape check rejected. A crash here once came from a bad kernel_threads value reaching the
    priority rule's addition, and from the guest section's rules reading a rejected list."""
    validate_data(RICH)  # the spec itself is valid
    refused = 0
    for wrong in ({"x": 1}, [[1]], "?!", -1, True, 10**30):
        try:
            validate_data(_replaced(path, wrong))  # some are valid here (True for a boolean)
        except SpecError as exc:
            assert exc.problems, (path, wrong)
            refused += 1
    assert refused >= 4, path

"""Hostile host.yaml (through `rtlibvirt host-prep plan|apply --root`) and TUNING.yaml
(through `rtlibvirt tune --dry-run` on libvirt's test driver) files.

Every case: exit 2, FILE:LINE: KEY: in the message, nothing on stdout, no traceback
or internal error, bounded memory, no hang, nothing changed in the tree.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.roots import make_tree, snapshot
from tests.hostile import cases
from tests.hostile.cases import HOST, HOST_SPOTS, TUNING, TUNING_SPOTS, spoiled, yaml_string
from tests.hostile.runner import assert_refused, run


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("hostile") / "root", "debian")


def host_refused(
    tmp_path: Path,
    tree: Path,
    text: str,
    line: int | None,
    key: str | None,
    message: str | None = None,
) -> None:
    path = tmp_path / "host.yaml"
    path.write_text(text, encoding="utf-8")
    before = snapshot(tree)
    for command in ("plan", "apply"):
        extra = ["--yes"] if command == "apply" else []
        ran = run("host-prep", command, str(path), "--root", str(tree), *extra)
        assert_refused(ran, path, line=line, key=key, message=message)
    assert snapshot(tree) == before


def test_the_base_host_yaml_plans(tmp_path: Path, tree: Path) -> None:
    path = tmp_path / "host.yaml"
    path.write_text(cases.base(HOST))
    ran = run("host-prep", "plan", str(path), "--root", str(tree))
    assert ran.code == 0, str(ran)


@pytest.mark.parametrize("control", sorted(cases.CONTROL))
@pytest.mark.parametrize(
    ("spot", "form", "value"),
    [
        ("service", "disable_services: [{}]", "irqbalance"),
        ("mask", "mask_services: [{}]", "ksm"),
        ("karg", "extra_kernel_args: [{}]", "console=ttyS0"),
        ("isolated", "isolated_cpus: {}", "2-13"),
    ],
)
def test_control_characters(
    tmp_path: Path, tree: Path, spot: str, form: str, value: str, control: str
) -> None:
    text = spoiled(HOST, HOST_SPOTS[spot], form.format(yaml_string(cases.CONTROL[control](value))))
    host_refused(tmp_path, tree, text, HOST_SPOTS[spot].line, HOST_SPOTS[spot].key)


KERNEL_ARGS = [
    ('"quiet\\n"', "newline"),  # GRUB injection: a `$` pattern passed it
    ('"quiet\\ninsmod evil"', "newline"),
    ("'#quiet'", "'#' is not allowed"),  # GRUB drops the rest of the line
    ("'a b'", "' ' is not allowed"),
    ("'x=\"y z\"'", "'\"' is not allowed"),
    ("'x=$root'", "'\\$' is not allowed"),
    ("'x;reboot'", "';' is not allowed"),
    ("'x`id`'", "'`' is not allowed"),
    ("'x|y'", "'\\|' is not allowed"),
    ("'x&&y'", "'&' is not allowed"),
    ("'x\\y'", "is not allowed"),
    ("'--'", "a name starts with"),
    ("'-init'", "a name starts with"),
    ("'=x'", "a name starts with"),
    ("isolcpus=0-13", "host-prep derives isolcpus from isolated_cpus"),
    ("'isolcpus=managed_irq,domain,1'", "host-prep derives isolcpus"),
    ("nohz_full=0-13", "host-prep derives nohz_full"),
    ("rcu_nocbs=1", "host-prep derives rcu_nocbs"),
    ("irqaffinity=5", "host-prep derives irqaffinity from housekeeping_cpus"),
    ("nohz=off", "host-prep derives nohz"),
    ("rcu_nocb_poll", "host-prep derives rcu_nocb_poll"),
    ("a" * 2000, "too long"),
]


@pytest.mark.parametrize(("arg", "message"), KERNEL_ARGS, ids=[a[:20] for a, _ in KERNEL_ARGS])
def test_kernel_arguments(tmp_path: Path, tree: Path, arg: str, message: str) -> None:
    text = spoiled(HOST, HOST_SPOTS["karg"], f"extra_kernel_args: [{arg}]")
    host_refused(tmp_path, tree, text, HOST_SPOTS["karg"].line, HOST_SPOTS["karg"].key, message)


def test_kernel_arguments_that_would_overflow_the_command_line(tmp_path: Path, tree: Path) -> None:
    args = ", ".join(f"opt{n}=" + "v" * 60 for n in range(20))
    text = spoiled(HOST, HOST_SPOTS["karg"], f"extra_kernel_args: [{args}]")
    host_refused(tmp_path, tree, text, HOST_SPOTS["karg"].line, "extra_kernel_args", "2048 bytes")


@pytest.mark.parametrize(
    ("spot", "line_text", "key"),
    [
        ("isolated", "isolated_cpus: 1-99999999", None),
        ("isolated", "isolated_cpus: [true]", None),
        ("isolated", "isolated_cpus: [-1]", None),
        ("isolated", "isolated_cpus: " + "9" * 5000, None),
        ("isolated", "isolated_cpus: '" + ",".join(["1-8191"] * 50) + "'", None),
        ("housekeeping", "housekeeping_cpus: [false]", None),
        ("hugepages", "hugepages: {size: 1G, count: 10000000}", "hugepages.count"),
        ("hugepages", "hugepages: {size: 1G, count: true}", "hugepages.count"),
        ("hugepages", "hugepages: {size: 4K, count: 1}", "hugepages.size"),
        ("service", "disable_services: ['../../../etc/passwd']", None),
        ("service", "disable_services: ['a/b.service']", None),
        ("service", "disable_services: ['" + "a" * 300 + "']", None),
        ("service", "disable_services: ['foo@bar@baz']", None),
        ("mask", "mask_services: [rtlibvirt-host]", None),
    ],
)
def test_values(tmp_path: Path, tree: Path, spot: str, line_text: str, key: str | None) -> None:
    host_refused(
        tmp_path,
        tree,
        spoiled(HOST, HOST_SPOTS[spot], line_text),
        HOST_SPOTS[spot].line,
        key or HOST_SPOTS[spot].key,
    )


def test_host_yaml_alias_bomb(tmp_path: Path, tree: Path) -> None:
    text = cases.base(HOST) + "\n".join(cases.alias_bomb()) + "\n"
    host_refused(tmp_path, tree, text, 7 + 4, None, "more than 20000 values")


def test_host_yaml_nesting(tmp_path: Path, tree: Path) -> None:
    text = spoiled(HOST, HOST_SPOTS["isolated"], "isolated_cpus: " + "[" * 50_000 + "]" * 50_000)
    host_refused(tmp_path, tree, text, 1, None, "nest more than 32")


def test_host_yaml_tag(tmp_path: Path, tree: Path) -> None:
    text = spoiled(
        HOST, HOST_SPOTS["isolated"], "isolated_cpus: !!python/object/new:os.system [id]"
    )
    host_refused(tmp_path, tree, text, 1, "isolated_cpus", "the tag !!python/object/new:os.system")


# ---- TUNING.yaml ----------------------------------------------------------------------


def tune(path: Path) -> object:
    return run("tune", "test", str(path), "-c", "test:///default", "--dry-run", "--no-host-check")


def tuning_refused(
    tmp_path: Path, text: str, line: int | None, key: str | None, message: str | None = None
) -> None:
    path = tmp_path / "tuning.yaml"
    path.write_text(text, encoding="utf-8")
    ran = tune(path)
    assert_refused(ran, path, line=line, key=key, message=message)  # type: ignore[arg-type]


def test_the_base_tuning_yaml_tunes(tmp_path: Path) -> None:
    path = tmp_path / "tuning.yaml"
    path.write_text(cases.base(TUNING))
    ran = tune(path)
    assert ran.code == 0, str(ran)  # type: ignore[attr-defined]


@pytest.mark.parametrize("control", ["newline-at-end", "tab", "nul", "escape", "bidi-override"])
def test_tuning_control_characters(tmp_path: Path, control: str) -> None:
    value = yaml_string(cases.CONTROL[control]("host-passthrough"))
    text = spoiled(TUNING, TUNING_SPOTS["model"], f"  model: {value}")
    tuning_refused(tmp_path, text, TUNING_SPOTS["model"].line, TUNING_SPOTS["model"].key)


@pytest.mark.parametrize(
    ("spot", "line_text"),
    [
        ("pinning", "  pinning: [3, true]"),
        ("pinning", "  pinning: [3, -2]"),
        ("pinning", "  pinning: 0-99999999"),
        ("emulator", "  emulator: " + "1" * 5000),
        ("rt-vcpus", "    vcpus: [false]"),
    ],
)
def test_tuning_cpu_ids(tmp_path: Path, spot: str, line_text: str) -> None:
    tuning_refused(
        tmp_path,
        spoiled(TUNING, TUNING_SPOTS[spot], line_text),
        TUNING_SPOTS[spot].line,
        TUNING_SPOTS[spot].key,
    )


def test_tuning_alias_bomb(tmp_path: Path) -> None:
    text = cases.base(TUNING).replace(
        "  model: host-passthrough\n",
        "  features:\n" + "\n".join(cases.alias_bomb(indent="    ")) + "\n",
    )
    tuning_refused(tmp_path, text, 5 + 4, None, "more than 20000 values")


def test_tuning_merge_key_crash_is_gone(tmp_path: Path) -> None:
    """A merge key crashed the loader with KeyError; it now works."""
    path = tmp_path / "tuning.yaml"
    text = "base: &b {hugepages: none, locked: false}\n" + cases.base(TUNING).replace(
        "memory_backing:\n  hugepages: none\n  locked: false\n", "memory_backing:\n  <<: *b\n"
    )
    path.write_text(text)
    ran = tune(path)
    assert_refused(ran, path, line=1, key="base", message="unknown key")  # type: ignore[arg-type]

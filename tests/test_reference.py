"""The generated parts of docs/ are what the code makes (`make docs` rewrites them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtlibvirt import reference
from rtlibvirt.cli.docs import docs
from rtlibvirt.config.vm import VmSpec
from rtlibvirt.fit.checks import CHECKS

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("page", sorted(reference.PAGES))
def test_committed_docs_are_what_the_code_makes(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    assert reference.regenerate(page, text) == text, f"docs/{page} is stale: run `make docs`"


def test_the_tables_hold_every_key_and_code() -> None:
    vm = (DOCS / "vm-yaml.md").read_text()
    for key in ("name", "cpu.realtime.priority", "devices.disks[].source", "isolation.strict"):
        assert f"| `{key}` |" in vm
    tune = (DOCS / "tune.md").read_text()
    assert "| `cpu.pinning` |" in tune and "| `cpu.iothreads` |" not in tune
    assert "Not taken here: `cpu.iothreads`" in tune
    host = (DOCS / "host-prep.md").read_text()
    assert "| `hugepages[].size` | `1G` or `2M` | required |" in host
    checks = (DOCS / "host-checks.md").read_text()
    for registered in CHECKS:
        assert f"| `{registered.code}` | {registered.severity} |" in checks


def test_a_help_text_change_shows_in_the_table() -> None:
    schema = VmSpec.json_schema()
    schema["properties"]["machine"]["description"] = "QEMU machine | type"
    table = reference.key_table(schema)
    assert "| `machine` | `q35` or `pc` | `q35` | QEMU machine \\| type |" in table


def test_registry_is_complete() -> None:
    codes = [c.code for c in CHECKS]
    assert len(codes) == len(set(codes)) == 35
    assert {"kernel-not-rt", "cpufreq-governor", "thp-enabled"} <= set(codes)  # issue 22
    assert "emulated-devices" in codes  # issue 21
    assert {"network-missing", "network-inactive", "network-no-autostart"} <= set(codes)
    for registered in CHECKS:
        assert registered.about, f"{registered.code} has no docstring"
        assert registered.severity in ("error", "warning", "info")
    with pytest.raises(ValueError, match="registered twice"):
        from rtlibvirt.fit.checks import check

        check("cpu-missing", "error", "host")(lambda ctx: ())


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        ({"type": "integer", "minimum": 1, "maximum": 99}, "integer 1-99"),
        ({"type": "integer", "minimum": -1, "maximum": 10}, "integer -1 to 10"),
        ({"anyOf": [{"type": "boolean"}, {"type": "null"}]}, "bool"),
        ({"enum": ["a", "b", "c"]}, "`a`, `b` or `c`"),
        ({"type": "array", "items": {"type": "string"}}, "list of strings"),
        ({"type": "object", "additionalProperties": {"enum": ["x"]}}, "mapping of names to `x`"),
    ],
)
def test_type_text(schema: dict[str, object], text: str) -> None:
    assert reference.type_text(schema) == text


def test_make_docs_rewrites_and_check_reports(tmp_path: Path) -> None:
    copy = tmp_path / "docs"
    shutil.copytree(DOCS, copy)
    page = copy / "host-checks.md"
    page.write_text(page.read_text().replace("| `iommu-off` | error |", "| `iommu-off` | info |"))
    result = CliRunner().invoke(docs, [str(copy), "--check"])
    assert result.exit_code == 3
    assert "host-checks.md differs from what the code makes" in result.stderr
    assert "| `iommu-off` | info |" in page.read_text()  # --check changes nothing

    result = CliRunner().invoke(docs, [str(copy)])
    assert result.exit_code == 0 and "updated" in result.stderr
    assert page.read_text() == (DOCS / "host-checks.md").read_text()
    assert CliRunner().invoke(docs, [str(copy), "--check"]).exit_code == 0


def test_a_page_without_its_blocks_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(reference.BlockError, match="not \\['vm-keys'\\]"):
        reference.regenerate("vm-yaml.md", "# no blocks here\n")
    copy = tmp_path / "docs"
    shutil.copytree(DOCS, copy)
    (copy / "tune.md").write_text("# tune\n")
    result = CliRunner().invoke(docs, [str(copy)])
    assert result.exit_code == 2 and "holds the generated blocks none" in result.stderr

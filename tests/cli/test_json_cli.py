"""The JSON forms that scripts (and the Ansible modules) use: ``define --json`` and
``host-prep plan|apply|verify|revert --json``, with results that tell a change from
none."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from click.testing import CliRunner

from rtlibvirt.cli import cli
from rtlibvirt.hostprep import api
from tests.conftest import EXAMPLES
from tests.fakes.roots import make_tree, snapshot

TEST_URI = "test:///default"
AUTO = """\
name: rtl-json
memory: 1GiB
vcpus: 3
cpu:
  pinning: auto
  emulator: auto
  realtime: {vcpus: 1-2}
"""
HOST = "isolated_cpus: 4-7\nidle: poll\ndisable_services: [irqbalance]\n"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def test_conn() -> Iterator[Any]:
    conn = libvirt.open(TEST_URI)  # keeps the test driver's domains while the test runs
    yield conn
    conn.close()


def test_define_json_tells_defined_unchanged_and_updated(
    test_conn: Any, write_spec: Callable[..., Path]
) -> None:
    spec = write_spec(AUTO)
    code, out, err = run("define", str(spec), "-c", TEST_URI, "--json", "--dry-run")
    assert code == 0, err
    data = json.loads(out)
    assert (data["result"], data["changed"], data["dry_run"], data["existed"]) == (
        "defined",
        True,
        True,
        False,
    )
    assert data["uuid"] is None and data["diff"].startswith("--- /dev/null")
    assert "rtl-json" not in {d.name() for d in test_conn.listAllDomains()}

    code, out, err = run("define", str(spec), "-c", TEST_URI, "--json")
    assert code == 0, err
    defined = json.loads(out)
    assert defined["result"] == "defined" and not defined["dry_run"]
    placement = defined["placement"]
    assert len(placement["pinning"]) == 3 and placement["text"].startswith("vCPUs 0->")
    assert defined["not_checked"], "the test driver has no kernel files to read"
    assert test_conn.lookupByName("rtl-json").UUIDString() == defined["uuid"]

    code, out, _ = run("define", str(spec), "-c", TEST_URI, "--json")
    again = json.loads(out)
    assert (again["result"], again["changed"], again["diff"]) == ("unchanged", False, "")
    assert again["uuid"] == defined["uuid"] and again["placement"]["kept"] is True

    code, out, _ = run("define", str(spec), "-c", TEST_URI)
    assert code == 0 and "is up to date; nothing changed" in out

    write_spec(AUTO.replace("vcpus: 1-2}", "vcpus: 1-2, priority: 9}"))
    code, out, _ = run("define", str(spec), "-c", TEST_URI, "--json", "--dry-run")
    updated = json.loads(out)
    assert updated["result"] == "updated" and updated["changed"]
    assert 'priority="9"' in updated["diff"] and updated["uuid"] == defined["uuid"]


def test_define_json_on_refusal(test_conn: Any, write_spec: Callable[..., Path]) -> None:
    spec = write_spec((EXAMPLES / "plc.yaml").read_text().replace("[2, 3, 4, 5]", "[2, 3, 4, 500]"))
    code, out, err = run("define", str(spec), "-c", TEST_URI, "--json")
    assert code == 1
    data = json.loads(out)
    assert data["result"] == "refused" and not data["changed"]
    assert data["findings"][0]["code"] == "cpu-missing" and "cpu-missing" in err


def test_host_prep_json_plan_apply_verify_revert(
    tmp_path: Path, write_host: Callable[..., Path]
) -> None:
    root = make_tree(tmp_path / "root", "debian")
    spec = write_host(HOST)
    before = snapshot(root)
    code, out, err = run("host-prep", "plan", str(spec), "--root", str(root), "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert (plan["result"], plan["changed"], plan["dry_run"]) == ("would change", True, True)
    assert plan["reboot_required"] and plan["isolated_cpus"] == [4, 5, 6, 7]
    files = {c["path"]: c for c in plan["changes"] if c["kind"] == "file"}
    grub = files["/etc/default/grub.d/99-rtlibvirt.cfg"]
    assert grub["action"] == "create" and grub["reboot"] and "isolcpus=" in grub["diff"]
    commands = [c for c in plan["changes"] if c["kind"] == "command"]
    assert commands and not commands[0]["run"], "with --root no command is run"
    assert snapshot(root) == before

    code, out, err = run("host-prep", "apply", str(spec), "--root", str(root), "--json")
    assert code == 2 and "--json needs --yes" in err

    code, out, err = run("host-prep", "apply", str(spec), "--root", str(root), "--json", "--yes")
    assert code == 0, err
    applied = json.loads(out)
    assert (applied["result"], applied["changed"], applied["dry_run"]) == ("applied", True, False)
    assert "wrote /etc/default/grub.d/99-rtlibvirt.cfg" in applied["done"]

    # A tree gets files only: the runtime values it cannot write do not count as changes.
    code, out, _ = run("host-prep", "apply", str(spec), "--root", str(root), "--json", "--yes")
    again = json.loads(out)
    assert (again["result"], again["changed"], again["done"]) == ("unchanged", False, [])
    assert all(c["kind"] == "runtime" and not c["written"] for c in again["changes"])

    code, out, _ = run("host-prep", "verify", str(spec), "--root", str(root), "--json")
    verified = json.loads(out)
    rows = {r["what"]: r for r in verified["rows"]}
    assert rows["file /etc/default/grub.d/99-rtlibvirt.cfg"]["status"] == "ok"
    assert code == (0 if verified["matches"] else 3)

    code, out, _ = run("host-prep", "revert", "--root", str(root), "--json")
    reverted = json.loads(out)
    assert code == 0 and reverted["result"] == "reverted" and reverted["changed"]
    assert snapshot(root) == before
    code, out, _ = run("host-prep", "revert", "--root", str(root), "--json")
    assert json.loads(out)["result"] == "unchanged"


def test_host_spec_as_a_mapping_is_validated_and_written_the_same_way(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", "debian")
    data = {"isolated_cpus": "4-7", "idle": "poll"}
    prepared = api.prepare(root, data=data, source="spec")
    assert api.spec_text(data) == api.spec_text(dict(reversed(list(data.items()))))
    host_yaml = [c for c in prepared.plan.files if c.path == "/etc/rtlibvirt/host.yaml"]
    assert host_yaml and host_yaml[0].want.data == api.spec_text(data)
    from rtlibvirt.errors import InputError, SpecError

    with pytest.raises(SpecError) as bad:
        api.prepare(root, data={"isolated_cpus": "4-7", "idle": "sleepy"}, source="spec")
    assert "spec" in bad.value.render() and "idle" in bad.value.render()
    with pytest.raises(InputError):
        api.prepare(root, data={"isolated_cpus": float("nan")})

"""The modules, one playbook on one local host: host-prep on a tree, the hook in a
folder of the test, a VM on libvirt's test driver, the facts.

libvirt's test driver lives inside each module's process: what one run defines is
gone at the next. The second run therefore talks to a test-driver host whose file
holds the domain exactly as the first run's libvirt stored it (the module's ``xml``
result), which is what a persistent libvirtd would hand it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.fakes.libvirt_hosts import host_file
from tests.fakes.roots import make_tree
from tests.fleet.conftest import fresh, results, tree, write_inventory

VM = {
    "name": "rtl-fleet-mod",
    "memory": "512MiB",
    "vcpus": 3,
    "cpu": {"pinning": "auto", "emulator": "auto", "realtime": {"vcpus": "1-2", "priority": 1}},
    "memory_backing": {"hugepages": "none", "locked": False},
}
HOST = {"isolated_cpus": "2-3", "disable_services": ["irqbalance"], "idle": "poll"}


def inventory(tmp: Path, uri: str, vm: dict[str, Any] | None = None) -> Path:
    return write_inventory(
        tmp / f"inventory-{len(list(tmp.glob('inventory-*')))}.json",
        {
            "local": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "builtin_python": sys.executable,
                "rtlibvirt_python": sys.executable,
                "host_spec": HOST,
                "host_root": str(tmp / "root"),
                "hooks_dir": str(tmp / "hooks"),
                "vm_spec": vm or VM,
                "vm_uri": uri,
                "results_dir": str(tmp / "results"),
            }
        },
    )


def test_modules_check_diff_apply_and_again(ansible: Any, tmp_path: Path) -> None:
    make_tree(tmp_path / "root", cpus=4)
    (tmp_path / "hooks").mkdir()
    before = tree(tmp_path / "root")

    # 1. Check and diff mode on a fresh host: every module reports its change, none is made.
    fresh(tmp_path / "results")
    run = ansible(
        "modules.yml", inventory(tmp_path, "test:///default"), "--check", "--diff"
    ).check()
    assert run.changed("local") == 3, run.output  # host-prep, hook, VM (facts change nothing)
    assert tree(tmp_path / "root") == before, "check mode changed the tree"
    assert list((tmp_path / "hooks").iterdir()) == [], "check mode installed the hook"
    got = results(tmp_path / "results")
    assert got["host"]["changed"] and got["host"]["result"] == "would change"
    kinds = {(c["kind"], c.get("action")) for c in got["host"]["changes"]}
    assert ("file", "create") in kinds and ("command", None) in kinds
    assert got["vm"]["result"] == "defined" and got["vm"]["uuid"] is None
    # diff mode: the domain XML the module would define, and the host-prep files
    assert '+    <vcpupin cpuset="' in run.output, run.output
    assert '+    <vcpusched priority="1" scheduler="fifo" vcpus="1"/>' in run.output
    assert "/etc/default/grub.d/99-rtlibvirt.cfg" in run.output
    facts = got["facts"]["ansible_facts"]["rtlibvirt"]
    assert facts["uri"] == "test:///default" and len(facts["cpus"]) == facts["cpus"][-1]["id"] + 1
    assert facts["hook_install"]["installed"] is False

    # 2. For real, on a test-driver host of 8 CPUs.
    empty = host_file(tmp_path, cores=8, name="host-empty.xml")
    fresh(tmp_path / "results")
    run = ansible("modules.yml", inventory(tmp_path, empty)).check()
    assert run.changed("local") == 3, run.output
    got = results(tmp_path / "results")
    vm = got["vm"]
    assert vm["result"] == "defined" and len(vm["uuid"]) == 36
    assert len(set(vm["placement"]["pinning"])) == 3, vm["placement"]
    assert vm["placement"]["text"].startswith("vCPUs 0->")
    assert any("cannot be read from here" in note for note in vm["not_checked"])
    assert "skipped" not in vm, "a key named skipped makes Ansible show the task as skipped"
    assert got["host"]["result"] == "applied" and got["host"]["done"]
    assert (tmp_path / "root/etc/default/grub.d/99-rtlibvirt.cfg").is_file()
    assert (tmp_path / "hooks/qemu.d/50-rtlibvirt").is_file()
    assert got["hook"]["version"] and got["hook"]["hook_file"].endswith("qemu.d/50-rtlibvirt")
    applied = tree(tmp_path / "root")

    # 3. Again, on the host as libvirt stored the domain: nothing changes.
    stored = host_file(tmp_path, cores=8, domains=[vm["xml"]], name="host-stored.xml")
    fresh(tmp_path / "results")
    run = ansible("modules.yml", inventory(tmp_path, stored)).check()
    assert run.changed("local") == 0, run.output
    again = results(tmp_path / "results")
    assert again["vm"]["result"] == "unchanged" and again["vm"]["uuid"] == vm["uuid"]
    assert again["vm"]["placement"]["pinning"] == vm["placement"]["pinning"]
    assert again["vm"]["placement"]["kept"] is True
    assert again["host"]["result"] == "unchanged" and not again["host"]["changed"]
    assert tree(tmp_path / "root") == applied

    # 4. An edit of the spec, in check and diff mode: the change, and only it, is shown.
    edited = json.loads(json.dumps(VM))
    edited["cpu"]["realtime"]["priority"] = 5
    fresh(tmp_path / "results")
    run = ansible("modules.yml", inventory(tmp_path, stored, edited), "--check", "--diff").check()
    assert run.changed("local") == 1, run.output
    assert '-    <vcpusched priority="1" scheduler="fifo" vcpus="1"/>' in run.output
    assert '+    <vcpusched priority="5" scheduler="fifo" vcpus="1"/>' in run.output
    assert "<uuid>" not in [
        line[1:].strip()[:6] for line in run.output.splitlines() if line[:1] in "+-"
    ]
    assert results(tmp_path / "results")["vm"]["result"] == "updated"


def test_hook_installed_again_removed(ansible: Any, tmp_path: Path, live_host: None) -> None:
    """Asserted inside the play; the user's own hook (HOOKS/qemu) is never touched.

    Removal looks at the hook's live state (/run/rtlibvirt): a real-time VM that the
    hook isolates now (another test's) would rightly block it, hence the host lock.
    """
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    own = hooks / "qemu"
    own.write_text("#!/bin/sh\nexit 0\n")
    run = ansible("hook.yml", inventory(tmp_path, "test:///default")).check()
    assert run.changed("local") == 3, run.output  # installed, would remove (check), removed
    assert own.read_text() == "#!/bin/sh\nexit 0\n"
    assert not (hooks / "qemu.d/50-rtlibvirt").exists()

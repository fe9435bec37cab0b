"""Two hypervisors, one playbook: this machine over ``-c local`` and a second "host"
reached over SSH (Debian's sshd on 127.0.0.2, see sshd.py), both on the real
qemu:///system.

Both hosts are this machine and share its libvirtd, so each host's VM has a name
of its own (inventory variables) and may share CPUs with the other's
(``allow_shared``: on two real machines they would not meet); host-prep works on
a tree per host (never on this machine's /etc), and the hook goes into a folder
per host. rtlibvirt itself is installed by the role, from its wheel, into a
virtual environment per host.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt
from lxml import etree

from tests.conftest import REPO
from tests.fakes.roots import make_tree
from tests.fleet import sshd
from tests.fleet.conftest import tree, write_inventory

HOSTS = ("local", "remote")


def vm_spec(host: str, priority: int = 1) -> dict[str, Any]:
    return {
        "name": f"rtl-fleet-{host}-plc",
        "memory": "256MiB",
        "vcpus": 2,
        "cpu": {"pinning": [0, 1], "emulator": 0, "realtime": {"vcpus": 1, "priority": priority}},
        "memory_backing": {"hugepages": "none", "locked": False},
    }


HOST_SPEC = {"isolated_cpus": 1, "idle": "poll", "disable_services": ["irqbalance"]}


def inventory(tmp: Path, server: sshd.Sshd, wheel: Path, name: str, priority: int = 1) -> Path:
    """The README's inventory: the hosts, then what they share (per-host paths by name)."""
    per_host = f"{tmp}/{{{{ inventory_hostname }}}}"
    hosts: dict[str, dict[str, Any]] = {
        "local": {"ansible_connection": "local"},
        "remote": server.inventory_host(),
    }
    spec = vm_spec("{{ inventory_hostname }}", priority)
    shared = {
        "ansible_python_interpreter": sys.executable,
        "rtlibvirt_src": str(wheel),
        "rtlibvirt_venv": f"{per_host}/venv",
        "rtlibvirt_venv_python": sys.executable,
        "rtlibvirt_packages_install": False,  # this machine has them (scripts/install-deps)
        "rtlibvirt_host_root": f"{per_host}/root",
        "rtlibvirt_host_spec": HOST_SPEC,
        "rtlibvirt_hooks_dir": f"{per_host}/hooks",
        "rtlibvirt_vms": [{"spec": spec, "allow_shared": True}],
    }
    path = tmp / name
    data = {"all": {"children": {"hypervisors": {"hosts": hosts, "vars": shared}}}}
    path.write_text(json.dumps(data, indent=2))
    return path


def domain_xml(uri: str, name: str) -> str | None:
    conn: Any = libvirt.open(uri)
    try:
        return str(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    except libvirt.libvirtError:
        return None
    finally:
        conn.close()


def test_two_hosts_converge_and_stay(
    ansible: Any,
    tmp_path: Path,
    server: sshd.Sshd,
    wheel: Path,
    system_uri: str,
    system_domain_cleanup: Callable[[str], None],
) -> None:
    for host in HOSTS:
        system_domain_cleanup(f"rtl-fleet-{host}-plc")
        make_tree(tmp_path / host / "root", cpus=2)
        (tmp_path / host / "hooks").mkdir()
    trees = {host: tree(tmp_path / host / "root") for host in HOSTS}
    first = inventory(tmp_path, server, wheel, "hosts.json")

    # Check mode on fresh hosts: changes reported, none made.
    run = ansible("site.yml", first, "--check").check()
    for host in HOSTS:
        assert run.changed(host) > 0, run.output
        assert not (tmp_path / host / "venv").exists(), "check mode installed rtlibvirt"
        assert tree(tmp_path / host / "root") == trees[host], "check mode changed the tree"
        assert domain_xml(system_uri, f"rtl-fleet-{host}-plc") is None
    assert "check mode shows its installation only" in run.output

    # The first run installs, prepares and defines on both.
    run = ansible("site.yml", first).check()
    uuids = {}
    for host in HOSTS:
        assert run.changed(host) >= 5, run.output  # copy, pip, host-prep, hook, VM
        xml = domain_xml(system_uri, f"rtl-fleet-{host}-plc")
        assert xml is not None, run.output
        root = etree.fromstring(xml.encode())
        assert root.find("cputune/vcpusched").get("scheduler") == "fifo"
        uuids[host] = root.findtext("uuid")
        assert (tmp_path / host / "root/etc/default/grub.d/99-rtlibvirt.cfg").is_file()
        assert (tmp_path / host / "hooks/qemu.d/50-rtlibvirt").is_file()
        assert (tmp_path / host / "venv/bin/rtlibvirt").exists()
    assert "ok: [remote]" in run.output and "changed: [remote]" in run.output

    # The second run changes nothing anywhere.
    run = ansible("site.yml", first).check()
    assert {host: run.changed(host) for host in HOSTS} == {"local": 0, "remote": 0}, run.output
    for host in HOSTS:
        root = etree.fromstring((domain_xml(system_uri, f"rtl-fleet-{host}-plc") or "").encode())
        assert root.findtext("uuid") == uuids[host]

    # An edited spec in check and diff mode: the XML diff, one change per host, none made.
    edited = inventory(tmp_path, server, wheel, "hosts-edited.json", priority=2)
    run = ansible("site.yml", edited, "--check", "--diff").check()
    assert {host: run.changed(host) for host in HOSTS} == {"local": 1, "remote": 1}, run.output
    assert '-    <vcpusched priority="1" scheduler="fifo" vcpus="1"/>' in run.output
    assert '+    <vcpusched priority="2" scheduler="fifo" vcpus="1"/>' in run.output
    for host in HOSTS:
        xml = domain_xml(system_uri, f"rtl-fleet-{host}-plc") or ""
        assert "priority='1'" in xml and "priority='2'" not in xml


def test_vm_states_on_the_real_libvirtd(
    ansible: Any,
    tmp_path: Path,
    system_uri: str,
    system_domain_cleanup: Callable[[str], None],
) -> None:
    """running, again (no change), shut_off, absent, again: asserted inside the play."""
    system_domain_cleanup("rtl-fleet-states")
    spec = vm_spec("x") | {"name": "rtl-fleet-states"}
    # nested KVM here cannot set IA32_ARCH_CAPABILITIES (MSR 0x10a): QEMU would not start
    spec["cpu"]["features"] = {"arch-capabilities": "disable"}
    hosts = {
        "local": {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "builtin_python": sys.executable,
            "rtlibvirt_python": sys.executable,
            "vm_spec": spec,
        }
    }
    run = ansible("lifecycle.yml", write_inventory(tmp_path / "hosts.json", hosts)).check()
    assert run.changed("local") == 3, run.output  # define+start, power off, remove


def test_define_over_qemu_ssh_names_what_it_could_not_check(
    tmp_path: Path,
    server: sshd.Sshd,
    system_uri: str,
    system_domain_cleanup: Callable[[str], None],
    write_spec: Callable[..., Path],
) -> None:
    system_domain_cleanup("rtl-fleet-ssh")
    wrapper = tmp_path / "ssh"
    wrapper.write_text("#!/bin/sh\nexec ssh " + " ".join(server.ssh_args()) + ' "$@"\n')
    wrapper.chmod(0o755)
    uri = (
        f"qemu+ssh://root@{sshd.ADDRESS}:{server.port}/system"
        f"?keyfile={server.key}&no_tty=1&command={wrapper}"
    )
    spec = write_spec(json.dumps(vm_spec("ssh") | {"name": "rtl-fleet-ssh"}))
    rtlibvirt = [sys.executable, "-m", "rtlibvirt", "define", str(spec), "-c", uri]

    done = subprocess.run(
        [*rtlibvirt, "--json"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["result"] == "defined" and data["changed"] and data["uri"].startswith("qemu+ssh://")
    assert any(f"kernel files of qemu+ssh://root@{sshd.ADDRESS}" in n for n in data["not_checked"])
    assert "isolation, hugepages, PCI devices and RT group scheduling" in data["not_checked"][0]
    assert domain_xml(system_uri, "rtl-fleet-ssh") is not None

    done = subprocess.run(rtlibvirt, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "is up to date; nothing changed" in done.stdout
    assert "not checked: isolation, hugepages, PCI devices and RT group scheduling" in done.stderr

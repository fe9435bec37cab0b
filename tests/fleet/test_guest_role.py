"""The role rtlibvirt.realtime.guest on two "guests": this machine over ``-c local`` and
the sshd on 127.0.0.2 (sshd.py), each with a --root tree shaped like a 4-vCPU Debian
guest. rtlibvirt is installed by the role from its wheel, without libvirt-python, into a
virtual environment per guest; guest-prep runs from the VM's spec (examples/plc.yaml
as a mapping): check mode changes nothing, the first run prepares, the second changes
nothing, and the module's revert puts each tree back byte for byte.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import EXAMPLES
from tests.fakes.roots import make_tree
from tests.fleet import sshd
from tests.fleet.conftest import tree

GUESTS = ("local", "remote")
PLAYBOOK = """
- name: Real-time guests
  hosts: guests
  gather_facts: false
  roles:
    - rtlibvirt.realtime.guest
"""
REVERT = """
- name: Undo guest-prep
  hosts: guests
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ rtlibvirt_venv }}/bin/python"
  tasks:
    - name: Revert
      rtlibvirt.realtime.rtlibvirt_guest:
        command: revert
        root: "{{ rtlibvirt_guest_root }}"
"""


def inventory(tmp: Path, server: sshd.Sshd, wheel: Path) -> Path:
    per_host = f"{tmp}/{{{{ inventory_hostname }}}}"
    spec = yaml.safe_load((EXAMPLES / "plc.yaml").read_text())
    del spec["devices"]  # YAML 1.1 reads the PCI address 0000:03:00.0 as a number
    spec["guest"] = {"disable_services": ["irqbalance"]}
    hosts: dict[str, dict[str, Any]] = {
        "local": {"ansible_connection": "local"},
        "remote": server.inventory_host(),
    }
    shared = {
        "ansible_python_interpreter": sys.executable,
        "rtlibvirt_src": str(wheel),
        "rtlibvirt_venv": f"{per_host}/venv",
        "rtlibvirt_venv_python": sys.executable,
        "rtlibvirt_packages_install": False,
        "rtlibvirt_guest_root": f"{per_host}/root",
        "rtlibvirt_guest_spec": spec,
    }
    path = tmp / "guests.json"
    data = {"all": {"children": {"guests": {"hosts": hosts, "vars": shared}}}}
    path.write_text(json.dumps(data, indent=2))
    return path


def test_guest_role_on_two_guests(
    ansible: Any, tmp_path: Path, server: sshd.Sshd, wheel: Path
) -> None:
    for guest in GUESTS:
        make_tree(tmp_path / guest / "root", "debian", cpus=4)
    trees = {guest: tree(tmp_path / guest / "root") for guest in GUESTS}
    hosts = inventory(tmp_path, server, wheel)
    site = tmp_path / "guests.yml"
    site.write_text(PLAYBOOK)

    run = ansible(site, hosts, "--check").check()
    for guest in GUESTS:
        assert run.changed(guest) > 0, run.output
        assert not (tmp_path / guest / "venv").exists(), "check mode installed rtlibvirt"
        assert tree(tmp_path / guest / "root") == trees[guest], "check mode changed the tree"

    run = ansible(site, hosts).check()
    for guest in GUESTS:
        assert run.changed(guest) >= 3, run.output  # copy, pip, guest-prep
        root = tmp_path / guest / "root"
        dropin = (root / "etc/default/grub.d/99-rtlibvirt.cfg").read_text()
        assert "isolcpus=managed_irq,domain,1-3" in dropin and "irqaffinity=0" in dropin
        assert "kvm" not in dropin.split("rtlibvirt_args=")[1].split("\n")[0]
        assert (root / "etc/systemd/system/rtlibvirt-guest.service").is_file()
        assert not (root / "etc/systemd/system/multi-user.target.wants/irqbalance.service").exists()
        venv = tmp_path / guest / "venv"
        assert (venv / "bin/rtlibvirt").exists()
        assert not list(venv.glob("lib/python3*/site-packages/libvirt*")), (
            "libvirt-python in a guest"
        )
    assert "changed: [remote]" in run.output

    run = ansible(site, hosts).check()
    assert {guest: run.changed(guest) for guest in GUESTS} == {"local": 0, "remote": 0}, run.output

    revert = tmp_path / "revert.yml"
    revert.write_text(REVERT)
    run = ansible(revert, hosts).check()
    for guest in GUESTS:
        assert run.changed(guest) == 1, run.output
        assert tree(tmp_path / guest / "root") == trees[guest]

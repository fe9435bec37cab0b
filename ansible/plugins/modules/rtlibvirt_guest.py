#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rtlibvirt developers
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: rtlibvirt_guest
short_description: Prepare a real-time VM's guest with rtlibvirt guest-prep
version_added: "0.1.0"
description:
  - Plans, applies, verifies or reverts the guest half of the real-time recipe inside a guest,
    derived from the VM's own vm.yaml (a mapping with its keys, or a file on the target), as
    C(rtlibvirt guest-prep plan|apply|verify|revert) does - the real-time vCPUs isolated on
    the guest's kernel command line (GRUB drop-in or grubby), systemd CPUAffinity on the other
    vCPUs, services, sysctl values, and a boot-time unit that raises the guest's per-CPU
    kernel threads. Nothing that belongs to a hypervisor.
  - host-prep's engine with the guest profile - every change is journaled in the guest before
    it is made; O(command=revert) undoes them all, byte for byte. Applying the same spec again
    changes nothing.
  - Needs rtlibvirt in the guest, without libvirt-python (a guest has no libvirt).
  - A spec without real-time vCPUs has nothing to do - RV(result) is V(unchanged) and
    RV(nothing_to_do) says why.
  - RV(reboot_required) says when the changes take effect only at the next boot; the module
    never reboots (the role M(rtlibvirt.realtime.guest) does, when allowed).
  - In check mode every command is a plan. In diff mode the file changes are shown.
author:
  - rtlibvirt developers (@rtlibvirt)
requirements:
  - rtlibvirt in the guest
attributes:
  check_mode:
    support: full
    description: The plan of the command; nothing is changed.
  diff_mode:
    support: full
    description: The files as they are and as they would be.
  platform:
    support: full
    description: Linux guests (rtlibvirt reads their /proc and /sys).
    platforms: posix
options:
  command:
    description:
      - V(plan) shows what V(apply) would change and changes nothing; V(apply) makes the
        guest match the spec; V(verify) compares the guest with the spec (never a change; see
        RV(matches)); V(revert) undoes every guest-prep change (no spec needed).
    type: str
    choices: [plan, apply, verify, revert]
    default: apply
  spec:
    description:
      - The VM's vm.yaml as a mapping (C(name), C(vcpus), C(cpu.realtime.vcpus), the optional
        C(guest) section, ...). See docs/guest.md. Mutually exclusive with O(src).
    type: dict
  src:
    description: A vm.yaml file on the target guest. Mutually exclusive with O(spec).
    type: path
  root:
    description:
      - The tree to prepare. V(/) is the live guest; another directory (an image, a test tree)
        gets files only - no runtime value is written and no command is run.
    type: path
    default: /
"""

EXAMPLES = r"""
- name: The guest half of the PLC VM (real-time vCPUs 1-3)
  rtlibvirt.realtime.rtlibvirt_guest:
    spec:
      name: plc
      memory: 2GiB
      vcpus: 4
      cpu: {pinning: [2, 3, 4, 5], emulator: 0-1, realtime: {vcpus: 1-3}}
      guest: {disable_services: [irqbalance]}
  register: guestprep

- name: Reboot when the kernel command line changed
  ansible.builtin.reboot:
  when: guestprep.reboot_required

- name: Is the guest what the spec says?
  rtlibvirt.realtime.rtlibvirt_guest:
    command: verify
    src: /etc/rtlibvirt/plc.yaml
  register: verified
  failed_when: not verified.matches

- name: Undo it all
  rtlibvirt.realtime.rtlibvirt_guest:
    command: revert
"""

RETURN = r"""
result:
  description:
    - V(applied), V(would change) (plan or check mode), V(unchanged), V(matches) or
      V(differs) (verify), V(reverted).
  returned: always
  type: str
  sample: applied
reboot_required:
  description:
    - Whether the changes take effect only at the next boot (kernel command line,
      CPUAffinity, the kernel threads' priorities), or earlier ones still wait for one.
  returned: always
  type: bool
changes:
  description:
    - What apply changes (or, for plan and check mode, would change) - one item per file,
      command, service and runtime value, each with its C(kind) and C(action).
  returned: for plan and apply
  type: list
  elements: dict
done:
  description: What apply or revert did, one line each.
  returned: always
  type: list
  elements: str
kernel_args:
  description: The guest's kernel arguments, each with why it is there.
  returned: for plan and apply
  type: list
  elements: dict
  sample:
    - arg: isolcpus=managed_irq,domain,1-3
      why: no scheduler balancing, unbound work or managed IRQs on the real-time CPUs
would_change:
  description: For O(command=plan) outside check mode, whether apply would change anything (the task itself never changes).
  returned: for plan
  type: bool
nothing_to_do:
  description: Why nothing was planned (a spec without real-time vCPUs).
  returned: when the spec has no real-time vCPUs
  type: str
matches:
  description: Whether the guest matches the spec (verify).
  returned: for verify
  type: bool
rows:
  description: The verify table - what, wanted, found, status (ok, reboot pending, differs, missing, n/a).
  returned: for verify
  type: list
  elements: dict
"""

from ansible_collections.rtlibvirt.realtime.plugins.module_utils.common import (
    bounded_mapping,
    prep_module,
    require_rtlibvirt,
    run_prep,
)


def main():
    module = prep_module()
    require_rtlibvirt(module, libvirt=False)
    params = module.params

    def prepare(api, root, need_bootloader):
        from pathlib import Path

        from rtlibvirt.hostprep.profiles.guest import NothingToDo

        try:
            if params["spec"] is not None:
                return api.prepare_guest(
                    root,
                    data=bounded_mapping(module, params["spec"], "spec"),
                    source="spec",
                    need_bootloader=need_bootloader,
                )
            return api.prepare_guest(root, Path(params["src"]), need_bootloader=need_bootloader)
        except NothingToDo as exc:
            module.exit_json(changed=False, result="unchanged", reboot_required=False, done=[], nothing_to_do=str(exc))
        return None

    run_prep(module, prepare)


if __name__ == "__main__":
    main()

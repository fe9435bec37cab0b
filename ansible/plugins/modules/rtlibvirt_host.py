#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rtlibvirt developers
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: rtlibvirt_host
short_description: Prepare a real-time KVM host with rtlibvirt host-prep
version_added: "0.1.0"
description:
  - Plans, applies, verifies or reverts the host's boot-time real-time configuration from a
    host.yaml (a mapping with its keys, or a file on the target), as
    C(rtlibvirt host-prep plan|apply|verify|revert) does - the kernel command line through a
    GRUB drop-in or grubby, systemd CPUAffinity, services, KVM module options, sysctl values
    and a boot-time unit for the runtime values.
  - Every change is journaled on the host before it is made; O(command=revert) undoes them
    all from that journal, byte for byte. Applying the same spec again changes nothing.
  - RV(reboot_required) says when the changes (or earlier ones) take effect only at the next
    boot; the module never reboots (the role M(rtlibvirt.realtime.hypervisor) does, when
    allowed).
  - In check mode every command is a plan. In diff mode the file changes are shown.
author:
  - rtlibvirt developers (@rtlibvirt)
requirements:
  - rtlibvirt on the target host
attributes:
  check_mode:
    support: full
    description: The plan of the command; nothing is changed.
  diff_mode:
    support: full
    description: The files as they are and as they would be.
  platform:
    support: full
    description: Linux hosts with libvirt (rtlibvirt reads their /proc and /sys).
    platforms: posix
options:
  command:
    description:
      - V(plan) shows what V(apply) would change and changes nothing; V(apply) makes the
        host match the spec; V(verify) compares the host with the spec (never a change; see
        RV(matches)); V(revert) undoes every host-prep change (no spec needed).
    type: str
    choices: [plan, apply, verify, revert]
    default: apply
  spec:
    description:
      - The host.yaml as a mapping (C(isolated_cpus), C(hugepages), C(iommu), C(idle),
        C(disable_services), ...). See docs/host-prep.md. Mutually exclusive with O(src).
    type: dict
  src:
    description: A host.yaml file on the target host. Mutually exclusive with O(spec).
    type: path
  root:
    description:
      - The tree to prepare. V(/) is the live host; another directory (an image, a test tree)
        gets files only - no runtime value is written and no command is run.
    type: path
    default: /
  runtime_only:
    description:
      - Only the runtime values (sysctl, 2M hugepages, resctrl mount, machine-check polling,
        lapic_timer_advance_ns), no files.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Isolate CPUs 2-13 for real-time vCPUs, with 8 1G hugepages
  rtlibvirt.realtime.rtlibvirt_host:
    spec:
      isolated_cpus: 2-13
      hugepages: {size: 1G, count: 8}
      iommu: true
      idle: poll
      disable_services: [irqbalance]
  register: hostprep

- name: Reboot when the kernel command line changed
  ansible.builtin.reboot:
  when: hostprep.reboot_required

- name: Is the host what host.yaml says?
  rtlibvirt.realtime.rtlibvirt_host:
    command: verify
    src: /etc/rtlibvirt/host.yaml
  register: verified
  failed_when: not verified.matches

- name: Undo it all
  rtlibvirt.realtime.rtlibvirt_host:
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
      CPUAffinity, ...), or changes applied earlier still wait for one (C(reboot pending)).
  returned: always
  type: bool
changes:
  description:
    - What apply changes (or, for plan and check mode, would change) - one item per file,
      command, service, mount and runtime value, each with its C(kind) and C(action).
  returned: for plan and apply
  type: list
  elements: dict
  sample:
    - kind: file
      action: create
      path: /etc/default/grub.d/99-rtlibvirt.cfg
      why: the kernel command line
      reboot: true
      diff: "--- /dev/null\n+++ /etc/default/grub.d/99-rtlibvirt.cfg\n..."
done:
  description: What apply or revert did, one line each.
  returned: always
  type: list
  elements: str
kernel_args:
  description: The kernel arguments of the plan, each with why it is there.
  returned: for plan and apply
  type: list
  elements: dict
would_change:
  description: For O(command=plan) outside check mode, whether apply would change anything (the task itself never changes).
  returned: for plan
  type: bool
matches:
  description: Whether the host matches the spec (verify).
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
    module = prep_module(runtime_only=dict(type="bool", default=False))
    require_rtlibvirt(module, libvirt=False)
    params = module.params

    def prepare(api, root, need_bootloader):
        from pathlib import Path

        if params["spec"] is not None:
            return api.prepare(
                root,
                data=bounded_mapping(module, params["spec"], "spec"),
                source="spec",
                runtime_only=params["runtime_only"],
                need_bootloader=need_bootloader,
            )
        return api.prepare(
            root,
            Path(params["src"]),
            runtime_only=params["runtime_only"],
            need_bootloader=need_bootloader,
        )

    run_prep(module, prepare)


if __name__ == "__main__":
    main()

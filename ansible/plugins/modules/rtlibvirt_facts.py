#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rtlibvirt developers
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: rtlibvirt_facts
short_description: What rtlibvirt knows about a real-time KVM host, as facts
version_added: "0.1.0"
description:
  - Gathers what C(rtlibvirt status --json) shows - NUMA nodes, CPUs with their SMT siblings,
    housekeeping and isolated CPUs, which domain's vCPU or emulator holds each CPU, free
    hugepages per node, what the hook isolates now - and the state of the hook itself, into
    the fact C(rtlibvirt).
  - Changes nothing.
author:
  - rtlibvirt developers (@rtlibvirt)
requirements:
  - rtlibvirt on the target host
attributes:
  check_mode:
    support: full
    description: The facts are gathered as usual; nothing is changed either way.
  diff_mode:
    support: none
    description: Nothing to show.
  facts:
    support: full
    description: Sets the fact C(rtlibvirt).
  platform:
    support: full
    description: Linux hosts with libvirt (rtlibvirt reads their /proc and /sys).
    platforms: posix
options:
  uri:
    description: The libvirt connection URI.
    type: str
    default: qemu:///system
  hooks_dir:
    description: libvirt's hook folder, where the hook is looked for.
    type: path
    default: /etc/libvirt/hooks
"""

EXAMPLES = r"""
- name: Read the host
  rtlibvirt.realtime.rtlibvirt_facts:

- name: The isolated CPUs no domain holds yet
  ansible.builtin.debug:
    msg: >-
      {{ ansible_facts.rtlibvirt.cpus | selectattr('isolated') | rejectattr('held_by')
         | map(attribute='id') | list }}
"""

RETURN = r"""
ansible_facts:
  description: The facts.
  returned: always
  type: dict
  contains:
    rtlibvirt:
      description:
        - The object of C(rtlibvirt status --json) (C(uri), C(topology), C(housekeeping),
          C(isolated), C(nohz_full), C(nodes), C(cpus), C(domains), C(hook) - what the hook
          isolates now), plus C(version) and C(hook_install).
      returned: always
      type: dict
      contains:
        version:
          description: The rtlibvirt version on the host.
          type: str
        hook_install:
          description: The hook file - C(installed), C(current), C(version), C(path), C(needs_restart).
          type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rtlibvirt.realtime.plugins.module_utils.common import (
    reported,
    require_rtlibvirt,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type="str", default="qemu:///system"),
            hooks_dir=dict(type="path", default="/etc/libvirt/hooks"),
        ),
        supports_check_mode=True,
    )
    require_rtlibvirt(module)
    with reported(module, changed=False):
        from pathlib import Path

        from rtlibvirt import __version__
        from rtlibvirt.fit import status as picture
        from rtlibvirt.fit.host import gather
        from rtlibvirt.hook import install as hookinstall
        from rtlibvirt.virt import connection as virt

        with virt.connection(module.params["uri"]) as conn:
            host = gather(conn, module.params["uri"])
        facts = picture.to_json(host, picture.hook_isolation(host.fs))
        hook = hookinstall.status(Path(module.params["hooks_dir"]))
        facts["version"] = __version__
        facts["hook_install"] = {
            "installed": hook.installed,
            "current": hook.current,
            "version": hook.installed_version,
            "path": str(hook.path),
            "needs_restart": hook.needs_restart,
        }
    module.exit_json(changed=False, ansible_facts={"rtlibvirt": facts})


if __name__ == "__main__":
    main()

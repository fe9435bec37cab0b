#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rtlibvirt developers
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: rtlibvirt_hook
short_description: Install or remove rtlibvirt's libvirt qemu hook
version_added: "0.1.0"
description:
  - Installs the hook that isolates the host while real-time VMs run (IRQs and unbound
    workqueues moved off their CPUs, optionally cache ways and machine-check polling) as
    C(HOOKS_DIR/qemu.d/50-rtlibvirt), as C(rtlibvirt hook install) does, or removes it.
    A hook of your own in C(HOOKS_DIR/qemu) is never touched.
  - libvirt looks for hooks only when its daemon starts, so after an install the daemon is
    restarted - only when it started before the hook was written, and only with
    O(restart=true). Where systemd does not run the daemon, the module cannot restart it;
    then it says so in a warning and returns RV(needs_restart=true).
  - The installed hook runs the Python that runs this module, with the rtlibvirt it imports.
author:
  - rtlibvirt developers (@rtlibvirt)
requirements:
  - rtlibvirt on the target host
attributes:
  check_mode:
    support: full
    description: Nothing is written, removed or restarted; the result says what would be.
  diff_mode:
    support: none
    description: Nothing to show.
  platform:
    support: full
    description: Linux hosts with libvirt (rtlibvirt reads their /proc and /sys).
    platforms: posix
options:
  state:
    description: Whether the hook is installed (and current) or removed.
    type: str
    choices: [installed, removed]
    default: installed
  hooks_dir:
    description: libvirt's hook folder; the hook goes into its C(qemu.d/).
    type: path
    default: /etc/libvirt/hooks
  restart:
    description:
      - Restart libvirtd (or virtqemud) through systemd when it started before the hook was
        installed, so that it uses the hook. Running VMs keep running.
    type: bool
    default: true
  force:
    description:
      - Remove the hook even while real-time VMs are isolated by it (their isolation then
        stays until the host reboots).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Install the hook; restart libvirtd only if it has not seen it yet
  rtlibvirt.realtime.rtlibvirt_hook:

- name: Remove it (stop the real-time VMs first)
  rtlibvirt.realtime.rtlibvirt_hook:
    state: removed
"""

RETURN = r"""
hook_file:
  description: The hook file (a key named C(path) would make Ansible stat it into the result).
  returned: always
  type: str
  sample: /etc/libvirt/hooks/qemu.d/50-rtlibvirt
version:
  description: The rtlibvirt version of the hook now in place (null when removed).
  returned: always
  type: str
  sample: 0.1.0
restarted:
  description: Whether the libvirt daemon was (or, in check mode, would be) restarted.
  returned: always
  type: bool
needs_restart:
  description:
    - Whether the daemon still has to be restarted to use the hook (it started before the
      hook was installed and could not be restarted here); null when no daemon runs.
  returned: always
  type: bool
daemon:
  description: What the module did or found about the daemon, in a sentence.
  returned: always
  type: str
isolated:
  description: The real-time VMs the hook isolates now.
  returned: always
  type: list
  elements: str
"""

import os
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rtlibvirt.realtime.plugins.module_utils.common import (
    reported,
    require_rtlibvirt,
)


def hook_would_change(hookinstall, hooks_dir):
    """Whether install() would write the hook (raises as install() would refuse)."""
    from rtlibvirt.errors import HostError

    target = os.path.join(hooks_dir, hookinstall.HOOK_NAME)
    if os.path.islink(target) or (os.path.exists(target) and not os.path.isfile(target)):
        raise HostError("%s exists and is not a regular file; nothing was changed" % target)
    if not os.path.exists(target):
        return True
    with open(target, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    if hookinstall.render() == text:
        return False
    status = hookinstall.status(Path(hooks_dir))
    if not status.installed:
        raise HostError("%s exists and was not installed by rtlibvirt; nothing was changed" % target)
    return True


def systemd_restarts(module):
    """Whether restart_daemon() would restart the daemon through systemd (as it decides)."""
    systemctl = module.get_bin_path("systemctl")
    if not systemctl or not os.path.isdir("/run/systemd/system"):
        return False
    for unit in ("virtqemud", "libvirtd"):
        rc, _out, _err = module.run_command([systemctl, "is-active", "--quiet", unit])
        if rc == 0:
            return True
    return False


def install(module, result):
    from rtlibvirt import __version__
    from rtlibvirt.hook import install as hookinstall

    params = module.params
    hooks_dir = Path(params["hooks_dir"])
    if module.check_mode:
        changed = hook_would_change(hookinstall, params["hooks_dir"])
    else:
        changed = hookinstall.install(hooks_dir).changed
    status = hookinstall.status(hooks_dir)
    # In check mode a hook that would be written now is newer than any running daemon.
    needs = status.needs_restart
    if module.check_mode and changed and status.daemon is not None:
        needs = True
    result.update(changed=changed, version=__version__, isolated=sorted(status.claims))
    if status.daemon is None:
        result.update(needs_restart=None, daemon="no libvirt daemon runs: it uses the hook from its start")
        return
    daemon = "%s (pid %d)" % (status.daemon.name, status.daemon.pid)
    if not needs:
        result.update(needs_restart=False, daemon="%s already uses the hook" % daemon)
        return
    if not params["restart"]:
        result.update(needs_restart=True, daemon="%s started before the hook: restart it" % daemon)
        module.warn("%s started before the hook was installed: restart it to use the hook" % daemon)
        return
    if module.check_mode:
        if systemd_restarts(module):
            result.update(changed=True, restarted=True, needs_restart=False, daemon="%s would be restarted" % daemon)
        else:
            result.update(needs_restart=True, daemon="%s is not run by systemd here: restart it yourself" % daemon)
            module.warn(result["daemon"])
        return
    said = hookinstall.restart_daemon()
    after = hookinstall.status(hooks_dir)
    if after.needs_restart is False:
        result.update(changed=True, restarted=True, needs_restart=False, daemon=said)
    else:
        result.update(needs_restart=True, daemon=said)
        module.warn(said)


def remove(module, result):
    from rtlibvirt.errors import HostError, InputError
    from rtlibvirt.hook import install as hookinstall

    params = module.params
    hooks_dir = Path(params["hooks_dir"])
    status = hookinstall.status(hooks_dir)
    result.update(isolated=sorted(status.claims), version=None, needs_restart=None, daemon="")
    target = os.path.join(params["hooks_dir"], hookinstall.HOOK_NAME)
    if not os.path.lexists(target):
        return
    if module.check_mode:
        if not status.installed:
            raise HostError("%s was not installed by rtlibvirt; nothing was removed" % target)
        if status.claims and not params["force"]:
            raise InputError(
                "real-time VMs are isolated by the hook now (%s); nothing was removed"
                % ", ".join(sorted(status.claims)),
                "stop them first, or pass force: true",
            )
        result["changed"] = True
        return
    result["changed"] = hookinstall.uninstall(hooks_dir, force=params["force"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="installed", choices=["installed", "removed"]),
            hooks_dir=dict(type="path", default="/etc/libvirt/hooks"),
            restart=dict(type="bool", default=True),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    require_rtlibvirt(module)
    from rtlibvirt.hook.install import HOOK_NAME

    result = dict(
        changed=False,
        hook_file=os.path.join(module.params["hooks_dir"], HOOK_NAME),
        restarted=False,
        version=None,
        needs_restart=None,
        daemon="",
        isolated=[],
    )
    with reported(module, **result):
        if module.params["state"] == "installed":
            install(module, result)
        else:
            remove(module, result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

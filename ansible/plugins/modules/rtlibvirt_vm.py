#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rtlibvirt developers
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: rtlibvirt_vm
short_description: Define, start, stop or remove a real-time libvirt VM with rtlibvirt
version_added: "0.1.0"
description:
  - Turns a vm.yaml spec (a mapping with the keys of vm.yaml, or a vm.yaml file on the
    target) into a libvirt domain with rtlibvirt on the target host, exactly as
    C(rtlibvirt define) does - vCPU and emulator pinning, FIFO vCPUs, hugepages, no balloon,
    rtlibvirt's metadata for the hook - after checking the spec against the host and
    placing C(auto) CPUs.
  - Reports C(changed) only when the definition differs once what libvirt fills in itself
    (device addresses, implicit controllers, the versioned machine type, ...) is left out,
    the same comparison C(rtlibvirt define --dry-run) shows. A redefine keeps the UUID and
    the MAC addresses libvirt generated.
  - In check mode nothing is changed and the result says what would be. In diff mode the
    domain XML before and after is shown (normalized the same way).
  - Runs on the target host with a local libvirt URI, so that the host checks can read the
    host's kernel files; rtlibvirt must be importable by the Python that runs the module
    (the role M(rtlibvirt.realtime.hypervisor) sees to it).
author:
  - rtlibvirt developers (@rtlibvirt)
requirements:
  - rtlibvirt (its Python API) and libvirt-python on the target host
attributes:
  check_mode:
    support: full
    description: Nothing is defined, started or stopped; the result says what would be.
  diff_mode:
    support: full
    description: The normalized domain XML before and after.
  platform:
    support: full
    description: Linux hosts with libvirt (rtlibvirt reads their /proc and /sys).
    platforms: posix
options:
  name:
    description:
      - The domain's name. Needed for O(state=absent) without a spec; with a spec it must be
        the spec's C(name) when given.
    type: str
  spec:
    description:
      - The VM as a mapping with the keys of vm.yaml (C(name), C(memory), C(vcpus), C(cpu), ...),
        validated as strictly as a vm.yaml file. See docs/vm-yaml.md.
      - Mutually exclusive with O(src).
    type: dict
  src:
    description:
      - A vm.yaml file on the target host.
      - Mutually exclusive with O(spec).
    type: path
  state:
    description:
      - V(present) defines (or updates) the domain and leaves it running or not.
      - V(running) also starts it when it does not run; V(shut_off) shuts it down when it runs.
      - V(absent) shuts it off (see O(shutdown_timeout)) and removes its definition.
    type: str
    choices: [present, absent, running, shut_off]
    default: present
  uri:
    description:
      - The libvirt connection URI, as for virsh. A local URI lets the host checks read the
        host's kernel files; with a remote one (C(qemu+ssh://)) the result's RV(not_checked)
        names the checks that could not run.
    type: str
    default: qemu:///system
  force:
    description:
      - Replace (or remove) a same-named domain that rtlibvirt did not create, keeping its UUID.
      - With O(state=shut_off) or O(state=absent), power the VM off when it still runs after
        O(shutdown_timeout).
    type: bool
    default: false
  allow_shared:
    description:
      - Allow host CPUs that other defined domains pin (for domains that never run together).
    type: bool
    default: false
  host_check:
    description:
      - Check the spec against the host first (CPUs, isolation, other domains' pins, SMT
        siblings, NUMA, hugepages, PCI devices, RT group scheduling). Errors fail the task,
        warnings are returned in RV(findings).
    type: bool
    default: true
  shutdown_timeout:
    description:
      - Seconds to wait for the guest to shut down after the ACPI request; V(0) skips the
        request (then only O(force) powers it off).
    type: int
    default: 120
notes:
  - The definition of a running domain applies at its next start, as with C(virsh define).
seealso:
  - module: rtlibvirt.realtime.rtlibvirt_host
  - module: rtlibvirt.realtime.rtlibvirt_hook
"""

EXAMPLES = r"""
- name: A PLC runtime with three real-time vCPUs, placed by rtlibvirt
  rtlibvirt.realtime.rtlibvirt_vm:
    spec:
      name: plc
      memory: 2GiB
      vcpus: 4
      cpu:
        pinning: auto
        emulator: auto
        realtime: {vcpus: 1-3, priority: 1}
      memory_backing: {hugepages: 1G, locked: true}
      devices:
        disks:
          - source: /var/lib/libvirt/images/plc.qcow2
    state: running
  register: plc

- name: Show where it went
  ansible.builtin.debug:
    msg: "{{ plc.placement.text }} (UUID {{ plc.uuid }})"

- name: The same from a vm.yaml on the target
  rtlibvirt.realtime.rtlibvirt_vm:
    src: /etc/rtlibvirt/vms/plc.yaml

- name: A vm.yaml from the controller
  rtlibvirt.realtime.rtlibvirt_vm:
    spec: "{{ lookup('ansible.builtin.file', 'vms/plc.yaml') | from_yaml }}"

- name: Remove it (powered off if it does not shut down within a minute)
  rtlibvirt.realtime.rtlibvirt_vm:
    name: plc
    state: absent
    shutdown_timeout: 60
    force: true
"""

RETURN = r"""
name:
  description: The domain's name.
  returned: always
  type: str
  sample: plc
uri:
  description: The libvirt URI the module used.
  returned: always
  type: str
  sample: qemu:///system
result:
  description:
    - What happened to the definition - V(defined) (new), V(updated), V(replaced) (a domain
      rtlibvirt did not create, with O(force)), V(unchanged), V(removed) or V(absent)
      (there was none to remove). In check mode, what would happen.
  returned: always
  type: str
  sample: updated
state:
  description: The domain's state afterwards (in check mode, the state it would have).
  returned: always
  type: str
  sample: running
uuid:
  description: The domain's UUID (kept across redefinitions); null for a new domain in check mode.
  returned: when the domain exists
  type: str
  sample: 3f7c9f0e-3d1e-4b8a-9a5e-2f8b6b0c1d2e
placement:
  description: Where O(spec) C(cpu.pinning) or C(cpu.emulator) C(auto) was placed; null otherwise.
  returned: unless O(state=absent)
  type: dict
  sample:
    text: "vCPUs 0->2, 1->3 on NUMA node 0 (isolated CPUs); emulator on CPUs 0-1"
    pinning: [2, 3]
    emulator: [0, 1]
    nodes: [0]
    isolated: true
    whole_cores: true
    kept: false
findings:
  description: The warnings and advice of the host checks (errors fail the task instead).
  returned: unless O(state=absent)
  type: list
  elements: dict
  sample:
    - severity: warning
      code: cpu-not-isolated
      what: realtime vCPUs run on host CPU 1, which the running kernel does not isolate
      fix: isolate them at boot (isolcpus=...), then reboot
not_checked:
  description: The host checks that could not run, and why (e.g. a remote URI).
  returned: unless O(state=absent)
  type: list
  elements: str
started:
  description: Whether the domain was (or would be) started.
  returned: always
  type: bool
stopped:
  description: Whether the domain was (or would be) shut down or powered off.
  returned: always
  type: bool
xml:
  description: The definition as libvirt stores it (in check mode, the one that would be defined).
  returned: unless O(state=absent)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rtlibvirt.realtime.plugins.module_utils.common import (
    bounded_mapping,
    reported,
    require_rtlibvirt,
)


def load_spec(module):
    """The VmSpec of O(spec) or O(src), its warnings given to Ansible; None without either."""
    from rtlibvirt.config.document import Document
    from rtlibvirt.config.vm import load_spec as load_file
    from rtlibvirt.config.vm import validate_document

    params = module.params
    if params["spec"] is not None:
        data = bounded_mapping(module, params["spec"], "spec")
        loaded = validate_document(Document(source="spec", data=data))
    elif params["src"] is not None:
        loaded = load_file(params["src"])
    else:
        return None
    for problem in loaded.warnings:
        module.warn(problem.render(loaded.source))
    return loaded.spec


def xml_diff(name, before, after):
    from rtlibvirt.domain.diff import canonical

    return {
        "before": canonical(before) if before else "",
        "after": canonical(after) if after else "",
        "before_header": "%s (current definition)" % name if before else "%s (none)" % name,
        "after_header": "%s (new definition)" % name if after else "%s (removed)" % name,
    }


def remove(module, conn, name, result):
    from rtlibvirt.virt import connection as virt
    from rtlibvirt.domain.facts import facts as domain_facts
    from rtlibvirt.virt import define as defining
    from rtlibvirt.virt import lifecycle

    params = module.params
    domain = virt.lookup(conn, name)
    if domain is None:
        result.update(result="absent", state="absent")
        return result
    current = virt.inactive_xml(domain)
    if not defining.created_by_rtlibvirt(current) and not params["force"]:
        module.fail_json(
            msg="the domain %r on %s was not created by rtlibvirt; nothing was removed"
            % (name, result["uri"]),
            hint="pass force: true to remove it anyway",
            **result
        )
    running = virt.is_active(domain)
    result.update(
        changed=True,
        result="removed",
        state="absent",
        stopped=running,
        uuid=domain_facts(current).uuid,
    )
    if module._diff:
        result["diff"] = xml_diff(name, current, None)
    if not module.check_mode:
        if running:
            lifecycle.shut_off(
                conn, name, timeout=params["shutdown_timeout"], force=params["force"]
            )
        lifecycle.undefine(conn, name)
    return result


def present(module, conn, spec, result):
    from rtlibvirt.virt import connection as virt
    from rtlibvirt.virt import define as defining
    from rtlibvirt.virt import lifecycle

    params = module.params
    outcome = defining.prepare(
        conn,
        params["uri"],
        spec,
        force=params["force"],
        host_check=params["host_check"],
        allow_shared=params["allow_shared"],
    )
    if not module.check_mode:
        outcome = defining.commit(conn, outcome)
    data = outcome.to_json()
    result.update(
        changed=outcome.changed,
        result=outcome.result,
        uuid=data["uuid"],
        placement=data["placement"],
        findings=data["findings"],
        not_checked=data["not_checked"],
        xml=data["xml"],
    )
    if outcome.changed and module._diff:
        result["diff"] = xml_diff(spec.name, outcome.plan.current_xml, outcome.plan.xml)
    if outcome.changed and outcome.plan.running:
        module.warn("%s runs: the new definition applies at its next start" % spec.name)

    domain = virt.lookup(conn, spec.name)
    running = domain is not None and virt.is_active(domain)
    state = params["state"]
    if state == "running" and not running:
        result.update(changed=True, started=True)
        if not module.check_mode:
            lifecycle.start(conn, spec.name)
        running = True
    elif state == "shut_off" and running:
        result.update(changed=True, stopped=True)
        if not module.check_mode:
            lifecycle.shut_off(
                conn, spec.name, timeout=params["shutdown_timeout"], force=params["force"]
            )
        running = False
    if domain is not None and not module.check_mode:
        result["state"] = lifecycle.state_of(domain)
    else:
        result["state"] = "running" if running else "shut off"
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            spec=dict(type="dict"),
            src=dict(type="path"),
            state=dict(
                type="str",
                default="present",
                choices=["present", "absent", "running", "shut_off"],
            ),
            uri=dict(type="str", default="qemu:///system"),
            force=dict(type="bool", default=False),
            allow_shared=dict(type="bool", default=False),
            host_check=dict(type="bool", default=True),
            shutdown_timeout=dict(type="int", default=120),
        ),
        mutually_exclusive=[("spec", "src")],
        required_one_of=[("name", "spec", "src")],
        supports_check_mode=True,
    )
    require_rtlibvirt(module)
    params = module.params
    if params["shutdown_timeout"] < 0 or params["shutdown_timeout"] > 86400:
        module.fail_json(msg="shutdown_timeout must be 0-86400 seconds")
    result = dict(
        changed=False,
        name=params["name"],
        uri=params["uri"],
        started=False,
        stopped=False,
    )
    with reported(module, **result):
        from rtlibvirt.virt import connection as virt

        spec = load_spec(module)
        if spec is not None:
            if params["name"] is not None and params["name"] != spec.name:
                module.fail_json(
                    msg="name %r differs from the spec's name %r" % (params["name"], spec.name),
                    **result
                )
            result["name"] = spec.name
        elif params["state"] != "absent":
            module.fail_json(msg="state %s needs spec or src" % params["state"], **result)
        else:
            from rtlibvirt.config.vm import NAME_RE

            if not NAME_RE.match(params["name"]):
                module.fail_json(msg="%r is not a domain name rtlibvirt defines" % params["name"], **result)
        with virt.connection(params["uri"]) as conn:
            if params["state"] == "absent":
                remove(module, conn, result["name"], result)
            else:
                present(module, conn, spec, result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

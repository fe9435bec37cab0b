# -*- coding: utf-8 -*-
# Copyright: rtlibvirt developers
# SPDX-License-Identifier: MIT
"""What every rtlibvirt module shares: the import guard and error reporting.

The modules run on the target host and call rtlibvirt's Python API there, so
rtlibvirt must be importable by the Python that runs them: the role
``rtlibvirt.realtime.hypervisor`` installs it into a virtual environment and
points ``ansible_python_interpreter`` at that environment's Python.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import rtlibvirt  # pylint: disable=unused-import
    from rtlibvirt.errors import RtlibvirtError, SpecError
except ImportError:
    HAS_RTLIBVIRT = False
    RTLIBVIRT_IMPORT_ERROR = traceback.format_exc()
    RtlibvirtError = SpecError = None
else:
    HAS_RTLIBVIRT = True
    RTLIBVIRT_IMPORT_ERROR = None

# A spec given as a mapping is bounded before rtlibvirt validates it.
MAX_SPEC_BYTES = 64 * 1024


def require_rtlibvirt(module, libvirt=True):
    """Fail with a clear message when rtlibvirt (or, with ``libvirt``, libvirt-python)
    cannot be imported. host-prep and guest-prep need no libvirt (a guest has none)."""
    if not HAS_RTLIBVIRT:
        module.fail_json(
            msg=missing_required_lib(
                "rtlibvirt",
                reason="on the target host: the modules call its Python API there",
                url="docs/fleet.md in the rtlibvirt repository",
            ),
            exception=RTLIBVIRT_IMPORT_ERROR,
        )
    if not libvirt:
        return
    try:
        import libvirt  # noqa: F401  (rtlibvirt.virt needs it; say so here, not later)
    except ImportError:
        module.fail_json(
            msg=missing_required_lib("libvirt-python", reason="by rtlibvirt on the target host"),
            exception=traceback.format_exc(),
        )


def bounded_mapping(module, value, what):
    """``value`` as a plain dict, refused when it is not a mapping or too big."""
    if not isinstance(value, dict):
        module.fail_json(msg="%s must be a mapping, got %s" % (what, type(value).__name__))
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError) as exc:
        module.fail_json(msg="%s holds a value that is not plain data: %s" % (what, exc))
    if size > MAX_SPEC_BYTES:
        module.fail_json(msg="%s is %d bytes as JSON; at most %d" % (what, size, MAX_SPEC_BYTES))
    return value


def failure(exc):
    """The keys of fail_json for an rtlibvirt error: message, hint, problems, findings."""
    result = {"msg": exc.message}
    if exc.hint:
        result["hint"] = exc.hint
    if SpecError is not None and isinstance(exc, SpecError):
        result["msg"] = "%s: %s" % (exc.source, exc.message)
        result["problems"] = [p.render(exc.source) for p in exc.problems]
    found = getattr(exc, "found", None)
    if found:
        result["findings"] = [f.to_json() for f in found]
        result["msg"] = "%s: %s" % (
            exc.message,
            "; ".join("[%s] %s" % (f.code, f.what) for f in found),
        )
    return result


@contextlib.contextmanager
def reported(module, **context):
    """Run a block; an expected rtlibvirt failure becomes fail_json (no traceback)."""
    try:
        yield
    except RtlibvirtError as exc:  # pylint: disable=catching-non-exception
        result = dict(context)
        result.update(failure(exc))
        module.fail_json(**result)


def file_diffs(planned):
    """Ansible's diff list: each file as it is and as it would be."""
    diffs = []
    for change, now in planned.preview.files:
        diffs.append(
            {
                "before_header": change.path if now.kind != "absent" else "%s (absent)" % change.path,
                "after_header": change.path if change.want.kind != "absent" else "%s (removed)" % change.path,
                "before": now.data.decode("utf-8", "replace") if now.kind == "file" else "",
                "after": change.want.data.decode("utf-8", "replace") if change.want.kind == "file" else "",
            }
        )
    return diffs


def prep_module(**extra_options):
    """The AnsibleModule of rtlibvirt_host and rtlibvirt_guest: command, spec or src, root
    (and ``extra_options``), check mode supported."""
    argument_spec = dict(
        command=dict(type="str", default="apply", choices=["plan", "apply", "verify", "revert"]),
        spec=dict(type="dict"),
        src=dict(type="path"),
        root=dict(type="path", default="/"),
    )
    argument_spec.update(extra_options)
    return AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("spec", "src")],
        required_if=[("command", name, ("spec", "src"), True) for name in ("plan", "apply", "verify")],
        supports_check_mode=True,
    )


def run_prep(module, prepare):
    """host-prep's engine for a module: plan, apply, verify or revert (``command``) under
    ``root``, with check mode, diff mode and ``changed`` only for real changes.

    ``prepare(api, root, need_bootloader)`` returns the Prepared plan: host-prep's from a
    host.yaml (rtlibvirt_host) or guest-prep's from a vm.yaml (rtlibvirt_guest).
    """
    params = module.params
    result = dict(changed=False, result="unchanged", reboot_required=False, done=[])
    with reported(module, **result):
        from pathlib import Path

        from rtlibvirt.hostprep import api

        root = Path(params["root"])
        command = params["command"]
        if command == "revert":
            if module.check_mode:
                from rtlibvirt.hostprep.effects import Effects
                from rtlibvirt.hostprep.journal import Journal
                from rtlibvirt.kernel.fs import HostFS

                pending = Journal(Effects(HostFS(root), runtime=False, commands=False)).exists
                result.update(changed=pending, result="would change" if pending else "unchanged")
            else:
                result.update(api.run_revert(root).to_json())
            module.exit_json(**result)
        prepared = prepare(api, root, command != "verify")
        if prepared is None:  # nothing to do (a guest without real-time vCPUs)
            module.exit_json(**result)
        for problem in prepared.warnings:
            module.warn(problem.render(prepared.source))
        if command == "verify":
            data = api.run_verify(prepared).to_json()
            result.update(data)
            module.exit_json(**result)
        if command == "apply" and not module.check_mode:
            outcome = api.run_apply(prepared)
        else:
            outcome = api.run_plan(prepared)
        data = outcome.to_json()
        # `warnings` is a key Ansible reads itself: its lines become module warnings.
        for warning in data.pop("warnings"):
            if not any(warning == p.render(prepared.source) for p in prepared.warnings):
                module.warn(warning)
        result.update(data)
        # `plan` never changes anything, but says whether apply would: `changed` is
        # what apply would do only in check mode (Ansible's "would change").
        if command == "plan" and not module.check_mode:
            result["changed"] = False
            result["would_change"] = data["changed"]
        if module._diff and data["changed"]:
            result["diff"] = file_diffs(outcome)
    module.exit_json(**result)

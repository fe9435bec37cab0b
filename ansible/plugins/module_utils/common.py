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

from ansible.module_utils.basic import missing_required_lib

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


def require_rtlibvirt(module):
    """Fail with a clear message when rtlibvirt (or libvirt-python) cannot be imported."""
    if not HAS_RTLIBVIRT:
        module.fail_json(
            msg=missing_required_lib(
                "rtlibvirt",
                reason="on the target host: the modules call its Python API there",
                url="docs/fleet.md in the rtlibvirt repository",
            ),
            exception=RTLIBVIRT_IMPORT_ERROR,
        )
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

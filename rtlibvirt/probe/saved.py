"""The probe's last result of each VM, kept on the host for the Cockpit page (and people).

``rtlibvirt probe`` writes its JSON report (the same as ``--json`` prints, plus
when it was measured) to ``RESULTS/NAME.json`` after every measurement, where
RESULTS is ``$RTLIBVIRT_PROBE_RESULTS`` or ``/var/lib/rtlibvirt/probe``. One file
per VM, replaced atomically: the newest measurement of each VM, never a
growing history. A name that is not a plain file name is not kept.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from rtlibvirt.errors import HostError
from rtlibvirt.kernel.files import atomic_write

RESULTS_ENV = "RTLIBVIRT_PROBE_RESULTS"
SYSTEM_RESULTS = Path("/var/lib/rtlibvirt/probe")
# libvirt's domain names may hold almost anything but '/'; a kept file needs less.
_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_.+:-]{0,199}")


def results_dir() -> Path:
    configured = os.environ.get(RESULTS_ENV)
    return Path(configured) if configured else SYSTEM_RESULTS


def path_for(name: str) -> Path | None:
    """Where the result of VM ``name`` is kept; None for a name that cannot be a file name."""
    if _NAME.fullmatch(name) is None:
        return None
    return results_dir() / f"{name}.json"


def save(name: str, report: dict[str, Any], now: float | None = None) -> Path:
    """Keep ``report`` as the last result of ``name``; HostError when it cannot be written."""
    path = path_for(name)
    if path is None:
        raise HostError(f"the result of {name!r} is not kept: the name is not a plain file name")
    data = {"name": name, "measured_at": round(now if now is not None else time.time()), **report}
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        atomic_write(path, (json.dumps(data, indent=2) + "\n").encode(), mode=0o644)
    except OSError as exc:
        raise HostError(f"cannot keep the result in {path}: {exc.strerror or exc}") from None
    return path

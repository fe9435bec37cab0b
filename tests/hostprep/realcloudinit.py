"""cloud-init's own schema validator, from Debian's cloud-init package, never installed.

Installing cloud-init would add its services to this machine; its package is
fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into
/var/cache/rtlibvirt/test-debs (as realgrub.py does for GRUB), and its
``cloudinit.config.schema`` runs from there in a child Python (the test
environment's, which has the modules cloud-init imports: PyYAML, jsonschema,
jinja2, requests, configobj, jsonpatch; see pyproject's test extras).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.hostprep.realgrub import unpacked

PACKAGE = "cloud-init"
# validate_cloudconfig_file: the "#cloud-config" header, YAML, then the JSON schema of
# every module cloud-init has (strict: an unknown key of a module's is an error too).
VALIDATE = """
import sys
sys.path.insert(0, sys.argv[2])
from cloudinit.config.schema import SchemaValidationError, get_schema, validate_cloudconfig_file
try:
    validate_cloudconfig_file(sys.argv[1], get_schema())
except SchemaValidationError as exc:
    print(exc)
    sys.exit(3)
print("valid")
"""


@dataclass(frozen=True)
class CloudInit:
    tree: Path
    version: str

    @property
    def python_path(self) -> Path:
        return self.tree / "usr/lib/python3/dist-packages"

    def validate(self, user_data: Path) -> tuple[int, str]:
        """(0, "valid"), or (3, cloud-init's message) for user-data its schema refuses."""
        done = subprocess.run(
            [sys.executable, "-I", "-c", VALIDATE, str(user_data), str(self.python_path)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": os.defpath, "LANG": "C.UTF-8"},
        )
        if done.returncode not in (0, 3):
            raise AssertionError(f"cloud-init's validator failed: {done.stderr[-3000:]}")
        return done.returncode, (done.stdout + done.stderr).strip()


def fetch() -> CloudInit:
    """The unpacked package, from the cache or fetched now (once per machine)."""
    tree, version = unpacked(
        (PACKAGE,), "cloud-init", "usr/lib/python3/dist-packages/cloudinit/config/schema.py"
    )
    return CloudInit(tree, version)

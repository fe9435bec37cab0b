"""``ansible-test sanity`` on the built collection, and ``ansible-doc`` of each module.

ansible-test makes a virtual environment per sanity test and bootstraps pip into
it with a script it downloads from its own CI host, which this machine cannot
reach. GET_PIP below stands in for that one download: pip from the standard
library's ensurepip, then pip itself installs what ansible-test asked for (the
pinned pip and each test's requirements, from the package index). The
environments are kept in .venv/ between runs (``make clean`` removes them).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.fleet.conftest import BIN

MODULES = ("rtlibvirt_vm", "rtlibvirt_host", "rtlibvirt_hook", "rtlibvirt_facts", "rtlibvirt_guest")
HOME = Path(sys.prefix) / "ansible-test-home"

GET_PIP = '''\
"""ansible-test's get-pip, made here: ensurepip, then pip installs the rest."""
import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}  # get-pip's own options
ensurepip.bootstrap()
os.environ.pop("PIP_CONFIG_FILE", None)  # ensurepip points it at /dev/null
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
subprocess.check_call([sys.executable, "-m", "pip", "install", *args])
'''


def _pip_version() -> str:
    import ansible_test._internal.python_requirements as requirements

    source = Path(requirements.__file__).read_text()
    match = re.search(r"pip='([0-9.]+)'", source)
    assert match, "ansible-test no longer pins pip as pip='X.Y'"
    return match.group(1)


def _installed_root(collection: Path) -> Path:
    return collection / "ansible_collections" / "rtlibvirt" / "realtime"


def test_ansible_test_sanity(collection: Path) -> None:
    cache = HOME / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / f"get_pip_{_pip_version().replace('.', '_')}.py").write_text(GET_PIP)
    done = subprocess.run(
        [
            str(BIN / "ansible-test"),
            "sanity",
            "--python",
            f"{sys.version_info[0]}.{sys.version_info[1]}",
            "--color",
            "no",
        ],
        cwd=_installed_root(collection),
        env={"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(HOME), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-8000:]
    ran = set(re.findall(r'Running sanity test "([^"]+)"', output))
    # the tests that judge the modules themselves must have run, not been skipped
    assert {
        "validate-modules",
        "ansible-doc",
        "pylint",
        "pep8",
        "yamllint",
        "compile",
        "import",
    } <= ran, output


def test_ansible_doc_shows_every_module(collection: Path) -> None:
    names = [f"rtlibvirt.realtime.{m}" for m in MODULES]
    done = subprocess.run(
        [str(BIN / "ansible-doc"), "--json", *names],
        env={
            "PATH": f"{BIN}:/usr/bin:/bin",
            "HOME": "/nonexistent",
            "ANSIBLE_COLLECTIONS_PATH": str(collection),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    docs = json.loads(done.stdout)
    for name in names:
        entry = docs[name]
        assert entry["doc"]["short_description"] and entry["examples"].strip(), name
        assert entry["return"], f"{name} has no RETURN"
        assert "skipped" not in entry["return"], "Ansible reads `skipped` itself"
        assert entry["doc"]["attributes"]["check_mode"]["support"] == "full", name

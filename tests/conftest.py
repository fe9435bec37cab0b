"""Shared fixtures: spec files written to a temp dir, libvirt's schema, the daemon."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DOMAIN_RNG = Path("/usr/share/libvirt/schemas/domain.rng")

# Fixtures kept beside the fakes they drive.
pytest_plugins = ["tests.fakes.hostprep"]

MINIMAL_SPEC = """\
name: mini
memory: 1GiB
vcpus: 2
cpu:
  pinning: [1, 2]
  emulator: 0
  realtime:
    vcpus: 1
"""


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write YAML text (dedented) to a file in a temp dir and return its path."""

    def write(text: str, name: str = "vm.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture(scope="session")
def domain_schema() -> etree.RelaxNG:
    """libvirt's own RelaxNG schema of the domain XML, from the installed libvirt."""
    if not DOMAIN_RNG.exists():
        pytest.fail(f"{DOMAIN_RNG} is missing: install libvirt (scripts/install-deps)")
    return etree.RelaxNG(etree.parse(str(DOMAIN_RNG)))


@pytest.fixture(scope="session")
def assert_valid_domain(domain_schema: etree.RelaxNG) -> Callable[[str], etree._Element]:
    def check(xml: str) -> etree._Element:
        root = etree.fromstring(xml.encode("utf-8"))
        if not domain_schema.validate(root):
            errors = "\n".join(str(e) for e in domain_schema.error_log)
            pytest.fail(f"domain XML is not valid against libvirt's domain.rng:\n{errors}\n{xml}")
        return root

    return check


HOST_LOCK = Path("/run/lock/rtlibvirt-tests.lock")


@pytest.fixture(scope="session")
def live_host() -> Iterator[None]:
    """Exclusive use of this machine's libvirtd, hook folder and kernel values.

    Tests that start VMs, install the hook, restart libvirtd or write /proc and
    /sys of the live host take this lock (it is held until the session ends),
    so that test runs from several checkouts at once take turns instead of
    undoing each other's changes.
    """
    import fcntl

    HOST_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with HOST_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # scripts/libvirtd-up, run by a test, must not wait for the lock we hold
        os.environ["RTLIBVIRT_HOST_LOCK_HELD"] = "1"
        try:
            yield
        finally:
            os.environ.pop("RTLIBVIRT_HOST_LOCK_HELD", None)


def _system_daemon_available() -> bool:
    import libvirt

    try:
        conn = libvirt.open("qemu:///system")
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


@pytest.fixture(scope="session")
def system_uri(live_host: None) -> str:
    """qemu:///system, when a libvirtd answers there.

    Skips when there is none, except under `make test` (RTLIBVIRT_REQUIRE_DAEMON=1),
    which starts the daemon first: there a missing daemon is a failure.
    """
    if not _system_daemon_available():
        if os.environ.get("RTLIBVIRT_REQUIRE_DAEMON") == "1":
            pytest.fail("no libvirtd at qemu:///system although `make test` started one")
        pytest.skip("no libvirtd at qemu:///system (run `make test`, which starts one)")
    return "qemu:///system"


@pytest.fixture
def system_domain_cleanup(system_uri: str) -> Iterator[Callable[[str], None]]:
    """Register domain names to destroy and undefine after the test."""
    import libvirt

    names: list[str] = []
    yield names.append
    conn: Any = libvirt.open(system_uri)
    try:
        for name in names:
            try:
                dom = conn.lookupByName(name)
            except libvirt.libvirtError:
                continue
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(getattr(libvirt, "VIR_DOMAIN_UNDEFINE_NVRAM", 0))
    finally:
        conn.close()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rtlibvirt's wheel, built once per run (the packaging test installs it in a fresh
    venv; the fleet tests' role copies it to each host)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (built,) = out.glob("rtlibvirt-*.whl")
    return built


def require_rt_host(why: str) -> None:
    """Skip unless root on a host with CPUs 0 and 1 online; fail when real-time vCPUs
    cannot start (scripts/libvirtd-up, which `make test` runs, fixes that)."""
    from rtlibvirt.kernel import rtgroup
    from rtlibvirt.kernel.fs import HostFS

    if os.geteuid() != 0:
        pytest.skip(f"{why}: needs root (run `make test`)")
    if not {0, 1} <= HostFS("/").cpus_online():
        pytest.skip("needs CPUs 0 and 1 online")
    problem = rtgroup.diagnose(HostFS("/"))
    if problem:
        pytest.fail(f"{problem}; scripts/libvirtd-up should have fixed it ({rtgroup.HINT})")

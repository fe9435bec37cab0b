"""Host-prep fixtures (registered in tests/conftest.py): fake roots, the command stand-ins on PATH, host.yaml files."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rtlibvirt.config.host import load_host_spec
from rtlibvirt.hostprep.apply import apply as apply_plan
from rtlibvirt.hostprep.changes import Plan
from rtlibvirt.hostprep.effects import Effects
from rtlibvirt.hostprep.facts import gather
from rtlibvirt.hostprep.journal import Journal
from rtlibvirt.hostprep.plan import build_plan
from rtlibvirt.hostprep.report import Report
from rtlibvirt.hostprep.revert import revert as revert_plan
from rtlibvirt.kernel.fs import HostFS
from tests.fakes.roots import BIN, KernelTree, make_tree

SEED_HOST = """\
# The seed checklist's host: 14 CPUs, CPU 4 for the real-time vCPU.
isolated_cpus: 4
hugepages: {size: 1G, count: 8}
iommu: true
cache_allocation: true
idle: poll
lapic_timer_advance_ns: 7500
disable_services: [irqbalance, thermald, wpa_supplicant]
mitigations: 'off'
"""


@dataclass
class Host:
    """A fake root with the command stand-ins, as the live host would be driven."""

    root: Path
    log: Path
    spec: Path
    refuse: dict[str, int] = field(default_factory=dict)  # kernel files that refuse writes

    def commands(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def plan(self, runtime_only: bool = False, spec: Path | None = None) -> Plan:
        facts = gather(HostFS(self.root))
        host = load_host_spec(spec or self.spec, facts)
        return build_plan(host, facts, runtime_only=runtime_only)

    def effects(
        self, live: bool = True, before_change: Callable[[str], None] | None = None
    ) -> Effects:
        return Effects(
            KernelTree(self.root, self.refuse),
            runtime=live,
            commands=live,
            before_change=before_change,
        )

    def apply(
        self,
        runtime_only: bool = False,
        live: bool = True,
        spec: Path | None = None,
        before_change: Callable[[str], None] | None = None,
    ) -> Report:
        plan = self.plan(runtime_only, spec)
        effects = self.effects(live, before_change)
        return apply_plan(plan, effects, Journal(effects))

    def revert(self, live: bool = True) -> Report:
        effects = self.effects(live)
        return revert_plan(effects, Journal(effects))


@pytest.fixture
def write_host(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "host.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def fake_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Host]:
    """make(distro, spec_text=SEED_HOST, **tree options) -> Host, stand-ins on PATH."""

    def make(distro: str = "debian", spec_text: str = SEED_HOST, **options: object) -> Host:
        root = make_tree(tmp_path / f"root-{distro}", distro, **options)  # type: ignore[arg-type]
        log = tmp_path / f"commands-{distro}.log"
        monkeypatch.setenv("PATH", f"{BIN}:{__import__('os').environ['PATH']}")
        monkeypatch.setenv("RTLIBVIRT_FAKE_ROOT", str(root))
        monkeypatch.setenv("RTLIBVIRT_FAKE_LOG", str(log))
        spec = tmp_path / f"host-{distro}.yaml"
        spec.write_text(textwrap.dedent(spec_text))
        if distro in ("debian", "ubuntu"):
            import subprocess

            subprocess.run([str(BIN / "update-grub")], check=True)  # the installed grub.cfg
            log.unlink()
        return Host(root, log, spec)

    return make

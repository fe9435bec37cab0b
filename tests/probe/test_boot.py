"""A probe guest that never boots is stopped once its console stays silent, not at the timeout.

No guest boots here: libvirt's domain is a fake, the clock is virtual, and the
guest's console and results port are files that a script fills at given times
(the console stream of a healthy TCG boot, of a KVM guest that never boots, of
one that prints and hangs), so each case takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rtlibvirt.config.vm import load_spec
from rtlibvirt.domain.render import render
from rtlibvirt.kernel.fs import HostFS
from rtlibvirt.probe import run as proberun
from rtlibvirt.probe.image import Image
from rtlibvirt.virt import transient
from tests.conftest import EXAMPLES
from tests.probe.conftest import DATA


class Guest:
    """A fake domain, a virtual clock and a script of what the guest writes when."""

    def __init__(self, workdir: Path, script: list[tuple[float, str, str]], ends: float) -> None:
        self.workdir = workdir
        self.now = 1000.0
        self.start = self.now
        self.script = sorted(script)  # (seconds after start, "console"|"results", text)
        self.ends = ends  # seconds after start when the guest powers off
        self.destroyed = False

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        while self.script and self.script[0][0] <= self.now - self.start:
            _, port, text = self.script.pop(0)
            [folder] = self.workdir.glob("rtlibvirt-probe-*/rtlibvirt")
            with (folder / f"{port}.{'log' if port == 'console' else 'txt'}").open("a") as f:
                f.write(text)

    def create(self, _conn: Any, _xml: str, paused: bool = False) -> object:
        for folder in self.workdir.glob("rtlibvirt-probe-*/rtlibvirt"):
            (folder / "console.log").touch()  # QEMU opens its serial files at the start
        return object()

    def running(self, _domain: Any) -> bool:
        return not self.destroyed and self.now - self.start < self.ends

    @property
    def elapsed(self) -> float:
        return self.now - self.start


@pytest.fixture
def probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[list[tuple[float, str, str]], float, str], tuple[Guest, proberun.Prober]]:
    def make(
        script: list[tuple[float, str, str]], ends: float, virt_type: str
    ) -> tuple[Guest, proberun.Prober]:
        guest = Guest(tmp_path, script, ends)
        monkeypatch.setattr(proberun.time, "monotonic", guest.monotonic)
        monkeypatch.setattr(proberun.time, "sleep", guest.sleep)
        monkeypatch.setattr(transient, "create", guest.create)
        monkeypatch.setattr(transient, "is_running", guest.running)
        monkeypatch.setattr(transient, "destroy", lambda d: setattr(guest, "destroyed", True))
        spec = load_spec(EXAMPLES / "small.yaml").spec
        target = proberun.plan_target(render(spec), "small.yaml")
        image = Image(tmp_path / "vmlinuz", tmp_path / "initrd.img", "test image")
        workdir = tmp_path / "rtlibvirt-probe-1"
        workdir.mkdir()
        options = proberun.Options(duration_s=5, virt_type=virt_type)
        tree = HostFS(tmp_path / "root")  # no live host here: the trace is left out, said why
        prober = proberun.Prober(
            None, target, options, image, lambda _: None, True, workdir=workdir, noise_fs=tree
        )
        return guest, prober

    return make


def test_a_kvm_guest_that_never_boots_stops_after_the_silence_bound_with_the_hint(
    probe: Callable[..., tuple[Guest, proberun.Prober]],
) -> None:
    guest, prober = probe([], ends=10_000, virt_type="kvm")
    with pytest.raises(proberun.ProbeError) as caught:
        prober.run()
    bound = proberun.SILENT_BOOT_S["kvm"]
    assert bound < proberun.BOOT_ALLOWANCE_S["kvm"]  # sooner than the timeout, by design
    assert bound < guest.elapsed <= bound + 1  # stopped right after the bound, not at 95 s
    assert guest.destroyed
    message = caught.value.message
    assert f"console stayed silent for {bound} s" in message
    assert "printed nothing on its console" in message
    assert caught.value.hint == "a KVM guest that never boots here may need --virt-type qemu"


def test_a_guest_that_prints_then_hangs_is_stopped_a_silence_after_its_last_words(
    probe: Callable[..., tuple[Guest, proberun.Prober]],
) -> None:
    script = [(2.0, "console", "Kernel panic - not syncing: VFS: Unable to mount root fs\n")]
    guest, prober = probe(script, ends=10_000, virt_type="kvm")
    with pytest.raises(proberun.ProbeError) as caught:
        prober.run()
    bound = proberun.SILENT_BOOT_S["kvm"]
    assert 2 + bound < guest.elapsed <= 2 + bound + 1
    assert "Unable to mount root fs" in caught.value.message  # the console's tail


def test_a_slow_healthy_boot_and_a_silent_measurement_are_not_stopped(
    probe: Callable[..., tuple[Guest, proberun.Prober]],
) -> None:
    """TCG: silent for 25 s while it boots (more than KVM's bound), then measures silently
    for far longer than the bound; the results come and the guest powers off."""
    serial = (DATA / "guest-tcg-serial.txt").read_text()
    begin = serial.index(proberun.guest.BEGIN)
    script = [
        (25.0, "results", serial[: begin + 40]),
        (25.1, "console", "rtlprobe: cyclictest on vCPUs 1 for 5s\r\n"),
        (25.0 + 200, "results", serial[begin + 40 :]),
    ]
    guest, prober = probe(script, ends=25 + 201, virt_type="qemu")
    [result] = prober.run()
    assert result.label == "rtlibvirt" and result.summary.samples > 0
    assert result.noise is not None and result.noise.measurement is None
    assert "cannot trace a tree" in (result.noise.unavailable or "")
    assert guest.elapsed >= 226 > proberun.SILENT_BOOT_S["qemu"]


def test_the_silence_runs_from_the_last_output() -> None:
    watch = proberun.BootWatch(30, since=0.0)
    assert not watch.silent(29.0, 0)
    assert not watch.silent(29.5, 12)  # grew: the silence starts again
    assert not watch.silent(59.0, 12)
    assert watch.silent(59.6, 12)

"""The host-side noise on the probe's CPUs, traced while each configuration measures.

The latency a configuration gets is made on the host: every interrupt, timer,
IPI, work item or other thread that runs on the host CPU of a measured vCPU
(or, for bare metal, under cyclictest) is time the measurement loses. So
beside each configuration the probe traces those host CPUs with
``rtlibvirt noise``'s library (:class:`rtlibvirt.noise.measure.Recording`),
from the moment cyclictest begins for ``--duration``, and the report shows the
worst case beside what disturbed its CPUs, with the fix for each source.

The CPU's *owner* (not noise) is the measured vCPU's thread in a guest, and
cyclictest's threads on bare metal. An untuned guest's vCPU floats: its noise
is traced on the same host CPUs as the tuned one's, for a like-for-like view
of what the host does there.

When the host cannot be traced (not root, no tracefs, a vCPU not pinned to one
host CPU), the probe measures all the same and says why there is no noise
figure. Tracing never fails the probe.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rtlibvirt.errors import HostError
from rtlibvirt.kernel.fs import HostFS
from rtlibvirt.noise.measure import CpuResult, Measurement, Recording, Target

TOP_SOURCES = 3  # per CPU in the text report and the plot; --json has them all
NOT_PINNED = "the measured vCPUs are not each pinned to one host CPU: no host CPU to trace"
NOT_ROOT = "tracing the host needs root"


@dataclass(frozen=True)
class HostNoise:
    """What disturbed the measured host CPUs during one configuration, or why it is unknown."""

    measurement: Measurement | None
    unavailable: str | None = None

    @property
    def cpus(self) -> list[CpuResult]:
        return self.measurement.cpus if self.measurement is not None else []

    def to_json(self) -> dict[str, Any]:
        """``rtlibvirt noise --json``'s shape, and ``unavailable``: why not, or null."""
        if self.measurement is None:
            return {"unavailable": self.unavailable, "cpus": []}
        return {**self.measurement.to_json(), "unavailable": None}

    def headline(self) -> str:
        """One line: disturbances and time lost per second on each CPU."""
        if self.measurement is None:
            return f"no noise figure: {self.unavailable}"
        return "; ".join(
            f"host CPU {c.cpu}: {c.disturbances_per_s:.0f} disturbances/s, "
            f"{c.us_lost_per_s:.0f} µs lost/s"
            for c in self.cpus
        )


class Tracer:
    """One configuration's trace: :meth:`begin` when cyclictest begins, :meth:`poll` in the
    probe's loop, :meth:`end` for the result; :meth:`close` on every way out."""

    def __init__(
        self, cpus: Iterable[int] | None, duration_s: float, fs: HostFS | None = None
    ) -> None:
        self.cpus = tuple(cpus) if cpus is not None else None
        self.duration_s = duration_s
        self.fs = fs
        self.recording: Recording | None = None
        self.result: HostNoise | None = None

    @property
    def tracing(self) -> bool:
        return self.recording is not None

    def begin(
        self,
        owners: dict[int, frozenset[int]],
        domain: str | None = None,
        vcpus: dict[int, int] | None = None,
    ) -> None:
        """Start tracing; ``owners``: host CPU -> the thread ids that are not noise there;
        ``vcpus``: host CPU -> the guest vCPU measured on it."""
        if self.result is not None or self.recording is not None:
            return
        if self.cpus is None:
            self.result = HostNoise(None, NOT_PINNED)
            return
        if os.geteuid() != 0:
            self.result = HostNoise(None, NOT_ROOT)
            return
        targets = [
            Target(cpu, domain, (vcpus or {}).get(cpu), owners.get(cpu, frozenset()))
            for cpu in self.cpus
        ]
        try:
            recording = Recording(targets, self.duration_s, self.fs)
            recording.__enter__()
        except HostError as exc:
            self.result = HostNoise(None, exc.message)
            return
        self.recording = recording

    def poll(self) -> None:
        """Read what the trace holds; stop it once ``duration_s`` is over."""
        if self.recording is None:
            return
        try:
            self.recording.poll()
            if self.recording.left_s() <= 0:
                self._finish()
        except HostError as exc:
            self._fail(exc.message)

    def end(self) -> HostNoise:
        """The result (stops the trace if it still runs)."""
        if self.recording is not None:
            try:
                self._finish()
            except HostError as exc:
                self._fail(exc.message)
        if self.result is None:
            return HostNoise(None, "the measurement never began, so neither did the trace")
        return self.result

    def close(self) -> None:
        """Remove the tracefs instance (errors, Ctrl-C); safe to call twice."""
        if self.recording is not None:
            recording, self.recording = self.recording, None
            try:
                recording.__exit__(None, None, None)
            except HostError as exc:  # its watchdog tries again once we are gone
                if self.result is None:
                    self.result = HostNoise(None, f"the trace failed: {exc.message}")

    def _finish(self) -> None:
        assert self.recording is not None
        measurement = self.recording.finish()
        self.close()
        self.result = HostNoise(measurement)

    def _fail(self, message: str) -> None:
        self.close()
        self.result = HostNoise(None, f"the trace failed: {message}")

"""``rtlibvirt probe``: run the measurement in each configuration and collect the results.

The configurations, each measured alone, one after the other:

- **bare metal** (``--baseline``): cyclictest on the host, on the host CPUs of
  the VM's realtime vCPUs, while the tuned probe domain exists *paused*: the
  installed hook has isolated the host for it exactly as for the running VM
  (libvirt runs the hook's ``prepare`` and ``started`` for a paused start), and
  its idle vCPU threads keep their places;
- **rtlibvirt**: the tuned probe guest (``domain.probe_xml``);
- **untuned** (``--compare untuned``): the same guest as virt-install makes it
  (``domain.untuned_xml``).

Every domain is transient and auto-destroyed (``virt.transient``), and is
destroyed in a ``finally`` on every way out: the guest's own power-off, a
timeout, an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtlibvirt.domain.facts import DomainFacts, DomainXMLError, facts, merge_live
from rtlibvirt.errors import HostError, InputError, LibvirtError
from rtlibvirt.kernel.cpuset import format_cpulist
from rtlibvirt.kernel.fs import HostFS
from rtlibvirt.noise import tracefs
from rtlibvirt.probe import domain as probedomain
from rtlibvirt.probe import guest, hostnoise, results
from rtlibvirt.probe.image import Image

LABEL_BASELINE = "bare metal"
LABEL_TUNED = "rtlibvirt"
LABEL_UNTUNED = "untuned"
SUFFIX = "-probe"  # the probe domains are NAME-probe, NAME-probe-untuned, NAME-probe-baseline
BOOT_ALLOWANCE_S = {"kvm": 90, "qemu": 240}  # from start to the guest's power-off, past -D
HISTOGRAM_US = {"kvm": 10_000, "qemu": 100_000}  # TCG's tail reaches tens of ms
POLL_S = 0.2
THREADS_WAIT_S = 2  # for the host's cyclictest to start its threads before the trace begins
# How long the console of a probe guest that has not begun measuring may stay silent.
# The guest boots with loglevel=4 (errors only), so a healthy boot prints nothing until
# its init says "rtlprobe: cyclictest on ..." (just after RTLPROBE BEGIN on the results
# port): on the development machine TCG reaches it about 5 s after the start (8 MB
# kernel, 2 MB initramfs, no firmware menu), and KVM runs the same boot at native speed,
# in a second or two. A KVM guest that never boots (a nested hypervisor that starts QEMU
# but runs no guest kernel) prints nothing at all. 30 s of silence is ten times a slow
# KVM boot, 120 s twenty times a TCG one, both far below BOOT_ALLOWANCE_S, the bound
# for a guest that boots and then never finishes.
SILENT_BOOT_S = {"kvm": 30, "qemu": 120}
MAX_DURATION_S = 24 * 3600
TCG_WARNING = (
    "TCG (--virt-type qemu) emulates the guest CPU in software: these figures show that the "
    "probe works, they are not real-time figures"
)
NO_METADATA = "the domain has no rtlibvirt metadata: the hook did not isolate the host"
NO_HOOK = "the rtlibvirt hook is not installed (rtlibvirt hook install): the host was not isolated"


class ProbeError(HostError):
    """The measurement could not be made (exit 1)."""


@dataclass(frozen=True)
class Target:
    """The VM to measure, and where each cyclictest thread goes."""

    name: str
    xml: str  # its domain XML: rendered from a vm.yaml, or a defined domain's
    source: str  # for messages: "examples/plc.yaml", "domain 'plc'"
    facts: DomainFacts
    measured: tuple[int, ...]  # guest vCPUs that get a measuring thread (the realtime ones)
    housekeeping: int  # guest vCPU of cyclictest's main thread
    host_cpus: tuple[int, ...] | None  # the host CPU of each measured vCPU, if pinned to one
    host_main: int | None  # a host CPU for the baseline's main thread
    managed: bool  # carries rtlibvirt's metadata: the hook isolates the host for it
    notes: tuple[str, ...] = ()

    @property
    def guest_isolation(self) -> list[str]:
        return guest.isolation_args(self.facts.vcpus, self.measured)


def plan_target(xml: str, source: str) -> Target:
    """Read the VM's XML and decide where the measuring threads run."""
    try:
        info = facts(xml)
    except DomainXMLError as exc:
        raise InputError(f"{source}: the domain XML cannot be read: {exc}") from None
    notes: list[str] = []
    measured = tuple(info.realtime_vcpus)
    if not measured:
        measured = tuple(range(1, info.vcpus)) or (0,)
        notes.append(
            f"{source} has no real-time vCPUs; measuring vCPU{'s' if len(measured) > 1 else ''} "
            f"{format_cpulist(measured)}"
        )
    housekeeping = guest.housekeeping_vcpu(info.vcpus, measured)
    if len(measured) == info.vcpus:
        notes.append(
            "every vCPU is measured: cyclictest's main thread shares vCPU "
            f"{housekeeping} with a measuring thread, and the guest isolates no vCPU"
        )
    host: list[int] = []
    for vcpu in measured:
        cpus = info.vcpu_cpus(vcpu)
        if cpus is None or len(cpus) != 1:
            host = []
            break
        host.append(next(iter(cpus)))
    host_cpus = tuple(host) if host else None
    host_main = None
    if host_cpus is not None:
        emulator = info.emulatorpin if info.emulatorpin is not None else info.vcpu_cpuset
        helpers = sorted(emulator or ())
        others = sorted(c for c in info.pinned_cpu_set if c not in host_cpus)
        candidates = [c for c in helpers + others if c not in host_cpus]
        host_main = candidates[0] if candidates else None
    return Target(
        name=info.name,
        xml=xml,
        source=source,
        facts=info,
        measured=measured,
        housekeeping=housekeeping,
        host_cpus=host_cpus,
        host_main=host_main,
        managed=info.managed,
        notes=tuple(notes),
    )


def probe_names(name: str) -> dict[str, str]:
    return {
        LABEL_TUNED: f"{name}{SUFFIX}",
        LABEL_UNTUNED: f"{name}{SUFFIX}-untuned",
        LABEL_BASELINE: f"{name}{SUFFIX}-baseline",
    }


def check_free(domains: list[tuple[str, str, str | None]], target: Target) -> None:
    """Refuse while another running VM holds a host CPU the probe measures on.

    ``domains`` is ``virt.connection.all_domains``. A VM with unpinned vCPUs may
    run anywhere, so it holds every CPU.
    """
    ours = set(probe_names(target.name).values())
    wanted = set(target.host_cpus or ())
    if target.host_cpus is None:
        wanted = set(target.facts.realtime_cpu_set) or set(target.facts.vcpu_cpu_set)
    for name, definition, live in domains:
        if live is None:
            continue
        if name in ours:
            raise ProbeError(
                f"a probe of {target.name!r} is running already (domain {name!r})",
                f"wait for it to end, or stop it: virsh destroy {name}",
            )
        try:
            info = merge_live(facts(definition), facts(live, active=True))
        except DomainXMLError:
            continue
        held = set(info.pinned_cpu_set)
        unpinned = any(info.vcpu_cpus(v) is None for v in range(info.vcpus))
        clash = sorted(wanted) if unpinned else sorted(held & wanted)
        if clash:
            how = "runs with unpinned vCPUs, which may use" if unpinned else "holds"
            raise ProbeError(
                f"running VM {name!r} {how} host CPU {format_cpulist(clash)}, which the probe "
                "measures on",
                f"stop it first (virsh shutdown {name}): the probe needs those CPUs to itself",
            )


@dataclass(frozen=True)
class Options:
    duration_s: int
    virt_type: str = "kvm"
    baseline: bool = False
    untuned: bool = False
    load: bool = False

    @property
    def histogram_us(self) -> int:
        return HISTOGRAM_US[self.virt_type]


@dataclass
class Prober:
    """One probe: the configurations of one VM, measured in turn."""

    conn: Any
    target: Target
    options: Options
    image: Image
    say: Callable[[str], None]
    hook_installed: bool
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rtlibvirt-probe-")))
    noise_fs: HostFS | None = None  # where the host's noise is traced (the live host)

    def tracer(self) -> hostnoise.Tracer:
        """The host CPUs of the measured vCPUs, traced for --duration from cyclictest's start."""
        return hostnoise.Tracer(self.target.host_cpus, self.options.duration_s, self.noise_fs)

    def run(self) -> list[results.RunResult]:
        done: list[results.RunResult] = []
        try:
            if self.options.baseline:
                done.append(self._baseline())
            done.append(self._guest(LABEL_TUNED))
            if self.options.untuned:
                done.append(self._guest(LABEL_UNTUNED))
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return done

    # ---- the guests -----------------------------------------------------------------

    def measurement(self, cpus: tuple[int, ...], main: int) -> guest.Measurement:
        return guest.Measurement(
            cpus=cpus,
            main=main,
            duration_s=self.options.duration_s,
            histogram_us=self.options.histogram_us,
        )

    def _files(self, label: str, cmdline: str) -> probedomain.Files:
        folder = self.workdir / label.replace(" ", "-")
        folder.mkdir(mode=0o755)
        return probedomain.Files(
            kernel=self.image.kernel,
            initrd=self.image.initrd,
            cmdline=cmdline,
            console=folder / "console.log",
            results=folder / "results.txt",
        )

    def _guest(self, label: str) -> results.RunResult:
        from rtlibvirt.virt import transient

        target, options = self.target, self.options
        name = probe_names(target.name)[label]
        measurement = self.measurement(target.measured, target.housekeeping)
        tuned = label == LABEL_TUNED
        isolation = target.guest_isolation if tuned else []
        files = self._files(label, guest.kernel_cmdline(measurement, isolation))
        make = probedomain.probe_xml if tuned else probedomain.untuned_xml
        xml = make(target.xml, name, files, options.virt_type)
        kind = "TCG" if options.virt_type == "qemu" else "KVM"
        self.say(
            f"{label}: starting {name} ({kind}), cyclictest on vCPU "
            f"{format_cpulist(target.measured)} for {options.duration_s} s"
        )
        limit = options.duration_s + BOOT_ALLOWANCE_S[options.virt_type]
        started = time.monotonic()
        watch = BootWatch(SILENT_BOOT_S[options.virt_type], started)
        tracer = self.tracer()
        domain = transient.create(self.conn, xml)
        load: subprocess.Popen[bytes] | None = None
        began = False
        try:
            while transient.is_running(domain):
                now = time.monotonic()
                if now - started > limit:
                    raise ProbeError(
                        f"{label}: the probe guest did not finish within {limit} s"
                        + _console_tail(files.console),
                        _boot_hint(options.virt_type),
                    )
                if not began:
                    began = _began(files.results)
                    if began and options.load:
                        load = self._start_load()
                    if began:
                        tracer.begin(*self._guest_owners(name, tuned))
                if not began and watch.silent(now, _size(files.console)):
                    raise ProbeError(
                        f"{label}: the probe guest's console stayed silent for "
                        f"{watch.silence_s} s, well past a normal boot, and it has not begun "
                        "measuring" + _console_tail(files.console),
                        _boot_hint(options.virt_type),
                    )
                tracer.poll()
                time.sleep(tracefs.READ_EVERY_S if tracer.tracing else POLL_S)
            noise = tracer.end()
        finally:
            tracer.close()
            transient.destroy(domain)
            _stop(load)
        elapsed = time.monotonic() - started
        self.say(f"{label}: {name} ended after {elapsed:.0f} s")
        return self._guest_result(label, files, measurement, noise)

    def _guest_owners(
        self, name: str, tuned: bool
    ) -> tuple[dict[int, frozenset[int]], str, dict[int, int]]:
        """Host CPU -> the vCPU threads that own it (not noise), the domain, host CPU -> vCPU.

        The tuned guest's measured vCPU owns its host CPU; an untuned guest's vCPUs
        float, so every measured vCPU's thread owns each traced CPU.
        """
        from rtlibvirt.noise.measure import vcpu_tids

        target = self.target
        tids = vcpu_tids(self.noise_fs or HostFS("/"), name)
        if target.host_cpus is None:
            return {}, name, {}
        pairs = list(zip(target.host_cpus, target.measured, strict=True))
        if tuned:
            owners = {cpu: frozenset({tids[v]} if v in tids else ()) for cpu, v in pairs}
            return owners, name, {cpu: v for cpu, v in pairs}
        every = frozenset(tids[v] for v in target.measured if v in tids)
        return {cpu: every for cpu in target.host_cpus}, name, {}

    def _guest_result(
        self,
        label: str,
        files: probedomain.Files,
        measurement: guest.Measurement,
        noise: hostnoise.HostNoise | None = None,
    ) -> results.RunResult:
        target, options = self.target, self.options
        try:
            text = _read_bounded(files.results)
            output = results.parse_serial(text)
        except (OSError, results.ResultError) as exc:
            detail = exc.message if isinstance(exc, results.ResultError) else str(exc)
            raise ProbeError(f"{label}: {detail}" + _console_tail(files.console)) from None
        if output.return_code != 0:
            raise ProbeError(
                f"{label}: cyclictest failed in the guest (exit status {output.return_code}): "
                f"{output.stderr or 'no message'}"
            )
        header, threads = results.parse_json(output.json, measurement.histogram_us)
        notes = results.check_against_text(threads, results.parse_histogram(output.histogram))
        kind = "TCG" if options.virt_type == "qemu" else "KVM"
        if label == LABEL_TUNED:
            pins = [
                f"{v} on host CPU {format_cpulist(target.facts.vcpu_cpus(v) or ())}"
                if target.facts.vcpu_cpus(v)
                else f"{v}, unpinned"
                for v in target.measured
            ]
            where = f"vCPU {'; '.join(pins)}, {kind}"
            if not target.managed:
                notes.append(NO_METADATA)
            elif not self.hook_installed:
                notes.append(NO_HOOK)
        else:
            where = f"vCPU {format_cpulist(target.measured)}, unpinned, {kind}"
        isolated = output.facts.get("isolated", "")
        if label == LABEL_TUNED and target.guest_isolation and not isolated:
            notes.append("the guest kernel isolated no vCPU (isolcpus had no effect)")
        return results.RunResult(
            label=label,
            where=where,
            threads=tuple(threads),
            kernel=output.facts.get("kernel", str(header["sysinfo"].get("release", ""))),
            cyclictest=header["version"],
            cmdline=header["cmdline"],
            duration_s=options.duration_s,
            notes=tuple(notes),
            noise=noise,
        )

    # ---- the host ---------------------------------------------------------------------

    def _baseline(self) -> results.RunResult:
        from rtlibvirt.virt import transient

        target, options = self.target, self.options
        if target.host_cpus is None or target.host_main is None:
            raise ProbeError(
                f"--baseline: the realtime vCPUs of {target.source} are not each pinned to one "
                "host CPU (or no other host CPU is pinned for cyclictest's main thread), so there "
                "are no host CPUs to measure the same way",
                "pin every realtime vCPU to one host CPU (cpu.pinning), or leave out --baseline",
            )
        name = probe_names(target.name)[LABEL_BASELINE]
        measurement = self.measurement(target.host_cpus, target.host_main)
        folder = self.workdir / "baseline"
        folder.mkdir(mode=0o755)
        # the domain never runs: it exists (paused) so that the hook isolates the host for it
        files = probedomain.Files(
            self.image.kernel,
            self.image.initrd,
            guest.kernel_cmdline(measurement, []),
            folder / "console.log",
            folder / "results.txt",
        )
        xml = probedomain.probe_xml(target.xml, name, files, options.virt_type)
        self.say(
            f"{LABEL_BASELINE}: cyclictest on host CPU {format_cpulist(target.host_cpus)} for "
            f"{options.duration_s} s, with {name} paused (the hook's isolation held)"
        )
        json_path = folder / "cyclictest.json"
        argv = [*self.image.host_cyclictest(), *measurement.argv(), f"--json={json_path}"]
        tracer = self.tracer()
        domain = transient.create(self.conn, xml, paused=True)
        load = None
        try:
            if options.load:
                load = self._start_load()
            done = _run_host(argv, options.duration_s + 60, folder, tracer, target.host_cpus)
            noise = tracer.end()
        finally:
            tracer.close()
            _stop(load)
            transient.destroy(domain)
        if done.returncode != 0:
            raise ProbeError(
                f"{LABEL_BASELINE}: cyclictest failed on the host (exit status {done.returncode}): "
                f"{done.stderr.strip()[-300:] or 'no message'}",
                "it needs root (SCHED_FIFO, mlockall)" if os.geteuid() != 0 else None,
            )
        try:
            header, threads = results.parse_json(_read_bounded(json_path), measurement.histogram_us)
        except OSError as exc:
            raise ProbeError(f"{LABEL_BASELINE}: cyclictest wrote no results: {exc}") from None
        notes = results.check_against_text(threads, results.parse_histogram(done.stdout))
        if not target.managed:
            notes.append(NO_METADATA)
        elif not self.hook_installed:
            notes.append(NO_HOOK)
        release = str(header["sysinfo"].get("release", ""))
        realtime = header["sysinfo"].get("realtime")
        return results.RunResult(
            label=LABEL_BASELINE,
            where=f"host CPU {format_cpulist(target.host_cpus)}",
            threads=tuple(threads),
            kernel=f"{release} {realtime}" if realtime is not None else release,
            cyclictest=header["version"],
            cmdline=header["cmdline"],
            duration_s=options.duration_s,
            notes=tuple(notes),
            noise=noise,
        )

    # ---- load ---------------------------------------------------------------------------

    def load_cpus(self) -> list[int]:
        """The host's housekeeping CPUs: every online CPU the probe does not measure on."""
        online = set(os.sched_getaffinity(0))
        measured = set(self.target.host_cpus or self.target.facts.realtime_cpu_set)
        return sorted(online - measured) or sorted(online)

    def _start_load(self) -> subprocess.Popen[bytes]:
        argv = load_argv(self.load_cpus(), self.options.duration_s)
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ProbeError(
                "--load needs stress-ng on the host", "install it: apt-get install stress-ng"
            ) from None


def load_argv(cpus: list[int], duration_s: int) -> list[str]:
    """stress-ng on ``cpus``: CPU and memory stressors, bounded in time and memory."""
    return [
        "stress-ng",
        "--taskset",
        format_cpulist(cpus),
        "--cpu",
        str(len(cpus)),
        "--vm",
        "1",
        "--vm-bytes",
        "128M",
        "--timeout",
        f"{duration_s + 30}s",
        "--quiet",
    ]


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # stress-ng and its workers
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _run_host(
    argv: list[str],
    timeout: int,
    folder: Path,
    tracer: hostnoise.Tracer,
    cpus: tuple[int, ...],
) -> subprocess.CompletedProcess[str]:
    """cyclictest on the host; its threads own ``cpus`` in the trace, which begins with them.

    Its output goes to files in ``folder`` (its ``-h`` histogram is megabytes:
    a pipe read only at the end would stall it).
    """
    out_path, err_path = folder / "histogram.txt", folder / "stderr.txt"
    try:
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    except OSError as exc:
        raise ProbeError(f"cannot run cyclictest on the host: {exc}") from None
    started = time.monotonic()
    try:
        while process.poll() is None:
            if time.monotonic() - started > timeout:
                raise ProbeError(f"cyclictest on the host did not end within {timeout} s")
            if not tracer.tracing:
                threads = _threads(process.pid)
                # its main thread and one per CPU: the measurement has begun
                if len(threads) > len(cpus) or time.monotonic() - started > THREADS_WAIT_S:
                    tracer.begin({cpu: threads for cpu in cpus})
            tracer.poll()
            time.sleep(tracefs.READ_EVERY_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    try:
        stdout, stderr = _read_bounded(out_path), _read_bounded(err_path)
    except (OSError, results.ResultError) as exc:
        raise ProbeError(f"cannot read cyclictest's output on the host: {exc}") from None
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def _threads(pid: int) -> frozenset[int]:
    try:
        return frozenset(int(t) for t in os.listdir(f"/proc/{pid}/task") if t.isdigit())
    except OSError:
        return frozenset()


@dataclass
class BootWatch:
    """Is the console of a booting guest silent for longer than ``silence_s``?

    Fed the console's size on every poll; the silence runs from the start or from
    the last time the console grew, so a guest that prints and then hangs is
    caught too.
    """

    silence_s: float
    since: float  # when the console last grew (the start, at first)
    size: int = 0

    def silent(self, now: float, size: int) -> bool:
        if size != self.size:
            self.size, self.since = size, now
        return now - self.since > self.silence_s


def _boot_hint(virt_type: str) -> str:
    if virt_type == "kvm":
        return "a KVM guest that never boots here may need --virt-type qemu"
    return "see the console above; --kernel FILE boots another kernel"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _began(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return guest.BEGIN.encode() in handle.read(4096)
    except OSError:
        return False


def _read_bounded(path: Path) -> str:
    with path.open("rb") as handle:
        data = handle.read(results.MAX_OUTPUT + 1)
    if len(data) > results.MAX_OUTPUT:
        raise results.ResultError(f"{path.name} is larger than {results.MAX_OUTPUT} bytes")
    return data.decode("utf-8", "replace")


def _console_tail(path: Path, lines: int = 8) -> str:
    try:
        text = _read_bounded(path).replace("\r", "")
    except (OSError, results.ResultError):
        return ""
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    if not tail:
        return "; the guest printed nothing on its console"
    return "; the guest's console ended with:\n    " + "\n    ".join(tail)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end the probe as Ctrl-C does: the domains are destroyed on the way."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def target_from_domain(conn: Any, name: str) -> Target:
    """The VM of a defined (or running transient) domain."""
    from rtlibvirt.virt import transient

    xml = transient.definition(conn, name)
    if xml is None:
        raise InputError(
            f"{name!r} is neither a vm.yaml file nor a domain on {transient.uri(conn)}",
            "give the path of a vm.yaml, or the name of a defined domain (virsh list --all)",
        )
    return plan_target(xml, f"domain {name!r}")


def ensure_local(conn: Any) -> None:
    from rtlibvirt.virt import transient

    if not transient.is_local(conn):
        raise LibvirtError(
            "the probe reads its results from files on the host that runs the VM: "
            "it needs a local connection",
            "run rtlibvirt probe on the host itself, with -c qemu:///system",
        )


def parse_duration(text: str) -> int:
    """``60s``, ``5m``, ``1h`` or plain seconds -> seconds (1 s to 24 h)."""
    value = text.strip().lower()
    factor = 1
    for suffix, scale in (("s", 1), ("m", 60), ("h", 3600)):
        if value.endswith(suffix):
            value, factor = value[: -len(suffix)].strip(), scale
            break
    if not value.isdigit() or len(value) > 6:
        raise InputError(
            f"--duration {text!r} is not a duration", "write e.g. 60s, 5m or 1h (whole numbers)"
        )
    seconds = int(value) * factor
    if not 1 <= seconds <= MAX_DURATION_S:
        raise InputError(f"--duration {text}: must be between 1 s and 24 h")
    return seconds

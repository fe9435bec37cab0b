"""check, tune, status and `pinning: auto` against the real libvirtd at qemu:///system.

This machine has 2 CPUs, no isolated CPU, no hugepages and is shared with other
test runs: VMs here have 1 vCPU and are named rtl-fit-*; results that depend on
what other runs pin at the same moment are read back, not assumed. A brief
libvirtd restart (another run loading a hook) is retried.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from rtlibvirt.cli import cli
from rtlibvirt.domain import metadata
from rtlibvirt.kernel.cpuset import parse_cpulist
from tests.domain.domains import retune_cases
from tests.fakes.libvirt_hosts import DOMAINS

pytestmark = pytest.mark.libvirtd


def run(*args: str) -> tuple[int, str, str]:
    """The CLI, retried for a few seconds while libvirtd is restarting."""
    for _ in range(50):
        result = CliRunner().invoke(cli, list(args))
        if "cannot connect to" not in result.stderr:
            break
        time.sleep(0.2)
    return result.exit_code, result.stdout, result.stderr


def virsh(*args: str) -> str:
    for _ in range(50):
        proc = subprocess.run(
            ["virsh", "-q", "-c", "qemu:///system", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0 or "failed to connect" not in proc.stderr.lower():
            break
        time.sleep(0.2)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def fifo_blocked() -> bool:
    """This host's own state: does RT group scheduling stop libvirt's FIFO vCPUs?

    Other test runs on this machine change qemu.conf (and restart libvirtd)
    while we run, so callers compare this before and after a command.
    """
    if not Path("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists():
        return False
    if Path("/proc/sys/kernel/sched_rt_runtime_us").read_text().strip() == "-1":
        return False
    conf = Path("/etc/libvirt/qemu.conf")
    text = conf.read_text() if conf.exists() else ""
    for line in text.splitlines():
        if line.strip().startswith("cgroup_controllers"):
            return '"cpu"' in line  # the setting is on one line in these tests' hosts
    return True  # libvirt's default uses every controller, cpu among them


def expect_rt_condition(
    command: Callable[[], tuple[int, str, str]], blocked_code: int = 1
) -> tuple[int, str, str] | None:
    """Run ``command``; check its outcome against the RT condition, None if it changed."""
    before = fifo_blocked()
    code, out, err = command()
    if fifo_blocked() != before:
        return None  # another run changed the host meanwhile
    if before:
        assert code == blocked_code, err
        assert "[rt-group-sched]" in err and "kernel.sched_rt_runtime_us=-1" in err
    else:
        assert "[rt-group-sched]" not in err
    return code, out, err


def pinned_by_others(name: str) -> set[int]:
    cpus: set[int] = set()
    for other in virsh("list", "--all", "--name").split():
        if other == name:
            continue
        try:
            root = etree.fromstring(virsh("dumpxml", "--inactive", other).encode())
        except AssertionError:
            continue  # it went away meanwhile
        for pin in root.findall("cputune/vcpupin"):
            cpus |= set(parse_cpulist(pin.get("cpuset", "")))
    return cpus


def test_status_shows_this_host(system_uri: str) -> None:
    code, out, err = run("status", "-c", system_uri)
    assert code == 0, err
    online = Path("/sys/devices/system/cpu/online").read_text().strip()
    assert f"NUMA node 0: CPUs {online}" in out
    isolated = Path("/sys/devices/system/cpu/isolated").read_text().strip() or "none"
    assert f"isolated: {isolated};" in out
    code, out, _ = run("status", "-c", system_uri, "--json")
    data = json.loads(out)
    assert [c["id"] for c in data["cpus"]] == parse_cpulist(online)


def test_define_auto_check_and_realtime_condition(
    system_uri: str, write_spec: Callable[..., Path], system_domain_cleanup: Callable[[str], None]
) -> None:
    name = "rtl-fit-auto"
    system_domain_cleanup(name)
    spec = write_spec(
        f"""\
        name: {name}
        memory: 256MiB
        vcpus: 1
        cpu:
          pinning: auto
          emulator: auto
          realtime: false
        memory_backing:
          hugepages: none
        """
    )
    code, out, err = run("define", str(spec), "-c", system_uri)
    if code != 0:
        # Only when other runs pin every CPU but the host's first core right now.
        assert err.startswith(f"error: cannot place '{name}'"), err
        assert pinned_by_others(name) >= {1}
        return
    assert "auto placement: vCPUs 0->1 on NUMA node 0" in err
    root = etree.fromstring(virsh("dumpxml", "--inactive", name).encode())
    assert root.find("cputune/vcpupin").get("cpuset") == "1"
    assert root.find("cputune/emulatorpin").get("cpuset") == "0"
    stored = metadata.read(etree.tostring(root, encoding="unicode"))
    assert stored is not None and stored["cpu"]["pinning"] == [1]

    # check: no isolated CPUs and no hugepages here, so there are findings (exit 3).
    code, out, _ = run("check", name, "-c", system_uri, "--json")
    assert code == 3
    found = {f["code"] for f in json.loads(out)["findings"]}
    assert "no-hugepages" in found and "no-realtime-sched" in found
    assert "vcpu-not-pinned" not in found and "memballoon" not in found

    # The same VM with a realtime vCPU: refused here exactly when this kernel's RT
    # group scheduling would make libvirt's SCHED_FIFO fail.
    spec.write_text(spec.read_text().replace("realtime: false", "realtime: {vcpus: 0}"))
    outcome = expect_rt_condition(lambda: run("define", str(spec), "-c", system_uri))
    if outcome is not None:
        defined = virsh("dumpxml", "--inactive", name).count("vcpusched")
        assert defined == (0 if outcome[0] == 1 else 1)  # refused: unchanged


def test_tune_a_virt_manager_domain(
    system_uri: str, tmp_path: Path, system_domain_cleanup: Callable[[str], None]
) -> None:
    name = "rtl-fit-desktop"
    system_domain_cleanup(name)
    xml = (DOMAINS / "virt-manager-desktop.libvirt.xml").read_text()
    xml = xml.replace("<name>desktop</name>", f"<name>{name}</name>")
    xml = xml.replace(">4</vcpu>", ">1</vcpu>").replace(">4194304<", ">524288<")
    root = etree.fromstring(xml.encode())
    root.remove(root.find("uuid"))  # a fresh UUID: other runs may hold this one
    source = tmp_path / "desktop.xml"
    source.write_bytes(etree.tostring(root))
    virsh("define", str(source))
    before = etree.fromstring(virsh("dumpxml", "--inactive", name).encode())

    code, out, _ = run("check", name, "-c", system_uri)
    assert code == 3
    assert "error: [vcpu-not-pinned]" in out and "warning: [usb-device]" in out

    tuning = tmp_path / "tuning.yaml"
    tuning.write_text(
        "cpu:\n  pinning: auto\n  emulator: auto\n  realtime: {vcpus: 0}\n"
        "memory_backing:\n  hugepages: none\n"
    )
    expect_rt_condition(lambda: run("tune", name, str(tuning), "-c", system_uri, "--dry-run"))
    code, out, err = run("tune", name, str(tuning), "-c", system_uri, "--no-host-check")
    if code != 0:
        assert err.startswith(f"error: cannot place '{name}'"), err
        return
    assert f"Tuned domain '{name}'" in out
    after = etree.fromstring(virsh("dumpxml", "--inactive", name).encode())
    assert after.findtext("uuid") == before.findtext("uuid")
    assert after.find("cputune/vcpusched").get("scheduler") == "fifo"
    assert after.find("devices/memballoon").get("model") == "none"
    assert after.find("devices/input[@bus='usb']") is None
    assert after.find("devices/graphics").get("type") == "spice"  # kept
    assert len(after.findall("devices/disk")) == len(before.findall("devices/disk"))

    # virt-manager's library edits the domain; rtlibvirt's metadata survives.
    if shutil.which("virt-xml"):
        proc = subprocess.run(
            ["virt-xml", "-c", system_uri, name, "--edit", "--video", "model.type=vga"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        edited = virsh("dumpxml", "--inactive", name)
        assert "model type='vga'" in edited
        assert metadata.read(edited) is not None


RETUNE = {
    "auto": "cpu:\n  pinning: [1]\n  emulator: 0\n  realtime: {{vcpus: 0}}\n"
    "memory_backing:\n  hugepages: 2M\nisolation:\n  irqs: true\n",
    "model": "cpu:\n  pinning: [1]\n  emulator: 0\n  realtime: {{vcpus: 0}}\n"
    "  model: Skylake-Client\n  topology: {{sockets: 1, cores: 1, threads: 1}}\n"
    "  features: {{tsc-deadline: require, pcid: disable}}\nnuma:\n  node: 0\n"
    "memory_backing:\n  hugepages: none\n  locked: false\n",
}


@pytest.mark.parametrize("tuning", sorted(RETUNE))
@pytest.mark.parametrize("case", sorted(retune_cases()))
def test_a_domain_tuned_on_libvirtd_tunes_to_itself(
    system_uri: str,
    tmp_path: Path,
    system_domain_cleanup: Callable[[str], None],
    case: str,
    tuning: str,
) -> None:
    """define, tune, let libvirtd store it, then `tune --dry-run`: nothing would change."""
    name = f"rtl-fit-retune-{case}"[:60]
    system_domain_cleanup(name)
    _, xml = retune_cases()[case]
    root = etree.fromstring(xml.encode())
    root.find("name").text = name
    for uuid in root.findall("uuid"):
        root.remove(uuid)  # a fresh UUID: other runs may hold this one
    root.find("vcpu").text = "1"  # this machine has 2 CPUs
    source = tmp_path / "domain.xml"
    source.write_bytes(etree.tostring(root))
    virsh("define", str(source))
    path = tmp_path / "tuning.yaml"
    path.write_text(RETUNE[tuning].format())
    flags = ("-c", system_uri, "--no-host-check")

    code, out, err = run("tune", name, str(path), *flags)
    assert code == 0, err
    before = etree.fromstring(source.read_bytes())
    after = etree.fromstring(virsh("dumpxml", "--inactive", name).encode())
    for kept in ("shares", "period", "quota", "emulatorsched"):
        assert len(after.findall(f"cputune/{kept}")) == len(before.findall(f"cputune/{kept}"))
    code, out, err = run("tune", name, str(path), *flags, "--dry-run")
    assert code == 0, err
    assert f"Domain {name!r} on {system_uri} is already tuned; nothing would change." in out, out


@pytest.fixture
def throwaway_network(system_uri: str, tmp_path: Path) -> Iterator[str]:
    """A libvirt network of our own on qemu:///system, defined but not started; removed
    afterwards (its bridge with it)."""
    name = "rtl-fit-net"

    def remove() -> None:
        for action in ("net-destroy", "net-undefine"):
            subprocess.run(
                ["virsh", "-q", "-c", system_uri, action, name], capture_output=True, check=False
            )

    remove()  # left by a run that was killed
    source = tmp_path / "network.xml"
    source.write_text(f"<network><name>{name}</name><bridge name='rtlfitbr0'/></network>")
    virsh("net-define", str(source))
    try:
        yield name
    finally:
        remove()


def test_a_nic_on_an_inactive_network(
    system_uri: str,
    write_spec: Callable[..., Path],
    system_domain_cleanup: Callable[[str], None],
    throwaway_network: str,
) -> None:
    """libvirtd refuses to start a domain whose network is not active: define refuses
    first, and check says so; once the network runs, only its autostart is reported."""
    name = "rtl-fit-net"
    system_domain_cleanup(name)
    spec = write_spec(
        f"""\
        name: {name}
        memory: 256MiB
        vcpus: 1
        cpu:
          pinning: auto
          emulator: auto
          realtime: false
        memory_backing:
          hugepages: none
          locked: false
        devices:
          networks:
            - network: {throwaway_network}
        """
    )
    code, out, err = run("define", str(spec), "-c", system_uri)
    assert code == 1 and "[network-inactive]" in err, err
    assert f"virsh net-start {throwaway_network}" in err
    assert name not in virsh("list", "--all", "--name").split()
    code, out, _ = run("check", str(spec), "-c", system_uri, "--json")
    assert code == 3
    found = {f["code"]: f["severity"] for f in json.loads(out)["findings"]}
    assert found["network-inactive"] == "error"

    # What the check foresees: defined anyway, libvirtd refuses to start it.
    code, out, err = run("define", str(spec), "-c", system_uri, "--no-host-check")
    if code != 0:  # only when other runs pin every CPU but the host's first core right now
        assert err.startswith(f"error: cannot place '{name}'"), err
        return
    start = subprocess.run(
        ["virsh", "-c", system_uri, "start", name], capture_output=True, text=True, check=False
    )
    assert start.returncode != 0 and "is not active" in start.stderr, start.stderr

    virsh("net-start", throwaway_network)
    code, out, _ = run("check", name, "-c", system_uri, "--json")
    found = {f["code"]: f["severity"] for f in json.loads(out)["findings"]}
    assert "network-inactive" not in found
    assert found["network-no-autostart"] == "warning"
    code, out, err = run("define", str(spec), "-c", system_uri)
    assert "[network-" not in err.replace("[network-no-autostart]", ""), err
    virsh("net-autostart", throwaway_network)
    code, out, _ = run("check", name, "-c", system_uri, "--json")
    assert not [f for f in json.loads(out)["findings"] if f["code"].startswith("network")]

"""One case per host finding and per domain finding, each both ways (present, absent).

Hosts are libvirt's test driver loaded with tests/data/hosts/*.xml (or a file
made on the fly); what this machine lacks (isolated CPUs, hugepages, PCI
devices, IOMMU groups, RT group scheduling) comes from a fake tree in the
kernel's formats (tests/fakes/sysfs.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from rtlibvirt.config.vm import VmSpec, validate_data
from rtlibvirt.domain.facts import facts
from rtlibvirt.domain.render import render
from rtlibvirt.fit import checks
from rtlibvirt.fit.host import HostModel, gather
from tests.fakes.libvirt_hosts import (
    DOMAINS,
    connection,
    host,
    host_file,
    host_uri,
    pinned_domain,
)
from tests.fakes.sysfs import FakeSys


def make_spec(**changes: Any) -> VmSpec:
    data: dict[str, Any] = {
        "name": "rt",
        "memory": "2GiB",
        "vcpus": 2,
        "cpu": {"pinning": [4, 5], "emulator": [1], "realtime": {"vcpus": [1]}},
    }
    for key, value in changes.items():
        if key in ("pinning", "emulator", "realtime"):
            data["cpu"][key] = value
        else:
            data[key] = value
    return validate_data(data)


def codes(h: HostModel, spec: VmSpec, *, allow_shared: bool = False) -> dict[str, str]:
    """code -> severity of the host findings of ``spec`` on ``h``."""
    result = checks.host_findings(h, facts(render(spec)), allow_shared=allow_shared)
    return {f.code: f.severity for f in result.findings}


def finding(h: HostModel, spec: VmSpec, code: str) -> str:
    result = checks.host_findings(h, facts(render(spec)))
    (match,) = [f for f in result.findings if f.code == code]
    return match.what


def fix_of(h: HostModel, spec: VmSpec, code: str) -> str:
    (match,) = [f for f in checks.host_findings(h, facts(render(spec))).findings if f.code == code]
    return match.fix or ""


@pytest.fixture
def fake(tmp_path: Path) -> FakeSys:
    return FakeSys(tmp_path / "root").cpus("0-15", isolated="")


# ---- CPUs the host does not have, or that are offline ---------------------------------


def test_cpu_missing() -> None:
    h = host(host_uri("single-node"))
    assert codes(h, make_spec(pinning=[4, 9]))["cpu-missing"] == "error"
    assert "9 (vCPU 1)" in finding(h, make_spec(pinning=[4, 9]), "cpu-missing")
    assert codes(h, make_spec(emulator=[12]))["cpu-missing"] == "error"
    assert "cpu-missing" not in codes(h, make_spec())


def test_cpu_offline(tmp_path: Path) -> None:
    h = host(host_file(tmp_path, cores=8, active=6))  # CPUs 6 and 7 offline
    assert codes(h, make_spec(pinning=[4, 7]))["cpu-offline"] == "error"
    assert "cpu-offline" not in codes(h, make_spec(pinning=[4, 5]))


# ---- isolation --------------------------------------------------------------------------


def test_cpu_not_isolated(fake: FakeSys) -> None:
    fake.cpus("0-7", isolated="4-7", nohz_full="4-7")
    h = host(host_uri("single-node"), fake.fs)
    assert "cpu-not-isolated" not in codes(h, make_spec(pinning=[1, 5]))
    spec = make_spec(pinning=[5, 1], emulator=[0])  # realtime vCPU 1 on CPU 1
    assert codes(h, spec)["cpu-not-isolated"] == "warning"
    assert "CPU 1" in finding(h, spec, "cpu-not-isolated")


def test_cpu_not_nohz_full(fake: FakeSys) -> None:
    fake.cpus("0-7", isolated="4-7")
    h = host(host_uri("single-node"), fake.fs)
    assert codes(h, make_spec())["cpu-not-nohz-full"] == "info"
    fake.cpus("0-7", isolated="4-7", nohz_full="4-7")
    assert "cpu-not-nohz-full" not in codes(host(host_uri("single-node"), fake.fs), make_spec())


def test_isolation_unknown_without_host_files() -> None:
    result = checks.host_findings(host(host_uri("single-node")), facts(render(make_spec())))
    assert not [f for f in result.findings if f.code == "cpu-not-isolated"]
    assert any("cannot be read" in note for note in result.skipped)


# ---- other domains' CPUs --------------------------------------------------------------


def test_cpu_shared_with_another_domain() -> None:
    h = host(host_uri("single-node"))  # "db": vCPUs on 2-3, emulator on 0
    spec = make_spec(pinning=[2, 5])
    assert codes(h, spec)["cpu-shared"] == "error"
    assert "'db' (vCPU 0)" in finding(h, spec, "cpu-shared")
    assert codes(h, spec, allow_shared=True)["cpu-shared"] == "warning"
    # Our emulator on db's vCPU CPU is shared; on db's emulator CPU it is not.
    assert codes(h, make_spec(emulator=[3]))["cpu-shared"] == "error"
    assert "cpu-shared" not in codes(h, make_spec(emulator=[0]))
    assert "cpu-shared" not in codes(h, make_spec())


def test_a_domain_does_not_clash_with_its_own_definition() -> None:
    h = host(host_uri("single-node"))
    db = h.domain("db")
    assert db is not None
    assert not [f for f in checks.host_findings(h, db).findings if f.code == "cpu-shared"]


# ---- SMT siblings -------------------------------------------------------------------------


def test_smt_sibling_used_by_the_emulator() -> None:
    h = host(host_uri("two-node-smt"))  # node 0 cores {0,8} {1,9} {2,10} {3,11}
    spec = make_spec(pinning=[2, 1], emulator=[9])
    assert codes(h, spec)["smt-sibling-busy"] == "warning"
    assert "CPU 9, sibling of CPU 1" in finding(h, spec, "smt-sibling-busy")
    assert "smt-sibling-busy" not in codes(h, make_spec(pinning=[2, 1], emulator=[0]))


def test_smt_sibling_used_by_another_domain() -> None:
    h = host(host_uri("two-node-smt"))  # "web" pins CPU 5 (core {5,13}) and 4
    spec = make_spec(pinning=[6, 13], emulator=[7])
    assert "domain 'web'" in finding(h, spec, "smt-sibling-busy")
    assert "smt-sibling-busy" not in codes(h, make_spec(pinning=[6, 15], emulator=[0]))
    # The sibling carries this VM's own other vCPU: not a whole core either.
    assert "this domain's vCPU 0" in finding(h, make_spec(pinning=[6, 14]), "smt-sibling-busy")


def test_smt_sibling_used_by_host_housekeeping(fake: FakeSys) -> None:
    fake.cpus("0-15", isolated="1-3")  # CPU 9, sibling of 1, is not isolated
    h = host(host_uri("two-node-smt"), fake.fs)
    spec = make_spec(pinning=[2, 1], emulator=[0])
    assert "housekeeping" in finding(h, spec, "smt-sibling-busy")
    fake.cpus("0-15", isolated="1-3,9-11")
    assert "smt-sibling-busy" not in codes(host(host_uri("two-node-smt"), fake.fs), spec)


# ---- NUMA ----------------------------------------------------------------------------------


def test_numa_node_missing() -> None:
    h = host(host_uri("two-node-smt"))
    assert (
        codes(h, make_spec(pinning=[2, 1], emulator=[0], numa={"node": 3}))["numa-node-missing"]
        == "error"
    )
    assert "numa-node-missing" not in codes(
        h, make_spec(pinning=[2, 1], emulator=[0], numa={"node": 0})
    )


def test_numa_split_vcpus_memory_and_devices(fake: FakeSys) -> None:
    fake.pci("0000:03:00.0", driver="vfio-pci", group=14, numa_node=1)
    h = host(host_uri("two-node-smt"), fake.fs)
    # vCPUs on node 0 and node 1.
    assert codes(h, make_spec(pinning=[2, 6], emulator=[0]))["numa-split"] == "warning"
    # Memory on node 1, vCPUs on node 0.
    text = finding(h, make_spec(pinning=[2, 1], emulator=[0], numa={"node": 1}), "numa-split")
    assert "memory is on node 1 but vCPUs run on node 0" in text
    # A device on node 1, vCPUs on node 0.
    spec = make_spec(pinning=[2, 1], emulator=[0], devices={"hostdevs": ["03:00.0"]})
    assert "PCI device 0000:03:00.0 is on node 1" in finding(h, spec, "numa-split")
    # All on node 1.
    local = make_spec(
        pinning=[6, 7], emulator=[12], numa={"node": 1}, devices={"hostdevs": ["03:00.0"]}
    )
    assert "numa-split" not in codes(h, local)


# ---- hugepages ---------------------------------------------------------------------------


def test_hugepages_short(fake: FakeSys) -> None:
    fake.hugepages(0, 1048576, free=1, total=1)
    h = host(host_uri("single-node"), fake.fs)
    spec = make_spec()  # 2 GiB of 1G pages
    assert codes(h, spec)["hugepages-short"] == "warning"
    assert "needs 2 free 1G hugepages on node 0" in finding(h, spec, "hugepages-short")
    fake.hugepages(0, 1048576, free=2, total=2)
    assert "hugepages-short" not in codes(host(host_uri("single-node"), fake.fs), spec)


def test_hugepages_of_a_size_the_host_does_not_offer(fake: FakeSys) -> None:
    h = host(host_uri("single-node"), fake.fs)
    text = finding(h, make_spec(), "hugepages-short")
    assert "not available on this host" in text


# ---- PCI devices -----------------------------------------------------------------------------


def hostdev_spec(*addresses: Any) -> VmSpec:
    return make_spec(devices={"hostdevs": list(addresses)})


def test_hostdev_missing(fake: FakeSys) -> None:
    h = host(host_uri("single-node"), fake.fs)
    assert codes(h, hostdev_spec("03:00.0"))["hostdev-missing"] == "error"
    fake.pci("0000:03:00.0", driver="e1000e", group=14)
    assert "hostdev-missing" not in codes(
        host(host_uri("single-node"), fake.fs), hostdev_spec("03:00.0")
    )


def test_iommu_off(fake: FakeSys) -> None:
    fake.pci("0000:03:00.0", driver="e1000e")  # no iommu_group link: IOMMU off
    h = host(host_uri("single-node"), fake.fs)
    assert codes(h, hostdev_spec("03:00.0"))["iommu-off"] == "error"
    fake.pci("0000:03:00.0", driver="e1000e", group=14)
    assert "iommu-off" not in codes(host(host_uri("single-node"), fake.fs), hostdev_spec("03:00.0"))


def test_iommu_group_shared(fake: FakeSys) -> None:
    fake.pci("0000:03:00.0", driver="e1000e", group=14)
    fake.pci("0000:03:00.1", driver="e1000e", group=14)
    fake.pci("0000:00:1c.0", driver="pcieport", group=14, pci_class="0x060400")
    h = host(host_uri("single-node"), fake.fs)
    text = finding(h, hostdev_spec("03:00.0"), "iommu-group-shared")
    assert "0000:03:00.1 (driver e1000e)" in text
    assert "00:1c.0" not in text  # the bridge does not count
    assert "iommu-group-shared" not in codes(h, hostdev_spec("03:00.0", "03:00.1"))


def test_hostdev_not_bound_to_vfio_when_unmanaged(fake: FakeSys) -> None:
    fake.pci("0000:03:00.0", driver="e1000e", group=14)
    h = host(host_uri("single-node"), fake.fs)
    unmanaged = hostdev_spec({"address": "03:00.0", "managed": False})
    assert codes(h, unmanaged)["hostdev-not-vfio"] == "error"
    assert "hostdev-not-vfio" not in codes(h, hostdev_spec("03:00.0"))  # managed
    fake.pci("0000:03:00.0", driver="vfio-pci", group=14)
    assert "hostdev-not-vfio" not in codes(host(host_uri("single-node"), fake.fs), unmanaged)


# ---- RT group scheduling -------------------------------------------------------------------


def test_rt_group_sched_blocks_fifo(fake: FakeSys) -> None:
    fake.cgroup_v1(machine_runtime_us=0)
    h = host(host_uri("single-node"), fake.fs)
    assert codes(h, make_spec())["rt-group-sched"] == "error"
    text = finding(h, make_spec(), "rt-group-sched")
    assert "/sys/fs/cgroup/cpu/machine" in text and "cpu.rt_runtime_us 0" in text


@pytest.mark.parametrize(
    "setup",
    [
        {"sched_rt_runtime_us": -1},
        {"rt_group_sched": False},
        {"qemu_conf": 'cgroup_controllers = [ "devices", "memory",\n  "cpuset" ]\n'},
    ],
    ids=["rt-throttling-off", "no-rt-group-sched", "libvirt-without-cpu-controller"],
)
def test_rt_group_sched_harmless(fake: FakeSys, setup: dict[str, Any]) -> None:
    fake.cgroup_v1(**setup)
    assert "rt-group-sched" not in codes(host(host_uri("single-node"), fake.fs), make_spec())


def test_rt_group_sched_concerns_only_realtime_vms(fake: FakeSys) -> None:
    fake.cgroup_v1()
    h = host(host_uri("single-node"), fake.fs)
    assert "rt-group-sched" not in codes(h, make_spec(realtime=False))


def test_commented_cgroup_controllers_keep_libvirts_default(fake: FakeSys) -> None:
    fake.cgroup_v1(qemu_conf='#cgroup_controllers = [ "devices" ]\n')
    assert "rt-group-sched" in codes(host(host_uri("single-node"), fake.fs), make_spec())


# ---- what the domain itself lacks --------------------------------------------------------------


def domain_codes(xml: str) -> dict[str, str]:
    return {f.code: f.severity for f in checks.domain_findings(facts(xml)).findings}


def test_virt_install_domain_lacks_everything() -> None:
    found = domain_codes((DOMAINS / "virt-install-desktop.xml").read_text())
    assert found == {
        "vcpu-not-pinned": "error",
        "emulator-not-pinned": "warning",
        "no-realtime-sched": "warning",
        "memballoon": "warning",
        "usb-controller": "warning",
        "usb-device": "warning",
        "no-hugepages": "warning",
        "not-locked": "warning",
        "pmu-on": "info",
        "emulated-devices": "warning",
    }


def test_emulated_display_and_sound_are_named_with_their_fix() -> None:
    """virt-manager's desktop VM: SPICE, virtio video, ich9 sound, SPICE audio."""
    dom = facts((DOMAINS / "virt-manager-desktop.libvirt.xml").read_text())
    (found,) = [f for f in checks.domain_findings(dom).findings if f.code == "emulated-devices"]
    for what in ("SPICE graphics", "video", "ich9 sound"):
        assert what in found.what, found.what
    assert found.fix is not None and "--remove-device" in found.fix
    server = facts((DOMAINS / "virt-install-server.xml").read_text())  # --graphics none
    assert "emulated-devices" not in {f.code for f in checks.domain_findings(server).findings}


def test_rtlibvirt_domain_lacks_nothing() -> None:
    assert domain_codes(render(make_spec())) == {}


def test_vcpu_pin_range_and_shared_cpu() -> None:
    xml = pinned_domain("x", [3, 3], emulator="0", fifo="1")
    assert domain_codes(xml)["vcpu-cpu-shared"] == "error"
    wide = render(make_spec()).replace('<vcpupin vcpu="1" cpuset="5"/>', "")
    wide = wide.replace('cpuset="4"/>', 'cpuset="4-5"/>', 1)
    found = domain_codes(wide)
    assert found["vcpu-pin-range"] == "warning" and found["vcpu-not-pinned"] == "error"


def test_emulator_on_a_realtime_cpu() -> None:
    assert (
        domain_codes(pinned_domain("x", [1, 2], emulator="2", fifo="1"))["emulator-on-rt-cpu"]
        == "error"
    )
    assert "emulator-on-rt-cpu" not in domain_codes(pinned_domain("x", [1, 2], "0", fifo="1"))


def test_cpu_quota_and_cpu_model() -> None:
    xml = render(make_spec(cpu={"pinning": [4, 5], "emulator": [1], "model": "Skylake-Server"}))
    assert domain_codes(xml)["cpu-model"] == "info"
    throttled = render(make_spec()).replace(
        "<cputune>", "<cputune><period>100000</period><quota>50000</quota>"
    )
    assert domain_codes(throttled)["cpu-quota"] == "warning"


def test_an_unreadable_qemu_conf_is_unknown_not_empty(
    fake: FakeSys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not root: qemu.conf (mode 0600) cannot be read; that is no verdict either way."""
    from rtlibvirt.kernel import rtgroup
    from rtlibvirt.kernel.fs import HostFS

    fake.cgroup_v1(machine_runtime_us=0)  # would block FIFO if libvirt used "cpu"
    real_read = HostFS.read

    def read(self: HostFS, path: str) -> str:
        if path == rtgroup.QEMU_CONF:
            raise PermissionError(13, "Permission denied", path)
        return real_read(self, path)

    monkeypatch.setattr(HostFS, "read", read)
    assert rtgroup.diagnose(fake.fs) is None  # `hook status` warns of nothing it cannot know
    state = rtgroup.probe(fake.fs)
    assert state is not None and state.libvirt_uses_cpu is None
    h = host(host_uri("single-node"), fake.fs)
    result = checks.host_findings(h, facts(render(make_spec())))
    assert "rt-group-sched" not in {f.code for f in result.findings}
    assert any("qemu.conf cannot be read" in note for note in result.skipped)


# ---- the host kernel and its tuning ----------------------------------------------------


def test_kernel_not_rt(fake: FakeSys) -> None:
    fake.write("/proc/sys/kernel/version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.115-1 (2024-11-01)")
    h = host(host_uri("single-node"), fake.fs)
    assert codes(h, make_spec())["kernel-not-rt"] == "warning"
    assert "PREEMPT_DYNAMIC" in finding(h, make_spec(), "kernel-not-rt")
    assert "kernel-not-rt" not in codes(h, make_spec(realtime=False))
    fake.write("/proc/sys/kernel/version", "#1 SMP PREEMPT_RT Debian 6.1.115-1 (2024-11-01)")
    assert "kernel-not-rt" not in codes(host(host_uri("single-node"), fake.fs), make_spec())
    fake.write("/sys/kernel/realtime", "1")  # the RT patch set's file decides first
    fake.write("/proc/sys/kernel/version", "#1 SMP PREEMPT Fri Mar 29 23:14:13 EDT 2024")
    assert "kernel-not-rt" not in codes(host(host_uri("single-node"), fake.fs), make_spec())


def test_kernel_unknown_is_not_reported(fake: FakeSys) -> None:
    assert "kernel-not-rt" not in codes(host(host_uri("single-node"), fake.fs), make_spec())


def test_cpufreq_governor(fake: FakeSys) -> None:
    fake.write("/sys/devices/system/cpu/cpu5/cpufreq/scaling_governor", "schedutil")
    fake.write("/sys/devices/system/cpu/cpu4/cpufreq/scaling_governor", "performance")
    h = host(host_uri("single-node"), fake.fs)
    assert codes(h, make_spec())["cpufreq-governor"] == "warning"
    text = finding(h, make_spec(), "cpufreq-governor")
    assert "CPU 5" in text and "'schedutil'" in text
    fake.write("/sys/devices/system/cpu/cpu5/cpufreq/scaling_governor", "performance")
    assert "cpufreq-governor" not in codes(host(host_uri("single-node"), fake.fs), make_spec())


@pytest.mark.parametrize(("mode", "severity"), [("always", "warning"), ("madvise", "info")])
def test_thp_enabled(fake: FakeSys, mode: str, severity: str) -> None:
    words = " ".join(f"[{w}]" if w == mode else w for w in ("always", "madvise", "never"))
    fake.write("/sys/kernel/mm/transparent_hugepage/enabled", words)
    h = host(host_uri("single-node"), fake.fs)
    assert codes(h, make_spec())["thp-enabled"] == severity
    fake.write("/sys/kernel/mm/transparent_hugepage/enabled", "always madvise [never]")
    assert "thp-enabled" not in codes(host(host_uri("single-node"), fake.fs), make_spec())


# ---- libvirt networks ------------------------------------------------------------------


def test_networks_missing_inactive_and_not_autostarting(tmp_path: Path) -> None:
    """What `virsh net-list --all` shows, against the NICs: only a network that is
    active lets the domain start now, only one that also autostarts after a reboot."""
    lan = "<network><name>lan</name><bridge name='virbr9'/></network>"  # active in the file
    uri = host_file(tmp_path, extra=(lan,))
    with connection(uri) as conn:
        conn.networkDefineXML("<network><name>off</name><bridge name='virbr8'/></network>")
        later = conn.networkDefineXML("<network><name>later</name></network>")
        later.setAutostart(1)
        boot = conn.networkDefineXML("<network><name>boot</name></network>")
        boot.create()
        boot.setAutostart(1)
        h = gather(conn, uri)

    def nic(*names: str) -> VmSpec:
        return make_spec(devices={"networks": [{"network": n} for n in names]})

    network_codes = {"network-missing", "network-inactive", "network-no-autostart"}
    assert not network_codes & set(codes(h, nic("boot")))
    assert not network_codes & set(codes(h, make_spec(devices={"networks": [{"bridge": "br0"}]})))
    assert codes(h, nic("lan"))["network-no-autostart"] == "warning"
    assert "virsh net-autostart lan" in fix_of(h, nic("lan"), "network-no-autostart")

    assert codes(h, nic("off"))["network-inactive"] == "error"
    assert "network-no-autostart" not in codes(h, nic("off"))
    assert "'off'" in finding(h, nic("off"), "network-inactive")
    fix = fix_of(h, nic("off"), "network-inactive")
    assert "virsh net-start off" in fix and "virsh net-autostart off" in fix
    assert "only when libvirtd starts" in finding(h, nic("later"), "network-inactive")
    assert "net-autostart" not in fix_of(h, nic("later"), "network-inactive")

    assert codes(h, nic("nosuch"))["network-missing"] == "error"
    text = finding(h, nic("nosuch"), "network-missing")
    assert "'nosuch'" in text and "'lan'" in text and "'boot'" in text
    # two NICs on one missing network: one finding
    result = checks.host_findings(h, facts(render(nic("nosuch", "nosuch", "off"))))
    assert [f.code for f in result.findings if f.code.startswith("network")] == [
        "network-missing",
        "network-inactive",
    ]


def test_networks_that_cannot_be_listed_are_not_checked(tmp_path: Path) -> None:
    h = dataclasses.replace(
        host(host_file(tmp_path)), networks=None, networks_unknown="cannot list the networks: x"
    )
    spec = make_spec(devices={"networks": [{"network": "default"}, {"network": "lan"}]})
    result = checks.host_findings(h, facts(render(spec)))
    assert not [f for f in result.findings if f.code.startswith("network")]
    assert [s for s in result.skipped if s.startswith("libvirt networks:")] == [
        "libvirt networks: cannot list the networks: x"
    ]
    no_nics = checks.host_findings(h, facts(render(make_spec())))
    assert not [s for s in no_nics.skipped if s.startswith("libvirt networks")]

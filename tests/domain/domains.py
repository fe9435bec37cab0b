"""Domains for tune's round trip (tune, let libvirt store it, tune again: no change).

The files in tests/data/domains as the tools wrote them, and hand-made variants
with what those lack: cputune shares/period/quota and an emulatorsched, a
memoryBacking with discard and a memfd source, I/O threads, a kvm feature of
the user's own, and a domain without any controller.
"""

from __future__ import annotations

from tests.fakes.libvirt_hosts import DOMAINS


def _server_with_extras() -> str:
    xml = (DOMAINS / "virt-install-server.xml").read_text()
    xml = xml.replace(
        "<vcpu>2</vcpu>",
        "<vcpu>2</vcpu><iothreads>2</iothreads>"
        "<cputune><shares>2048</shares><period>100000</period><quota>-1</quota>"
        "<emulatorsched scheduler='fifo' priority='2'/></cputune>",
    )
    return xml.replace(
        "</memory>",
        "</memory><memoryBacking><discard/><source type='memfd'/>"
        "<access mode='shared'/></memoryBacking>",
        1,
    )


def _win10_with_kvm_and_iothread_ids() -> str:
    xml = (DOMAINS / "virt-install-win10.xml").read_text()
    xml = xml.replace("<features>", "<features><kvm><hidden state='on'/></kvm>")
    return xml.replace(
        "<vcpu>4</vcpu>",
        "<vcpu>4</vcpu><iothreads>1</iothreads><iothreadids><iothread id='3'/></iothreadids>",
    )


MINIMAL = """\
<domain type='kvm'>
  <name>minimal</name>
  <uuid>0c8f7f5e-3d2b-4a51-9e0a-6b7c8d9e0f12</uuid>
  <memory unit='MiB'>1024</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <source file='/var/lib/libvirt/images/minimal.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'><model type='virtio'/></interface>
  </devices>
</domain>
"""


def retune_cases() -> dict[str, tuple[str, str]]:
    """case -> (domain name, domain XML)."""
    cases = {
        "virt-manager-desktop": ("desktop", "virt-manager-desktop.libvirt.xml"),
        "virt-install-desktop": ("desktop", "virt-install-desktop.xml"),
        "virt-install-server": ("server", "virt-install-server.xml"),
        "virt-install-win10": ("win10", "virt-install-win10.xml"),
    }
    result = {case: (name, (DOMAINS / file).read_text()) for case, (name, file) in cases.items()}
    result["server-cputune-memfd-iothreads"] = ("server", _server_with_extras())
    result["win10-kvm-hidden-iothreadids"] = ("win10", _win10_with_kvm_and_iothread_ids())
    result["minimal-no-controllers"] = ("minimal", MINIMAL)
    return result


# Two TUNING.yaml files (format them with the domain's vCPU count): the common case,
# and one that sets the CPU model, topology, features and NUMA node (the parts of
# <cpu> and <numatune> tune writes only on request).
TUNINGS = {
    "auto": """\
cpu:
  pinning: auto
  emulator: auto
  realtime: {{vcpus: 1}}
memory_backing:
  hugepages: 2M
isolation:
  irqs: true
""",
    "model": """\
cpu:
  pinning: auto
  emulator: auto
  realtime: {{vcpus: 1}}
  model: Skylake-Client
  topology: {{sockets: 1, cores: {vcpus}, threads: 1}}
  features: {{tsc-deadline: require, pcid: disable}}
numa:
  node: 0
memory_backing:
  hugepages: 2M
  locked: false
  nosharepages: false
""",
}

"""Hosts for libvirt's test driver: the files in tests/data/hosts, or made on the fly."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import libvirt

from rtlibvirt.fit.host import HostModel, gather
from rtlibvirt.kernel.fs import HostFS

HOSTS = Path(__file__).resolve().parents[1] / "data" / "hosts"
DOMAINS = Path(__file__).resolve().parents[1] / "data" / "domains"


# libvirt's 'default' NAT network, as a host with virt-manager has it (the test driver
# starts the networks of its host file): the domains in tests/data/domains use it.
DEFAULT_NETWORK = (
    "<network><name>default</name><forward mode='nat'/><bridge name='virbr0'/>"
    "<ip address='192.168.122.1' netmask='255.255.255.0'/></network>"
)


def uri_of(path: Path) -> str:
    """test:///ABSOLUTE/PATH.xml"""
    return f"test://{path}"


def host_uri(name: str) -> str:
    return uri_of(HOSTS / f"{name}.xml")


def host_file(
    directory: Path,
    *,
    nodes: int = 1,
    sockets: int = 1,
    cores: int = 8,
    threads: int = 1,
    active: int | None = None,
    domains: Sequence[str] = (),
    name: str = "host.xml",
    extra: Sequence[str] = (),
) -> str:
    """Write a test-driver host description; returns its URI.

    ``extra``: more elements of the host (``<network>``, ...; the driver starts them).
    """
    total = nodes * sockets * cores * threads
    body = "\n".join(textwrap.indent(textwrap.dedent(d).strip(), "  ") for d in (*domains, *extra))
    path = directory / name
    path.write_text(
        "<?xml version='1.0'?>\n<node>\n"
        f"  <cpu><mhz>3000</mhz><model>x86_64</model><active>{active or total}</active>"
        f"<nodes>{nodes}</nodes><sockets>{sockets}</sockets><cores>{cores}</cores>"
        f"<threads>{threads}</threads></cpu>\n"
        "  <memory>16777216</memory>\n"
        f"{body}\n</node>\n"
    )
    return uri_of(path)


def pinned_domain(
    name: str, pins: Sequence[int], emulator: str | None = None, fifo: str = ""
) -> str:
    """A minimal domain XML with one vCPU per pin."""
    cputune = "".join(f"<vcpupin vcpu='{v}' cpuset='{c}'/>" for v, c in enumerate(pins))
    if emulator:
        cputune += f"<emulatorpin cpuset='{emulator}'/>"
    if fifo:
        cputune += f"<vcpusched vcpus='{fifo}' scheduler='fifo' priority='1'/>"
    return (
        f"<domain type='kvm'><name>{name}</name><memory unit='KiB'>1048576</memory>"
        f"<vcpu placement='static'>{len(pins)}</vcpu><cputune>{cputune}</cputune>"
        "<os><type arch='x86_64' machine='q35'>hvm</type></os></domain>"
    )


@contextmanager
def connection(uri: str) -> Iterator[Any]:
    conn = libvirt.open(uri)
    try:
        yield conn
    finally:
        conn.close()


def host(uri: str, fs: HostFS | None = None) -> HostModel:
    with connection(uri) as conn:
        return gather(conn, uri, fs)

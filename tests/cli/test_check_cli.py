"""`rtlibvirt check` and the host step of `rtlibvirt define`, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import libvirt
import pytest
from click.testing import CliRunner

from rtlibvirt.cli import cli
from rtlibvirt.fit.host import HOST_ROOT_ENV
from tests.fakes.libvirt_hosts import DOMAINS, host_file, host_uri, pinned_domain
from tests.fakes.sysfs import FakeSys

SPEC = """\
name: rt
memory: 2GiB
vcpus: 2
cpu:
  pinning: [{pins}]
  emulator: 0
  realtime:
    vcpus: [1]
memory_backing:
  hugepages: 1G
"""


@pytest.fixture
def clean_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSys:
    """A fake tree where CPUs 4-7 are isolated and 1G pages are free."""
    fake = FakeSys(tmp_path / "root").cpus("0-7", isolated="4-7", nohz_full="4-7")
    fake.hugepages(0, 1048576, free=4)
    monkeypatch.setenv(HOST_ROOT_ENV, str(fake.root))
    return fake


def spec_file(tmp_path: Path, pins: str) -> Path:
    path = tmp_path / "rt.yaml"
    path.write_text(SPEC.format(pins=pins))
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_check_spec_clean(tmp_path: Path, clean_host: FakeSys) -> None:
    code, out, _ = invoke("check", str(spec_file(tmp_path, "4, 5")), "-c", host_uri("single-node"))
    assert code == 0, out
    assert "ready for real time: no findings" in out
    assert "host: 8 CPUs (0-7), 1 NUMA node, no SMT; isolated CPUs: 4-7" in out


def test_check_spec_with_findings_exits_3(tmp_path: Path, clean_host: FakeSys) -> None:
    # vCPU 0 on db's CPU 2, realtime vCPU 1 on CPU 1, not isolated.
    path = spec_file(tmp_path, "2, 1")
    code, out, _ = invoke("check", str(path), "-c", host_uri("single-node"))
    assert code == 3
    assert "error: [cpu-shared] host CPU 2 (vCPU 0) is also pinned by domain 'db'" in out
    assert "warning: [cpu-not-isolated]" in out
    assert out.rstrip().endswith("1 error, 1 warning")

    code, out, _ = invoke("check", str(path), "-c", host_uri("single-node"), "--json")
    assert code == 3
    data = json.loads(out)
    assert not data["clean"]
    assert [(f["severity"], f["code"]) for f in data["findings"]] == [
        ("error", "cpu-shared"),
        ("warning", "cpu-not-isolated"),
    ]
    assert data["host"]["isolated"] == [4, 5, 6, 7]


def test_check_existing_domain(tmp_path: Path, clean_host: FakeSys) -> None:
    xml = (DOMAINS / "virt-manager-desktop.libvirt.xml").read_text()
    uri = host_file(tmp_path, cores=8, domains=[xml])
    code, out, _ = invoke("check", "desktop", "-c", uri)
    assert code == 3
    for expected in (
        "error: [vcpu-not-pinned] vCPUs 0-3 are not pinned",
        "warning: [memballoon]",
        "warning: [usb-controller] a USB controller is present (qemu-xhci)",
        "warning: [usb-device] USB devices are present (tablet input, spicevmc redirdev, "
        "spicevmc redirdev)",
        "warning: [no-hugepages]",
        "warning: [not-locked]",
        "info: [pmu-on]",
    ):
        assert expected in out, out


def test_check_auto_spec_shows_the_placement(tmp_path: Path, clean_host: FakeSys) -> None:
    path = tmp_path / "auto.yaml"
    path.write_text(
        SPEC.format(pins="0").replace("[0]", "auto").replace("emulator: 0", "emulator: auto")
    )
    code, out, _ = invoke("check", str(path), "-c", host_uri("single-node"))
    assert code == 0, out
    # The realtime vCPU 1 takes the first isolated CPU; the emulator keeps off db's vCPUs 2-3.
    assert (
        "auto placement: vCPUs 0->5, 1->4 on NUMA node 0 (isolated CPUs); emulator on CPUs 0-1"
        in out
    )


def test_check_unknown_domain() -> None:
    code, _, err = invoke("check", "nosuch", "-c", host_uri("single-node"))
    assert code == 1
    assert "error: no domain named 'nosuch'" in err
    assert "Traceback" not in err


def test_define_stops_on_host_errors_and_defines_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(HOST_ROOT_ENV, raising=False)
    path = spec_file(tmp_path, "3, 99")
    keep = libvirt.open("test:///default")  # the default test driver's state lives while open
    try:
        code, _, err = invoke("define", str(path), "-c", "test:///default")
        assert code == 1
        assert "error: [cpu-missing] pinned to host CPUs the host does not have: 99 (vCPU 1)" in (
            err
        )
        assert "'rt' does not fit this host (1 error); nothing was defined" in err
        # the hint fixes the pinning: without the CPU the domain could not start anyway
        hint = err.split("hint:")[-1]
        assert "cpu-missing" in hint and "--no-host-check" not in hint
        assert "rt" not in [d.name() for d in keep.listAllDomains(0)]

        code, out, _ = invoke("define", str(path), "-c", "test:///default", "--no-host-check")
        assert code == 0
        assert "Defined domain 'rt'" in out
        assert "rt" in [d.name() for d in keep.listAllDomains(0)]
    finally:
        dom = keep.lookupByName("rt") if "rt" in keep.listDefinedDomains() else None
        if dom is not None:
            dom.undefine()
        keep.close()


def test_define_warns_and_allow_shared(tmp_path: Path, clean_host: FakeSys) -> None:
    path = spec_file(tmp_path, "2, 5")  # vCPU 0 on db's CPU 2
    code, _, err = invoke("define", str(path), "-c", host_uri("single-node"))
    assert code == 1 and "[cpu-shared]" in err
    assert "--allow-shared" in err.split("hint:")[-1]
    code, out, err = invoke("define", str(path), "-c", host_uri("single-node"), "--allow-shared")
    assert code == 0, err
    assert "warning: [cpu-shared]" in err and "(allowed by --allow-shared)" in err
    assert "Defined domain 'rt'" in out


def test_define_prints_warnings_but_defines(tmp_path: Path, clean_host: FakeSys) -> None:
    clean_host.hugepages(0, 1048576, free=0)
    code, out, err = invoke(
        "define", str(spec_file(tmp_path, "4, 5")), "-c", host_uri("single-node")
    )
    assert code == 0, err
    assert "warning: [hugepages-short]" in err
    assert "Defined domain 'rt'" in out


def test_check_reads_cpu_ids_up_to_the_domain_readers_limit(tmp_path: Path) -> None:
    """libvirt's cputune-cpuset-big-id pins to CPU 16383: a finding, not an unreadable domain."""
    big = pinned_domain("bigid", [0, 1]).replace("cpuset='1'", "cpuset='0,16383'")
    uri = host_file(tmp_path, cores=8, domains=[big])
    code, out, err = invoke("check", "bigid", "-c", uri)
    assert code == 3, out + err
    assert "[cpu-missing]" in out and "16383" in out


def test_check_says_why_a_definition_cannot_be_read(tmp_path: Path) -> None:
    # libvirt's parser takes any integer priority (QEMU's start refuses it)
    bad = pinned_domain("bad", [0], fifo="0").replace("priority='1'", "priority='150'")
    uri = host_file(tmp_path, cores=8, domains=[bad])
    code, out, err = invoke("check", "bad", "-c", uri)
    assert code == 1, out + err
    assert "cannot be read: <vcpusched priority>" in err and "150" in err
    assert "virsh" in err  # the hint: how to see and fix it


def test_share_with_is_a_lasting_allow_shared(tmp_path: Path, clean_host: FakeSys) -> None:
    """`cpu.share_with` says once what --allow-shared said for one run: define, check and
    status honour it (the hook's refusal is in tests/hook/test_hook.py)."""
    uri = host_uri("single-node")  # 'db' pins CPUs 2-3
    path = spec_file(tmp_path, "2, 5")
    code, _, err = invoke("define", str(path), "-c", uri, "--allow-shared")
    assert code == 0 and "cpu.share_with: [db]" in err  # the warning says how to keep it
    path.write_text(
        path.read_text().replace("  emulator: 0\n", "  emulator: 0\n  share_with: [db]\n")
    )
    code, out, err = invoke("define", str(path), "-c", uri, "--dry-run")
    assert code == 0, err
    assert "cpu-shared" not in err
    code, out, _ = invoke("check", str(path), "-c", uri)
    assert "cpu-shared" not in out, out
    # without the key, and without the flag: refused, and the hint names the key
    code, _, err = invoke("define", str(spec_file(tmp_path, "2, 5")), "-c", uri)
    assert code == 1 and "cpu.share_with: [db]" in err


def test_share_with_either_side_and_auto_placement(tmp_path: Path) -> None:
    """The partner's declaration is enough; `auto` may take a partner's CPUs."""
    from rtlibvirt.config.vm import validate_data
    from rtlibvirt.domain.facts import facts
    from rtlibvirt.domain.render import render
    from rtlibvirt.fit import status
    from rtlibvirt.fit.fitting import fit_spec
    from rtlibvirt.fit.host import gather
    from tests.fakes.libvirt_hosts import connection

    def spec(name: str, pins: object, share: list[str]) -> object:
        return validate_data(
            {
                "name": name,
                "memory": "1GiB",
                "vcpus": 2,
                "cpu": {
                    "pinning": pins,
                    "emulator": 0,
                    "realtime": {"vcpus": [1]},
                    "share_with": share,
                },
                "memory_backing": {"hugepages": "none", "locked": False},
            }
        )

    trial_vm = render(spec("trial-vm", [1, 2], ["trial-plc"]))  # it names the other
    uri = host_file(tmp_path, cores=3, domains=[trial_vm])
    with connection(uri) as conn:
        fitted = fit_spec(conn, uri, spec("trial-plc", [1, 2], []))
        assert not [f for f in fitted.findings if f.code == "cpu-shared"]
        # auto: 3 CPUs, CPU 0 the host's; only trial-vm's CPUs are left, and they may be shared
        placed = fit_spec(conn, uri, spec("trial-plc", "auto", ["trial-vm"]))
        assert placed.placement is not None and placed.placement.pinning == (2, 1)
        host = gather(conn, uri)
    line = status.text(host, None)
    assert "shares CPUs with trial-plc (never together)" in line
    assert facts(trial_vm).share_with == {"trial-plc"}

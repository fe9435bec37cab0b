"""guest-prep cloud-init: #cloud-config from the same plan, judged by cloud-init's own
schema validator (Debian's package, unpacked: realcloudinit.py), and carrying the
same kernel arguments and files as `guest-prep plan` on a faithful root."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rtlibvirt.cli import cli
from rtlibvirt.hostprep.profiles import guest as profile
from tests.conftest import EXAMPLES
from tests.fakes.roots import make_tree, snapshot
from tests.hostprep import realcloudinit
from tests.hostprep.realgrub import Unavailable

PLC = EXAMPLES / "plc.yaml"
REQUIRED = os.environ.get("RTLIBVIRT_REQUIRE_DAEMON") == "1"  # under `make test`


@pytest.fixture(scope="module")
def cloudinit() -> Iterator[realcloudinit.CloudInit]:
    try:
        yield realcloudinit.fetch()
    except Unavailable as exc:
        if REQUIRED:
            pytest.fail(f"cannot fetch cloud-init: {exc}")
        pytest.skip(str(exc))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def planned_args(spec: Path, root: Path) -> list[str]:
    code, out, err = run("guest-prep", "plan", str(spec), "--root", str(root), "--json")
    assert code == 0, err
    return [a["arg"] for a in json.loads(out)["kernel_args"]]


def args_in(user_data: dict) -> list[str]:
    """The kernel arguments the user-data gives the boot loader (drop-in or grubby)."""
    for item in user_data["write_files"]:
        if item["path"] == "/etc/default/grub.d/99-rtlibvirt.cfg":
            (line,) = [x for x in item["content"].splitlines() if x.startswith("rtlibvirt_args=")]
            return shlex.split(line.split("=", 1)[1])[0].split()
    for argv in user_data["runcmd"]:
        if argv[0] == "grubby" and argv[-1].startswith("--args="):
            return argv[-1].removeprefix("--args=").split()
    raise AssertionError("no kernel arguments in the user-data")


@pytest.mark.parametrize("distro", ["debian", "ubuntu", "rhel"])
def test_user_data_is_valid_and_carries_the_plan(
    tmp_path: Path, cloudinit: realcloudinit.CloudInit, distro: str
) -> None:
    spec = tmp_path / "vm.yaml"
    spec.write_text(PLC.read_text() + "guest:\n  disable_services: [irqbalance]\n")
    code, text, err = run("guest-prep", "cloud-init", str(spec), "--distro", distro)
    assert code == 0, err
    assert text.startswith("#cloud-config\n")
    user_data_file = tmp_path / "user-data"
    user_data_file.write_text(text)
    assert cloudinit.validate(user_data_file) == (0, "valid")

    data = yaml.safe_load(text)
    # the same arguments as `guest-prep plan` on a faithful root of that distribution
    root = make_tree(tmp_path / "root", distro, cpus=4)
    # a parameter planned only where the kernel has it: a new guest's kernel is not known
    (root / "sys/module/rcutree/parameters/nohz_full_patience_delay").unlink()
    assert args_in(data) == planned_args(spec, root)
    (script,) = [i for i in data["write_files"] if i["path"] == profile.BOOT_SCRIPT]
    assert "> /sys/devices/virtual/workqueue/writeback/cpumask" in script["content"]
    assert "isolcpus=managed_irq,domain,1-3" in args_in(data)
    paths = {item["path"]: item for item in data["write_files"]}
    assert paths[profile.BOOT_SCRIPT]["permissions"] == "0755"
    assert "CPUAffinity=0\n" in paths["/etc/systemd/system.conf.d/50-rtlibvirt.conf"]["content"]
    assert "/etc/modprobe.d/50-rtlibvirt.conf" not in paths
    assert ["ln", "-sfn", profile.UNIT_PATH, profile.WANTS_LINK] in data["runcmd"]
    assert ["systemctl", "disable", "--now", "irqbalance.service"] in data["runcmd"]
    boot = ["update-grub"] if distro != "rhel" else data["runcmd"][-1]
    assert data["runcmd"][-1] == boot and boot[0] in ("update-grub", "grubby")
    assert data["power_state"]["mode"] == "reboot"


def test_on_an_image_tree_the_files_are_the_plans(
    tmp_path: Path, cloudinit: realcloudinit.CloudInit
) -> None:
    root = make_tree(tmp_path / "root", "debian", cpus=4)
    original = snapshot(root)
    code, text, err = run("guest-prep", "cloud-init", str(PLC), "--root", str(root))
    assert code == 0, err
    assert snapshot(root) == original  # nothing changed in the image
    user_data_file = tmp_path / "user-data"
    user_data_file.write_text(text)
    assert cloudinit.validate(user_data_file) == (0, "valid")
    written = {i["path"]: i["content"].encode() for i in yaml.safe_load(text)["write_files"]}

    code, _, err = run("guest-prep", "apply", str(PLC), "--root", str(root), "--yes")
    assert code == 0, err
    for path, content in written.items():
        assert (root / path.lstrip("/")).read_bytes() == content, path


def test_the_validator_refuses_what_cloud_init_would(
    tmp_path: Path, cloudinit: realcloudinit.CloudInit
) -> None:
    """The check can fail: a mode as a number and an unknown power_state mode."""
    code, text, _ = run("guest-prep", "cloud-init", str(PLC))
    assert code == 0
    spoiled = text.replace("permissions: '0644'", "permissions: 420", 1).replace(
        "mode: reboot", "mode: restart"
    )
    path = tmp_path / "user-data"
    path.write_text(spoiled)
    status, message = cloudinit.validate(path)
    assert status == 3
    assert "permissions" in message and "power_state.mode" in message


def test_output_file_and_nothing_to_do(tmp_path: Path) -> None:
    out = tmp_path / "user-data"
    code, stdout, err = run("guest-prep", "cloud-init", str(PLC), "-o", str(out))
    assert code == 0 and not stdout and f"wrote {out}" in err
    assert out.read_text().startswith("#cloud-config\n") and out.stat().st_mode & 0o777 == 0o600
    plain = tmp_path / "plain.yaml"
    plain.write_text(
        "name: p\nmemory: 1GiB\nvcpus: 2\ncpu: {pinning: [0, 1], emulator: 0, realtime: false}\n"
    )
    code, stdout, err = run("guest-prep", "cloud-init", str(plain))
    assert code == 0 and not stdout and "nothing to do" in err

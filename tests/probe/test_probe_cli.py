"""`rtlibvirt probe` and `render`'s guest recommendation on the command line (no daemon)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from rtlibvirt.cli import cli
from tests.conftest import EXAMPLES


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "ten"], "error: --duration 'ten' is not a duration"),
        (["--duration", "0s"], "error: --duration 0s: must be between 1 s and 24 h"),
        (["--plot", "p.png"], "error: --plot p.png: the picture is written as SVG"),
        (["--virt-type", "xen"], "Invalid value for '--virt-type'"),
        (["--compare", "bare"], "Invalid value for '--compare'"),
        (["--max-latency", "0"], "Invalid value for '--max-latency'"),
    ],
)
def test_bad_options_exit_2_before_anything_starts(args: list[str], message: str) -> None:
    code, out, err = run("probe", str(EXAMPLES / "small.yaml"), "-c", "test:///default", *args)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_a_spec_with_auto_pinning_is_refused_with_what_to_do(tmp_path: Path) -> None:
    spec = tmp_path / "auto.yaml"
    spec.write_text("name: a\nmemory: 1GiB\nvcpus: 2\ncpu:\n  pinning: auto\n  emulator: auto\n")
    code, _, err = run("probe", str(spec), "-c", "test:///default")
    assert code == 2
    assert "cpu.pinning or cpu.emulator is `auto`" in err
    assert f"`rtlibvirt define {spec}`, then `rtlibvirt probe a`" in err


def test_an_unknown_domain_is_an_input_error() -> None:
    code, _, err = run("probe", "no-such-domain", "-c", "test:///default")
    assert code == 2
    assert "'no-such-domain' is neither a vm.yaml file nor a domain on test:///default" in err


def test_it_refuses_while_a_running_vm_may_use_the_cpus_and_names_it() -> None:
    # libvirt's test driver always runs a domain 'test' with unpinned vCPUs
    code, out, err = run("probe", str(EXAMPLES / "small.yaml"), "-c", "test:///default")
    assert code == 1 and out == ""
    assert "error: running VM 'test' runs with unpinned vCPUs, which may use host CPU 1" in err
    assert "hint: stop it first (virsh shutdown test)" in err


def test_render_recommends_the_guest_command_line_on_stderr_and_keeps_stdout_xml() -> None:
    code, out, err = run("render", str(EXAMPLES / "plc.yaml"))
    assert code == 0
    assert etree.fromstring(out.encode()).tag == "domain"
    assert "inside the guest, `rtlibvirt guest-prep apply VM.yaml` isolates vCPUs 1-3" in err
    code, _, err = run("render", str(EXAMPLES / "testbench.yaml"))  # every vCPU real-time
    assert code == 0 and "guest-prep" not in err

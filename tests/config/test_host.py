"""host.yaml's value types: unit names as systemd reads them, kernel arguments."""

from __future__ import annotations

import pytest

from rtlibvirt.config.host import _kernel_arg, _service
from rtlibvirt.config.model import Invalid


@pytest.mark.parametrize(
    ("written", "unit"),
    [
        ("irqbalance", "irqbalance.service"),
        ("irqbalance.service", "irqbalance.service"),
        ("cups.socket", "cups.socket"),
        ("cups.path", "cups.path"),
        ("fstrim.timer", "fstrim.timer"),
        ("getty@tty2", "getty@tty2.service"),
        ("getty@", "getty@.service"),
        ("getty@.service", "getty@.service"),
        (
            "systemd-fsck@dev-disk-by\\x2duuid-1.service",
            "systemd-fsck@dev-disk-by\\x2duuid-1.service",
        ),
        ("a.b.c", "a.b.c.service"),
    ],
)
def test_unit_names(written: str, unit: str) -> None:
    assert _service(written) == unit


@pytest.mark.parametrize(
    "written",
    ["", "-x", "a/b", "../x", "a b", "x\n", "x\t", "a" * 256, "a@b@c", "ümlaut", "x;y", "$x"],
)
def test_bad_unit_names(written: str) -> None:
    with pytest.raises(Invalid):
        _service(written)


@pytest.mark.parametrize(
    "arg",
    [
        "console=ttyS0,115200n8",
        "crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M",
        "root=UUID=0b2d7a4c-0000-4000-8000-000000000001",
        "rd.lvm.lv=rhel/root",
        "nosmt",
        "modprobe.blacklist=nouveau,radeon",
        "video=1024x768@60",
        "acpi_osi=!",
        "nvme_core.default_ps_max_latency_us=0",
        "vfio-pci.ids=10de:1b80",
    ],
)
def test_kernel_args_people_write(arg: str) -> None:
    assert _kernel_arg(arg) == arg


@pytest.mark.parametrize(
    ("arg", "why"),
    [
        ("quiet\n", "newline"),  # a trailing newline passed a `$` pattern: GRUB injection
        ("quiet\r", "carriage return"),
        ("a b", "' ' is not allowed"),
        ("a\tb", "tab"),
        ("#quiet", "'#' is not allowed"),
        ("x=#y", "'#' is not allowed"),
        ('x="a b"', "'\"' is not allowed"),
        ("x='a'", '"\'" is not allowed'),
        ("x=$y", "'$' is not allowed"),
        ("x=`id`", "'`' is not allowed"),
        ("x;reboot", "';' is not allowed"),
        ("x|y", "'|' is not allowed"),
        ("x&y", "'&' is not allowed"),
        ("x\\y", "'\\\\' is not allowed"),
        ("x{y}", "'{' is not allowed"),
        ("x*", "'*' is not allowed"),
        ("--", "a name starts with"),
        ("-x", "a name starts with"),
        ("=x", "a name starts with"),
        (".x", "a name starts with"),
        ("ä=1", "'ä' is not allowed"),
        ("x\u2028y", "U+2028"),
        ("a" * 200, "the name is longer than 128"),
        ("a=" + "b" * 2000, "too long"),
    ],
)
def test_bad_kernel_args(arg: str, why: str) -> None:
    with pytest.raises(Invalid) as info:
        _kernel_arg(arg)
    assert why in info.value.message

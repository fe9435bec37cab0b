from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtlibvirt.kernel import cpuset
from rtlibvirt.kernel.fs import HostFS


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("", []),
        ("\n", []),
        ("3", [3]),
        ("2-5,8", [2, 3, 4, 5, 8]),
        ("8,2-3", [8, 2, 3]),
        ("0-7:1/2", [0, 2, 4, 6]),
        ("0-11:2/4", [0, 1, 4, 5, 8, 9]),
        (" 1 , 3 ", [1, 3]),
        ("1,1-2", [1, 2]),
    ],
)
def test_parse_cpulist(text: str, cpus: list[int]) -> None:
    assert cpuset.parse_cpulist(text) == cpus


@pytest.mark.parametrize("text", ["a", "1-", "-1", "5-2", "1,,2", "0-7:3/2", "0-7:0/2", "1.5"])
def test_parse_cpulist_rejects(text: str) -> None:
    with pytest.raises(cpuset.CpuListError):
        cpuset.parse_cpulist(text)


@pytest.mark.parametrize(
    ("cpus", "text"),
    [([], ""), ([0], "0"), ([0, 1, 2, 5], "0-2,5"), ([5, 1, 2, 3], "1-3,5"), ([1, 3], "1,3")],
)
def test_format_cpulist(cpus: list[int], text: str) -> None:
    assert cpuset.format_cpulist(cpus) == text


@given(st.sets(st.integers(min_value=0, max_value=600)))
def test_cpulist_round_trip(cpus: set[int]) -> None:
    assert set(cpuset.parse_cpulist(cpuset.format_cpulist(cpus))) == cpus


@pytest.mark.parametrize(
    ("cpus", "nbits", "text"),
    [
        ({0, 1}, 2, "3"),
        ({0}, 14, "0001"),
        ({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}, 14, "3fff"),
        ({0, 1}, 64, "00000000,00000003"),
        ({32}, 40, "01,00000000"),
        ({1}, None, "2"),
        (set(), 8, "00"),
    ],
)
def test_format_mask_like_the_kernel(cpus: set[int], nbits: int | None, text: str) -> None:
    assert cpuset.format_mask(cpus, nbits) == text
    assert cpuset.parse_mask(text) == frozenset(cpus)


@given(st.sets(st.integers(min_value=0, max_value=300)), st.integers(min_value=1, max_value=512))
def test_mask_round_trip(cpus: set[int], nbits: int) -> None:
    text = cpuset.format_mask(cpus, nbits)
    assert cpuset.parse_mask(text) == frozenset(cpus)
    assert all(len(group) == 8 for group in text.split(",")[1:])


def test_parse_mask_rejects_garbage() -> None:
    with pytest.raises(cpuset.CpuListError):
        cpuset.parse_mask("xyz")


def test_live_masks_parse() -> None:
    """This machine's own kernel files parse, and agree with each other."""
    host = HostFS("/")
    online = host.cpus_online()
    assert online, "/sys/devices/system/cpu/online lists no CPU"
    default = cpuset.parse_mask(host.read("/proc/irq/default_smp_affinity"))
    assert default <= online | host.cpulist("/sys/devices/system/cpu/possible")  # type: ignore[operator]
    width = host.nr_cpu_ids()
    assert cpuset.format_mask(default, width) == host.read("/proc/irq/default_smp_affinity")

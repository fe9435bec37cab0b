"""kernel.irq, workqueue, machinecheck, resctrl: paths, ownership, formats."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from rtlibvirt.kernel import irq, machinecheck, resctrl, workqueue
from tests.fakes.host import FakeKernel


def test_irq_paths_in_order_and_what_they_are(tmp_path: Path) -> None:
    fs = FakeKernel(tmp_path, irqs=(24, 0, 8, 120))
    assert irq.numbers(fs) == [0, 8, 24, 120]
    assert irq.paths(fs) == [irq.DEFAULT] + [irq.affinity_path(n) for n in (0, 8, 24, 120)]
    assert irq.describe(irq.affinity_path(24)) == "IRQ 24 affinity"
    assert irq.describe(irq.DEFAULT) == "default IRQ affinity"


@pytest.mark.parametrize(
    ("path", "ours"),
    [
        ("/proc/irq/24/smp_affinity", True),
        ("/proc/irq/default_smp_affinity", True),
        ("/proc/irq/24/smp_affinity_list", False),
        ("/proc/irq/../../etc/shadow/smp_affinity", False),
        ("/proc/irq/2x/smp_affinity", False),
        ("/proc/irq/٣/smp_affinity", False),  # a digit, but not an ASCII one
        ("/etc/shadow", False),
    ],
)
def test_irq_owns_only_its_own_files(path: str, ours: bool) -> None:
    assert irq.owns(path) is ours


@pytest.mark.parametrize(
    ("path", "ours"),
    [
        ("/sys/devices/virtual/workqueue/cpumask", True),
        ("/sys/bus/workqueue/devices/writeback/cpumask", True),
        ("/sys/bus/workqueue/devices/kcryptd-253:0/cpumask", True),
        ("/sys/bus/workqueue/devices/xfs-buf!sda1/cpumask", True),  # sysfs's "/" -> "!"
        ("/sys/bus/workqueue/devices/../cpumask", False),
        ("/sys/bus/workqueue/devices/./cpumask", False),
        ("/sys/bus/workqueue/devices/a/b/cpumask", False),
        ("/sys/bus/workqueue/devices/a b/cpumask", False),
        ("/sys/bus/workqueue/devices/a\nb/cpumask", False),
        ("/sys/bus/workqueue/devices/wb\n/cpumask", False),
        ("/sys/bus/workqueue/devices/é/cpumask", False),
        ("/sys/bus/workqueue/devices/writeback/nice", False),
        ("/sys/bus/workqueue/devices/writeback/affinity_scope", False),
        ("/sys/bus/workqueue/devices/" + "w" * 64 + "/cpumask", False),
        ("/sys/devices/virtual/workqueue/writeback/cpumask", False),  # the bus path only
        ("/sys/devices/virtual/workqueue/cpumask_requested", False),
    ],
)
def test_workqueue_owns_only_its_own_files(path: str, ours: bool) -> None:
    assert workqueue.owns(path) is ours


def test_workqueue_refusals_are_explained() -> None:
    assert "as for an ordered one" in workqueue.explain(OSError(errno.EINVAL, "Invalid argument"))
    assert "user space" in workqueue.explain(OSError(errno.EIO, "Input/output error"))
    assert workqueue.explain(OSError(errno.ENOMEM, "Cannot allocate memory")) == (
        "Cannot allocate memory"
    )


def test_irq_refusals_are_the_kernels_eio_and_eperm() -> None:
    assert irq.refused(OSError(errno.EIO, "Input/output error"))
    assert irq.refused(OSError(errno.EPERM, "Operation not permitted"))
    assert not irq.refused(OSError(errno.EINVAL, "Invalid argument"))
    assert "managed or per-CPU" in irq.explain(OSError(errno.EIO, "Input/output error"))
    assert "no online CPU" in irq.explain(OSError(errno.EINVAL, "Invalid argument"))


def test_workqueue_and_machinecheck_files(tmp_path: Path) -> None:
    fs = FakeKernel(tmp_path, cpus=12)
    # the global mask, then each sysfs workqueue with a cpumask (ib-comp-wq is per-CPU)
    assert workqueue.paths(fs) == [
        workqueue.UNBOUND,
        "/sys/bus/workqueue/devices/blkcg_punt_bio/cpumask",
        "/sys/bus/workqueue/devices/kcryptd-253:0/cpumask",
        "/sys/bus/workqueue/devices/nvme-wq/cpumask",
        workqueue.WRITEBACK,
    ]
    assert workqueue.owns(workqueue.UNBOUND) and not workqueue.owns("/sys/x/cpumask")
    assert workqueue.describe(workqueue.WRITEBACK) == "workqueue writeback cpumask"
    assert workqueue.describe(workqueue.UNBOUND) == "unbound workqueue cpumask"
    paths = machinecheck.interval_paths(fs)
    assert [p.split("/")[-2] for p in paths] == [f"machinecheck{n}" for n in range(12)]
    assert machinecheck.owns(paths[11])
    assert not machinecheck.owns("/sys/devices/system/machinecheck/machinecheck1/../x")
    assert machinecheck.describe(paths[3]) == "machinecheck3 check_interval"


def test_resctrl_schemata_round_trip() -> None:
    masks = resctrl.parse_l3("L3:0=fffff;1=ff000\nMB:0=100;1=100\n")
    assert masks == {"0": 0xFFFFF, "1": 0xFF000}
    assert resctrl.l3_line(masks, 5) == "L3:0=fffff;1=ff000"
    assert resctrl.parse_l3("MB:0=100") is None
    assert resctrl.same_l3("L3:1=ff000;0=fffff", "L3:0=fffff;1=ff000")
    assert resctrl.show_l3("L3:0=ff") == "0=ff"
    with pytest.raises(ValueError):
        resctrl.parse_l3("L3:0=xyz")


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("rtlibvirt-plc", True),
        ("a.b+c_d-e", True),
        ("", False),
        (".", False),
        ("..", False),
        ("info", False),
        ("a/b", False),
        ("a\nb", False),
        ("x" * 256, False),
    ],
)
def test_resctrl_group_names_are_one_safe_path_component(name: str, valid: bool) -> None:
    assert resctrl.valid_group_name(name) is valid
    if not valid and name:
        with pytest.raises(ValueError):
            resctrl.group_dir(name)


def test_resctrl_owns_group_files_only() -> None:
    assert resctrl.owns("/sys/fs/resctrl/schemata")
    assert resctrl.owns("/sys/fs/resctrl/rtlibvirt-a/schemata")
    assert resctrl.owns("/sys/fs/resctrl/admin/cpus_list")
    assert resctrl.owns("/sys/fs/resctrl/rtlibvirt-a")
    assert not resctrl.owns("/sys/fs/resctrl/info/L3/cbm_mask")
    assert not resctrl.owns("/sys/fs/resctrl/../../../etc/passwd")
    assert not resctrl.owns("/sys/fs/resctrl/a/b/schemata")
    assert resctrl.group_of("/sys/fs/resctrl/cpus_list") == ""

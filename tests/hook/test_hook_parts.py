"""The hook's smaller parts: reading the domain XML, the RT-group diagnosis, the state."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from rtlibvirt.hook.domain import DomainError, cpus_of, parse, validate
from rtlibvirt.hook.state import Claim, Settings, State, StateStore
from rtlibvirt.kernel import rtgroup
from rtlibvirt.kernel.fs import HostFS
from tests.fakes.hook import PLAIN_XML, Hook, domain_xml
from tests.fakes.host import FakeKernel, build_host

# ---- the domain XML ---------------------------------------------------------------------

ONLINE = frozenset(range(8))


def settings(**isolation: object) -> Settings:
    """Settings as the one model validates them (config.vm.Isolation)."""
    from rtlibvirt.config.model import Errors
    from rtlibvirt.config.vm import Isolation

    errors = Errors()
    model = Isolation.parse(isolation, (), errors)
    assert not errors.found
    return Settings.from_model(model)


def test_the_vms_cpus_come_from_cputune() -> None:
    xml = domain_xml("plc", [2, 3, 4, 5], [1, 2, 3], isolation={"cache_ways": 2})
    info = parse(xml)
    assert info.managed
    assert info.realtime is not None and cpus_of(info.realtime) == {3, 4, 5}
    checked = validate(info, ONLINE)
    assert checked.cpus == {3, 4, 5}
    assert [(v.vcpu, v.policy, v.priority) for v in checked.realtime] == [
        (1, "fifo", 1),
        (2, "fifo", 1),
        (3, "fifo", 1),
    ]
    assert checked.settings == settings(cache_ways=2)
    assert checked.settings.cache_ways == 2 and checked.settings.irqs is True


def test_an_edited_cputune_wins_over_the_metadata() -> None:
    xml = domain_xml("plc", [0, 1], [1])
    pin = '<vcpupin vcpu="1" cpuset="1"/>'
    assert pin in xml
    info = parse(xml.replace(pin, ""))
    assert validate(info, ONLINE).cpus == set()
    assert info.notes == [
        "realtime vCPU 1 has no <vcpupin>: it may run on any CPU, so no CPU is isolated for it"
    ]


def test_without_cputune_the_metadata_says() -> None:
    xml = domain_xml("plc", [0, 3], [1])
    start, end = xml.index("<cputune>"), xml.index("</cputune>") + len("</cputune>")
    info = parse(xml[:start] + xml[end:])
    assert info.realtime is None
    assert validate(info, ONLINE).cpus == {3}
    assert "no <cputune>" in info.notes[0]


def test_a_domain_without_metadata_is_not_managed() -> None:
    info = parse(PLAIN_XML)
    assert not info.managed
    assert info.realtime is not None and cpus_of(info.realtime) == {1}
    with pytest.raises(DomainError, match="no rtlibvirt metadata"):
        validate(info, ONLINE)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ('"irqs": true', '"irqs": "yes"'),
            "invalid rtlibvirt metadata: isolation.irqs: expected true or false, got the string",
        ),
        (('"cache_ways": 0', '"cache_ways": 99'), "isolation.cache_ways: 99 is out of range"),
        (('"name": ', '"name" '), "rtlibvirt metadata is not valid JSON"),
        (('"pinning": [0, 1]', '"pinning": [0, -1]'), "cpu.pinning: CPU number -1 is out of"),
        (('"pinning": [0, 1]', '"pinning": [0, true]'), "the boolean true is not one"),
    ],
)
def test_broken_metadata_is_one_clear_error(edit: tuple[str, str], message: str) -> None:
    xml = domain_xml("plc", [0, 1], [1])
    assert edit[0] in xml
    with pytest.raises(DomainError, match=re.escape(message)):
        validate(parse(xml.replace(*edit, 1)), ONLINE)


def test_broken_metadata_refuses_the_start_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call = Hook(FakeKernel(tmp_path))
    xml = domain_xml("plc", [0, 1], [1]).replace('"irqs": true', '"irqs": "yes"', 1)
    assert call("plc", "prepare", "begin", xml) == 1
    err = capsys.readouterr().err
    assert err == (
        "rtlibvirt: plc: invalid rtlibvirt metadata: isolation.irqs: expected true or false, "
        "got the string 'yes'\n"
    )
    assert "start refused: invalid rtlibvirt metadata" in call.log()
    assert call.state() is None


def test_cpus_must_be_online() -> None:
    xml = domain_xml("plc", [0, 3], [1])
    with pytest.raises(
        DomainError, match=r"CPU 3, which is not online on this host \(online: 0-1\)"
    ):
        validate(parse(xml), frozenset({0, 1}))


def test_not_a_domain() -> None:
    with pytest.raises(DomainError, match="not well-formed"):
        parse("<domain>")
    with pytest.raises(DomainError, match="expected a <domain> element, got <network>"):
        parse("<network/>")


# ---- RT group scheduling ------------------------------------------------------------------


def rt_host(root: Path, conf: str | None, runtime: str = "950000") -> HostFS:
    build_host(root)
    fs = HostFS(root)
    mounts = fs.read("/proc/mounts")
    (root / "proc/mounts").write_text(
        mounts + "\ncgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0\n"
    )
    cpu = root / "sys/fs/cgroup/cpu,cpuacct"
    (cpu / "machine").mkdir(parents=True)
    (cpu / "cpu.rt_runtime_us").write_text("950000\n")
    (cpu / "machine/cpu.rt_runtime_us").write_text("0\n")
    (root / "proc/sys/kernel/sched_rt_runtime_us").write_text(runtime + "\n")
    if conf is not None:
        (root / "etc/libvirt").mkdir(parents=True)
        (root / "etc/libvirt/qemu.conf").write_text(conf)
    return fs


@pytest.mark.parametrize(
    ("conf", "runtime", "problem"),
    [
        (None, "950000", True),
        ('#cgroup_controllers = [ "cpuset" ]\n', "950000", True),
        ('cgroup_controllers = [ "cpu", "cpuset" ]\n', "950000", True),
        ('cgroup_controllers = [\n  "cpuset",\n  "memory"\n]\n', "950000", False),
        ('cgroup_controllers = [ "cpuset" ]  # no cpu\n', "950000", False),
        (None, "-1", False),  # RT bandwidth control off: no runtime check
    ],
)
def test_rt_group_diagnosis(tmp_path: Path, conf: str | None, runtime: str, problem: bool) -> None:
    fs = rt_host(tmp_path, conf, runtime)
    found = rtgroup.diagnose(fs)
    assert (found is not None) == problem
    if found:
        assert "/sys/fs/cgroup/cpu,cpuacct/machine (cpu.rt_runtime_us 0" in found
        assert rtgroup.LIBVIRT_ERROR in found


def test_no_rt_group_scheduling_no_problem(tmp_path: Path) -> None:
    build_host(tmp_path)
    assert rtgroup.diagnose(HostFS(tmp_path)) is None


# ---- the state ------------------------------------------------------------------------------


def test_state_round_trip_and_empty_state_removes_the_file(tmp_path: Path) -> None:
    store = StateStore(HostFS(tmp_path))
    state = State()
    claim = Claim("plc", frozenset({3, 4, 5}), settings(cache_ways=2), pid=7, tids=[8, 9])
    claim.cache = {"0": 0xF0000}
    state.claims["plc"] = claim
    state.originals["/proc/irq/5/smp_affinity"] = "ff"
    state.groups["/sys/fs/resctrl/rtlibvirt-plc"] = "plc"
    with store.locked():
        store.save(state)
        loaded = store.load()
    assert loaded.to_json() == state.to_json()
    assert loaded.claims["plc"].cache == {"0": 0xF0000}
    assert sorted(os.listdir(os.path.dirname(store.path))) == ["journal", "lock", "state.json"]
    store.save(State())
    assert not store.exists()


def test_the_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    from rtlibvirt.hook.state import StateError

    store = StateStore(HostFS(tmp_path))
    other = StateStore(HostFS(tmp_path))
    with (
        store.locked(),
        pytest.raises(StateError, match="another rtlibvirt hook has held"),
        other.locked(timeout=0.05),
    ):
        pass


def test_isolated_by_vm_for_other_commands(tmp_path: Path) -> None:
    from rtlibvirt.hook.state import isolated_by_vm

    fs = FakeKernel(tmp_path)
    call = Hook(fs)
    assert isolated_by_vm(fs) == {}
    assert call.start("a", domain_xml("a", [0, 1], [1]), {0: 0, 1: 1}, rt=[1]) == 0
    assert call("b", "prepare", "begin", domain_xml("b", [0, 2], [1])) == 0  # starting
    assert isolated_by_vm(fs) == {"a": frozenset({1}), "b": frozenset({2})}  # isolated already
    fs.path("/run/rtlibvirt/state.json").write_text("{")  # damaged: the journal still says
    assert isolated_by_vm(fs) == {"a": frozenset({1}), "b": frozenset({2})}
    fs.path("/run/rtlibvirt/journal").unlink()
    assert isolated_by_vm(fs) is None


# ---- one definition of the isolation settings --------------------------------------------


@pytest.mark.parametrize(
    "given",
    [{}, {"irqs": False, "cache_ways": 4}, {"machine_check_polling": False, "strict": True}],
)
def test_the_hooks_settings_are_config_vms_isolation(given: dict[str, object]) -> None:
    """The hook defines no isolation key, type or default of its own: what it keeps
    between calls is the Isolation model's dump, and it reads back into the model."""
    from rtlibvirt.config.model import Errors
    from rtlibvirt.config.vm import Isolation
    from rtlibvirt.hook import isolation

    errors = Errors()
    model = Isolation.parse(given, (), errors)
    assert not errors.found
    carried = Settings.from_json(Settings.from_model(model).to_json())  # through a state
    assert carried.to_json() == model.dump()
    again = Isolation.parse(carried.to_json(), (), errors)
    assert again == model and not errors.found
    for field in Isolation.settings():
        assert getattr(carried, field.name) == getattr(model, field.name)
    # nothing in the hook's class names a setting: no table to keep in step
    names = {f.name for f in Isolation.settings()}
    assert not names & set(vars(Settings)), names & set(vars(Settings))
    assert Settings.__slots__ == ("_values",)
    # every step asks for a setting the model has
    for step in isolation.steps():
        step.wants(carried)
    with pytest.raises(AttributeError):
        _ = carried.no_such_setting


def test_a_setting_newer_than_a_saved_claim_takes_the_models_default() -> None:
    from rtlibvirt.config.vm import Isolation

    old = Settings.from_json({"irqs": True, "workqueues": True})  # saved before `tasks`
    assert old.tasks is Isolation().tasks is True

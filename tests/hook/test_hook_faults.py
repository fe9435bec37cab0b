"""The state can never lose an original: every fault ends with the host as it was.

For each fault (hostile metadata, a kill at any point of any hook call, a
state file or journal edited by hand or torn) the test plays two VMs through
their whole life on a fake host that behaves like the kernel, and requires
that once the last VM has stopped, every value the hook may touch is
byte-identical to what it was before the first start.

The VMs: ``a`` on CPU 1 (IRQs, workqueues, machine-check polling off) and
``b`` on CPU 2 (IRQs, workqueues, 2 exclusive L3 cache ways on a resctrl the
hook mounts itself), both with host tasks moved and the kernel threads of
their CPUs raised: the host is a PREEMPT_RT kernel's (``ksoftirqd/N``,
``ktimers/N``, ``rcuc/N`` per CPU, an ``rcub/0`` of every CPU, as
tests/fakes/tasks.py makes them), so every ``sched_setscheduler`` and
``sched_setaffinity`` is a change the hook can be killed at too.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rtlibvirt.hook import state as hookstate
from rtlibvirt.kernel import files
from tests.fakes.hook import Hook, domain_xml
from tests.fakes.host import FakeKernel, Killed, remove_vm
from tests.fakes.host import snapshot as file_snapshot
from tests.fakes.tasks import TaskKernel, add_kernel_threads, task_snapshot

A_XML = domain_xml("a", [0, 1], [1], isolation={"machine_check_polling": False})
B_XML = domain_xml("b", [0, 2], [1], isolation={"cache_ways": 2})
XML = {"a": A_XML, "b": B_XML}
CPU = {"a": 1, "b": 2}

# The life of the two VMs, as libvirt calls the hook; "qemu" and "exit" are the
# QEMU process appearing and going away (not hook calls).
LIVES = {
    "a-first": [
        ("a", "prepare"),
        ("a", "qemu"),
        ("a", "started"),
        ("b", "prepare"),
        ("b", "qemu"),
        ("b", "started"),
        ("a", "exit"),
        ("a", "stopped"),
        ("a", "release"),
        ("b", "exit"),
        ("b", "stopped"),
        ("b", "release"),
    ],
    "b-first": [
        ("a", "prepare"),
        ("a", "qemu"),
        ("a", "started"),
        ("b", "prepare"),
        ("b", "qemu"),
        ("b", "started"),
        ("b", "exit"),
        ("b", "stopped"),
        ("b", "release"),
        ("a", "exit"),
        ("a", "stopped"),
        ("a", "release"),
    ],
}
SUB = {"prepare": "begin", "started": "begin", "stopped": "end", "release": "end"}


class KillSwitch:
    """Counts every change the hook makes (host writes, journal and state writes) and
    'kills' the hook (raises Killed) at change number ``at``."""

    def __init__(self) -> None:
        self.count = 0
        self.at: int | None = None
        self.torn = False  # a journal write killed half-way through

    def tick(self, what: str) -> None:
        if self.at is not None and self.count == self.at:
            self.at = None
            raise Killed(what)
        self.count += 1


@pytest.fixture
def switch(monkeypatch: pytest.MonkeyPatch) -> KillSwitch:
    ks = KillSwitch()
    flush = hookstate.Journal.flush
    atomic = files.atomic_write

    def killing_flush(self: hookstate.Journal) -> None:
        if self.pending:
            if ks.torn and ks.at == ks.count:
                # half of the pending lines reach the file, then the hook dies
                data = "".join(self.pending).encode()
                with open(self.path, "ab") as handle:
                    handle.write(data[: len(data) // 2])
            ks.tick(f"journal {self.path}")
        flush(self)

    def killing_atomic_write(
        path: Any, data: bytes, mode: int | None = None, *, durable: bool = True
    ) -> None:
        ks.tick(f"atomic write {path}")
        atomic(path, data, mode, durable=durable)

    monkeypatch.setattr(hookstate.Journal, "flush", killing_flush)
    monkeypatch.setattr(hookstate.files, "atomic_write", killing_atomic_write)
    return ks


def snapshot(fs: FakeKernel) -> dict[str, str]:
    """Every value the hook may change: files, and threads' affinity and scheduling."""
    found = file_snapshot(fs)
    if isinstance(fs, TaskKernel):
        found |= task_snapshot(fs)
    return found


class Host(TaskKernel):
    """The fake kernel (with kernel threads), with every change counted by a kill switch."""

    switch: KillSwitch | None = None

    def write(self, host_path: str, value: str) -> None:
        if self.switch is not None:
            self.switch.tick(f"write {host_path}")
        super().write(host_path, value)

    def mkdir(self, host_path: str, mode: int = 0o755) -> None:
        if self.switch is not None and host_path.startswith("/sys/fs/resctrl/"):
            self.switch.tick(f"mkdir {host_path}")
        super().mkdir(host_path, mode)

    def rmdir(self, host_path: str) -> None:
        if self.switch is not None:
            self.switch.tick(f"rmdir {host_path}")
        super().rmdir(host_path)

    def mount(self, fstype: str, target: str) -> None:
        if self.switch is not None:
            self.switch.tick(f"mount {target}")
        super().mount(fstype, target)

    def umount(self, target: str) -> None:
        if self.switch is not None:
            self.switch.tick(f"umount {target}")
        super().umount(target)


def make_host(root: Path, switch: KillSwitch | None = None) -> Host:
    fs = Host(root, cgroups=None, resctrl=True)
    fs.write("/proc/irq/8/smp_affinity", "2")  # an IRQ on a VM's CPU only
    fs.add_process(1, "init")
    add_kernel_threads(fs, rt=True, only=(1, 2, 3))  # the VMs' CPUs, and one of neither
    fs.switch = switch
    return fs


def live(
    call: Hook,
    life: list[tuple[str, str]],
    between: Callable[[int], None] | None = None,
    xml: dict[str, str] | None = None,
) -> list[str]:
    """Play ``life``; a call killed half-way fails the VM's start (libvirt then stops it).

    Returns what was killed, for the test's message.
    """
    xml = xml or XML
    killed: list[str] = []
    failed: set[str] = set()
    for index, (name, op) in enumerate(life):
        if between is not None:
            between(index)
        if name in failed and op in ("qemu", "started"):
            continue
        if op == "qemu":
            call.qemu(
                name, {0: (frozenset({0}), "other", 0), 1: (frozenset({CPU[name]}), "fifo", 1)}
            )
            continue
        if op == "exit":
            if name in call.pids:
                remove_vm(call.root, name, call.pids.pop(name))
            continue
        try:
            call(name, op, SUB[op], xml[name])
        except Killed as exc:
            killed.append(f"{name} {op}: {exc}")
            if op in ("prepare", "started") and name not in failed:
                # libvirt sees the hook die: the start fails, QEMU goes, the stop hooks run
                failed.add(name)
                if name in call.pids:
                    remove_vm(call.root, name, call.pids.pop(name))
                for stop in ("stopped", "release"):
                    call(name, stop, SUB[stop], xml[name])
    return killed


def changes_in(life: str, root: Path, switch: KillSwitch) -> int:
    """Every change of ``life``: the host's, and the journal and snapshot writes, which
    ``switch`` (the fixture's: the patched journal and atomic writes tick it) counts."""
    switch.count, switch.at = 0, None
    fs = make_host(root, switch)
    live(Hook(fs), LIVES[life])
    return switch.count


def assert_restored(fs: FakeKernel, before: dict[str, str], call: Hook, why: object) -> None:
    after = snapshot(fs)
    diff = {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys()}
    diff = {k: v for k, v in diff.items() if v[0] != v[1]}
    assert diff == {}, f"{why}: {diff}\n{call.log()}"
    assert call.state() is None, why


def test_a_clean_life_restores_the_host(tmp_path: Path) -> None:
    fs = make_host(tmp_path)
    call = Hook(fs)
    before = snapshot(fs)
    assert live(call, LIVES["a-first"]) == []
    assert "0" in fs.read("/sys/devices/system/machinecheck/machinecheck0/check_interval")
    assert_restored(fs, before, call, "no fault")


def test_the_state_is_never_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal and snapshot live in /run and guard against a killed hook process,
    for which a write that returned suffices (the kill tests below): an fsync there only
    cost time (~1 ms each, and up to 100 ms on a busy disk-backed /run)."""
    synced: list[int] = []

    def fsync(fd: int) -> None:
        synced.append(fd)

    fs = make_host(tmp_path)
    call = Hook(fs)
    before = snapshot(fs)
    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(hookstate.os, "fsync", fsync)
    assert live(call, LIVES["b-first"]) == []
    assert synced == []
    monkeypatch.undo()
    assert_restored(fs, before, call, "no fsync")
    # while the state's own writes are not durable, every other atomic write still is
    target = tmp_path / "durable"
    monkeypatch.setattr(files.os, "fsync", fsync)
    files.atomic_write(target, b"x")
    assert len(synced) == 2 and target.read_bytes() == b"x"  # the file and its folder


@pytest.mark.parametrize("life", sorted(LIVES))
@pytest.mark.parametrize("torn", [False, True], ids=["killed", "torn-journal"])
def test_a_kill_at_any_change_loses_no_original(
    tmp_path: Path, switch: KillSwitch, life: str, torn: bool
) -> None:
    total = changes_in(life, tmp_path / "count", switch)
    assert total > 40  # the hook really changes things in this life
    for at in range(total):
        root = tmp_path / f"at-{at}"
        switch.count, switch.at, switch.torn = 0, at, torn
        fs = make_host(root, switch)
        call = Hook(fs)
        switch.at = None
        before = snapshot(fs)
        switch.count, switch.at = 0, at
        killed = live(call, LIVES[life])
        assert killed, f"nothing was killed at change {at} of {total}"
        assert_restored(fs, before, call, f"killed at change {at}: {killed}")


def test_a_kill_is_reported_nowhere_but_the_next_call_finishes_the_work(
    tmp_path: Path, switch: KillSwitch
) -> None:
    fs = make_host(tmp_path, switch)
    call = Hook(fs)
    before = snapshot(fs)
    switch.count, switch.at, switch.torn = 0, 14, True
    killed = live(call, LIVES["a-first"])
    assert killed
    assert "damaged and skipped" not in call.log()  # a torn last line is expected, not damage
    assert_restored(fs, before, call, killed)


# ---- hostile metadata --------------------------------------------------------------------


def edit_spec(xml: str, change: Callable[[dict[str, Any]], None]) -> str:
    start = xml.index("<rtlibvirt:vm")
    start = xml.index(">", start) + 1
    end = xml.index("</rtlibvirt:vm>")
    spec = json.loads(xml[start:end])
    change(spec)
    return xml[:start] + json.dumps(spec) + xml[end:]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        node = spec
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value

    return change


HOSTILE = {
    "cpu -1": _set("cpu.pinning", [0, -1]),
    "cpu true": _set("cpu.pinning", [0, True]),
    "cpu 1.5": _set("cpu.pinning", [0, 1.5]),
    "cpu huge": _set("cpu.pinning", [0, 10**30]),
    "cpu offline": _set("cpu.pinning", [0, 7]),
    "cpulist bomb": _set("cpu.pinning", "0-99999999"),
    "vcpus bool": _set("cpu.realtime.vcpus", [True]),
    "irqs string": _set("isolation.irqs", "yes"),
    "irqs int": _set("isolation.irqs", 1),
    "cache ways -1": _set("isolation.cache_ways", -1),
    "cache ways bool": _set("isolation.cache_ways", True),
    "unknown key": _set("isolation.everything", True),
    "isolation list": _set("isolation", [1, 2]),
    "name newline": _set("name", "b\nfake log line"),
    "name slash": _set("name", "../../etc"),
    "long string": _set("cpu.model", "x y" * 50_000),
    "spec not a mapping": lambda spec: spec.clear() or spec.update({"name": []}),
}


def raw_metadata(xml: str, text: str) -> str:
    start = xml.index("<rtlibvirt:vm")
    start = xml.index(">", start) + 1
    end = xml.index("</rtlibvirt:vm>")
    return xml[:start] + text + xml[end:]


RAW = {
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "5000 digits": '{"name": ' + "9" * 5000 + "}",
    "not json": "{{{",
    "a list": "[1, 2, 3]",
    "empty": "",
}


def hostile_cases() -> Iterator[tuple[str, str]]:
    for label, change in HOSTILE.items():
        yield label, edit_spec(B_XML, change)
    for label, text in RAW.items():
        yield label, raw_metadata(B_XML, text)
    yield "doctype", '<!DOCTYPE d [<!ENTITY x "y">]>' + B_XML


@pytest.mark.parametrize(
    ("label", "xml"), list(hostile_cases()), ids=[c[0] for c in hostile_cases()]
)
def test_hostile_metadata_is_refused_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], label: str, xml: str
) -> None:
    fs = make_host(tmp_path)
    call = Hook(fs)
    before = snapshot(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    capsys.readouterr()
    during = snapshot(fs)
    state_before = call.state()

    assert call("b", "prepare", "begin", xml) == 1, label
    err = capsys.readouterr().err
    assert err.startswith("rtlibvirt: b: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err
    assert len(err) < 2000
    call.qemu("b", {1: (frozenset({2}), "fifo", 1)})
    assert call("b", "started", "begin", xml) == 0
    assert call("b", "reconnect", "begin", xml) == 0
    assert snapshot(fs) == during  # nothing changed for b
    assert call.state() == state_before or sorted(call.state()["claims"]) == ["a"]  # type: ignore[index]
    assert call.stop("b", xml) == (0, 0)
    assert snapshot(fs) == during
    assert "internal error" not in call.log()
    assert call.stop("a", A_XML) == (0, 0)
    assert_restored(fs, before, call, label)


@pytest.mark.parametrize("size", [5 << 20, 17 << 20], ids=["5MiB", "17MiB"])
def test_megabytes_of_xml_end_cleanly(tmp_path: Path, size: int) -> None:
    """Up to 16 MiB is parsed (a long XML is still a domain); beyond, the rest is
    read and dropped, and the VM gets no isolation from it (nothing is changed)."""
    fs = make_host(tmp_path)
    call = Hook(fs)
    before = snapshot(fs)
    xml = B_XML.replace("</domain>", "<!--" + "x" * size + "--></domain>")
    code = call("b", "prepare", "begin", xml)
    if size > 16 << 20:
        assert code == 0
        assert "longer than 16777216 characters: no isolation from it" in call.log()
        assert call.state() is None
    else:
        assert code == 0 and call.state() is not None
        assert call.stop("b", xml) == (0, 0)
    assert snapshot(fs) == before


def test_remembered_validations_are_checked_and_a_damaged_memory_costs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rtlibvirt.hook.domain import VALIDATED_FILE

    fs = make_host(tmp_path)
    call = Hook(fs)
    assert call("b", "prepare", "begin", B_XML) == 0
    assert call.stop("b", B_XML) == (0, 0)
    memory = fs.path(VALIDATED_FILE)
    assert memory.exists()
    # the remembered settings, but the CPUs are checked on every call
    fs.write("/sys/devices/system/cpu/online", "0-1")
    assert call("b", "prepare", "begin", B_XML) == 1
    assert "CPU 2, which is not online" in capsys.readouterr().err
    fs.write("/sys/devices/system/cpu/online", "0-3")
    for damage in (b"{", b"[]", b'{"' + b"0" * 64 + b'": {"settings": {"irqs": "yes"}}}'):
        memory.write_bytes(damage)
        assert call("b", "prepare", "begin", B_XML) == 0  # validated again
        assert call.stop("b", B_XML) == (0, 0)
    hostile = edit_spec(B_XML, HOSTILE["cpu -1"])
    assert call("b", "prepare", "begin", hostile) == 1  # never remembered
    assert call("b", "prepare", "begin", hostile) == 1


def test_a_log_line_cannot_be_forged_by_a_domain_name(tmp_path: Path) -> None:
    fs = make_host(tmp_path)
    call = Hook(fs)
    name = "b\n2026-01-01T00:00:00+0000 rtlibvirt-hook[1] info: forged"
    assert call(name, "prepare", "begin", B_XML) == 1
    log = call.log()
    assert "\nforged" not in log and "\n2026-01-01" not in log
    assert "b\\x0a2026-01-01" in log


def test_the_last_housekeeping_cpu_stays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fs = FakeKernel(tmp_path, cpus=2)
    call = Hook(fs)
    before = snapshot(fs)
    a = domain_xml("a", [0, 1], [1])
    assert call.start("a", a, {0: 0, 1: 1}, rt=[1]) == 0
    capsys.readouterr()
    z = domain_xml("z", [1, 0], [1], emulator="1")  # its realtime vCPU on CPU 0
    assert call("z", "prepare", "begin", z) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "rtlibvirt: z: isolating CPU 0 would leave the host no housekeeping CPU: "
        "CPU 0 must stay with the host (online: 0-1; held by other real-time VMs: 1; "
        "isolated at boot: none)"
    ), err
    assert call.stop("a", a) == (0, 0)
    assert call("z", "prepare", "begin", z) == 0  # CPU 1 is housekeeping again
    assert call.stop("z", z) == (0, 0)
    assert snapshot(fs) == before


# ---- the state edited by hand, or damaged --------------------------------------------------


def _rewrite_state(fs: FakeKernel, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit state.json's JSON and write it back with a correct checksum (a forgery).

    A forgery that validates (say, one that drops an original) is taken as
    the state: the checksum tells an edit by hand or damage from the hook's own
    writing, not a root user who means it. What is checked here is that a
    forgery that does not validate (a path outside the hook's files, a value
    of the wrong type) is refused and the state rebuilt from the journal.
    """
    path = fs.path(hookstate.STATE_FILE)
    _head, _, body = path.read_bytes().partition(b"\n")
    data = json.loads(body)
    change(data)
    new = json.dumps(data, indent=1).encode()
    path.write_bytes(
        f"{hookstate.HEADER} {hookstate.FORMAT} {zlib.crc32(new):08x}\n".encode() + new + b"\n"
    )


def _text_edit(old: str, new: str) -> Callable[[FakeKernel], None]:
    def edit(fs: FakeKernel) -> None:
        path = fs.path(hookstate.STATE_FILE)
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    return edit


def _journal(change: Callable[[bytes], bytes]) -> Callable[[FakeKernel], None]:
    def edit(fs: FakeKernel) -> None:
        path = fs.path(hookstate.JOURNAL_FILE)
        path.write_bytes(change(path.read_bytes()))

    return edit


def _flip_middle(data: bytes) -> bytes:
    lines = data.split(b"\n")
    middle = len(lines) // 3
    lines[middle] = lines[middle].replace(b'"', b"'", 2)
    return b"\n".join(lines)


EDITS: dict[str, Callable[[FakeKernel], None]] = {
    "an original changed": _text_edit('"f"', '"1"'),
    "a claim's cpu -1": _text_edit('"cpus":"1"', '"cpus":"-1"'),
    "a claim dropped": _text_edit('"claims":{', '"claims":{"zz":1,'),
    "truncated": lambda fs: fs.path(hookstate.STATE_FILE).write_bytes(
        fs.path(hookstate.STATE_FILE).read_bytes()[:300]
    ),
    "emptied": lambda fs: fs.path(hookstate.STATE_FILE).write_text(""),
    "deleted": lambda fs: fs.path(hookstate.STATE_FILE).unlink(),
    "forged: a path outside": lambda fs: _rewrite_state(
        fs, lambda d: d["originals"].update({"/etc/shadow": "root::0:0"})
    ),
    "forged: settings of another type": lambda fs: _rewrite_state(
        fs, lambda d: d["claims"]["a"]["settings"].update({"irqs": "yes"})
    ),
    "journal: a line damaged": _journal(_flip_middle),
    "journal: last line torn": _journal(lambda data: data[:-7]),
    "journal: deleted": lambda fs: fs.path(hookstate.JOURNAL_FILE).unlink(),
    "journal: garbage appended": _journal(lambda data: data + b"\x00\xff garbage\n{}\n"),
}


WHEN = {3: "a-running", 6: "both-running", 8: "b-running"}
A_ONLY = {"a claim's cpu -1", "forged: settings of another type"}  # edit a's claim


@pytest.mark.parametrize(
    ("edit", "when"),
    [(e, w) for e in sorted(EDITS) for w in WHEN if not (e in A_ONLY and w == 8)],
    ids=[f"{e}-{WHEN[w]}" for e in sorted(EDITS) for w in WHEN if not (e in A_ONLY and w == 8)],
)
def test_a_state_edited_by_hand_loses_no_original(tmp_path: Path, edit: str, when: int) -> None:
    fs = make_host(tmp_path)
    call = Hook(fs)
    before = snapshot(fs)

    applied: list[bool] = []

    def between(index: int) -> None:
        if index == when:
            try:
                EDITS[edit](fs)
                applied.append(True)
            except (AssertionError, KeyError, FileNotFoundError):
                applied.append(False)  # nothing to edit at this point of the life

    live(call, LIVES["a-first"], between)
    # the forged state named /etc/shadow: the hook never wrote outside its files
    assert not fs.path("/etc/shadow").exists()
    assert_restored(fs, before, call, edit)
    assert applied == [True], f"{edit!r} had nothing to edit at step {when}"


def test_a_damaged_state_is_reported(tmp_path: Path) -> None:
    fs = make_host(tmp_path)
    call = Hook(fs)
    assert call.start("a", A_XML, {0: 0, 1: 1}, rt=[1]) == 0
    EDITS["forged: a path outside"](fs)
    assert call.start("b", B_XML, {0: 0, 1: 2}, rt=[1]) == 0
    st = call.state()
    assert st is not None
    assert any("/etc/shadow" in r and "rebuilt from the journal" in r for r in st["recovered"])
    assert "is no file of the hook" in call.log()

"""The parser and the attribution, on trace text in the kernel's exact format.

``tests/data/noise/trace-cpu1.txt`` is the ``trace`` file of an instance on
this machine's kernel (6.18) with the events rtlibvirt enables, CPU 1 only,
while ``dd oflag=direct`` wrote to the virtio disk. The short traces below
are written line by line in the same format.
"""

from __future__ import annotations

from pathlib import Path

from rtlibvirt.noise.attribute import Attribution
from rtlibvirt.noise.events import IGNORE, parse, printable

DATA = Path(__file__).resolve().parents[1] / "data" / "noise" / "trace-cpu1.txt"


def _line(comm: str, pid: int, ts: str, event: str, data: str, cpu: int = 1) -> str:
    return f"{comm:>16}-{pid:<7} [{cpu:03d}] d.h1. {ts:>12}: {event}: {data}"


def _switch(prev: tuple[str, int], nxt: tuple[str, int], ts: str) -> str:
    data = (
        f"prev_comm={prev[0]} prev_pid={prev[1]} prev_prio=120 prev_state=S ==> "
        f"next_comm={nxt[0]} next_pid={nxt[1]} next_prio=120"
    )
    return _line(prev[0], prev[1], ts, "sched_switch", data)


def _run(lines: list[str], owners: frozenset[int] = frozenset(), end: int | None = None):
    events = [parse(line) for line in lines]
    stamps = [e.ts_us for e in events if e is not None]
    att = Attribution({1: owners}, min(stamps), end if end is not None else max(stamps))
    att.feed(events)
    att.finish()
    return att, att.cpus[1]


def test_every_line_of_the_recorded_trace_parses() -> None:
    lines = [x for x in DATA.read_text().splitlines() if not x.startswith("#")]
    events = [parse(line) for line in lines]
    assert len(lines) > 1000
    assert all(e is not None for e in events)
    kinds = {(e.kind, e.name) for e in events if e is not None and e.action != IGNORE}
    assert ("irq", "36") in kinds and ("softirq", "BLOCK") in kinds
    assert ("timer", "local timer") in kinds and ("workqueue", "blk_mq_requeue_work") in kinds


def test_the_recorded_trace_is_attributed_and_adds_up() -> None:
    lines = [x for x in DATA.read_text().splitlines() if not x.startswith("#")]
    att, cpu = _run(lines)
    assert cpu.unmatched == 0
    names = {s.name: s for s in cpu.sources.values()}
    irq = names["IRQ 36 virtio1-req.0"]
    assert irq.kind == "irq" and irq.irq == 36 and irq.count > 100
    assert names["local timer: tick_nohz_handler"].count >= 5
    assert any(s.kind == "thread" and s.name.startswith("dd (pid ") for s in cpu.sources.values())
    # own times add up to the CPU's time lost
    total = sum(s.time_us for s in cpu.sources.values())
    assert abs(total - cpu.lost_us) < 1e-6
    assert 0 < cpu.lost_us <= att.end - att.start
    for source in cpu.sources.values():
        assert source.max_us <= att.end - att.start


def test_a_task_waking_every_millisecond_counts_once_a_wakeup() -> None:
    lines = []
    for i in range(100):
        t = 1000.0 + i / 1000
        lines += [
            _line("<idle>", 0, f"{t:.6f}", "local_timer_entry", "vector=236"),
            _line(
                "<idle>",
                0,
                f"{t + 2e-6:.6f}",
                "hrtimer_expire_entry",
                "hrtimer=00000000a1 function=hrtimer_wakeup now=1000000",
            ),
            _line("<idle>", 0, f"{t + 5e-6:.6f}", "local_timer_exit", "vector=236"),
            _switch(("swapper/1", 0), ("ticker", 4242), f"{t + 7e-6:.6f}"),
            _switch(("ticker", 4242), ("swapper/1", 0), f"{t + 17e-6:.6f}"),
        ]
    _, cpu = _run(lines, end=int(1000.1 * 1e6))
    ticker = cpu.sources[("thread", "ticker (pid 4242)")]
    assert ticker.count == 100 and ticker.pid == 4242
    assert abs(ticker.time_us - 1000) <= 100 and ticker.max_us == 10
    timer = cpu.sources[("timer", "local timer: hrtimer_wakeup")]
    assert timer.count == 100 and timer.max_us == 5
    assert cpu.disturbances == 200


def test_the_owner_thread_is_not_noise_but_interrupts_over_it_are() -> None:
    lines = [
        _switch(("swapper/1", 0), ("CPU 0/TCG", 77), "1000.000000"),
        _line("CPU 0/TCG", 77, "1000.000100", "irq_handler_entry", "irq=36 name=virtio1-req.0"),
        _line("CPU 0/TCG", 77, "1000.000104", "irq_handler_exit", "irq=36 ret=handled"),
        _line("CPU 0/TCG", 77, "1000.000200", "softirq_entry", "vec=4 [action=BLOCK]"),
        _line("CPU 0/TCG", 77, "1000.000203", "softirq_exit", "vec=4 [action=BLOCK]"),
        _switch(("CPU 0/TCG", 77), ("swapper/1", 0), "1000.001000"),
    ]
    _, cpu = _run(lines, owners=frozenset({77}))
    assert set(cpu.sources) == {("irq", "IRQ 36 virtio1-req.0"), ("softirq", "BLOCK")}
    assert cpu.lost_us == 7 and cpu.disturbances == 2


def test_a_work_item_stays_with_its_kworker_while_it_sleeps() -> None:
    work = "work struct 00000000c0e82e20: function vmstat_update"
    lines = [
        _switch(("swapper/1", 0), ("kworker/1:1", 84), "1000.000000"),
        _line("kworker/1:1", 84, "1000.000002", "workqueue_execute_start", work),
        _switch(("kworker/1:1", 84), ("swapper/1", 0), "1000.000010"),
        _switch(("swapper/1", 0), ("kworker/1:1", 84), "1000.000500"),
        _line("kworker/1:1", 84, "1000.000530", "workqueue_execute_end", work),
        _switch(("kworker/1:1", 84), ("swapper/1", 0), "1000.000532"),
    ]
    _, cpu = _run(lines)
    item = cpu.sources[("workqueue", "vmstat_update")]
    assert item.count == 1 and item.time_us == 38
    thread = cpu.sources[("thread", "kworker/1:1 (pid 84)")]
    assert thread.count == 2 and thread.time_us == 4
    assert cpu.disturbances == 2 and cpu.lost_us == 42


def test_function_call_ipis_are_named_by_their_functions() -> None:
    lines = [
        _line("<idle>", 0, "1000.000000", "call_function_entry", "vector=251"),
        _line("<idle>", 0, "1000.000001", "csd_function_entry", "func=flush_tlb_func, csd=00ab"),
        _line("<idle>", 0, "1000.000003", "call_function_exit", "vector=251"),
        _line("<idle>", 0, "1000.000010", "reschedule_entry", "vector=253"),
        _line("<idle>", 0, "1000.000011", "reschedule_exit", "vector=253"),
    ]
    _, cpu = _run(lines)
    assert cpu.sources[("ipi", "function call: flush_tlb_func (TLB shootdown)")].count == 1
    assert cpu.sources[("ipi", "reschedule")].time_us == 1


def test_hostile_comms_cannot_forge_fields_or_reach_a_terminal() -> None:
    comm = "a ==> next_comm"
    line = _switch(("bash", 10), (comm, 31337), "1000.000000")
    event = parse(line)
    assert event is not None and event.arg == 31337 and event.name == comm
    assert printable("\x1b[2J\u00e9x") == "?[2J?x"
    assert (
        parse(_line("x", 1, "1000.000000", "irq_handler_entry", "irq=1 name=" + "n" * 600)) is None
    )
    assert parse("garbage") is None and parse("") is None

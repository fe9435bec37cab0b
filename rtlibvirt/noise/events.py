"""The lines of a tracefs ``trace_pipe``, parsed into events.

The kernel prints each event as (``print_trace_fmt`` in kernel/trace/trace.c,
with the default options of an instance)::

    <comm>-<pid> [<cpu>] <irq flags> <seconds>.<microseconds>: <event>: <fields>

and the fields as the event's ``print fmt`` says (``events/*/*/format``). Only
the events :data:`EVENTS` lists are enabled, and each is full-matched here:
a line that does not match (a comment, a line cut short, a ``LOST EVENTS``
marker) is counted, never guessed at. Comms are chosen by whoever runs the
task (15 bytes, any characters): they are bounded, full-matched between
fixed anchors, and made printable before they reach a report.

Standard library only.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# The tracepoints this measurement enables: (system, event). Every one exists
# on x86 kernels since 6.3 (csd since 6.3; the rest since 2.6/3.x); an event
# the running kernel lacks is skipped when the session starts (see tracefs).
EVENTS: tuple[tuple[str, str], ...] = (
    ("irq", "irq_handler_entry"),
    ("irq", "irq_handler_exit"),
    ("irq", "softirq_entry"),
    ("irq", "softirq_exit"),
    ("irq_vectors", "local_timer_entry"),
    ("irq_vectors", "local_timer_exit"),
    ("irq_vectors", "reschedule_entry"),
    ("irq_vectors", "reschedule_exit"),
    ("irq_vectors", "call_function_entry"),
    ("irq_vectors", "call_function_exit"),
    ("irq_vectors", "call_function_single_entry"),
    ("irq_vectors", "call_function_single_exit"),
    ("irq_vectors", "irq_work_entry"),
    ("irq_vectors", "irq_work_exit"),
    ("irq_vectors", "x86_platform_ipi_entry"),
    ("irq_vectors", "x86_platform_ipi_exit"),
    ("irq_vectors", "thermal_apic_entry"),
    ("irq_vectors", "thermal_apic_exit"),
    ("irq_vectors", "error_apic_entry"),
    ("irq_vectors", "error_apic_exit"),
    ("irq_vectors", "spurious_apic_entry"),
    ("irq_vectors", "spurious_apic_exit"),
    ("timer", "hrtimer_expire_entry"),
    ("timer", "hrtimer_expire_exit"),
    ("timer", "timer_expire_entry"),
    ("timer", "timer_expire_exit"),
    ("workqueue", "workqueue_execute_start"),
    ("workqueue", "workqueue_execute_end"),
    ("csd", "csd_function_entry"),
    ("sched", "sched_switch"),
)

# kernel/softirq.c softirq_to_name[]
SOFTIRQS = (
    "HI",
    "TIMER",
    "NET_TX",
    "NET_RX",
    "BLOCK",
    "IRQ_POLL",
    "TASKLET",
    "SCHED",
    "HRTIMER",
    "RCU",
)

_HEADER = re.compile(
    r" *(?P<comm>.{1,16}?)-(?P<pid>\d{1,10}) +(?:\( *[-\d]{1,10}\) +)?"
    r"\[(?P<cpu>\d{1,5})\] +(?:[^ \[\]]{1,8} +)?(?P<sec>\d{1,12})\.(?P<usec>\d{6}): "
    r"(?P<event>[a-z0-9_]{1,64}): (?P<data>.{0,512})"
)
_SYMBOL = r"[\w.$]{1,128}(?:\+0x[0-9a-f]{1,16}/0x[0-9a-f]{1,16})?(?: \[[\w-]{1,64}\])?"
_IRQ_ENTRY = re.compile(r"irq=(\d{1,10}) name=(.{0,64})")
_IRQ_EXIT = re.compile(r"irq=(\d{1,10}) ret=\w{1,16}")
_SOFTIRQ = re.compile(r"vec=(\d{1,3}) \[action=\w{1,16}\]")
_VECTOR = re.compile(r"vector=(\d{1,3})")
_FUNCTION = re.compile(
    rf"(?:hrtimer|timer)=[0-9a-f]{{1,16}} function=({_SYMBOL}) "
    r"now=\d{1,20}(?: baseclk=\d{1,20})?"
)
_EXPIRE_EXIT = re.compile(r"(?:hrtimer|timer)=[0-9a-f]{1,16}")
_WORK = re.compile(rf"work struct [0-9a-f]{{1,16}}: function ({_SYMBOL})")
_CSD = re.compile(rf"func=({_SYMBOL}), csd=[0-9a-f]{{1,16}}")
_SWITCH = re.compile(
    r"prev_comm=(?P<prev_comm>.{0,16}?) prev_pid=(?P<prev_pid>\d{1,10}) prev_prio=-?\d{1,5} "
    r"prev_state=\S{1,16} ==> next_comm=(?P<next_comm>.{0,16}?) next_pid=(?P<next_pid>\d{1,10}) "
    r"next_prio=-?\d{1,5}"
)

# What each event means to the attribution (see attribute.py):
ENTER, EXIT, DETAIL, SWITCH = "enter", "exit", "detail", "switch"
IGNORE = "ignore"  # an event of ours that the attribution does not need


class Event(NamedTuple):
    """One parsed event. ``ts_us``: microseconds of the trace clock."""

    cpu: int
    ts_us: int
    pid: int  # the task the CPU ran when the event fired (0: idle)
    comm: str
    action: str  # ENTER, EXIT, DETAIL or SWITCH
    kind: str  # irq, softirq, timer, ipi, workqueue, function (a detail), thread (a switch)
    name: str  # IRQ number, softirq name, vector event, function name, next comm
    arg: int = 0  # IRQ number; for a switch, the next pid
    text: str = ""  # an IRQ's action name (irq_handler_entry name=)


def printable(text: str) -> str:
    """``text`` with every control or non-ASCII character shown as ``?``."""
    return "".join(c if " " <= c < "\x7f" else "?" for c in text)


_VECTOR_EVENTS = {
    "local_timer": ("timer", "local timer"),
    "reschedule": ("ipi", "reschedule"),
    "call_function": ("ipi", "function call"),
    "call_function_single": ("ipi", "function call"),
    "irq_work": ("ipi", "irq work"),
    "x86_platform_ipi": ("irq", "platform IPI"),
    "thermal_apic": ("irq", "thermal APIC"),
    "error_apic": ("irq", "APIC error"),
    "spurious_apic": ("irq", "spurious APIC"),
}


def parse(line: str) -> Event | None:
    """One line of ``trace_pipe``; None for anything that is not one of :data:`EVENTS`."""
    m = _HEADER.fullmatch(line)
    if m is None:
        return None
    event, data = m["event"], m["data"]
    head = (int(m["cpu"]), int(m["sec"]) * 1_000_000 + int(m["usec"]), int(m["pid"]), m["comm"])
    if event == "sched_switch":
        s = _SWITCH.fullmatch(data)
        if s is None:
            return None
        return Event(*head, SWITCH, "thread", printable(s["next_comm"]), int(s["next_pid"]))
    if event == "irq_handler_entry":
        s = _IRQ_ENTRY.fullmatch(data)
        if s is None:
            return None
        return Event(*head, ENTER, "irq", s[1], int(s[1]), printable(s[2]))
    if event == "irq_handler_exit":
        s = _IRQ_EXIT.fullmatch(data)
        return None if s is None else Event(*head, EXIT, "irq", s[1], int(s[1]))
    if event in ("softirq_entry", "softirq_exit"):
        s = _SOFTIRQ.fullmatch(data)
        if s is None:
            return None
        vec = int(s[1])
        name = SOFTIRQS[vec] if vec < len(SOFTIRQS) else f"vector {vec}"
        return Event(*head, ENTER if event == "softirq_entry" else EXIT, "softirq", name, vec)
    if event in ("timer_expire_entry", "hrtimer_expire_entry"):
        s = _FUNCTION.fullmatch(data)
        if s is None:
            return None
        if event == "timer_expire_entry":  # a timer-wheel callback: its own frame
            return Event(*head, ENTER, "timer", s[1])
        return Event(*head, DETAIL, "function", s[1])  # the hrtimer behind an interrupt
    if event == "timer_expire_exit":
        return None if _EXPIRE_EXIT.fullmatch(data) is None else Event(*head, EXIT, "timer", "")
    if event in ("hrtimer_expire_exit", "csd_function_exit"):
        return Event(*head, IGNORE, "", "")
    if event in ("workqueue_execute_start", "workqueue_execute_end"):
        s = _WORK.fullmatch(data)
        if s is None:
            return None
        action = ENTER if event == "workqueue_execute_start" else EXIT
        return Event(*head, action, "workqueue", s[1])
    if event == "csd_function_entry":
        s = _CSD.fullmatch(data)
        return None if s is None else Event(*head, DETAIL, "function", s[1])
    base, _, edge = event.rpartition("_")
    if base in _VECTOR_EVENTS and edge in ("entry", "exit") and _VECTOR.fullmatch(data):
        kind, name = _VECTOR_EVENTS[base]
        return Event(*head, ENTER if edge == "entry" else EXIT, kind, name)
    return None

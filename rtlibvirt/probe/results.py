"""cyclictest's results: parsed, checked, and turned into the figures the probe shows.

Two outputs of one run are read:

- ``--json=FILE`` (rt-tests 2.x): per thread its histogram (non-empty buckets
  only), ``cycles``, ``min``, ``max``, ``avg`` and ``cpu``. rt-tests 2.4 writes
  no overflow count and spells two keys with a trailing colon (``cmdline:``,
  ``rt_test_version:``): the overflows are the cycles the histogram does not
  hold (``cycles - sum(histogram)``), and both spellings are read.
- ``-h N`` on stdout: the same histogram as rows ``BUCKET COUNT COUNT ...`` and
  ``# Min/Avg/Max Latencies``, ``# Histogram Overflows`` summary lines.

Statistics follow rteval: when the maximum lies past the histogram (a sample
of N us or more with ``-h N``), the percentiles are refused (None), since the
histogram no longer says where the tail is. min, avg and max are cyclictest's
own exact figures and stay.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rtlibvirt.errors import HostError
from rtlibvirt.probe import guest

if TYPE_CHECKING:
    from rtlibvirt.probe.hostnoise import HostNoise

MAX_OUTPUT = 16 * 1024 * 1024  # bytes of results read from a guest or a host run
MAX_THREADS = 4096
MAX_BUCKETS = 1_000_000  # -h is in µs: a second is far past any real-time question
# \Z, not $: "$" also matches before a final newline
_WIDTH = re.compile(r"(?:^|\s)(?:-h\s*|--histogram[= ])(\d+)(?:\s|\Z)")
_ROW = re.compile(r"^(\d{1,7})((?:\s+\d{1,12})+)\Z")
_SUMMARY = re.compile(
    r"^# (Total|Min Latencies|Avg Latencies|Max Latencies|Histogram Overflows):((?:\s+\d+)*)\s*\Z"
)


class ResultError(HostError):
    """Output of cyclictest that cannot be read."""


@dataclass(frozen=True)
class ThreadResult:
    """One measuring thread of one cyclictest run; every time in µs."""

    cpu: int  # where it ran: a guest vCPU, or a host CPU for the baseline
    samples: int
    min_us: int
    avg_us: float
    max_us: int
    histogram: Mapping[int, int]  # bucket (µs) -> count; empty buckets left out
    width_us: int  # the histogram's range (-h): buckets 0 .. width-1

    @property
    def overflows(self) -> int:
        """Samples past the histogram: cycles minus what the buckets hold."""
        return max(0, self.samples - sum(self.histogram.values()))

    @property
    def past_histogram(self) -> bool:
        return self.overflows > 0 or self.max_us >= self.width_us


@dataclass(frozen=True)
class Summary:
    """The figures of a set of threads taken together."""

    samples: int
    overflows: int
    min_us: int
    avg_us: float
    max_us: int
    p99_us: int | None  # None: refused, the maximum lies past the histogram
    p999_us: int | None
    past_histogram: bool


def percentile(histogram: Mapping[int, int], samples: int, q: float) -> int | None:
    """The smallest bucket at or below which a fraction ``q`` of ``samples`` fall.

    Samples missing from the histogram (overflows) lie above it: a rank among
    them has no bucket, and the answer is None.
    """
    if samples <= 0:
        return None
    rank = max(1, math.ceil(q * samples))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket
    return None


def merged_histogram(threads: Iterable[ThreadResult]) -> dict[int, int]:
    """The buckets of several threads added up."""
    merged: dict[int, int] = {}
    for thread in threads:
        for bucket, count in thread.histogram.items():
            merged[bucket] = merged.get(bucket, 0) + count
    return merged


def summarize(threads: Iterable[ThreadResult]) -> Summary:
    threads = list(threads)
    if not threads:
        raise ResultError("cyclictest reported no measuring thread")
    merged = merged_histogram(threads)
    samples = sum(t.samples for t in threads)
    past = any(t.past_histogram for t in threads)
    avg = sum(t.avg_us * t.samples for t in threads) / samples if samples else 0.0
    return Summary(
        samples=samples,
        overflows=sum(t.overflows for t in threads),
        min_us=min(t.min_us for t in threads),
        avg_us=round(avg, 2),
        max_us=max(t.max_us for t in threads),
        p99_us=None if past else percentile(merged, samples, 0.99),
        p999_us=None if past else percentile(merged, samples, 0.999),
        past_histogram=past,
    )


def histogram_width(cmdline: str) -> int | None:
    """The ``-h N`` of a cyclictest command line."""
    m = _WIDTH.search(cmdline)
    return int(m.group(1)) if m else None


def _number(value: Any, what: str, kind: type = int) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResultError(f"cyclictest's JSON: {what} is {value!r}, not a number")
    if kind is int:
        if value != int(value) or value < 0:
            raise ResultError(f"cyclictest's JSON: {what} is {value!r}, not a count")
        return int(value)
    if not math.isfinite(value) or value < 0:
        raise ResultError(f"cyclictest's JSON: {what} is {value!r}")
    return float(value)


def parse_json(text: str, width_us: int | None = None) -> tuple[dict[str, Any], list[ThreadResult]]:
    """cyclictest's ``--json`` output: its header fields and its threads."""
    if len(text) > MAX_OUTPUT:
        raise ResultError(f"cyclictest's JSON is {len(text)} bytes, more than {MAX_OUTPUT}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultError(f"cyclictest's JSON does not parse: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("thread"), dict):
        raise ResultError("cyclictest's JSON has no 'thread' table")
    header: dict[str, Any] = {
        "cmdline": str(data.get("cmdline:", data.get("cmdline", ""))),
        "version": str(data.get("rt_test_version:", data.get("rt_test_version", ""))),
        "return_code": data.get("return_code"),
        "sysinfo": data.get("sysinfo") if isinstance(data.get("sysinfo"), dict) else {},
    }
    width = width_us or histogram_width(header["cmdline"])
    if width is None or not 0 < width <= MAX_BUCKETS:
        raise ResultError("cyclictest ran without a histogram (-h): no distribution to show")
    threads = data["thread"]
    if len(threads) > MAX_THREADS:
        raise ResultError(f"cyclictest's JSON lists {len(threads)} threads")
    result = []
    for key in sorted(threads, key=lambda k: int(k) if str(k).isdigit() else -1):
        entry = threads[key]
        if not isinstance(entry, dict) or not isinstance(entry.get("histogram"), dict):
            raise ResultError(f"cyclictest's JSON: thread {key} has no histogram")
        if len(entry["histogram"]) > MAX_BUCKETS:
            raise ResultError(f"cyclictest's JSON: thread {key} has too many buckets")
        histogram: dict[int, int] = {}
        for bucket, count in entry["histogram"].items():
            if not str(bucket).isdigit():
                raise ResultError(f"cyclictest's JSON: thread {key}: bucket {bucket!r}")
            histogram[int(bucket)] = _number(count, f"thread {key} bucket {bucket}")
        result.append(
            ThreadResult(
                cpu=_number(entry.get("cpu"), f"thread {key} cpu"),
                samples=_number(entry.get("cycles"), f"thread {key} cycles"),
                min_us=_number(entry.get("min"), f"thread {key} min"),
                avg_us=_number(entry.get("avg"), f"thread {key} avg", float),
                max_us=_number(entry.get("max"), f"thread {key} max"),
                histogram=histogram,
                width_us=width,
            )
        )
    if not result:
        raise ResultError("cyclictest's JSON lists no thread")
    return header, result


@dataclass(frozen=True)
class TextHistogram:
    """cyclictest's ``-h`` output on stdout, one column per thread."""

    buckets: tuple[dict[int, int], ...]
    summary: Mapping[str, tuple[int, ...]]  # "Min Latencies" -> one value per thread

    def overflows(self) -> tuple[int, ...]:
        return self.summary.get("Histogram Overflows", ())


def parse_histogram(text: str) -> TextHistogram:
    """The histogram rows and ``#`` summary lines of ``cyclictest -h``."""
    if len(text) > MAX_OUTPUT:
        raise ResultError(f"cyclictest's histogram is {len(text)} bytes, more than {MAX_OUTPUT}")
    columns: list[dict[int, int]] = []
    summary: dict[str, tuple[int, ...]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        m = _SUMMARY.match(line)
        if m:
            summary[m.group(1)] = tuple(int(v) for v in m.group(2).split())
            continue
        if line.startswith("#"):
            continue
        m = _ROW.match(line)
        if not m:
            raise ResultError(f"cyclictest's histogram, line {number}: {raw[:80]!r}")
        counts = [int(v) for v in m.group(2).split()]
        if len(counts) > MAX_THREADS:
            raise ResultError(f"cyclictest's histogram, line {number}: {len(counts)} columns")
        while len(columns) < len(counts):
            columns.append({})
        bucket = int(m.group(1))
        for column, count in zip(columns, counts, strict=False):
            if count:
                column[bucket] = count
    return TextHistogram(tuple(columns), summary)


@dataclass(frozen=True)
class GuestOutput:
    """What the probe guest wrote to its results port (see ``guest.INIT``)."""

    facts: Mapping[str, str]  # "online", "isolated", "kernel"
    return_code: int | None
    json: str
    histogram: str
    stderr: str


def parse_serial(text: str) -> GuestOutput:
    """Split the results port's text at the marker lines of ``guest.INIT``."""
    text = text.replace("\r", "")
    if guest.BEGIN not in text:
        raise ResultError("the probe guest wrote no results (it did not reach cyclictest)")
    body = text.split(guest.BEGIN, 1)[1]
    if guest.END not in body:
        raise ResultError("the probe guest's results end early: it stopped before cyclictest did")
    body = body.split(guest.END, 1)[0]
    sections: dict[str, list[str]] = {"": []}
    current = ""
    return_code = None
    for line in body.splitlines():
        if line.startswith("RTLPROBE RC "):
            value = line.removeprefix("RTLPROBE RC ").strip()
            return_code = int(value) if value.isdigit() else None
            continue
        if line.startswith("RTLPROBE "):
            current = line.removeprefix("RTLPROBE ").strip()
            sections[current] = []
            continue
        sections.setdefault(current, []).append(line)
    facts = {}
    for line in sections[""]:
        key, _, value = line.partition(" ")
        if key:
            facts[key] = value.strip()
    return GuestOutput(
        facts=facts,
        return_code=return_code,
        json="\n".join(sections.get("JSON", [])),
        histogram="\n".join(sections.get("HISTOGRAM", [])),
        stderr="\n".join(sections.get("STDERR", [])).strip(),
    )


@dataclass(frozen=True)
class RunResult:
    """One configuration measured: the bare-metal baseline, the tuned VM or the untuned one."""

    label: str  # "bare metal", "rtlibvirt", "untuned"
    where: str  # e.g. "guest vCPU 1 on host CPU 1 (TCG)"
    threads: tuple[ThreadResult, ...]
    kernel: str
    cyclictest: str  # rt-tests version
    cmdline: str
    duration_s: int
    notes: tuple[str, ...] = field(default=())
    noise: HostNoise | None = None  # the host's noise on the measured CPUs meanwhile

    @property
    def summary(self) -> Summary:
        return summarize(self.threads)

    @property
    def histogram(self) -> dict[int, int]:
        """Every thread's buckets added up."""
        return merged_histogram(self.threads)

    def to_json(self) -> dict[str, Any]:
        s = self.summary
        return {
            "configuration": self.label,
            "where": self.where,
            "kernel": self.kernel,
            "cyclictest": self.cyclictest,
            "cmdline": self.cmdline,
            "duration_s": self.duration_s,
            "summary": _summary_json(s),
            "threads": [
                {
                    "cpu": t.cpu,
                    **_summary_json(summarize([t])),
                    "histogram_us": t.width_us,
                    "histogram": {str(b): c for b, c in sorted(t.histogram.items())},
                }
                for t in self.threads
            ],
            "notes": list(self.notes),
            "noise": self.noise.to_json() if self.noise is not None else None,
        }


def _summary_json(s: Summary) -> dict[str, Any]:
    return {
        "samples": s.samples,
        "overflows": s.overflows,
        "min_us": s.min_us,
        "avg_us": s.avg_us,
        "p99_us": s.p99_us,
        "p99.9_us": s.p999_us,
        "max_us": s.max_us,
        "past_histogram": s.past_histogram,
    }


def check_against_text(threads: list[ThreadResult], text: TextHistogram) -> list[str]:
    """Where the ``-h`` output disagrees with the JSON (a note each; normally none)."""
    notes = []
    overflows = text.overflows()
    maxima = text.summary.get("Max Latencies", ())
    for index, thread in enumerate(threads):
        if index < len(overflows) and overflows[index] != thread.overflows:
            notes.append(
                f"thread on CPU {thread.cpu}: the histogram output counts {overflows[index]} "
                f"overflows, the JSON {thread.overflows}"
            )
        if index < len(maxima) and maxima[index] != thread.max_us:
            notes.append(
                f"thread on CPU {thread.cpu}: the histogram output's maximum is {maxima[index]} "
                f"µs, the JSON's {thread.max_us} µs"
            )
    return notes

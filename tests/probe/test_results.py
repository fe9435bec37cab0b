"""cyclictest's output -> the probe's figures, on output captured from real runs (data/README.md)."""

from __future__ import annotations

import json

import pytest

from rtlibvirt.probe import results
from rtlibvirt.probe.results import ResultError, ThreadResult, percentile, summarize
from tests.probe.conftest import DATA


def test_the_guests_serial_output_splits_into_facts_json_and_histogram() -> None:
    output = results.parse_serial((DATA / "guest-tcg-serial.txt").read_text())
    assert output.facts == {"online": "0-1", "isolated": "1", "kernel": "6.1.0-57-rt-amd64 1"}
    assert output.return_code == 0 and output.stderr == ""
    header, threads = results.parse_json(output.json)
    assert header["version"] == "2.40"  # spelt "rt_test_version:" by rt-tests 2.4
    assert header["cmdline"].startswith("cyclictest -m -q --policy=fifo -p95 -i200 -t1 -a1")
    assert header["sysinfo"]["realtime"] == 1
    [thread] = threads
    assert (thread.cpu, thread.samples, thread.min_us, thread.max_us) == (1, 24591, 24, 4024)
    assert thread.avg_us == pytest.approx(58.86, abs=0.5)
    assert thread.width_us == 100000  # from the command line's -h
    assert thread.overflows == 0 and not thread.past_histogram
    text = results.parse_histogram(output.histogram)
    assert text.buckets == (dict(thread.histogram),)  # the same histogram, both ways
    assert text.summary["Max Latencies"] == (4024,) and text.overflows() == (0,)
    assert results.check_against_text(threads, text) == []


def test_two_threads_and_overflows_are_cycles_minus_the_histogram() -> None:
    _, threads = results.parse_json((DATA / "host-2threads.json").read_text())
    assert "overflow" not in (DATA / "host-2threads.json").read_text().lower()  # rt-tests 2.4
    assert [t.cpu for t in threads] == [0, 1]
    assert [t.samples for t in threads] == [14847, 14330]
    assert [t.overflows for t in threads] == [16, 302]
    text = results.parse_histogram((DATA / "host-2threads.hist").read_text())
    assert text.overflows() == (16, 302)  # what cyclictest itself counted
    assert text.summary["Total"] == (14831, 14028)
    assert [sum(b.values()) for b in text.buckets] == [14831, 14028]
    assert results.check_against_text(threads, text) == []
    # the maximum is past the 60 µs histogram: statistics refused, as rteval does
    assert all(t.past_histogram for t in threads)
    s = summarize(threads)
    assert (s.p99_us, s.p999_us, s.past_histogram) == (None, None, True)
    assert (s.samples, s.overflows, s.min_us, s.max_us) == (29177, 318, 6, 23723)
    assert s.avg_us == pytest.approx((14.18 * 14847 + 23.11 * 14330) / 29177, abs=0.01)


def test_percentiles_are_nearest_rank_and_refused_past_the_histogram() -> None:
    histogram = {5: 900, 9: 90, 40: 9, 90: 1}
    assert percentile(histogram, 1000, 0.5) == 5
    assert percentile(histogram, 1000, 0.99) == 9
    assert percentile(histogram, 1000, 0.999) == 40
    assert percentile(histogram, 1000, 1.0) == 90
    assert percentile(histogram, 1010, 0.999) is None  # the rank lies among 10 overflows
    assert percentile({}, 0, 0.99) is None
    one = ThreadResult(
        cpu=2, samples=1000, min_us=5, avg_us=6.0, max_us=90, histogram=histogram, width_us=100
    )
    assert (summarize([one]).p99_us, summarize([one]).p999_us) == (9, 40)
    at_edge = ThreadResult(
        cpu=2, samples=1000, min_us=5, avg_us=6.0, max_us=100, histogram=histogram, width_us=100
    )
    assert at_edge.past_histogram and summarize([at_edge]).p99_us is None


def test_several_threads_merge_into_one_summary() -> None:
    a = ThreadResult(
        cpu=1,
        samples=100,
        min_us=3,
        avg_us=4.0,
        max_us=10,
        histogram={3: 50, 4: 49, 10: 1},
        width_us=100,
    )
    b = ThreadResult(
        cpu=2, samples=300, min_us=5, avg_us=6.0, max_us=70, histogram={5: 299, 70: 1}, width_us=100
    )
    s = summarize([a, b])
    assert (s.samples, s.min_us, s.max_us, s.overflows) == (400, 3, 70, 0)
    assert s.avg_us == 5.5
    assert s.p99_us == 5 and s.p999_us == 70


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no markers at all", "wrote no results"),
        ("RTLPROBE BEGIN\nonline 0-1\nRTLPROBE RC 0\nRTLPROBE JSON\n{", "end early"),
    ],
)
def test_an_unfinished_guest_is_reported(text: str, message: str) -> None:
    with pytest.raises(ResultError, match=message):
        results.parse_serial(text)


def test_carriage_returns_of_the_serial_line_are_ignored() -> None:
    text = (DATA / "guest-tcg-serial.txt").read_text().replace("\n", "\r\n")
    output = results.parse_serial(text)
    assert results.parse_json(output.json)[1][0].samples == 24591


def broken(**change: object) -> str:
    data = json.loads((DATA / "host-2threads.json").read_text())
    for key, value in change.items():
        data["thread"]["0"][key] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "does not parse"),
        ("[]", "no 'thread' table"),
        ('{"thread": {}}', "without a histogram"),
        (broken(cycles=True), "cycles is True, not a number"),
        (broken(cycles=-1), "not a count"),
        (broken(max="9"), "max is '9'"),
        (broken(avg=float("nan")), "avg is nan"),
        (broken(histogram={"x": 1}), "bucket 'x'"),
        (broken(histogram={"3": 1.5}), "not a count"),
        (broken(histogram=None), "thread 0 has no histogram"),
    ],
)
def test_malformed_json_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ResultError, match=message):
        results.parse_json(text)


def test_malformed_histogram_rows_name_their_line() -> None:
    with pytest.raises(ResultError, match="line 2"):
        results.parse_histogram("# Histogram\n000001 0000x1\n")
    with pytest.raises(ResultError, match="more than"):
        results.parse_histogram("#" * (results.MAX_OUTPUT + 1))


def test_the_histogram_width_comes_from_the_command_line() -> None:
    assert results.histogram_width("cyclictest -m -h60 -D3") == 60
    assert results.histogram_width("cyclictest -h 400 -q") == 400
    assert results.histogram_width("cyclictest --histogram=900") == 900
    assert results.histogram_width("cyclictest -H60") is None

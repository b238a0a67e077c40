"""The collector's formats for people: a line per exchange, and summaries of a known stream."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping

from ipfix.collector import Collector, Printer
from ipfix.decoder import Decoder
from ipfix.readable import Summary, line, size
from tests.conftest import NOW_MS, run_session, sample_record

ANSI = re.compile("\033\\[[0-9;]*m")


def fields_of(**overrides: object) -> Mapping[str, object]:
    _, datagrams = run_session([sample_record(0, **overrides)])
    decoder = Decoder()
    records = [r.fields for d in datagrams for r in decoder.decode(d.payload).records
               if not r.is_options]
    return records[0]


def test_one_line_per_exchange_says_what_a_person_asks() -> None:
    text = line(fields_of(), colour=False)
    start = NOW_MS - 40
    assert text.startswith(f"{_local(start)}  192.0.2.10:40000  GET shop.example "
                           "/items/0?page=2&sort=asc  200  ")
    assert "\u2191234 B \u21931.0 kB  40 ms  completed" in text
    assert "\n" not in text and "\033" not in text


def test_failures_read_in_words_and_in_colour_on_a_terminal() -> None:
    text = line(fields_of(status_code=0, reason="", termination_state=2, flow_end_reason=4,
                          client_address="2001:db8::10", proxy_address="2001:db8::1",
                          upstream_address=""), colour=True)
    plain = ANSI.sub("", text)
    assert "[2001:db8::10]:40000" in plain and "  ---  " in plain
    assert plain.endswith("upstream connect failed")
    assert "\033[31mupstream connect failed\033[0m" in text  # red
    interim = line(fields_of(flow_end_reason=2), colour=False)
    assert interim.endswith("interim, still open")


def test_sizes_read_like_people_write_them() -> None:
    assert [size(n) for n in (0, 999, 1000, 1234, 999_949, 1_500_000, 7 * 10**12)] == [
        "0 B", "999 B", "1.0 kB", "1.2 kB", "999.9 kB", "1.5 MB", "7.0 TB"]


def test_summary_of_a_known_stream() -> None:
    summary = Summary(top=2)
    durations = [10, 20, 30, 40, 50, 60, 70, 80, 90, 1000]
    for index, took in enumerate(durations):
        status = 404 if index % 5 == 0 else 200
        host = "a.example" if index < 6 else "b.example"
        summary.add({"httpStatusCode": status, "httpRequestHost": host,
                     "flowStartMilliseconds": NOW_MS, "flowEndMilliseconds": NOW_MS + took,
                     "flowEndReason": 3, "httpTerminationStateCode": 0})
    summary.add({"httpStatusCode": 0, "httpRequestHost": "c.example", "flowEndReason": 4,
                 "httpTerminationStateCode": 2, "flowStartMilliseconds": NOW_MS,
                 "flowEndMilliseconds": NOW_MS + 5})
    summary.add({"httpStatusCode": 101, "flowEndReason": 2})  # interim: not counted
    text = summary.render(5.0, lost=3)
    assert text == ("-- 5 s: 11 exchanges (2.2/s); status 2xx 8 4xx 2 none 1; not completed 1; "
                    "p50 50 ms, p99 1000 ms; top hosts: a.example 6, b.example 4; "
                    "lost by sequence numbers: 3")
    assert summary.render(5.0, 0).startswith("-- 5 s: 0 exchanges (0.0/s); status none;")


def test_the_collector_prints_human_lines_and_summaries_with_losses() -> None:
    out, err = io.StringIO(), io.StringIO()
    collector = Collector(Decoder(), Printer(out, "human", False, summary=Summary()), err)
    _, datagrams = run_session([sample_record(i) for i in range(30)], max_message_size=600)
    lost = datagrams[-3]  # a message of flow records, revealed by the one after it
    for datagram in datagrams:
        if datagram is not lost:
            collector.feed(datagram.payload, "test")
    collector.write_summary(10)
    lines = out.getvalue().splitlines()
    assert len(lines) == 30 - lost.flow_records
    assert all("GET shop.example /items/" in text for text in lines)
    assert f"{30 - lost.flow_records} exchanges (" in err.getvalue()
    assert re.search(r"lost by sequence numbers: [1-9]", err.getvalue())


def _local(ms: int) -> str:
    import time

    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}"

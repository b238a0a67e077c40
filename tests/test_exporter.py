"""The asyncio exporter with real UDP sockets on loopback: batching, drops, dead collectors."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

import pytest

from ipfix import exporter as exporter_module
from ipfix.decoder import Decoder
from ipfix.destinations import CollectorKind, parse_collector
from ipfix.exporter import Exporter
from ipfix.filereader import read_messages
from ipfix.http_record import HTTP_RECORDS
from ipfix.session import SessionConfig
from tests.conftest import sample_record
from tests.e2e import Receiver


def test_parse_collector_forms() -> None:
    assert str(parse_collector("10.0.0.1:4739")) == "ipfix://10.0.0.1:4739"
    assert str(parse_collector("netflow9://[2001:db8::1]:2055")) == "netflow9://[2001:db8::1]:2055"
    assert parse_collector("file:/var/log/flows.ipfix").kind is CollectorKind.FILE
    for bad in ("nohost", "x:0", "x:99999", "sflow://x:1", "::1:4739", "[::1:4739", "file:"):
        with pytest.raises(ValueError, match=r"expected|port|scheme|bracket|unclosed|path"):
            parse_collector(bad)


def test_batches_reach_every_collector_without_loss(tmp_path: Path) -> None:
    ipfix, v9 = Receiver(), Receiver()
    path = tmp_path / "flows.ipfix"
    specs = [parse_collector(f"127.0.0.1:{ipfix.port}"),
             parse_collector(f"netflow9://127.0.0.1:{v9.port}"), parse_collector(f"file:{path}")]

    async def scenario() -> Exporter:
        exporter = Exporter(specs, SessionConfig(flush_interval_ms=20),
                            [HTTP_RECORDS], queue_size=100_000)
        task = exporter.start()
        for index in range(3000):
            exporter.submit(sample_record(index))
            if index % 100 == 0:  # like traffic: the loop runs between requests
                await asyncio.sleep(0)
                ipfix.drain()
                v9.drain()
        await exporter.wait_sent()
        ipfix.drain()
        v9.drain()
        exporter.close()
        await asyncio.sleep(0)
        assert task.done()
        return exporter

    exporter = asyncio.run(scenario())
    ipfix.drain()
    v9.drain()
    exporter.shutdown()
    assert len(ipfix.flows) == 3000 and len(v9.flows) == 3000
    assert sum(ipfix.sequences.lost.values()) == 0 and sum(v9.sequences.lost.values()) == 0
    decoder = Decoder()
    with path.open("rb") as stream:
        from_file = [r for m in read_messages(stream) for r in decoder.decode(m).records
                     if not r.is_options]
    assert len(from_file) == 3000
    assert exporter.statistics.dropped == 0 and exporter.statistics.send_errors == 0
    ipfix.close()
    v9.close()


def test_a_big_batch_lets_the_proxy_run_between_slices() -> None:
    """The task encodes SLICE_RECORDS at a time and yields: other callbacks on the loop
    (the proxy's) run while a large queue drains, and every record still goes out."""
    receiver = Receiver()
    total = 5 * exporter_module.SLICE_RECORDS + 3

    async def scenario() -> tuple[Exporter, list[int]]:
        exporter = Exporter([parse_collector(f"127.0.0.1:{receiver.port}")],
                            SessionConfig(flush_interval_ms=5), [HTTP_RECORDS], queue_size=10_000)
        exporter.start()
        seen: list[int] = []

        def proxy_turn() -> None:  # what the loop's other users see of the queue
            seen.append(exporter.queued)
            if exporter.queued:
                asyncio.get_running_loop().call_soon(proxy_turn)

        for index in range(total):  # one burst: the queue passes WAKE_AT_RECORDS
            exporter.submit(sample_record(index))
        asyncio.get_running_loop().call_soon(proxy_turn)
        await exporter.wait_sent()
        exporter.close()
        return exporter, seen

    exporter, seen = asyncio.run(scenario())
    receiver.drain()
    assert any(0 < queued < total for queued in seen), seen  # ran while the queue drained
    assert len(receiver.flows) == total and exporter.statistics.dropped == 0
    exporter.shutdown()
    receiver.close()


def test_full_queue_drops_and_counts_never_blocks() -> None:
    receiver = Receiver()

    async def scenario() -> Exporter:
        exporter = Exporter([parse_collector(f"127.0.0.1:{receiver.port}")],
                            SessionConfig(flush_interval_ms=5, statistics_interval_ms=50),
                            [HTTP_RECORDS],
                            queue_size=100)
        exporter.start()
        accepted = sum(exporter.submit(sample_record(i)) for i in range(1000))  # no yield
        assert accepted == 100  # the queue takes what fits; submit never waits for room
        await exporter.wait_sent()
        exporter.close()
        return exporter

    exporter = asyncio.run(scenario())
    receiver.drain()
    assert exporter.statistics.dropped == 900
    assert len(receiver.flows) == 100
    exporter.shutdown()
    receiver.close()


def _closed_port() -> int:
    """A loopback UDP port where nothing listens: datagrams draw ICMP port unreachable."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_nothing_listening_every_datagram_still_leaves_and_refusals_are_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    """Linux reports a datagram's ICMP port unreachable on the next send(), which then does
    not transmit its own datagram: that send is retried, so every record leaves (the
    capture tests in test_interop_capture.py see them all on the wire), and the refusals
    are counted, not taken for lost records."""
    port = _closed_port()

    async def scenario() -> Exporter:
        exporter = Exporter([parse_collector(f"127.0.0.1:{port}")],
                            SessionConfig(flush_interval_ms=5, template_refresh_ms=600_000),
                            [HTTP_RECORDS])
        exporter.start()
        for index in range(20):  # a datagram each
            exporter.submit(sample_record(index))
            await exporter.wait_sent()
        exporter.close()
        return exporter

    with caplog.at_level(logging.INFO, logger="ipfix.exporter"):
        exporter = asyncio.run(scenario())
    stats = exporter.statistics
    assert stats.exported == 20 and stats.send_errors == 0  # all 20 left this host
    assert stats.refusals >= 19  # every datagram but the last drew an ICMP error
    session = exporter._targets[0].session.statistics
    assert session.not_sent_flow_records == 0 and session.flow_records == 20
    unreachable = [r.message for r in caplog.records if "unreachable (ICMP" in r.message]
    assert len(unreachable) == 1  # 0.4 s of refusals: one line (rate-limited)
    assert not [r for r in caplog.records if "reachable again" in r.message]
    assert f"{stats.refusals} collector refusals (ICMP)" in exporter.statistics_line()


@pytest.mark.slow  # traffic over REACHABLE_AFTER_MS: real seconds are its subject
def test_restarted_collector_decodes_again_soon_and_nothing_else_is_lost(
        caplog: pytest.LogCaptureFixture) -> None:
    """The collector stops and starts again, knowing no templates, while traffic goes on.
    The exporter sends the templates again as soon as a send reports no refusal (not at
    the 10-minute refresh) and says 'reachable again' only after REACHABLE_AFTER_MS
    without a refusal.
    The records missing are one run, between the last decoded before the stop and the
    first decoded after it, and the sequence numbers show at least that many missing."""
    port = _closed_port()
    first = Receiver(port)
    timings: dict[str, float] = {}

    async def scenario() -> tuple[Exporter, Receiver, int]:
        exporter = Exporter([parse_collector(f"127.0.0.1:{port}")],
                            SessionConfig(flush_interval_ms=5, template_refresh_ms=600_000),
                            [HTTP_RECORDS])
        exporter.start()
        index = 0

        async def traffic(steps: int, receiver: Receiver | None) -> None:
            nonlocal index
            for _ in range(steps):
                exporter.submit(sample_record(index))
                index += 1
                await asyncio.sleep(0.05)
                if receiver is not None:
                    receiver.drain()

        await traffic(20, first)  # 1 s with the collector up
        first.close()  # it stops
        await traffic(30, None)  # 1.5 s with nothing listening
        second = Receiver(port)  # it starts again
        restarted = time.monotonic()
        while not second.flows and time.monotonic() - restarted < 10:
            await traffic(1, second)
        timings["decoded again after"] = time.monotonic() - restarted
        await traffic(80, second)  # 4 s more: enough to count as reachable again
        exporter.close()
        second.drain()
        return exporter, second, index

    with caplog.at_level(logging.INFO, logger="ipfix.exporter"):
        exporter, second, sent = asyncio.run(scenario())
    # the first send that reports no refusal brings the templates: well before the
    # REACHABLE_AFTER_MS that 'reachable again' waits for
    assert timings["decoded again after"] < exporter_module.REACHABLE_AFTER_MS / 1000 / 2
    before = sorted(int(f["flowId"]) - 1000 for f in first.flows)
    after = sorted(int(f["flowId"]) - 1000 for f in second.flows)
    assert before == list(range(len(before))) and len(before) >= 19
    assert after == list(range(after[0], sent))  # from its first decoded record, every one
    missing = after[0] - len(before)
    assert first.messages and second.messages
    last = first.messages[-1]
    gap = second.messages[0][0] - (last[0] + last[1])  # data records numbered in between
    assert gap >= missing > 0
    assert exporter.statistics.send_errors == 0
    assert exporter.statistics.exported == sent  # every record left this host
    back = [r.message for r in caplog.records if "reachable again" in r.message]
    assert len(back) == 1
    second.close()


def test_unresolvable_host_is_counted_not_raised() -> None:
    async def scenario() -> Exporter:
        exporter = Exporter([parse_collector("no-such-host.invalid:4739")],
                            SessionConfig(flush_interval_ms=5), [HTTP_RECORDS])
        exporter.start()
        for index in range(5):
            exporter.submit(sample_record(index))
        await exporter.wait_sent()  # the name does not resolve: each counted as not sent
        exporter.close()
        return exporter

    exporter = asyncio.run(scenario())
    assert exporter.statistics.send_errors > 0
    assert exporter._targets[0].session.statistics.not_sent_flow_records == 5
    assert "send errors" in exporter.statistics_line()


def test_after_close_records_go_out_synchronously() -> None:
    receiver = Receiver()

    async def scenario() -> Exporter:
        exporter = Exporter([parse_collector(f"127.0.0.1:{receiver.port}")], SessionConfig(),
                            [HTTP_RECORDS])
        exporter.start()
        exporter.submit(sample_record(1))
        await exporter.wait_sent()
        exporter.close()
        return exporter

    exporter = asyncio.run(scenario())  # the loop is gone now
    exporter.submit(sample_record(2))  # a flow that failed during shutdown: sent at once
    receiver.drain()
    assert sorted(f["flowId"] for f in receiver.flows) == [1001, 1002]
    exporter.shutdown()
    receiver.close()


def test_blackholed_collector_never_blocks_the_producer() -> None:
    """A collector that reads nothing: the kernel drops silently, and nobody waits."""
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hole.bind(("127.0.0.1", 0))

    async def scenario() -> Exporter:
        exporter = Exporter([parse_collector(f"127.0.0.1:{hole.getsockname()[1]}")],
                            SessionConfig(flush_interval_ms=1),
                            [HTTP_RECORDS], queue_size=1_000_000)
        exporter.start()
        for index in range(20_000):
            assert exporter.submit(sample_record(index))  # an append: never waits
            if index % 1000 == 0:
                await asyncio.sleep(0)
        await exporter.wait_sent()
        exporter.close()
        return exporter

    exporter = asyncio.run(scenario())
    hole.close()
    assert exporter.statistics.exported == 20_000  # handed to the kernel, all of them
    assert exporter.statistics.send_errors == 0 and exporter.queued == 0


def test_close_sends_the_final_statistics_without_errors() -> None:
    receiver = Receiver()

    async def scenario() -> Exporter:
        exporter = Exporter([parse_collector(f"127.0.0.1:{receiver.port}")],
                            SessionConfig(statistics_interval_ms=3_600_000), [HTTP_RECORDS])
        exporter.start()
        for index in range(5):
            exporter.submit(sample_record(index))
        await exporter.wait_sent()
        for index in range(5, 10):  # still queued when close() comes
            exporter.submit(sample_record(index))
        exporter.close()  # queued records, then the final statistics, then sockets closed
        return exporter

    exporter = asyncio.run(scenario())
    receiver.drain()  # loopback delivers within the send() that close() made
    assert len(receiver.flows) == 10
    assert 261 in receiver.options and 262 in receiver.options  # RFC 7011 statistics
    assert exporter.statistics.send_errors == 0
    receiver.close()

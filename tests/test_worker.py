"""The export worker: a real child process, real UDP on loopback, a worker that dies or stalls."""

from __future__ import annotations

import asyncio
import os
import signal

from ipfix.exporter import parse_collector
from ipfix.facts import FlowFacts, RecordRules
from ipfix.session import SessionConfig
from ipfix.worker import RESTART_INTERVAL_MS, ExportWorker
from tests.conftest import sample_record
from tests.e2e import Receiver, wait_until

RULES = RecordRules(redact=frozenset({"token"}))


def facts(index: int) -> FlowFacts:
    return FlowFacts(
        f"{index:08x}-1111-4222-8333-444455556666", 1_800_000_000_500, 1_800_000_000.1,
        1_800_000_000.2, b"GET", f"/items/{index}?token=s3cret&x=1".encode(), b"HTTP/1.1", b"",
        "shop.example", ((b"Host", b"shop.example"), (b"User-Agent", b"w\xffrker/1")), 0,
        ("192.0.2.10", 40000), ("192.0.2.1", 8080), ("2001:db8::7", 8000, 0, 0), None, None,
        200, b"OK", b"HTTP/1.1", ((b"Content-Type", b"text/plain"),), 5,
        1_800_000_000.3, 1_800_000_000.4)


def worker_for(receiver: Receiver, clock: list[int] | None = None,
               queue_size: int = 16_384) -> ExportWorker:
    spec = parse_collector(f"127.0.0.1:{receiver.port}")
    config = SessionConfig(flush_interval_ms=20)
    if clock is None:
        return ExportWorker([spec], config, rules=RULES, queue_size=queue_size)
    return ExportWorker([spec], config, rules=RULES, queue_size=queue_size,
                        clock=lambda: clock[0])


def pid(worker: ExportWorker) -> int:
    process = worker._process
    assert process is not None
    return process.pid


def test_worker_builds_and_sends_what_the_proxy_hands_over() -> None:
    receiver = Receiver()

    async def scenario() -> ExportWorker:
        worker = worker_for(receiver)
        task = worker.start()
        for index in range(400):
            worker.submit(facts(index))
            if index % 50 == 0:
                await asyncio.sleep(0.002)
        worker.submit(sample_record(7, target="/a-record"))
        for _ in range(400):
            await asyncio.sleep(0.01)
            receiver.drain()
            if len(receiver.flows) == 401:
                break
        worker.close()
        await asyncio.sleep(0)
        assert task.done()
        return worker

    worker = asyncio.run(scenario())
    receiver.drain()
    assert len(receiver.flows) == 401
    assert sum(receiver.sequences.lost.values()) == 0
    by_target = {f["httpRequestTarget"]: f for f in receiver.flows}
    record = by_target["/items/3"]
    assert record["httpRequestQuery"] == "token=REDACTED&x=1"  # the rules went to the worker
    assert record["httpUserAgent"] == "w\ufffdrker/1"
    assert record["postNATDestinationIPv6Address"] == "2001:db8::7"
    assert "/a-record" in by_target
    stats = worker.statistics  # the worker's own, reported when it ended
    assert (stats.records, stats.exported, stats.dropped) == (401, 401, 0)
    assert stats.cpu_seconds > 0
    assert "401 records, 401 exported" in worker.statistics_line()


def test_a_killed_worker_costs_counted_drops_and_is_restarted() -> None:
    receiver = Receiver()
    clock = [1_000_000]

    async def scenario() -> tuple[ExportWorker, int]:
        worker = worker_for(receiver, clock)
        worker.start()
        for index in range(100):
            worker.submit(facts(index))
        assert await wait_for(receiver, 100)
        first = pid(worker)
        os.kill(first, signal.SIGKILL)
        assert worker._process is not None
        worker._process.wait()
        for index in range(100, 150):  # no worker to take these: dropped, counted
            worker.submit(facts(index))
        await asyncio.sleep(0.1)
        assert worker._process is None and worker.statistics.dropped == 50
        clock[0] += RESTART_INTERVAL_MS
        for index in range(150, 250):
            worker.submit(facts(index))
        assert await wait_for(receiver, 200)
        assert pid(worker) != first
        worker.close()
        return worker, first

    worker, _ = asyncio.run(scenario())
    targets = {f["httpRequestTarget"] for f in receiver.flows}
    assert targets == {f"/items/{i}" for i in [*range(100), *range(150, 250)]}
    # the new worker was told of the drops: its statistics (and notSent) include them
    stats = worker.statistics
    assert (stats.records, stats.exported, stats.dropped) == (150, 100, 50)


def test_a_stalled_worker_never_blocks_the_proxy_and_loses_nothing_silently() -> None:
    receiver = Receiver()

    async def scenario() -> tuple[ExportWorker, int]:
        worker = worker_for(receiver, queue_size=64)
        worker.start()
        await asyncio.sleep(0.3)  # started and reading
        stalled = pid(worker)
        os.kill(stalled, signal.SIGSTOP)
        submitted = 0
        try:
            for _ in range(200):  # far more than the pipe and our bound hold
                for _ in range(50):
                    worker.submit(facts(submitted))
                    submitted += 1
                await asyncio.sleep(0.003)
            assert worker.statistics.dropped > 0
        finally:
            os.kill(stalled, signal.SIGCONT)
        worker.close()
        return worker, submitted

    worker, submitted = asyncio.run(scenario())

    def received_all() -> bool:
        receiver.drain()
        return len(receiver.flows) >= worker.statistics.exported

    wait_until(received_all, timeout=5)
    stats = worker.statistics
    assert stats.records == submitted
    assert stats.exported + stats.dropped == submitted
    assert len(receiver.flows) == stats.exported


async def wait_for(receiver: Receiver, count: int, timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.01)):
        receiver.drain()
        if len(receiver.flows) >= count:
            return True
        await asyncio.sleep(0.01)
    return False

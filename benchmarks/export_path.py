"""The export path alone, no proxy: sustained rate with zero loss, and memory with a dead collector.

    .venv/bin/python -m benchmarks.export_path rate --seconds 30
    .venv/bin/python -m benchmarks.export_path memory --records 1000000

`rate`: the exporter (this process, core 0) pushes records as fast as it can for N
seconds to a receiver process on core 1 that only reads datagrams and keeps their IPFIX
sequence numbers; loss is judged by comparing the sequence numbers sent with those
received and by the kernel's UDP error counters. Reports records/s and exporter CPU per
record.

`memory`: the collector is down (ICMP port unreachable); N records go through the
writer; reports peak RSS growth and checks that every record was either sent or counted
as not sent.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import socket
import struct
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

from benchmarks.encode import record_mix
from ipfix.destinations import parse_collector
from ipfix.exporter import Exporter
from ipfix.http_record import HTTP_RECORDS
from ipfix.session import SessionConfig


def udp_errors() -> tuple[int, int]:
    text = Path("/proc/net/snmp").read_text()
    lines = [line.split() for line in text.splitlines() if line.startswith("Udp:")]
    header, values = lines[0], lines[1]
    row = dict(zip(header[1:], map(int, values[1:]), strict=True))
    return row.get("InErrors", 0), row.get("RcvbufErrors", 0)


def receiver(port_out: Connection, stop_in: Connection) -> None:
    os.sched_setaffinity(0, {1})
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    port_out.send(sock.getsockname()[1])
    sequences = []
    while True:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            if stop_in.poll():
                break
            continue
        sequences.append(struct.unpack_from("!I", data, 8)[0])
    port_out.send(sequences)


async def push(exporter: Exporter, seconds: float) -> int:
    records = record_mix(5000)
    exporter.start()
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        # offer as much as the exporter takes: a burst whenever its queue runs low (the
        # task drains 32 records per loop turn, so bursts without this check would only
        # measure how fast a full queue drops them)
        if exporter.queued < 4096:
            for record in records[:500]:
                exporter.submit(record)
            sent += 500
            records = records[500:] + records[:500]
        await asyncio.sleep(0)  # the exporter task runs between bursts, as with a proxy
    await asyncio.sleep(0.3)
    return sent


def rate(seconds: float) -> int:
    os.sched_setaffinity(0, {0})
    parent_port, child_port = multiprocessing.Pipe()
    stop_out, stop_in = multiprocessing.Pipe()
    process = multiprocessing.Process(target=receiver, args=(child_port, stop_in))
    process.start()
    port = parent_port.recv()
    errors_before = udp_errors()
    sent_sequences: list[int] = []
    exporter = Exporter([parse_collector(f"127.0.0.1:{port}")], SessionConfig(), [HTTP_RECORDS],
                        queue_size=1_000_000)
    original = exporter._send

    def recording_send(target, datagrams, now):  # type: ignore[no-untyped-def]
        sent_sequences.extend(struct.unpack_from("!I", d.payload, 8)[0] for d in datagrams)
        original(target, datagrams, now)

    exporter._send = recording_send  # type: ignore[method-assign]
    cpu = time.process_time()
    started = time.monotonic()
    submitted = asyncio.run(push(exporter, seconds))
    elapsed = time.monotonic() - started
    exporter.close()
    cpu = time.process_time() - cpu
    time.sleep(1)
    stop_out.send(True)
    received = parent_port.recv()
    process.join()
    errors_after = udp_errors()
    stats = exporter.statistics
    print(f"{submitted} records in {elapsed:.1f} s: {stats.exported / elapsed:,.0f} records/s "
          f"exported, {stats.datagrams} datagrams, {stats.dropped} dropped at the queue")
    print(f"exporter CPU {cpu / max(stats.exported, 1) * 1e6:.2f} us/record "
          f"({cpu:.1f} s CPU for {elapsed:.1f} s wall)")
    lost = len(sent_sequences) - len(received)
    print(f"datagrams sent {len(sent_sequences)}, received {len(received)}, "
          f"same sequence numbers in order: {sent_sequences == received}; kernel UDP "
          f"errors {errors_after[0] - errors_before[0]} in, "
          f"{errors_after[1] - errors_before[1]} buffer")
    return 0 if lost == 0 and sent_sequences == received and stats.dropped == 0 else 1


def memory(count: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]  # closed again: nothing listens there
    records = record_mix(1000)

    async def run() -> Exporter:
        exporter = Exporter([parse_collector(f"127.0.0.1:{dead}")], SessionConfig(), [HTTP_RECORDS])
        exporter.start()
        for index in range(count):
            exporter.submit(records[index % 1000])
            if index % 1000 == 999:
                await asyncio.sleep(0)
        await asyncio.sleep(0.5)
        exporter.close()
        return exporter

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    exporter = asyncio.run(run())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = exporter.statistics
    session = exporter._targets[0].session.statistics
    accounted = session.flow_records + session.not_sent_flow_records
    print(f"{count} records with the collector down: peak RSS {before:.0f} -> {peak:.0f} MiB "
          f"(+{peak - before:.1f} MiB)")
    print(f"sent {session.flow_records} + counted not sent {session.not_sent_flow_records} "
          f"= {accounted} of {count}; queue drops {stats.dropped}; "
          f"send errors {stats.send_errors}")
    return 0 if accounted == count and peak - before < 64 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("rate", "memory"))
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    return rate(args.seconds) if args.mode == "rate" else memory(args.records)


if __name__ == "__main__":
    sys.exit(main())

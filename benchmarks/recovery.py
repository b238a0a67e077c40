"""How long a restarted collector waits before it decodes records again.

    .venv/bin/python -m benchmarks.recovery

An exporter sends 200 records/s to a UDP port. The collector is down for 3 s (nothing
listens: ICMP port unreachable), then comes back knowing no templates. Prints the time
from its return to its first decoded flow record, and what was counted as not sent.
"""

from __future__ import annotations

import asyncio
import socket
import time

from ipfix.decoder import Decoder
from ipfix.destinations import parse_collector
from ipfix.exporter import Exporter
from ipfix.http_record import HTTP_RECORDS
from ipfix.session import SessionConfig
from tests.conftest import sample_record


async def run(rounds: int) -> None:
    for attempt in range(rounds):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        exporter = Exporter([parse_collector(f"127.0.0.1:{port}")],
                            SessionConfig(flush_interval_ms=200),
                            [HTTP_RECORDS])  # default refresh: 30 s
        exporter.start()
        index = 0
        down_until = time.monotonic() + 3
        while time.monotonic() < down_until:
            exporter.submit(sample_record(index))
            index += 1
            await asyncio.sleep(0.005)
        collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        collector.bind(("127.0.0.1", port))
        collector.setblocking(False)
        back = time.monotonic()
        decoder = Decoder()
        decoded_at = None
        while decoded_at is None and time.monotonic() - back < 60:
            exporter.submit(sample_record(index))
            index += 1
            await asyncio.sleep(0.005)
            while True:
                try:
                    data, peer = collector.recvfrom(65535)
                except BlockingIOError:
                    break
                message = decoder.decode(data, peer)
                if any(not r.is_options for r in message.records):
                    decoded_at = time.monotonic()
        exporter.close()
        collector.close()
        stats = exporter._targets[0].session.statistics
        waited = "never" if decoded_at is None else f"{decoded_at - back:.2f} s"
        print(f"run {attempt + 1}: decoding again after {waited}; counted not sent: "
              f"{stats.not_sent_flow_records} records in {stats.not_sent_messages} datagrams; "
              f"{exporter.statistics.send_errors} send errors")


if __name__ == "__main__":
    asyncio.run(run(3))

"""Encoding cost: IPFIX (and v9) records/s beside msgspec JSON for the same records.

    make bench            # or: .venv/bin/python -m benchmarks.encode

Runs the variants interleaved, several rounds, and prints medians and the
ratio (IPFIX time per record / JSON time per record). Target: <= 2.0.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from unittest import mock

import msgspec

from ipfix import template
from ipfix.http_record import HTTP_RECORDS, HttpFlowRecord
from ipfix.session import ExportFormat, ExportSession, SessionConfig

HOSTS = [
    "shop.example",
    "api.example.com",
    "b\u00fccher.example",
    "\u4f8b\u3048.jp",
    "static.cdn.example.net",
    "xn--bcher-kva.example",
]
PATHS = [
    "/",
    "/index.html",
    "/api/v1/orders/12345",
    "/static/js/app.3f9c2b.min.js",
    "/search",
    "/images/" + "a" * 120 + ".png",
    "/wp-login.php",
    "/very/long/path/" + "/".join(f"segment{i}" for i in range(30)),
]
AGENTS = [
    "curl/8.5.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "python-httpx/0.27.0",
    "Go-http-client/2.0",
]


def record_mix(count: int, seed: int = 7) -> list[HttpFlowRecord]:
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    records = []
    for _ in range(count):
        v6 = rng.random() < 0.3
        client = (
            f"2001:db8::{rng.randrange(1, 65535):x}"
            if v6
            else f"198.51.100.{rng.randrange(1, 255)}"
        )
        upstream = rng.choice(["10.0.0.5", "2001:db8:1::5", ""])
        query = rng.choice(
            ["", "q=shoes&page=2", "utm_source=news&utm_medium=email&id=" + "9" * 40]
        )
        records.append(
            HttpFlowRecord(
                flow_id=rng.getrandbits(64),
                start_ms=now - rng.randrange(1000),
                end_ms=now,
                client_address=client,
                proxy_address="2001:db8::1" if v6 else "198.51.100.1",
                upstream_address=upstream,
                client_port=rng.randrange(1024, 65535),
                proxy_port=443,
                upstream_port=8080 if upstream else 0,
                protocol=6,
                octets=rng.randrange(200, 10**6),
                initiator_octets=rng.randrange(100, 2000),
                responder_octets=rng.randrange(100, 10**6),
                uploaded_bytes=rng.randrange(0, 1000),
                downloaded_bytes=rng.randrange(0, 10**6),
                status_code=rng.choice([200, 200, 304, 404, 502]),
                flow_end_reason=3,
                termination_state=0,
                upstream_ttfb_ms=rng.randrange(1, 300),
                method=rng.choice(["GET", "GET", "POST", "PUT"]),
                host=rng.choice(HOSTS),
                target=rng.choice(PATHS),
                query=query,
                version=rng.choice(["HTTP/1.1", "HTTP/2.0"]),
                reason=rng.choice(["OK", "Not Found", ""]),
                user_agent=rng.choice(AGENTS),
                content_type=rng.choice(["", "application/json"]),
                response_content_type=rng.choice(
                    ["text/html; charset=utf-8", "application/json", "image/png"]
                ),
                referrer=rng.choice(["", "https://shop.example/cart"]),
                x_forwarded_for=rng.choice(["", "203.0.113.9, 10.1.1.1"]),
                cookie="",
                tls_server_name=rng.choice(["", "shop.example"]),
                tls_version=rng.choice(["", "TLSv1.3"]),
            )
        )
    return records


def time_per_record(run: Callable[[], None], count: int) -> float:
    gc.collect()
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) / count


def main() -> None:
    records = record_mix(20_000)
    json_encoder = msgspec.json.Encoder()
    now = int(time.time() * 1000)

    def json_run() -> None:
        encode = json_encoder.encode
        for record in records:
            encode(record)

    def make_encoder_run(fmt: ExportFormat, native: bool = True) -> Callable[[], None]:
        # native=False: the pure-Python encoder, as where no compiler was available
        # (encoders made without the C module get no C plan)
        with (contextlib.nullcontext() if native
              else mock.patch.object(template, "_speedups", None)):
            session = ExportSession(SessionConfig(format=fmt), [HTTP_RECORDS], now)
        encode_one, budget = session._encoders[HttpFlowRecord], session._packer.record_budget

        def run() -> None:
            encode = encode_one
            for record in records:
                encode(record, budget)

        return run

    def make_session_run(fmt: ExportFormat) -> Callable[[], None]:
        def run() -> None:
            session = ExportSession(SessionConfig(format=fmt), [HTTP_RECORDS], now)
            add = session.add
            for record in records:
                add(record, now)
            session.flush(now)

        return run

    variants = {
        "msgspec.json": json_run,
        "ipfix record": make_encoder_run(ExportFormat.IPFIX),
        "ipfix record (pure Py)": make_encoder_run(ExportFormat.IPFIX, native=False),
        "ipfix record+message": make_session_run(ExportFormat.IPFIX),
        "v9 record": make_encoder_run(ExportFormat.NETFLOW9),
        "v9 record+message": make_session_run(ExportFormat.NETFLOW9),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(7):  # interleaved rounds: A B C ... A B C ...
        for name, run in variants.items():
            samples[name].append(time_per_record(run, len(records)))
    base = statistics.median(samples["msgspec.json"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, {platform.python_version()}")
    print(f"{len(records)} records, 7 interleaved rounds, median per record")
    native = "with" if template.native_encoder_available() else "WITHOUT"
    print(f"{native} the C encoder (ipfix/_speedups.c)")
    print(f"{'variant':<24}{'us/record':>10}{'records/s':>12}{'vs json':>9}  spread")
    for name, values in samples.items():
        median = statistics.median(values)
        spread = (max(values) - min(values)) / median * 100
        print(
            f"{name:<22}{median * 1e6:>10.2f}{1 / median:>12,.0f}{median / base:>8.2f}x  "
            f"{spread:.0f}%"
        )


if __name__ == "__main__":
    main()

"""Shared helpers: sample records, sessions driven by hand, decoding whole streams."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence

import pytest

from ipfix.decoder import DecodedMessage, Decoder
from ipfix.http_record import HTTP_RECORDS, HttpFlowRecord
from ipfix.message import Datagram
from ipfix.session import ExportFormat, ExportSession, RecordFormat, SessionConfig

NOW_MS = 1_795_000_000_123


def sample_record(index: int = 0, **overrides: object) -> HttpFlowRecord:
    values: dict[str, object] = dict(
        flow_id=1000 + index, start_ms=NOW_MS - 40, end_ms=NOW_MS, client_address="192.0.2.10",
        proxy_address="192.0.2.1", upstream_address="198.51.100.7", client_port=40000 + index,
        proxy_port=8080, upstream_port=8000, protocol=6, octets=1234, initiator_octets=234,
        responder_octets=1000, uploaded_bytes=34, downloaded_bytes=900, status_code=200,
        flow_end_reason=3, termination_state=0, upstream_ttfb_ms=12, method="GET",
        host="shop.example", target=f"/items/{index}", query="page=2&sort=asc",
        version="HTTP/1.1", reason="OK", user_agent="curl/8.5.0",
        content_type="application/json", response_content_type="text/html; charset=utf-8",
        referrer="https://shop.example/", x_forwarded_for="203.0.113.9", cookie="",
        tls_server_name="shop.example", tls_version="TLSv1.3",
    )
    values.update(overrides)
    return HttpFlowRecord(**values)  # type: ignore[arg-type]


def run_session(records: Iterable[object], fmt: ExportFormat = ExportFormat.IPFIX, *,
                layouts: Sequence[RecordFormat] = (HTTP_RECORDS,),
                **config: object) -> tuple[ExportSession, list[Datagram]]:
    """Every record added and polled at NOW_MS, then flushed; `layouts`: the kinds of
    record the session takes (HTTP only unless told)."""
    session = ExportSession(SessionConfig(format=fmt, **config), layouts, NOW_MS)  # type: ignore[arg-type]
    datagrams = []
    for record in records:
        session.add(record, NOW_MS)
        datagrams += session.poll(NOW_MS)
    datagrams += session.flush_with_statistics(NOW_MS + 1)
    return session, datagrams


def decode_all(datagrams: Iterable[Datagram | bytes], decoder: Decoder | None = None,
               exporter: str = "test") -> list[DecodedMessage]:
    decoder = decoder or Decoder(strict_text=True)
    return [decoder.decode(d.payload if isinstance(d, Datagram) else d, exporter)
            for d in datagrams]


def flow_records(messages: Iterable[DecodedMessage]) -> list[dict[str, object]]:
    return [dict(r.fields) for m in messages for r in m.records if not r.is_options]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def udp_port() -> int:
    return free_udp_port()


@pytest.fixture(params=["native", "python"])
def encoder_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the C encoder and again with the pure-Python one."""
    from ipfix import template

    if request.param == "python":
        monkeypatch.setattr(template, "_speedups", None)
    elif not template.native_encoder_available():
        pytest.skip("the C encoder is not built here")
    return str(request.param)


def timed_stream(fmt: ExportFormat, count: int, seed: int,
                 first_port: int) -> tuple[list[HttpFlowRecord], list[Datagram]]:
    """`count` records whose starts, ends and export times fall at every sub-second offset
    (the session itself starting mid-second), and the datagrams a session makes of them."""
    import random

    rng = random.Random(seed)
    start = 1_795_000_000_000 + rng.randrange(1000)
    session = ExportSession(SessionConfig(format=fmt), [HTTP_RECORDS], start)
    records: list[HttpFlowRecord] = []
    datagrams: list[Datagram] = []
    now = start
    for index in range(count):
        began = now + rng.randrange(0, 400)
        record = sample_record(index, client_port=first_port + index, start_ms=began,
                               end_ms=began + rng.randrange(0, 3000))
        now = record.end_ms + rng.randrange(0, 1500)
        session.add(record, now)
        datagrams += session.poll(now)
        records.append(record)
    datagrams += session.flush(now)
    return records, datagrams

"""Reading a mitmproxy flow into facts, and the one rule that makes them a record."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.test import tflow

from ipfix.http_record import HttpFlowRecord
from mitmflows.facts import FlowFacts, RecordRules, read_http_flow, record_from_facts
from mitmflows.privacy import Redactor


def record_of(flow: object, rules: RecordRules | None = None, now: int = 0) -> HttpFlowRecord:
    return record_from_facts(read_http_flow(flow, now), rules or RecordRules())  # type: ignore[arg-type]


def test_every_field_is_read_from_the_flow() -> None:
    flow = tflow.tflow(resp=True)
    flow.request.path = "/p/a?token=t&x=1"
    flow.request.headers["User-Agent"] = "ua"
    flow.request.headers["Cookie"] = "sid=abc"
    flow.request.headers["X-Forwarded-For"] = "198.51.100.1"
    flow.request.headers["Content-Type"] = "application/json"
    flow.request.headers["Referer"] = "https://app.example/cb?code=SECRET&state=1"
    assert flow.response is not None
    flow.response.headers["Content-Type"] = "text/plain"
    flow.client_conn.peername = ("::ffff:192.0.2.1", 5555)
    flow.client_conn.sockname = ("192.0.2.2", 8080)
    flow.server_conn.peername = ("198.51.100.9", 80)
    flow.client_conn.sni = "sni.test"
    flow.client_conn.tls_version = "TLSv1.3"
    record = record_of(flow, RecordRules(cookies="hashed", hash_key=b"k"))
    assert record.client_address == "192.0.2.1"  # IPv4-mapped unwrapped
    assert (record.client_port, record.proxy_port) == (5555, 8080)
    assert (record.upstream_address, record.upstream_port) == ("198.51.100.9", 80)
    assert record.method == "GET" and record.target == "/p/a"
    assert record.query == "token=REDACTED&x=1"
    assert record.referrer == "https://app.example/cb?code=REDACTED&state=1"
    assert record.host == "address"  # tflow sends no Host header: the request's host
    assert record.user_agent == "ua" and record.content_type == "application/json"
    assert record.response_content_type == "text/plain"
    assert record.x_forwarded_for == "198.51.100.1"
    assert record.cookie.startswith("sid=") and "abc" not in record.cookie
    assert record.status_code == 200 and record.reason == "OK"
    assert record.uploaded_bytes == len(flow.request.raw_content or b"")
    assert record.downloaded_bytes == len(flow.response.raw_content or b"")
    assert record.octets == record.initiator_octets + record.responder_octets
    head = (len("GET") + len("/p/a?token=t&x=1") + len("HTTP/1.1") + 6
            + sum(len(n) + len(v) + 4 for n, v in flow.request.headers.fields))
    assert record.initiator_octets == head + record.uploaded_bytes
    assert record.tls_server_name == "sni.test" and record.tls_version == "TLSv1.3"
    assert record.flow_id == int(flow.id.replace("-", "")[:16], 16)
    assert flow.response.timestamp_end is not None
    assert record.end_ms == int(flow.response.timestamp_end * 1000)


def test_a_flow_without_response_ends_when_it_was_read() -> None:
    record = record_of(tflow.tflow(resp=False), now=1_800_000_000_123)
    assert record.status_code == 0 and record.responder_octets == 0
    assert record.end_ms == 1_800_000_000_123 and record.octets == record.initiator_octets


def test_reverse_proxy_without_host_header_exports_the_sni() -> None:
    flow = tflow.tflow(resp=True)
    flow.client_conn.sni = "asked.example"
    assert record_of(flow, RecordRules(reverse_without_host=True)).host == "asked.example"
    assert record_of(flow).host == "address"


def test_invalid_utf8_headers_are_replaced_not_raised() -> None:
    flow = tflow.tflow(resp=True)
    flow.request.headers.fields = ((b"User-Agent", b"\xff\xfeagent"), (b"Host", b"h\xc3"))
    record = record_of(flow)
    assert record.user_agent == "\ufffd\ufffdagent"
    assert record.host == "h\ufffd"


def test_control_characters_are_replaced_tabs_kept() -> None:
    flow = tflow.tflow(resp=True)
    flow.request.headers.fields = ((b"User-Agent", b"a\x00b\r\nc\td\x7f"),)
    assert record_of(flow).user_agent == "a\ufffdb\ufffd\ufffdc\td\ufffd"


def test_cookies_are_off_unless_asked_for() -> None:
    flow = tflow.tflow(resp=True)
    flow.request.headers["Cookie"] = "sid=abc; theme=dark"
    assert record_of(flow).cookie == ""
    assert record_of(flow, RecordRules(cookies="names")).cookie == "sid; theme"
    assert record_of(flow, RecordRules(cookies="full")).cookie == "sid=abc; theme=dark"


HEADER = st.tuples(st.binary(max_size=12), st.binary(max_size=40))


@settings(max_examples=300, deadline=None)
@given(method=st.binary(max_size=10), path=st.binary(max_size=80),
       headers=st.lists(HEADER, max_size=8), response_headers=st.lists(HEADER, max_size=4),
       status=st.one_of(st.none(), st.integers(100, 599)), reason=st.binary(max_size=20),
       names=st.sets(st.sampled_from(["token", "b", "x", "code"])))
def test_any_bytes_become_a_record_of_valid_text(
        method: bytes, path: bytes, headers: list[tuple[bytes, bytes]],
        response_headers: list[tuple[bytes, bytes]], status: int | None, reason: bytes,
        names: set[str]) -> None:
    facts = FlowFacts("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", 1_800_000_000_000,
                      1_799_999_999.5, 1_799_999_999.6, method, path, b"HTTP/1.1", b"",
                      "host.example", tuple(headers), 3, ("192.0.2.1", 1), ("192.0.2.2", 2),
                      None, None, None, status, reason, b"HTTP/1.1", tuple(response_headers),
                      7, 1_799_999_999.7, 1_799_999_999.8)
    record = record_from_facts(facts, RecordRules(cookies="full", redactor=Redactor(names)))
    for name in HttpFlowRecord.__struct_fields__:
        value = getattr(record, name)
        if isinstance(value, str):
            value.encode("utf-8")  # no lone surrogates
            assert "\x00" not in value and "\n" not in value and "\r" not in value
    assert record.octets == record.initiator_octets + record.responder_octets >= 3

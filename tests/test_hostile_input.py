"""Hostile clients through a real mitmdump: every exchange still yields a well-formed record.

Datagrams are decoded strictly (invalid UTF-8 on the wire fails), string lengths are
checked against the limits, and the proxy must keep serving afterwards.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipfix.http_record import DEFAULT_MAX_LENGTHS
from tests.e2e import Mitmdump, Receiver, Upstream, wait_until

pytestmark = pytest.mark.slow  # real processes: run by .ci/run, not by -m 'not slow'


def exchange(port: int, raw: bytes) -> bytes:
    """Send a raw request on its own connection; return what came back (maybe nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        sock.settimeout(5)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            pass
        return data


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mitmdump, Receiver]]:
    receiver = Receiver()
    with Upstream() as upstream, Mitmdump(
            tmp_path_factory.mktemp("hostile"), "--mode", f"reverse:{upstream.url}",
            "--set", "keep_host_header=true",
            "--set", f"flowexport_collectors=127.0.0.1:{receiver.port}",
            "--set", "flowexport_flush_interval_ms=20") as proxy:
        yield proxy, receiver
    receiver.close()


def records_for(receiver: Receiver, target_prefix: str, count: int = 1) -> list[dict[str, object]]:
    def found() -> list[dict[str, object]]:
        receiver.drain()
        return [f for f in receiver.flows
                if str(f.get("httpRequestTarget", "")).startswith(target_prefix)]

    wait_until(lambda: len(found()) >= count, 10)
    return found()


def check_limits(record: dict[str, object]) -> None:
    for name, limit in DEFAULT_MAX_LENGTHS.items():
        value = record.get(name, "")
        assert isinstance(value, str)
        assert len(value.encode()) <= limit, name


CASES = {
    "/huge-agent": b"GET /huge-agent HTTP/1.1\r\nHost: h\r\nUser-Agent: " + b"U" * 100_000
                   + b"\r\nConnection: close\r\n\r\n",
    "/huge-url/": b"GET /huge-url/" + b"p" * 70_000 + b"?q=" + b"\xc3\xa9" * 5000
                  + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    "/binary": b"GET /binary HTTP/1.1\r\nHost: h\xff\xfe\r\nUser-Agent: \xff\xfe\x80abc\r\n"
               b"Referer: \x01\x02\x1b[31m\r\nConnection: close\r\n\r\n",
    "/nul": b"GET /nul HTTP/1.1\r\nHost: h\r\nUser-Agent: a\x00b\r\nConnection: close\r\n\r\n",
    "/repeated": b"GET /repeated HTTP/1.1\r\nHost: h\r\n"
                 + b"X-Forwarded-For: 10.0.0.1\r\n" * 300 + b"Connection: close\r\n\r\n",
    # bytes that look like IPFIX lengths and a set header, inside a value
    "/length-bytes": b"GET /length-bytes HTTP/1.1\r\nHost: h\r\nUser-Agent: \xff\xff\xff"
                     b"\x01\x00\x00\x10\r\nReferer: \x00\x02\x00\x14\r\nConnection: close\r\n\r\n",
}


@pytest.mark.parametrize("target", list(CASES))
def test_hostile_request_yields_a_clean_record(proxied: tuple[Mitmdump, Receiver],
                                               target: str) -> None:
    proxy, receiver = proxied
    exchange(proxy.port, CASES[target])
    (record,) = records_for(receiver, target)
    check_limits(record)
    assert record["httpRequestMethod"] == "GET"
    assert record["httpStatusCode"] in (200, 414, 431)  # the upstream may refuse the size
    for name in ("httpUserAgent", "httpReferrer", "httpRequestHost"):
        value = str(record.get(name, ""))
        assert "\x00" not in value and "\r" not in value and "\x1b" not in value
    if target == "/length-bytes":  # the value cannot reach past its own field
        assert record["httpRequestHost"] == "h"
        assert record["httpStatusCode"] == 200
        assert record["sourceIPv4Address"] == "127.0.0.1"
    # and the proxy keeps serving
    assert b"200 OK" in exchange(proxy.port, b"GET /after HTTP/1.1\r\nHost: h\r\n"
                                             b"Connection: close\r\n\r\n")


def clean(text: str) -> str:
    """The documented rule: C0 control characters but tab, and DEL, become U+FFFD."""
    return "".join("\ufffd" if (ord(c) < 32 and c != "\t") or c == "\x7f" else c
                   for c in text)


header_names = st.sampled_from([b"User-Agent", b"Referer", b"X-Forwarded-For", b"Content-Type",
                                b"Cookie", b"Authorization", b"X-Custom"])
header_values = st.binary(min_size=0, max_size=300).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"").strip())
paths = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FFF,
                                       exclude_characters="?#%"), max_size=60)
queries = st.dictionaries(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1,
                                  max_size=8),
                          st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789",
                                  max_size=12), max_size=4)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"]),
       paths, queries, st.lists(st.tuples(header_names, header_values), max_size=6))
def test_records_equal_what_the_client_sent(proxied: tuple[Mitmdump, Receiver], method: str,
                                            path: str, query: dict[str, str],
                                            headers: list[tuple[bytes, bytes]]) -> None:
    """Random requests: decoded records say what the client sent, after documented rules."""
    proxy, receiver = proxied
    marker = f"/prop{time.monotonic_ns()}/"
    target = marker + path
    query_text = "&".join(f"{k}={v}" for k, v in query.items())
    line = target.encode() + (b"?" + query_text.encode() if query_text else b"")
    raw = method.encode() + b" " + line + b" HTTP/1.1\r\nHost: prop.test\r\n"
    raw += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    raw += b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    exchange(proxy.port, raw)
    (record,) = records_for(receiver, marker)
    assert record["httpRequestMethod"] == method
    assert record["httpRequestTarget"] == clean(target.encode()[:1024].decode("utf-8", "ignore"))
    first: dict[bytes, bytes] = {}
    for name, value in headers:
        first.setdefault(name.lower(), value)
    sensitive = {"token", "password", "passwd", "secret", "key", "auth", "session",
                 "signature", "sig", "code"}
    expected_query = "&".join(
        f"{k}=REDACTED" if k in sensitive or sensitive & set(k.split("_")) else f"{k}={v}"
        for k, v in query.items())
    assert record["httpRequestQuery"] == expected_query
    for name, element in [(b"user-agent", "httpUserAgent"), (b"referer", "httpReferrer"),
                          (b"x-forwarded-for", "httpXForwardedFor"),
                          (b"content-type", "httpContentType")]:
        if name in first:
            sent = clean(first[name].decode("utf-8", "replace"))
            got = str(record[element])
            assert sent.startswith(got) and len(got.encode()) <= DEFAULT_MAX_LENGTHS[element]
    assert record["httpCookie"] == ""  # off by default
    assert "Authorization" not in str(record)

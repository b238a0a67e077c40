"""What a proxy saw of one HTTP exchange, and how that becomes an HttpFlowRecord.

`FlowFacts` holds the exchange as read from the proxy (raw bytes, tuples, numbers:
nothing decoded, nothing that can form a reference cycle); `record_from_facts` does the
costly part, text made safe for collectors and the privacy rules applied. Neither needs
mitmproxy, so both can be tested, and reused, without it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import msgspec

from .http_record import HttpFlowRecord
from .privacy import Redactor, cookie_value, default_redactor

# the optional C twin of record_from_facts for the common case; None: Python only
native_build_record: Callable[[type[HttpFlowRecord], FlowFacts, bool, bool],
                              HttpFlowRecord | None] | None
try:
    from ._facts import build_record as native_build_record
    from ._facts import record_fields as _native_record_fields

    if _native_record_fields() != HttpFlowRecord.__struct_fields__:  # pragma: no cover
        native_build_record = None  # built from other sources: its positions are wrong
except ImportError:  # pragma: no cover - no compiler where this was installed
    native_build_record = None


class Termination:
    """httpTerminationStateCode values: stable, documented in the README."""

    COMPLETED = 0
    CLIENT_ABORTED = 1
    UPSTREAM_CONNECT_FAILED = 2
    UPSTREAM_TIMEOUT = 3
    UPSTREAM_ABORTED = 4
    KILLED_BY_PROXY = 5
    REJECTED_BY_PROXY = 6
    PROXY_ERROR = 7


END_ACTIVE_TIMEOUT, END_OF_FLOW, END_FORCED = 2, 3, 4  # flowEndReason (IANA)


def ms(timestamp: float | None) -> int:
    """Milliseconds from a proxy's float seconds; 0 (not exported as a time) for none."""
    return int(timestamp * 1000) if timestamp else 0


def flow_id_of(uuid: str) -> int:
    """flowId from a proxy's UUID: its first 64 bits, so every record of one flow (interim,
    final) and of one connection carries the same id."""
    return int(uuid.replace("-", "")[:16], 16)


@functools.lru_cache(maxsize=4096)
def endpoint(address: Any) -> tuple[str, int]:
    """(host, port) with IPv4-mapped IPv6 unwrapped and any zone id dropped.

    Cached: every exchange on a connection has the same addresses (and the cache costs
    less than these lines)."""
    if not address:
        return "", 0
    host, port = address[0], address[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host.partition("%")[0], port


_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def _text(value: bytes) -> str:
    """Text a collector can show: invalid UTF-8 and control characters (NUL cuts C strings
    short in collectors; CR/LF forge log lines) become U+FFFD; tabs stay."""
    text = value.decode("utf-8", "replace")
    return text if text.isprintable() else _CONTROL.sub("\ufffd", text)


# request header (lower-case) -> HttpFlowRecord attribute
_REQUEST_HEADERS = {b"host": "host", b"user-agent": "user_agent", b"content-type": "content_type",
                    b"referer": "referrer", b"x-forwarded-for": "x_forwarded_for",
                    b"cookie": "cookie"}


class FlowFacts(msgspec.Struct, gc=False):
    """What a record needs from a flow, read from it and nothing decoded yet.

    The values are immutable (bytes, str, numbers, tuples of them): the facts can be
    kept, or built in tests, without the flow. gc=False: nothing here can form a
    reference cycle.
    """

    flow_id: str
    now_ms: int  # when the flow was read: in its hook, or one loop turn after it
    request_start: float | None
    request_end: float | None
    method: bytes
    path: bytes
    http_version: bytes
    authority: bytes
    host: str
    request_headers: tuple[tuple[bytes, bytes], ...]
    uploaded: int
    client: Any  # (host, port, ...) or None, as mitmproxy has it
    proxy: Any
    upstream: Any
    sni: str | None
    tls_version: str | None
    status_code: int | None  # None: no response
    reason: bytes = b""
    response_version: bytes = b""
    response_headers: tuple[tuple[bytes, bytes], ...] = ()
    downloaded: int = 0
    response_start: float | None = None
    response_end: float | None = None
    termination_state: int = Termination.COMPLETED
    flow_end_reason: int = END_OF_FLOW


class RecordRules(msgspec.Struct, frozen=True):
    """What decides a record's text beyond the facts: the privacy options, and whether the
    proxy is a reverse proxy that rewrote Host (then SNI is what the client asked for)."""

    cookies: str = "off"
    hash_key: bytes = b""
    redactor: Redactor = msgspec.field(default_factory=default_redactor)
    reverse_without_host: bool = False


def record_from_facts(facts: FlowFacts, rules: RecordRules) -> HttpFlowRecord:
    """The record: text made safe for collectors, privacy rules applied, sizes counted.

    Written for what CPython charges, as it runs once per exchange: the constructor gets
    15 keyword arguments at most (beyond that CPython hands them over in a dict, which
    doubled the cost of this function's biggest step), and fields usually left at their
    default are stored only when set. Where the C twin (ipfix/_facts.c) is installed it
    builds the record instead, in a tenth of the time, and returns None for anything
    unusual (control characters, odd types), which then takes this Python path.
    """
    if native_build_record is not None:
        built = native_build_record(HttpFlowRecord, facts, rules.reverse_without_host,
                                    rules.cookies != "off")
        if built is not None:  # privacy rules stay here, in Python: one implementation
            if built.query:
                built.query = rules.redactor.query(built.query)
            if built.referrer:
                built.referrer = rules.redactor.url(built.referrer)
            if built.cookie:
                built.cookie = cookie_value(built.cookie, rules.cookies, rules.hash_key)
            return built
    return python_record_from_facts(facts, rules)


def python_record_from_facts(facts: FlowFacts, rules: RecordRules) -> HttpFlowRecord:
    """record_from_facts without the C twin: the reference its tests compare it with."""
    found: dict[str, bytes] = {}
    head = len(facts.method) + len(facts.path) + len(facts.http_version) + 6  # + blank line
    for name, value in facts.request_headers:
        head += len(name) + len(value) + 4
        attribute = _REQUEST_HEADERS.get(name.lower())
        if attribute is not None and attribute not in found:
            found[attribute] = value
    raw_host = found.pop("host", None)
    if facts.authority:
        host = _text(facts.authority)
    else:
        host = facts.host if raw_host is None else _text(raw_host)
    if rules.reverse_without_host and facts.sni:
        host = facts.sni  # mitmproxy rewrote Host to the upstream; SNI is what the client asked
    target, _, query = _text(facts.path).partition("?")
    uploaded = facts.uploaded
    client_host, client_port = endpoint(facts.client)
    proxy_host, proxy_port = endpoint(facts.proxy)
    upstream_host, upstream_port = endpoint(facts.upstream)
    record = HttpFlowRecord(
        flow_id=flow_id_of(facts.flow_id),
        start_ms=ms(facts.request_start),
        end_ms=facts.now_ms,
        client_address=client_host or "0.0.0.0",
        proxy_address=proxy_host or ("::" if ":" in client_host else "0.0.0.0"),
        upstream_address=upstream_host,
        client_port=client_port, proxy_port=proxy_port, upstream_port=upstream_port,
        protocol=17 if facts.http_version == b"HTTP/3" else 6,
        initiator_octets=head + uploaded,
        uploaded_bytes=uploaded,
        method=_text(facts.method),
        host=host,
        target=target,
    )
    if query:
        record.query = rules.redactor.query(query)
    record.version = _text(facts.http_version)
    cookie = found.pop("cookie", None)
    for attribute, value in found.items():  # user agent, content type, referrer, XFF
        setattr(record, attribute, _text(value))
    if record.referrer:  # the previous page's URL: its query holds secrets as ours does
        record.referrer = rules.redactor.url(record.referrer)
    if cookie is not None and rules.cookies != "off":
        record.cookie = cookie_value(_text(cookie), rules.cookies, rules.hash_key)
    if facts.sni:
        record.tls_server_name = facts.sni
    if facts.tls_version:
        record.tls_version = facts.tls_version
    if facts.termination_state != Termination.COMPLETED:
        record.termination_state = facts.termination_state
    if facts.flow_end_reason != END_OF_FLOW:
        record.flow_end_reason = facts.flow_end_reason
    if facts.status_code is None:
        record.octets = record.initiator_octets
        return record
    head = len(facts.response_version) + len(facts.reason) + 9  # status line, blank line
    content_type = ""
    for name, value in facts.response_headers:
        head += len(name) + len(value) + 4
        if not content_type and name.lower() == b"content-type":
            content_type = _text(value)
    downloaded = facts.downloaded
    record.status_code = facts.status_code
    record.reason = _text(facts.reason)
    record.response_content_type = content_type
    record.downloaded_bytes = downloaded
    record.responder_octets = head + downloaded
    record.octets = record.initiator_octets + record.responder_octets
    if facts.response_end:
        record.end_ms = ms(facts.response_end)
    if facts.response_start and facts.request_end:
        record.upstream_ttfb_ms = max(ms(facts.response_start) - ms(facts.request_end), 0)
    return record

"""What the proxy saw of one HTTP exchange, and the one rule that makes it a record.

`read_http_flow` copies what a record needs out of a mitmproxy flow (`FlowFacts`: raw
bytes, tuples, numbers; nothing decoded, nothing that can form a reference cycle), so the
flow can go on living its own life. `record_from_facts` then makes the text safe for
collectors, applies the privacy rules and counts the sizes. It runs once per exchange
on the proxy's event loop, so it is written for what CPython charges: the record is
built in one positional call, and the usual header names are looked up in one dict.
"""

from __future__ import annotations

from typing import Any

import msgspec
from mitmproxy import http
from mitmproxy.proxy import mode_specs, server_hooks

from ipfix.http_record import HttpFlowRecord
from ipfix.termination import Termination
from ipfix.text import safe_text, safe_texts, scan_headers

from .convert import endpoint, endpoints, flow_id_of, ms
from .privacy import Redactor, cookie_value, default_redactor
from .termination import END_FORCED, END_OF_FLOW


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


def read_http_flow(flow: http.HTTPFlow, now_ms: int) -> FlowFacts:
    """The facts of an HTTP exchange as it stands now (reads the flow only)."""
    data = flow.request.data
    client = flow.client_conn
    response = flow.response
    answer: tuple[Any, ...] = (None,)  # no status code: the other response facts stay empty
    if response is not None:
        rdata = response.data
        answer = (rdata.status_code, rdata.reason, rdata.http_version, rdata.headers.fields,
                  len(rdata.content) if rdata.content is not None else 0,
                  rdata.timestamp_start, rdata.timestamp_end)
    return FlowFacts(  # positional: storing attributes afterwards costs as much again
        flow.id, now_ms, data.timestamp_start, data.timestamp_end, data.method, data.path,
        data.http_version, data.authority, data.host, data.headers.fields,
        len(data.content) if data.content is not None else 0,
        client.peername, client.sockname, flow.server_conn.peername, client.sni,
        client.tls_version, *answer)


class RecordRules(msgspec.Struct, frozen=True):
    """What decides a record's text beyond the facts: the privacy options, and whether the
    proxy is a reverse proxy that rewrote Host (then SNI is what the client asked for)."""

    cookies: str = "off"
    hash_key: bytes = b""
    redactor: Redactor = msgspec.field(default_factory=default_redactor)
    reverse_without_host: bool = False


# the request headers a record carries, lower-case
_REQUEST_HEADERS = (b"host", b"user-agent", b"content-type", b"referer", b"x-forwarded-for",
                    b"cookie")
_CONTENT_TYPE = (b"content-type",)
_REQUEST_LINE = 6  # "GET", " ", path, " ", version, CRLF; and the blank line, 2 more
_STATUS_LINE = 9  # version, " ", 3 digits, " ", reason, CRLF; and the blank line


def record_from_facts(facts: FlowFacts, rules: RecordRules) -> HttpFlowRecord:
    """The record: text made safe for collectors, privacy rules applied, sizes counted."""
    (host_header, user_agent, content_type, referrer, forwarded_for, cookie), header_size = (
        scan_headers(facts.request_headers, _REQUEST_HEADERS))
    method, path, version, user_agent_text, content_type_text, forwarded_for_text = (
        safe_texts((facts.method, facts.path, facts.http_version, user_agent, content_type,
                    forwarded_for)))
    if rules.reverse_without_host and facts.sni:
        host = facts.sni  # mitmproxy rewrote Host to the upstream; SNI is what the client asked
    elif facts.authority:
        host = safe_text(facts.authority)
    else:
        host = facts.host if host_header is None else safe_text(host_header)
    target, _, query = path.partition("?")
    if query:
        query = rules.redactor.query(query)
    referrer_text = ""
    if referrer is not None:  # the previous page's URL: its query holds secrets as ours does
        referrer_text = rules.redactor.url(safe_text(referrer))
    cookie_text = ""
    if cookie is not None and rules.cookies != "off":
        cookie_text = cookie_value(safe_text(cookie), rules.cookies, rules.hash_key)
    uploaded = facts.uploaded
    initiator = (len(facts.method) + len(facts.path) + len(facts.http_version) + _REQUEST_LINE
                 + header_size + uploaded)
    client, client_port, proxy, proxy_port = endpoints(facts.client, facts.proxy)
    upstream, upstream_port = endpoint(facts.upstream)
    status = facts.status_code
    end_ms, ttfb = facts.now_ms, 0
    reason = response_type = ""
    downloaded = responder = 0
    if status is None:
        status = 0
    else:
        (response_type_header,), response_size = scan_headers(facts.response_headers,
                                                              _CONTENT_TYPE)
        reason, response_type = safe_texts((facts.reason, response_type_header))
        downloaded = facts.downloaded
        responder = (len(facts.response_version) + len(facts.reason) + _STATUS_LINE
                     + response_size + downloaded)
        if facts.response_end:
            end_ms = int(facts.response_end * 1000)
        if facts.response_start and facts.request_end:
            ttfb = max(int(facts.response_start * 1000) - int(facts.request_end * 1000), 0)
    return HttpFlowRecord(  # positional, in HttpFlowRecord's field order
        flow_id_of(facts.flow_id), ms(facts.request_start), end_ms, client, proxy, upstream,
        client_port, proxy_port, upstream_port, 17 if facts.http_version == b"HTTP/3" else 6,
        initiator + responder, initiator, responder, uploaded, downloaded, status,
        facts.flow_end_reason, facts.termination_state, ttfb, method, host, target, query,
        version, reason, user_agent_text, content_type_text, response_type, referrer_text,
        forwarded_for_text, cookie_text, facts.sni or "", facts.tls_version or "")


def connect_failure_record(data: server_hooks.ServerConnectionHookData,
                           now_ms: int) -> HttpFlowRecord:
    """A connection whose eager upstream connect failed before any HTTP flow existed: what
    is known of it is the client, its TLS, and in forward mode the CONNECT it sent (the
    target is the connect's address: method CONNECT, host and target host:port)."""
    client = data.client
    client_host, client_port, proxy_host, proxy_port = endpoints(client.peername,
                                                                 client.sockname)
    method = target = ""
    if isinstance(client.proxy_mode, mode_specs.RegularMode) and data.server.address:
        host, port = data.server.address[:2]
        method = "CONNECT"
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return HttpFlowRecord(
        flow_id=flow_id_of(client.id), start_ms=ms(client.timestamp_start) or now_ms,
        end_ms=now_ms, client_address=client_host, proxy_address=proxy_host,
        client_port=client_port, proxy_port=proxy_port, flow_end_reason=END_FORCED,
        termination_state=Termination.UPSTREAM_CONNECT_FAILED, method=method, host=target,
        target=target, tls_server_name=client.sni or "", tls_version=client.tls_version or "")

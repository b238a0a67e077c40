"""How an exchange ended, from the sentences mitmproxy 12.2 writes into `flow.error`.

One row per sentence (from mitmproxy/proxy/layers/http/*.py and mitmproxy/flow.py): a
mitmproxy upgrade that rewords one shows up here as a failing row.
"""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.flow import Error
from mitmproxy.test import tflow

from ipfix.termination import Termination
from mitmflows.termination import termination_of

TCP_TIMEOUT_MS = 600_000
T = Termination


def upstream_connected() -> http.HTTPFlow:
    """A request sent upstream and waiting for its answer."""
    return tflow.tflow(resp=False)


def never_connected() -> http.HTTPFlow:
    flow = tflow.tflow(resp=False)
    flow.server_conn.peername = None
    flow.server_conn.timestamp_start = None
    return flow


def request_incomplete() -> http.HTTPFlow:
    flow = tflow.tflow(resp=False)
    flow.request.timestamp_end = None
    return flow


def upstream_tls_failed() -> http.HTTPFlow:
    flow = tflow.tflow(resp=False)
    flow.server_conn.tls = True
    flow.server_conn.timestamp_tls_setup = None
    return flow


def answered() -> http.HTTPFlow:
    return tflow.tflow(resp=True)


@pytest.mark.parametrize(("message", "make_flow", "code"), [
    ("Connection killed.", answered, T.KILLED_BY_PROXY),  # flow.kill(), Error.KILLED_MESSAGE
    ("Request body exceeds mitmproxy's body_size_limit.", upstream_connected,
     T.REJECTED_BY_PROXY),
    ("Response body exceeds mitmproxy's body_size_limit.", answered, T.KILLED_BY_PROXY),
    ("Received Transfer-Encoding header with invalid value from client, refusing to prevent "
     "request smuggling attacks. Disable the validate_inbound_headers option to skip this "
     "security check.", never_connected, T.REJECTED_BY_PROXY),
    ("Received Content-Length header with invalid value from server, refusing to prevent "
     "request smuggling attacks. Disable the validate_inbound_headers option to skip this "
     "security check.", answered, T.UPSTREAM_ABORTED),
    ("Invalid request scheme: ftp", never_connected, T.REJECTED_BY_PROXY),
    ("mitmproxy received an HTTP CONNECT request even though it is not running in "
     "regular/upstream mode. This usually indicates a misconfiguration, please see the "
     "mitmproxy mode documentation for details.", never_connected, T.REJECTED_BY_PROXY),
    ("HTTP request has no host header, destination unknown.", never_connected,
     T.REJECTED_BY_PROXY),
    ("Client disconnected.", upstream_connected, T.CLIENT_ABORTED),
    ("stream reset by client (CANCEL)", upstream_connected, T.CLIENT_ABORTED),
    ("HTTP/1 protocol error: Invalid chunk header", request_incomplete, T.REJECTED_BY_PROXY),
    ("HTTP/1 protocol error: illegal header line", upstream_connected, T.UPSTREAM_ABORTED),
    ("HTTP/2 protocol error: Invalid input ConnectionInputs.RECV_DATA", upstream_connected,
     T.UPSTREAM_ABORTED),
    ("Cannot parse HTTP response: Invalid status code", upstream_connected,
     T.UPSTREAM_ABORTED),
    ("unexpected server response: b'HTTP/1.1 200 OK'", upstream_connected, T.UPSTREAM_ABORTED),
    ("server closed connection", upstream_connected, T.UPSTREAM_ABORTED),
    ("Connection killed: [Errno 111] Connection refused", never_connected,
     T.UPSTREAM_CONNECT_FAILED),
    ("[Errno 111] Connect call failed ('127.0.0.1', 9)", never_connected,
     T.UPSTREAM_CONNECT_FAILED),
    ("[Errno -2] Name or service not known", never_connected, T.UPSTREAM_CONNECT_FAILED),
    ("TLS handshake failed", upstream_tls_failed, T.UPSTREAM_CONNECT_FAILED),
    ("HTTP/2 connection closed: <ConnectionTerminated error_code:0>", upstream_connected,
     T.UPSTREAM_ABORTED),
])
def test_each_sentence_mitmproxy_writes(message: str, make_flow: object, code: int) -> None:
    flow = make_flow()  # type: ignore[operator]
    assert termination_of(flow, Error(message), 0, TCP_TIMEOUT_MS) == code


def test_completed_is_zero() -> None:
    assert termination_of(answered(), None, 0, TCP_TIMEOUT_MS) == T.COMPLETED


def test_client_disconnected_after_tcp_timeout_is_the_upstream_keeping_silent() -> None:
    """mitmproxy closes an idle client connection after tcp_timeout with the words it uses
    for a client that left: a request that waited that long was waiting on the upstream."""
    flow = upstream_connected()
    assert flow.request.timestamp_end is not None
    sent = int(flow.request.timestamp_end * 1000)
    disconnected = Error("Client disconnected.")
    assert termination_of(flow, disconnected, sent + TCP_TIMEOUT_MS, TCP_TIMEOUT_MS) == (
        T.UPSTREAM_TIMEOUT)
    assert termination_of(flow, disconnected, sent + 10, TCP_TIMEOUT_MS) == T.CLIENT_ABORTED
    assert termination_of(answered(), disconnected, sent + TCP_TIMEOUT_MS,
                          TCP_TIMEOUT_MS) == T.CLIENT_ABORTED  # the answer had begun


def test_an_unknown_sentence_falls_back_on_the_connection_state() -> None:
    assert termination_of(never_connected(), Error("something new"), 0,
                          TCP_TIMEOUT_MS) == T.UPSTREAM_CONNECT_FAILED
    assert termination_of(upstream_connected(), Error("something new"), 0,
                          TCP_TIMEOUT_MS) == T.UPSTREAM_ABORTED

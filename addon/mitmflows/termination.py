"""How an exchange ended, from what mitmproxy recorded: the error's text and the state of
the connections.

mitmproxy gives addons the end of a failed flow as an English sentence (`flow.error.msg`)
and nothing more, so this is the code most likely to change meaning with a mitmproxy
upgrade. Its test is a table with one row per sentence mitmproxy 12.2 writes: an upgrade
that rewords one shows up as a failing row.
"""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.flow import Error

from ipfix.termination import FlowEndReason, Termination

from .convert import ms

# flowEndReason (IANA): the record of an interval of a long-lived flow; the flow's end;
# an end the proxy forced (an error, a kill, shutdown)
END_ACTIVE_TIMEOUT = FlowEndReason.ACTIVE_TIMEOUT
END_OF_FLOW = FlowEndReason.END_OF_FLOW
END_FORCED = FlowEndReason.FORCED_END


# Sentences (or their parts) mitmproxy 12.2 writes when the proxy refuses a request.
_REJECTED = ("from client, refusing", "HTTP CONNECT request even though", "no host header")
# Protocol errors that do not say whose they are: the flow's state tells
_PROTOCOL_ERRORS = ("HTTP/1 protocol error", "HTTP/2 protocol error")


def termination_of(flow: http.HTTPFlow, error: Error | None, now_ms: int,
                   tcp_timeout_ms: int) -> Termination:
    """The termination code of an exchange that ended with `error` (None: completed)."""
    if error is None:
        return Termination.COMPLETED
    message = error.msg
    if message == Error.KILLED_MESSAGE:
        return Termination.KILLED_BY_PROXY
    if "body_size_limit" in message:  # a request over the limit is refused, a response cut
        return (Termination.REJECTED_BY_PROXY if message.startswith("Request")
                else Termination.KILLED_BY_PROXY)
    if message.startswith("Invalid request") or any(part in message for part in _REJECTED):
        return Termination.REJECTED_BY_PROXY
    if message.startswith("stream reset by client"):  # HTTP/2 RST_STREAM, CANCEL usually
        return Termination.CLIENT_ABORTED
    if message == "Client disconnected.":
        # the same words for a client that went away and for mitmproxy closing an idle
        # connection (tcp_timeout) while the upstream kept silent
        started = ms(flow.request.timestamp_end or flow.request.timestamp_start)
        if flow.response is None and started and now_ms - started >= tcp_timeout_ms - 1000:
            return Termination.UPSTREAM_TIMEOUT
        return Termination.CLIENT_ABORTED
    if message.startswith(_PROTOCOL_ERRORS) and flow.request.timestamp_end is None:
        return Termination.REJECTED_BY_PROXY  # the request itself never completed: malformed
    server = flow.server_conn
    if server.peername is None or (server.tls and not server.timestamp_tls_setup):
        return Termination.UPSTREAM_CONNECT_FAILED
    if "from server, refusing" in message or server.timestamp_start:
        return Termination.UPSTREAM_ABORTED
    return Termination.PROXY_ERROR

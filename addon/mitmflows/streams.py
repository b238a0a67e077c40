"""TCP and UDP streams: the bytes and messages they relay, and their connection records.

mitmproxy keeps every message of a stream in `flow.messages` for as long as the flow
lives, and addons may edit or drop them; so the counts are taken message by message, as
each passes the tcp_message / udp_message hook, never by summing the list afterwards.
The counters are Python integers sent as unsigned64: they do not wrap. Streams that
last get interim records at the active timeout, each with what passed since the
previous record of the same flowId, as HTTP's long-lived exchanges do.

Memory: one `StreamCounts` per stream mitmproxy has open, dropped at
the stream's end hook. mitmproxy itself ends a UDP stream after 20 s without a datagram
and a TCP stream after `tcp_timeout`, so the table holds no more than the proxy does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mitmproxy import tcp, udp
from mitmproxy.flow import Error
from mitmproxy.proxy.server import UDP_TIMEOUT

from ipfix.connection_record import ConnectionRecord, FlowKind
from ipfix.termination import FlowEndReason, Termination

from .convert import clean, endpoint, endpoints, flow_id_of, ms
from .hello import HelloFacts

Stream = tcp.TCPFlow | udp.UDPFlow

# mitmproxy's connection-failure sentences start like these (OSError text of asyncio;
# "Multiple exceptions: ..." when each address of a name failed differently)
CONNECT_FAILED = ("[Errno", "Multiple exceptions:", "Connect call failed", "Connection refused",
                   "No route to host", "Network is unreachable", "Name or service not known",
                   "nodename nor servname", "Temporary failure in name resolution")


@dataclass(slots=True)
class StreamCounts:
    """One open stream: what passed so far, and what earlier records already said."""

    flow: Stream
    last_export_ms: int  # when its last record (or its start) was
    up_octets: int = 0
    down_octets: int = 0
    up_messages: int = 0
    down_messages: int = 0
    last_message: float = 0.0  # mitmproxy's timestamp of the latest message
    exported_up_octets: int = 0
    exported_down_octets: int = 0
    exported_up_messages: int = 0
    exported_down_messages: int = 0
    hello: HelloFacts | None = None  # the client's ClientHello, when TLS came first

    def count(self, from_client: bool, size: int, timestamp: float) -> None:
        if from_client:
            self.up_octets += size
            self.up_messages += 1
        else:
            self.down_octets += size
            self.down_messages += 1
        self.last_message = timestamp

    @property
    def has_news(self) -> bool:
        """Something passed since the previous record: an interim record has a delta to
        tell (an idle stream gets none, as a router sends none for a silent flow)."""
        return (self.up_messages != self.exported_up_messages
                or self.down_messages != self.exported_down_messages)

    def take_deltas(self, record: ConnectionRecord) -> None:
        """Put what passed since the previous record into `record`, and remember it."""
        record.initiator_octets = self.up_octets - self.exported_up_octets
        record.responder_octets = self.down_octets - self.exported_down_octets
        record.initiator_messages = self.up_messages - self.exported_up_messages
        record.responder_messages = self.down_messages - self.exported_down_messages
        record.octets = record.initiator_octets + record.responder_octets
        self.exported_up_octets, self.exported_down_octets = self.up_octets, self.down_octets
        self.exported_up_messages = self.up_messages
        self.exported_down_messages = self.down_messages


class OpenStreams:
    """The streams in progress, by flow id."""

    def __init__(self) -> None:
        self.entries: dict[str, StreamCounts] = {}

    def start(self, flow: Stream, now_ms: int) -> StreamCounts:
        entry = self.entries.get(flow.id)
        if entry is None:
            entry = self.entries[flow.id] = StreamCounts(flow, now_ms)
        return entry

    def count_last_message(self, flow: Stream) -> None:
        """The message a tcp_message / udp_message hook announces: flow.messages[-1]. Only
        streams that were started (their kind is exported) are counted."""
        entry = self.entries.get(flow.id)
        if entry is None:
            return
        message = flow.messages[-1]
        entry.count(message.from_client, len(message.content), message.timestamp)

    def pop(self, flow_id: str) -> StreamCounts | None:
        return self.entries.pop(flow_id, None)

    def due(self, now_ms: int, active_timeout_ms: int) -> list[StreamCounts]:
        """The streams whose active timeout has passed; their clock restarts now."""
        due = [e for e in self.entries.values() if now_ms - e.last_export_ms >= active_timeout_ms]
        for entry in due:
            entry.last_export_ms = now_ms
        return due


def stream_termination(flow: Stream, counts: StreamCounts | None, now: float,
                       tcp_timeout_s: int) -> Termination:
    """How a stream ended, from its error (tcp_error / udp_error) or, without one, from how
    long it had been silent: mitmproxy closes idle streams without saying so."""
    error = flow.error
    if error is not None:
        return _error_termination(flow, error)
    idle_limit = tcp_timeout_s if isinstance(flow, tcp.TCPFlow) else UDP_TIMEOUT
    last = (counts.last_message if counts is not None and counts.last_message
            else flow.client_conn.timestamp_start)
    if last and now - last >= idle_limit - 0.5:
        return Termination.IDLE_TIMEOUT
    return Termination.COMPLETED


def _error_termination(flow: Stream, error: Error) -> Termination:
    message = error.msg
    if message == Error.KILLED_MESSAGE:
        return Termination.KILLED_BY_PROXY
    server = flow.server_conn
    if server.timestamp_start is None or server.peername is None or message.startswith(
            CONNECT_FAILED):
        return Termination.UPSTREAM_CONNECT_FAILED
    return Termination.PROXY_ERROR


def stream_record(flow: Stream, counts: StreamCounts | None, hello: HelloFacts | None,
                  now_ms: int, termination: Termination, end_reason: FlowEndReason,
                  ) -> ConnectionRecord:
    """The connection record of a stream (an interim one when `end_reason` is
    ACTIVE_TIMEOUT), its counters the deltas since its previous record."""
    client = flow.client_conn
    client_host, client_port, proxy_host, proxy_port = endpoints(client.peername,
                                                                 client.sockname)
    upstream_host, upstream_port = endpoint(flow.server_conn.peername)
    is_tcp = isinstance(flow, tcp.TCPFlow)
    end_ms = now_ms
    if termination is Termination.IDLE_TIMEOUT and counts is not None and counts.last_message:
        end_ms = ms(counts.last_message)  # a flow ends with its last message, as on a router
    record = ConnectionRecord(
        flow_id=flow_id_of(flow.id), start_ms=ms(client.timestamp_start) or now_ms,
        end_ms=end_ms, client_address=client_host, proxy_address=proxy_host,
        upstream_address=upstream_host, client_port=client_port, proxy_port=proxy_port,
        upstream_port=upstream_port, protocol=6 if is_tcp else 17,
        flow_end_reason=end_reason, termination_state=termination,
        kind=FlowKind.TCP_STREAM if is_tcp else FlowKind.UDP_STREAM,
        error=clean(flow.error.msg) if flow.error is not None else "")
    fill_tls(record, client, hello)
    if counts is not None:
        counts.take_deltas(record)
    return record


def fill_tls(record: ConnectionRecord, client: Any, hello: HelloFacts | None) -> None:
    """What the client's TLS said: SNI, version and ALPN negotiated, and its offers."""
    record.tls_version = client.tls_version or ""
    record.tls_alpn = _alpn_text(client.alpn)
    if hello is not None:
        record.tls_server_name = hello.server_name
        record.tls_offered_alpn = hello.alpn_offers
        record.tls_offered_version = hello.version
    else:
        record.tls_server_name = client.sni or ""


def _alpn_text(alpn: bytes | None) -> str:
    return alpn.decode("utf-8", "replace") if alpn else ""

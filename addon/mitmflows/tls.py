"""TLS below HTTP: handshakes that failed, and connections passed through untouched.

A client that refuses the proxy's certificate (a pinning app, a missing CA) never sends
a request, so no HTTP flow exists to tell of it; neither does one whose upstream's
certificate the proxy refuses before any request. mitmproxy reports both in the
tls_failed_client / tls_failed_server hooks, with the error as a sentence: the sentence
becomes a documented termination code here, and the sentence itself goes along.

Connections matched by `ignore_hosts` (or missed by `allow_hosts`) are relayed by a
TCP (or UDP) layer with no flow at all, so no stream hook runs for them. They are seen
where mitmproxy decides so, in the `next_layer` hook: `PassthroughWatcher` is a helper
addon registered after mitmproxy's own NextLayer, and only while such options are set.
What a passthrough record lacks is said in `passthrough_record`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
from mitmproxy import connection
from mitmproxy.net.tls import starts_like_dtls_record, starts_like_tls_record
from mitmproxy.proxy.layers import TCPLayer, UDPLayer
from mitmproxy.proxy.layers.quic import quic_parse_client_hello_from_datagrams
from mitmproxy.proxy.layers.tls import dtls_parse_client_hello, parse_client_hello
from mitmproxy.tls import ClientHello, TlsData

from ipfix.connection_record import ConnectionRecord, FlowKind
from ipfix.termination import FlowEndReason, Termination

from .convert import clean, endpoint, endpoints, flow_id_of, ms
from .hello import HelloFacts, Limits, hello_facts, join_within
from .streams import fill_tls

logger = logging.getLogger(__name__)

# The start of the sentence mitmproxy 12.2 writes when the client refused its certificate
# (an alert: unknown ca, bad certificate, certificate unknown). Not a part of it: the
# sentence for a client that merely disconnected ends "... may indicate that the client
# does not trust the proxy's certificate."
_CLIENT_REJECTED = ("The client does not trust the proxy's certificate",)
_UPSTREAM_CERTIFICATE = ("Certificate verify failed",)


def tls_failure_code(error: str, client_side: bool) -> Termination:
    """The termination code of a failed handshake, from mitmproxy's sentence."""
    if client_side:
        if error.startswith(_CLIENT_REJECTED):
            return Termination.CLIENT_REJECTED_CERTIFICATE
        return Termination.CLIENT_TLS_FAILED
    if error.startswith(_UPSTREAM_CERTIFICATE):
        return Termination.UPSTREAM_CERTIFICATE_INVALID
    return Termination.UPSTREAM_TLS_FAILED


def tls_failure_record(data: TlsData, hello: HelloFacts | None, now_ms: int,
                       limits: Limits) -> tuple[ConnectionRecord, int]:
    """The record of a failed handshake, and how many of its fields were cut to `limits`.
    Client side: what the client offered. Upstream side: what the proxy offered the
    upstream (its SNI and ALPN; the versions the proxy offers are its own settings, so
    none is given)."""
    client, server = data.context.client, data.context.server
    client_side = data.conn is client
    client_host, client_port, proxy_host, proxy_port = endpoints(client.peername,
                                                                 client.sockname)
    upstream_host, upstream_port = endpoint(server.peername)
    error = data.conn.error or ""
    record = ConnectionRecord(  # the flowId of the connection whose handshake failed
        flow_id=flow_id_of(data.conn.id), start_ms=ms(client.timestamp_start) or now_ms,
        end_ms=now_ms, client_address=client_host, proxy_address=proxy_host,
        upstream_address=upstream_host, client_port=client_port, proxy_port=proxy_port,
        upstream_port=upstream_port, protocol=6 if client.transport_protocol == "tcp" else 17,
        flow_end_reason=FlowEndReason.FORCED_END,
        termination_state=tls_failure_code(error, client_side), kind=FlowKind.TLS_FAILURE,
        error=clean(error))
    if client_side:
        fill_tls(record, client, hello)
    else:
        fill_tls(record, client, None)
        record.tls_server_name = server.sni or ""
        record.tls_offered_alpn, cut = join_within(
            [clean(a.decode("utf-8", "replace")) for a in server.alpn_offers], ",",
            limits.alpn_offers)
        return record, 1 if cut else 0
    return record, hello.cuts if hello is not None else 0


class Passthrough(msgspec.Struct, gc=False):
    """A connection relayed untouched, until its client goes."""

    client: connection.Client
    server: connection.Server
    hello: HelloFacts | None


def passthrough_record(entry: Passthrough, now_ms: int) -> ConnectionRecord:
    """A passthrough connection's record, when its client has gone.

    It has the addresses, the times, the SNI, ALPN and version the ClientHello offered
    (when one came first), and whether the upstream connection was made. It has no
    octets or message counts: mitmproxy relays these bytes without telling addons. Set
    mitmproxy's show_ignored_hosts to have them as TCP/UDP stream records with counts,
    at the cost of mitmproxy keeping every message of them in memory."""
    client, server = entry.client, entry.server
    client_host, client_port, proxy_host, proxy_port = endpoints(client.peername,
                                                                 client.sockname)
    upstream_host, upstream_port = endpoint(server.peername)
    connected = server.timestamp_start is not None and server.peername is not None
    error = server.error or ""
    record = ConnectionRecord(
        flow_id=flow_id_of(client.id), start_ms=ms(client.timestamp_start) or now_ms,
        end_ms=ms(client.timestamp_end) or now_ms, client_address=client_host,
        proxy_address=proxy_host, upstream_address=upstream_host, client_port=client_port,
        proxy_port=proxy_port, upstream_port=upstream_port,
        protocol=6 if client.transport_protocol == "tcp" else 17,
        flow_end_reason=FlowEndReason.END_OF_FLOW if connected else FlowEndReason.FORCED_END,
        termination_state=(Termination.COMPLETED if connected
                           else Termination.UPSTREAM_CONNECT_FAILED),
        kind=FlowKind.PASSTHROUGH, error=clean(error))
    fill_tls(record, client, entry.hello)
    return record


def read_hello(data: bytes, transport_protocol: str) -> ClientHello | None:
    """The ClientHello at the start of what a client sent, if there is one (TLS over TCP;
    QUIC or DTLS over UDP)."""
    try:
        if transport_protocol == "tcp":
            return parse_client_hello(data) if starts_like_tls_record(data) else None
        if starts_like_dtls_record(data):
            return dtls_parse_client_hello(data)
        return quic_parse_client_hello_from_datagrams([data]) if data else None
    except Exception:  # not a hello, or not a whole one: the record goes without
        return None


class PassthroughWatcher:
    """A helper addon: sees mitmproxy decide to relay a connection untouched."""

    name = "flowexport-passthrough"

    def __init__(self, on_passthrough: Callable[[Passthrough], None],
                 limits: Callable[[], Limits]) -> None:
        self.on_passthrough = on_passthrough
        self.limits = limits

    def next_layer(self, nextlayer: Any) -> None:
        layer = nextlayer.layer
        if not isinstance(layer, TCPLayer | UDPLayer) or layer.flow is not None:
            return
        context = nextlayer.context
        client = context.client
        hello = read_hello(bytes(nextlayer.data_client()), client.transport_protocol)
        facts = hello_facts(hello, self.limits()) if hello is not None else None
        self.on_passthrough(Passthrough(client, context.server, facts))

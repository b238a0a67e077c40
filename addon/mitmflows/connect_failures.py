"""Eager upstream connects that fail before any flow exists: which kind of record tells.

In reverse, transparent and CONNECT modes mitmproxy connects upstream as the client
arrives (connection_strategy=eager), before it knows what the client will speak; when
that fails, no flow is made, only server_connect_error. The proxy mode says what the
client came for: a reverse proxy's scheme names it, a forward proxy's client sent an
HTTP CONNECT, and a transparent one's client could have sent anything (a connection
record then).
"""

from __future__ import annotations

from typing import Any

from mitmproxy.proxy import mode_specs, server_hooks

from ipfix.connection_record import ConnectionRecord, FlowKind
from ipfix.dns_record import DnsRecord
from ipfix.http_record import HttpFlowRecord
from ipfix.termination import FlowEndReason, Termination

from .convert import clean, endpoints, flow_id_of, ms
from .facts import connect_failure_record as http_connect_failure_record

_STREAM_SCHEMES = {"tcp": FlowKind.TCP_STREAM, "tls": FlowKind.TCP_STREAM,
                   "udp": FlowKind.UDP_STREAM, "dtls": FlowKind.UDP_STREAM,
                   "quic": FlowKind.UDP_STREAM}

Record = HttpFlowRecord | ConnectionRecord | DnsRecord


def connect_failure(data: server_hooks.ServerConnectionHookData,
                    now_ms: int) -> tuple[str, Record]:
    """(the kind of flow, as flowexport_kinds names it; the record) of a failed connect."""
    client = data.client
    mode = client.proxy_mode
    if isinstance(mode, mode_specs.ReverseMode):
        if mode.scheme == "dns":
            return "dns", _dns_record(data, now_ms)
        stream_kind = _STREAM_SCHEMES.get(mode.scheme)
        if stream_kind is None:
            return "http", http_connect_failure_record(data, now_ms)
    elif isinstance(mode, mode_specs.RegularMode | mode_specs.UpstreamMode):
        return "http", http_connect_failure_record(data, now_ms)
    else:
        stream_kind = (FlowKind.TCP_STREAM if client.transport_protocol == "tcp"
                       else FlowKind.UDP_STREAM)
    kind = "tcp" if stream_kind is FlowKind.TCP_STREAM else "udp"
    return kind, _stream_record(data, stream_kind, now_ms)


def _addresses(client: Any) -> dict[str, Any]:
    client_host, client_port, proxy_host, proxy_port = endpoints(client.peername,
                                                                 client.sockname)
    return {"client_address": client_host, "client_port": client_port,
            "proxy_address": proxy_host, "proxy_port": proxy_port}


def _stream_record(data: server_hooks.ServerConnectionHookData, kind: FlowKind,
                   now_ms: int) -> ConnectionRecord:
    client = data.client
    return ConnectionRecord(
        flow_id=flow_id_of(client.id), start_ms=ms(client.timestamp_start) or now_ms,
        end_ms=now_ms, **_addresses(client),
        protocol=6 if kind is FlowKind.TCP_STREAM else 17,
        flow_end_reason=FlowEndReason.FORCED_END,
        termination_state=Termination.UPSTREAM_CONNECT_FAILED, kind=kind,
        tls_server_name=client.sni or "", tls_version=client.tls_version or "",
        error=clean(data.server.error))


def _dns_record(data: server_hooks.ServerConnectionHookData, now_ms: int) -> DnsRecord:
    client = data.client
    return DnsRecord(
        flow_id=flow_id_of(client.id), start_ms=ms(client.timestamp_start) or now_ms,
        end_ms=now_ms, **_addresses(client),
        protocol=6 if client.transport_protocol == "tcp" else 17,
        flow_end_reason=FlowEndReason.FORCED_END,
        termination_state=Termination.UPSTREAM_CONNECT_FAILED, error=clean(data.server.error))

"""The connection record: flows mitmproxy relays below HTTP, and TLS handshakes that failed.

One record kind, told apart by proxyFlowKind, for what the proxy knows of a connection
rather than of an exchange: TCP and UDP streams (`reverse:tcp://`, `reverse:udp://`,
`tcp_hosts`, raw TCP), connections passed through untouched (`ignore_hosts`), and TLS
handshakes that failed on either side. Templates 264-267, one per combination of address
families as for HTTP records (see layout.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum

import msgspec

from .http_record import DEFAULT_MAX_LENGTHS as HTTP_MAX_LENGTHS
from .http_record import DEFAULT_V9_WIDTHS as HTTP_V9_WIDTHS
from .layout import FLOW_KEYS, FieldSpec, RecordLayout

FIRST_CONNECTION_TEMPLATE_ID = 264  # after the HTTP templates and the options templates


class FlowKind(IntEnum):
    """proxyFlowKind: what a connection record describes. Stable: documented in the README."""

    TCP_STREAM = 1
    UDP_STREAM = 2
    PASSTHROUGH = 3  # relayed untouched (ignore_hosts): no messages seen, only the connection
    TLS_FAILURE = 4  # a TLS handshake that failed, client or upstream side

    @property
    def words(self) -> str:
        return self.name.lower().replace("_", " ")


class ConnectionRecord(msgspec.Struct, gc=False):
    """One connection (or one interval of a long one), ready to encode; the field order is
    the templates' (CONNECTION_FIELDS)."""

    flow_id: int = 0
    start_ms: int = 0
    end_ms: int = 0
    client_address: str = "0.0.0.0"
    proxy_address: str = "0.0.0.0"
    upstream_address: str = ""  # "" when no upstream connection was made
    client_port: int = 0
    proxy_port: int = 0
    upstream_port: int = 0
    protocol: int = 6
    octets: int = 0
    initiator_octets: int = 0
    responder_octets: int = 0
    initiator_messages: int = 0
    responder_messages: int = 0
    flow_end_reason: int = 3
    termination_state: int = 0
    kind: int = FlowKind.TCP_STREAM
    tls_server_name: str = ""
    tls_version: str = ""
    tls_alpn: str = ""
    tls_offered_alpn: str = ""
    tls_offered_version: str = ""
    error: str = ""


CONNECTION_FIELDS: FieldSpec = (
    *FLOW_KEYS,
    ("initiator_messages", "initiatorMessages"),
    ("responder_messages", "responderMessages"),
    ("flow_end_reason", "flowEndReason"),
    ("termination_state", "flowTerminationStateCode"),
    ("kind", "proxyFlowKind"),
    ("tls_server_name", "tlsServerName"),
    ("tls_version", "tlsProtocolVersion"),
    ("tls_alpn", "tlsApplicationProtocol"),
    ("tls_offered_alpn", "tlsOfferedApplicationProtocols"),
    ("tls_offered_version", "tlsOfferedVersion"),
    ("error", "proxyErrorMessage"),
)

# bytes of UTF-8 in IPFIX; fixed widths in NetFlow v9 (a value keeps one NUL byte)
DEFAULT_MAX_LENGTHS: Mapping[str, int] = {
    "tlsServerName": HTTP_MAX_LENGTHS["tlsServerName"],
    "tlsProtocolVersion": HTTP_MAX_LENGTHS["tlsProtocolVersion"],
    "tlsApplicationProtocol": 64,
    "tlsOfferedApplicationProtocols": 256,
    "tlsOfferedVersion": 16,
    "proxyErrorMessage": 256,
}
DEFAULT_V9_WIDTHS: Mapping[str, int] = {
    "tlsServerName": HTTP_V9_WIDTHS["tlsServerName"],
    "tlsProtocolVersion": HTTP_V9_WIDTHS["tlsProtocolVersion"],
    "tlsApplicationProtocol": 16,
    "tlsOfferedApplicationProtocols": 48,
    "tlsOfferedVersion": 12,
    "proxyErrorMessage": 96,
}

CONNECTION_RECORDS = RecordLayout("connection", ConnectionRecord, CONNECTION_FIELDS,
                                  FIRST_CONNECTION_TEMPLATE_ID, DEFAULT_MAX_LENGTHS,
                                  DEFAULT_V9_WIDTHS)

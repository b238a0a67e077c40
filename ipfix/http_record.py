"""The HTTP flow record: one per exchange (and interim ones for long-lived exchanges).

Templates 256-259, one per combination of address families (see layout.py). The record
is what the addon builds in a hook; its field order is the templates' field order, so
encoding reads it with one `astuple` call.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from .layout import FLOW_KEYS, FieldSpec, RecordLayout

FIRST_DATA_TEMPLATE_ID = 256  # the TR7 layout starts here too


class HttpFlowRecord(msgspec.Struct, gc=False):
    """One HTTP exchange (or one interval of a long-lived one), ready to encode.

    Its field order is the templates' (HTTP_FIELDS), so encoding reads it with one
    `astuple`; the record builder passes all fields positionally, in this order, since
    CPython hands more than 15 keyword arguments over in a dict.
    """

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
    uploaded_bytes: int = 0
    downloaded_bytes: int = 0
    status_code: int = 0
    flow_end_reason: int = 3
    termination_state: int = 0
    upstream_ttfb_ms: int = 0
    method: str = ""
    host: str = ""
    target: str = ""
    query: str = ""
    version: str = ""
    reason: str = ""
    user_agent: str = ""
    content_type: str = ""
    response_content_type: str = ""
    referrer: str = ""
    x_forwarded_for: str = ""
    cookie: str = ""
    tls_server_name: str = ""
    tls_version: str = ""


# Record attribute -> element name (IPv4 name, IPv6 name for addresses), in record order.
HTTP_FIELDS: FieldSpec = (
    *FLOW_KEYS,
    ("uploaded_bytes", "uploadedBytes"),
    ("downloaded_bytes", "downloadedBytes"),
    ("status_code", "httpStatusCode"),
    ("flow_end_reason", "flowEndReason"),
    ("termination_state", "httpTerminationStateCode"),
    ("upstream_ttfb_ms", "upstreamTimeToFirstByteMilliseconds"),
    ("method", "httpRequestMethod"),
    ("host", "httpRequestHost"),
    ("target", "httpRequestTarget"),
    ("query", "httpRequestQuery"),
    ("version", "httpMessageVersion"),
    ("reason", "httpReasonPhrase"),
    ("user_agent", "httpUserAgent"),
    ("content_type", "httpContentType"),
    ("response_content_type", "httpResponseContentType"),
    ("referrer", "httpReferrer"),
    ("x_forwarded_for", "httpXForwardedFor"),
    ("cookie", "httpCookie"),
    ("tls_server_name", "tlsServerName"),
    ("tls_version", "tlsProtocolVersion"),
)

# Defaults for the per-field limits (bytes of UTF-8) in IPFIX, where strings have
# variable length; a record must also fit one message, which may cut further.
DEFAULT_MAX_LENGTHS: Mapping[str, int] = {
    "httpRequestMethod": 32,
    "httpRequestHost": 255,
    "httpRequestTarget": 1024,
    "httpRequestQuery": 1024,
    "httpMessageVersion": 16,
    "httpReasonPhrase": 64,
    "httpUserAgent": 256,
    "httpContentType": 128,
    "httpResponseContentType": 128,
    "httpReferrer": 512,
    "httpXForwardedFor": 256,
    "httpCookie": 512,
    "tlsServerName": 255,
    "tlsProtocolVersion": 16,
}

# Fixed widths of strings in NetFlow v9, which has no variable-length fields. A value
# keeps at least one NUL byte at its end, so it carries at most width - 1 bytes.
DEFAULT_V9_WIDTHS: Mapping[str, int] = {
    "httpRequestMethod": 12,
    "httpRequestHost": 64,
    "httpRequestTarget": 128,
    "httpRequestQuery": 96,
    "httpMessageVersion": 12,
    "httpReasonPhrase": 32,
    "httpUserAgent": 96,
    "httpContentType": 48,
    "httpResponseContentType": 48,
    "httpReferrer": 96,
    "httpXForwardedFor": 48,
    "httpCookie": 64,
    "tlsServerName": 64,
    "tlsProtocolVersion": 12,
}


HTTP_RECORDS = RecordLayout("http", HttpFlowRecord, HTTP_FIELDS, FIRST_DATA_TEMPLATE_ID,
                            DEFAULT_MAX_LENGTHS, DEFAULT_V9_WIDTHS)


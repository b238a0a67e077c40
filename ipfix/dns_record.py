"""The DNS record: one per query and its answer (or its failure), over UDP or TCP.

IANA defines no DNS elements, so the question, the answer's code, flags and records are
our enterprise elements. The answers go as text ('name type data' per record), cut
between records by whoever builds the record, so a collector never sees half a record.
Templates 268-271, one per combination of address families (see layout.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from .layout import FLOW_KEYS, FieldSpec, RecordLayout

FIRST_DNS_TEMPLATE_ID = 268
ANSWER_SEPARATOR = "; "


class DnsRecord(msgspec.Struct, gc=False):
    """One DNS transaction, ready to encode; the field order is the templates' (DNS_FIELDS)."""

    flow_id: int = 0
    start_ms: int = 0
    end_ms: int = 0
    client_address: str = "0.0.0.0"
    proxy_address: str = "0.0.0.0"
    upstream_address: str = ""  # "" when the proxy answered itself or could not connect
    client_port: int = 0
    proxy_port: int = 0
    upstream_port: int = 0
    protocol: int = 17
    octets: int = 0
    initiator_octets: int = 0
    responder_octets: int = 0
    flow_end_reason: int = 3
    termination_state: int = 0
    transaction_id: int = 0
    query_name: str = ""
    query_type: int = 0
    query_class: int = 0
    response_code: int = 0
    flags: int = 0
    answer_count: int = 0
    answers: str = ""
    minimum_ttl: int = 0
    error: str = ""


DNS_FIELDS: FieldSpec = (
    *FLOW_KEYS,
    ("flow_end_reason", "flowEndReason"),
    ("termination_state", "flowTerminationStateCode"),
    ("transaction_id", "dnsTransactionId"),
    ("query_name", "dnsQueryName"),
    ("query_type", "dnsQueryType"),
    ("query_class", "dnsQueryClass"),
    ("response_code", "dnsResponseCode"),
    ("flags", "dnsFlags"),
    ("answer_count", "dnsAnswerCount"),
    ("answers", "dnsAnswers"),
    ("minimum_ttl", "dnsMinimumTtl"),
    ("error", "proxyErrorMessage"),
)

DEFAULT_MAX_LENGTHS: Mapping[str, int] = {
    "dnsQueryName": 255,
    "dnsAnswers": 1024,
    "proxyErrorMessage": 256,
}
DEFAULT_V9_WIDTHS: Mapping[str, int] = {
    "dnsQueryName": 64,
    "dnsAnswers": 128,
    "proxyErrorMessage": 96,
}

DNS_RECORDS = RecordLayout("dns", DnsRecord, DNS_FIELDS, FIRST_DNS_TEMPLATE_ID,
                           DEFAULT_MAX_LENGTHS, DEFAULT_V9_WIDTHS)

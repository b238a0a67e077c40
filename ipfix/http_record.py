"""The HTTP flow record and its templates, one per combination of address families.

The record is what the addon snapshots in a hook; its field order is the
template's field order, so encoding reads it with one `astuple` call. Client
and upstream may be of different families, hence four data templates:

    256 client IPv4, upstream IPv4     257 client IPv6, upstream IPv6
    258 client IPv4, upstream IPv6     259 client IPv6, upstream IPv4

A record without an upstream uses the client's family and a zero address.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum

import msgspec

from .datatypes import VARIABLE_LENGTH
from .errors import EncodeError
from .ie import InformationElement, Registry
from .netflow9 import DEFAULT_PRIVATE_BASE, FIRST_SWITCHED, LAST_SWITCHED, v9_field_type
from .session import SessionConfig
from .template import (
    RecordEncoder,
    Template,
    TemplateField,
    TruncationCounter,
    native_encode,
    plan_with_uptimes,
)

FIRST_DATA_TEMPLATE_ID = 256  # the TR7 layout starts here too


class Termination(IntEnum):
    """httpTerminationStateCode: how an exchange ended. Stable: documented in the README."""

    COMPLETED = 0
    CLIENT_ABORTED = 1
    UPSTREAM_CONNECT_FAILED = 2
    UPSTREAM_TIMEOUT = 3
    UPSTREAM_ABORTED = 4
    KILLED_BY_PROXY = 5
    REJECTED_BY_PROXY = 6
    PROXY_ERROR = 7

    @property
    def words(self) -> str:
        """For people: 'upstream connect failed'."""
        return self.name.lower().replace("_", " ")


class FlowEndReason(IntEnum):
    """flowEndReason values we send (IANA)."""

    ACTIVE_TIMEOUT = 2  # the record of an interval of a long-lived flow
    END_OF_FLOW = 3
    FORCED_END = 4  # an error, a kill, shutdown


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
HTTP_FIELDS: tuple[tuple[str, str | tuple[str, str]], ...] = (
    ("flow_id", "flowId"),
    ("start_ms", "flowStartMilliseconds"),
    ("end_ms", "flowEndMilliseconds"),
    ("client_address", ("sourceIPv4Address", "sourceIPv6Address")),
    ("proxy_address", ("destinationIPv4Address", "destinationIPv6Address")),
    ("upstream_address", ("postNATDestinationIPv4Address", "postNATDestinationIPv6Address")),
    ("client_port", "sourceTransportPort"),
    ("proxy_port", "destinationTransportPort"),
    ("upstream_port", "postNAPTDestinationTransportPort"),
    ("protocol", "protocolIdentifier"),
    ("octets", "octetDeltaCount"),
    ("initiator_octets", "initiatorOctets"),
    ("responder_octets", "responderOctets"),
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
if tuple(a for a, _ in HTTP_FIELDS) != HttpFlowRecord.__struct_fields__:
    raise AssertionError("HTTP_FIELDS must follow HttpFlowRecord's field order")

# (client is IPv6, upstream is IPv6) -> offset from the first template id
FAMILY_TEMPLATES: dict[tuple[bool, bool], int] = {
    (False, False): 0, (True, True): 1, (False, True): 2, (True, False): 3,
}

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


def http_elements(
    registry: Registry, client_v6: bool, upstream_v6: bool
) -> list[InformationElement]:
    """The data template's elements for one combination of address families."""
    elements = []
    for attribute, names in HTTP_FIELDS:
        if isinstance(names, tuple):
            v6 = upstream_v6 if attribute == "upstream_address" else client_v6
            elements.append(registry[names[1] if v6 else names[0]])
        else:
            elements.append(registry[names])
    return elements


def ipfix_http_templates(
    registry: Registry, first_id: int = FIRST_DATA_TEMPLATE_ID
) -> list[Template]:
    """The four IPFIX data templates, strings variable-length."""
    templates = []
    for (client_v6, upstream_v6), offset in sorted(FAMILY_TEMPLATES.items(), key=lambda i: i[1]):
        elements = http_elements(registry, client_v6, upstream_v6)
        fields = tuple(TemplateField(e, e.default_length) for e in elements)
        templates.append(Template(first_id + offset, fields))
    return templates


def netflow9_http_templates(
    registry: Registry,
    widths: Mapping[str, int] = DEFAULT_V9_WIDTHS,
    *,
    include_enterprise: bool = True,
    first_id: int = FIRST_DATA_TEMPLATE_ID,
) -> list[Template]:
    """The four v9 data templates: FIRST/LAST_SWITCHED first, strings at fixed widths."""
    first = registry["flowStartSysUpTime"]
    last = registry["flowEndSysUpTime"]
    assert (first.element_id, last.element_id) == (FIRST_SWITCHED, LAST_SWITCHED)
    templates = []
    for (client_v6, upstream_v6), offset in sorted(FAMILY_TEMPLATES.items(), key=lambda i: i[1]):
        fields = [TemplateField(first, 4), TemplateField(last, 4)]
        for element in http_elements(registry, client_v6, upstream_v6):
            if element.is_enterprise and not include_enterprise:
                continue
            length = element.default_length
            if length == VARIABLE_LENGTH:
                length = widths.get(element.name, 0)
                if not 1 < length < VARIABLE_LENGTH:  # one byte stays NUL
                    raise ValueError(f"{element.name}: v9 width must be 2..65534, not {length}")
            fields.append(TemplateField(element, length))
        templates.append(Template(first_id + offset, tuple(fields)))
    return templates


class HttpRecordEncoder:
    """Turns HttpFlowRecords into (template id, data record) for one wire format."""

    def __init__(
        self,
        templates: list[Template],
        *,
        max_lengths: Mapping[str, int] = DEFAULT_MAX_LENGTHS,
        netflow9_boot_time_ms: int | None = None,
        netflow9_private_base: int = DEFAULT_PRIVATE_BASE,
        truncations: TruncationCounter | None = None,
    ) -> None:
        self.truncations = truncations or TruncationCounter()
        self.templates = templates
        v9 = netflow9_boot_time_ms is not None
        self._encoders = [RecordEncoder(t, max_lengths, self.truncations,
                                        terminate_fixed_strings=v9) for t in templates]
        self._boot_ms = netflow9_boot_time_ms
        self._base_ms = netflow9_boot_time_ms or 0
        self._keep: list[int] | None = None
        if netflow9_boot_time_ms is not None:
            for template in templates:  # fail early on types v9 cannot carry
                for field in template.fields:
                    v9_field_type(field.element, netflow9_private_base)
            present = set(templates[0].names)
            keep = [i for i, (_, names) in enumerate(HTTP_FIELDS)
                    if isinstance(names, tuple) or names in present]
            self._keep = keep if len(keep) < len(HTTP_FIELDS) else None
        first_id = templates[0].template_id
        # by 2 * (client is IPv6) + (upstream is IPv6): FAMILY_TEMPLATES without a tuple
        self._lanes = [(first_id + offset, self._encoders[offset],
                        self._record_plan(self._encoders[offset]))
                       for _, offset in sorted(FAMILY_TEMPLATES.items())]

    def _record_plan(self, encoder: RecordEncoder) -> bytes | None:
        """The C plan that encodes a record's fields as they stand (astuple): the
        template's own, where v9's two uptimes come from start_ms and end_ms in C."""
        plan = encoder.native_plan
        if plan is None or self._boot_ms is None:
            return plan
        if self._keep is not None:
            return None  # fields left out: the Python path picks the values
        names = HttpFlowRecord.__struct_fields__  # FIRST_SWITCHED, LAST_SWITCHED lead
        return plan_with_uptimes(plan, [names.index("start_ms"), names.index("end_ms")])

    def encode(self, record: HttpFlowRecord, budget: int) -> tuple[int, bytes]:
        client_v6 = ":" in record.client_address
        upstream = record.upstream_address
        template_id, encoder, plan = self._lanes[
            2 * client_v6 + ((":" in upstream) if upstream else client_v6)]
        fields: tuple[object, ...] = msgspec.structs.astuple(record)
        try:
            # the usual case in one C call, v9's uptimes included: each Python step here
            # costs about as much as encoding a field
            result = None if plan is None else native_encode(fields, plan, self._base_ms)
            if result is None:
                data = encoder.encode(self._values(record, fields))
            else:
                data, cuts = result
                if cuts:
                    self.truncations.count += cuts
            if len(data) > budget:
                data = encoder.encode_within(self._values(record, fields), budget)
        except EncodeError as exc:
            raise EncodeError(f"flow {record.flow_id}: {exc}") from None
        return template_id, data

    def _values(self, record: HttpFlowRecord, fields: tuple[object, ...]) -> tuple[object, ...]:
        """The values in template order: v9's begin with FIRST/LAST_SWITCHED."""
        if self._boot_ms is None:
            return fields
        if self._keep is not None:
            fields = tuple(fields[i] for i in self._keep)
        boot = self._boot_ms
        # sysUpTime-relative; a flow that began before the exporter started begins at 0
        return (max(record.start_ms - boot, 0) & 0xFFFFFFFF,
                max(record.end_ms - boot, 0) & 0xFFFFFFFF, *fields)


class HttpRecordFormat:
    """HTTP exchanges as a kind of flow record, for ExportSession."""

    record_type = HttpFlowRecord

    def encoding(self, registry: Registry, config: SessionConfig, *,
                 netflow9_boot_time_ms: int | None,
                 truncations: TruncationCounter) -> HttpRecordEncoder:
        max_lengths = {**DEFAULT_MAX_LENGTHS, **config.max_lengths}
        if netflow9_boot_time_ms is None:
            return HttpRecordEncoder(ipfix_http_templates(registry), max_lengths=max_lengths,
                                     truncations=truncations)
        templates = netflow9_http_templates(
            registry, {**DEFAULT_V9_WIDTHS, **config.netflow9_widths},
            include_enterprise=config.netflow9_enterprise_fields)
        return HttpRecordEncoder(templates, max_lengths=max_lengths,
                                 netflow9_boot_time_ms=netflow9_boot_time_ms,
                                 netflow9_private_base=config.netflow9_private_base,
                                 truncations=truncations)


HTTP_RECORDS = HttpRecordFormat()

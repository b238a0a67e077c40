"""The information elements flowexport uses: one immutable registry.

This table is the single source for the wire format, the RFC 5610 type
records, the decoder's names, the README field reference and the collector
configuration files. Enterprise-specific element ids are part of our public
interface: once released, an id never changes meaning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from types import MappingProxyType

import msgspec

from .datatypes import NATURAL_SIZE, VARIABLE_LENGTH, DataType, Semantics, Units

IANA = 0  # enterprise number of IANA-registered elements (RFC 7011 §3.2)
# IANA lists 57011 as TR7 Siber Savunma AS; their ADC exports HTTP records with
# the same enterprise element ids, so collectors set up for that layout decode ours.
DEFAULT_ENTERPRISE_NUMBER = 57011


def snake_case(name: str) -> str:
    """httpXForwardedFor -> http_x_forwarded_for, postNATDestinationIPv4Address ->
    post_nat_destination_ipv4_address: element names as collectors' configurations want."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower().replace("i_pv", "ipv")


class InformationElement(msgspec.Struct, frozen=True):
    """One information element: identity, type and how to read it."""

    name: str
    element_id: int
    enterprise_number: int
    data_type: DataType
    semantics: Semantics = Semantics.DEFAULT
    units: Units = Units.NONE
    description: str = ""

    @property
    def is_enterprise(self) -> bool:
        return self.enterprise_number != IANA

    @property
    def default_length(self) -> int:
        """Length announced in a template when nothing else is asked for."""
        size = NATURAL_SIZE[self.data_type]
        return VARIABLE_LENGTH if size is None else size

    @property
    def key(self) -> tuple[int, int]:
        return (self.enterprise_number, self.element_id)


def _iana(
    name: str,
    element_id: int,
    data_type: DataType,
    semantics: Semantics = Semantics.DEFAULT,
    units: Units = Units.NONE,
    description: str = "",
) -> InformationElement:
    return InformationElement(name, element_id, IANA, data_type, semantics, units, description)


_T = DataType
_S = Semantics
_U = Units

# IANA "IP Flow Information Export (IPFIX) Entities" registry entries we use.
IANA_ELEMENTS: tuple[InformationElement, ...] = (
    _iana("octetDeltaCount", 1, _T.UNSIGNED64, _S.DELTA_COUNTER, _U.OCTETS,
          "Octets of the flow both ways (HTTP: request plus response, heads and bodies)"),
    _iana("protocolIdentifier", 4, _T.UNSIGNED8, _S.IDENTIFIER, _U.NONE,
          "Transport protocol: 6 (TCP) or 17 (UDP, QUIC, HTTP/3)"),
    _iana("sourceTransportPort", 7, _T.UNSIGNED16, _S.IDENTIFIER, _U.NONE, "Client port"),
    _iana("sourceIPv4Address", 8, _T.IPV4_ADDRESS, description="Client IPv4 address"),
    _iana("destinationTransportPort", 11, _T.UNSIGNED16, _S.IDENTIFIER, _U.NONE,
          "Port the proxy listens on (the virtual service)"),
    _iana("destinationIPv4Address", 12, _T.IPV4_ADDRESS,
          description="Proxy address the client connected to"),
    _iana("flowEndSysUpTime", 21, _T.UNSIGNED32, _S.DEFAULT, _U.MILLISECONDS,
          "NetFlow v9 LAST_SWITCHED: end time relative to the exporter's start"),
    _iana("flowStartSysUpTime", 22, _T.UNSIGNED32, _S.DEFAULT, _U.MILLISECONDS,
          "NetFlow v9 FIRST_SWITCHED: start time relative to the exporter's start"),
    _iana("sourceIPv6Address", 27, _T.IPV6_ADDRESS, description="Client IPv6 address"),
    _iana("destinationIPv6Address", 28, _T.IPV6_ADDRESS,
          description="Proxy address the client connected to"),
    _iana("samplingInterval", 34, _T.UNSIGNED32, _S.QUANTITY, _U.PACKETS,
          "1-in-N sampling: N (deprecated in IPFIX, read by NetFlow v9 collectors)"),
    _iana("samplingAlgorithm", 35, _T.UNSIGNED8, _S.IDENTIFIER, _U.NONE,
          "1 deterministic (1-in-N), 2 random (deprecated in IPFIX)"),
    _iana("exportedOctetTotalCount", 40, _T.UNSIGNED64, _S.TOTAL_COUNTER, _U.OCTETS,
          "Octets of all messages sent to this collector"),
    _iana("exportedMessageTotalCount", 41, _T.UNSIGNED64, _S.TOTAL_COUNTER, _U.MESSAGES,
          "Messages sent to this collector"),
    _iana("exportedFlowRecordTotalCount", 42, _T.UNSIGNED64, _S.TOTAL_COUNTER, _U.FLOWS,
          "Flow records sent to this collector"),
    _iana("exporterIPv4Address", 130, _T.IPV4_ADDRESS),
    _iana("exporterIPv6Address", 131, _T.IPV6_ADDRESS),
    _iana("flowEndReason", 136, _T.UNSIGNED8, _S.IDENTIFIER, _U.NONE,
          "1 idle timeout, 2 active timeout (interim record), 3 end of flow, 4 forced end"),
    _iana("meteringProcessId", 143, _T.UNSIGNED32, _S.IDENTIFIER),
    _iana("exportingProcessId", 144, _T.UNSIGNED32, _S.IDENTIFIER),
    _iana("flowId", 148, _T.UNSIGNED64, _S.IDENTIFIER, _U.NONE,
          "Stable 64-bit identifier of the flow (the same in its interim records)"),
    _iana("observationDomainId", 149, _T.UNSIGNED32, _S.IDENTIFIER),
    _iana("flowStartMilliseconds", 152, _T.DATE_TIME_MILLISECONDS, _S.DEFAULT, _U.MILLISECONDS,
          "When the flow began (HTTP: the request; others: the connection)"),
    _iana("flowEndMilliseconds", 153, _T.DATE_TIME_MILLISECONDS, _S.DEFAULT, _U.MILLISECONDS,
          "When the flow ended (or the interim interval closed)"),
    _iana("systemInitTimeMilliseconds", 160, _T.DATE_TIME_MILLISECONDS, _S.DEFAULT,
          _U.MILLISECONDS, "When the exporting process started"),
    _iana("notSentFlowTotalCount", 166, _T.UNSIGNED64, _S.TOTAL_COUNTER, _U.FLOWS,
          "Flow records dropped before export (queue full, send failure)"),
    _iana("notSentPacketTotalCount", 167, _T.UNSIGNED64, _S.TOTAL_COUNTER, _U.PACKETS),
    _iana("notSentOctetTotalCount", 168, _T.UNSIGNED64, _S.TOTAL_COUNTER, _U.OCTETS),
    _iana("postNATDestinationIPv4Address", 226, _T.IPV4_ADDRESS,
          description="Upstream server address (0.0.0.0 when none was connected)"),
    _iana("postNAPTDestinationTransportPort", 228, _T.UNSIGNED16, _S.IDENTIFIER, _U.NONE,
          "Upstream server port (0 when none was connected)"),
    _iana("initiatorOctets", 231, _T.UNSIGNED64, _S.DELTA_COUNTER, _U.OCTETS,
          "Octets from the client (HTTP: request head plus body)"),
    _iana("responderOctets", 232, _T.UNSIGNED64, _S.DELTA_COUNTER, _U.OCTETS,
          "Octets from the upstream (HTTP: response head plus body)"),
    _iana("postNATDestinationIPv6Address", 282, _T.IPV6_ADDRESS,
          description="Upstream server address (:: when none was connected)"),
    _iana("informationElementId", 303, _T.UNSIGNED16, _S.IDENTIFIER),
    _iana("selectorAlgorithm", 304, _T.UNSIGNED16, _S.IDENTIFIER),
    _iana("samplingPacketInterval", 305, _T.UNSIGNED32, _S.QUANTITY, _U.PACKETS),
    _iana("samplingPacketSpace", 306, _T.UNSIGNED32, _S.QUANTITY, _U.PACKETS),
    _iana("observationTimeMilliseconds", 323, _T.DATE_TIME_MILLISECONDS, _S.DEFAULT,
          _U.MILLISECONDS),
    _iana("informationElementDataType", 339, _T.UNSIGNED8),
    _iana("informationElementDescription", 340, _T.STRING),
    _iana("informationElementName", 341, _T.STRING),
    _iana("informationElementRangeBegin", 342, _T.UNSIGNED64, _S.QUANTITY),
    _iana("informationElementRangeEnd", 343, _T.UNSIGNED64, _S.QUANTITY),
    _iana("informationElementSemantics", 344, _T.UNSIGNED8),
    _iana("informationElementUnits", 345, _T.UNSIGNED16),
    _iana("privateEnterpriseNumber", 346, _T.UNSIGNED32, _S.IDENTIFIER),
    _iana("httpStatusCode", 457, _T.UNSIGNED16, _S.IDENTIFIER, _U.NONE,
          "Response status code (0 when no response)"),
    _iana("httpRequestMethod", 459, _T.STRING, description="Request method"),
    _iana("httpRequestHost", 460, _T.STRING,
          description="Host (or :authority) as the client sent it"),
    _iana("httpRequestTarget", 461, _T.STRING, description="Request path, without the query"),
    _iana("httpMessageVersion", 462, _T.STRING, description="HTTP version, e.g. HTTP/1.1"),
    _iana("httpUserAgent", 468, _T.STRING, description="User-Agent request header"),
    _iana("httpContentType", 469, _T.STRING, description="Content-Type of the request"),
    _iana("httpReasonPhrase", 470, _T.STRING, description="Response reason phrase"),
)

# (id, name, type, semantics, units, meaning) of our enterprise-specific elements.
# Ids are fixed forever once released; new elements take the next free id.
ENTERPRISE_ELEMENT_SPECS: tuple[tuple[int, str, DataType, Semantics, Units, str], ...] = (
    (1, "uploadedBytes", _T.UNSIGNED64, _S.DELTA_COUNTER, _U.OCTETS, "Request body bytes"),
    (2, "downloadedBytes", _T.UNSIGNED64, _S.DELTA_COUNTER, _U.OCTETS, "Response body bytes"),
    (3, "httpRequestQuery", _T.STRING, _S.DEFAULT, _U.NONE,
     "Query string without the leading '?'"),
    (4, "httpXForwardedFor", _T.STRING, _S.DEFAULT, _U.NONE, "X-Forwarded-For as received"),
    (5, "httpReferrer", _T.STRING, _S.DEFAULT, _U.NONE, "Referer request header"),
    (6, "httpCookie", _T.STRING, _S.DEFAULT, _U.NONE,
     "Cookie request header (exported only when configured)"),
    (7, "httpResponseContentType", _T.STRING, _S.DEFAULT, _U.NONE, "Content-Type of the response"),
    (8, "httpTerminationStateCode", _T.UNSIGNED8, _S.IDENTIFIER, _U.NONE,
     "How the exchange ended (see the termination codes)"),
    (9, "tlsServerName", _T.STRING, _S.DEFAULT, _U.NONE, "TLS SNI the client sent"),
    (10, "tlsProtocolVersion", _T.STRING, _S.DEFAULT, _U.NONE,
     "TLS version of the client connection, e.g. TLSv1.3"),
    (11, "upstreamTimeToFirstByteMilliseconds", _T.UNSIGNED32, _S.QUANTITY, _U.MILLISECONDS,
     "From the request sent upstream to the first response byte"),
    # the other kinds of flows mitmproxy carries: TCP/UDP streams, passthrough, TLS
    # handshake failures (connection records) and DNS
    (12, "proxyFlowKind", _T.UNSIGNED8, _S.IDENTIFIER, _U.NONE,
     "What a connection record describes: 1 TCP stream, 2 UDP stream, 3 passthrough "
     "(not intercepted), 4 TLS handshake failure"),
    (13, "initiatorMessages", _T.UNSIGNED64, _S.DELTA_COUNTER, _U.MESSAGES,
     "Messages (reads) the proxy relayed from the client"),
    (14, "responderMessages", _T.UNSIGNED64, _S.DELTA_COUNTER, _U.MESSAGES,
     "Messages (reads) the proxy relayed from the upstream"),
    (15, "flowTerminationStateCode", _T.UNSIGNED8, _S.IDENTIFIER, _U.NONE,
     "How the flow ended (see the termination codes)"),
    (16, "tlsApplicationProtocol", _T.STRING, _S.DEFAULT, _U.NONE,
     "ALPN protocol negotiated with the client, e.g. h2"),
    (17, "tlsOfferedApplicationProtocols", _T.STRING, _S.DEFAULT, _U.NONE,
     "ALPN protocols the client offered, comma-separated"),
    (18, "tlsOfferedVersion", _T.STRING, _S.DEFAULT, _U.NONE,
     "Highest TLS version the client's ClientHello offered, e.g. TLSv1.3"),
    (19, "proxyErrorMessage", _T.STRING, _S.DEFAULT, _U.NONE,
     "mitmproxy's error text when the flow did not complete"),
    (20, "dnsTransactionId", _T.UNSIGNED16, _S.IDENTIFIER, _U.NONE, "DNS message id"),
    (21, "dnsQueryName", _T.STRING, _S.DEFAULT, _U.NONE,
     "Name in the question, without the trailing dot"),
    (22, "dnsQueryType", _T.UNSIGNED16, _S.IDENTIFIER, _U.NONE,
     "Type in the question (1 A, 28 AAAA, 5 CNAME, ...)"),
    (23, "dnsQueryClass", _T.UNSIGNED16, _S.IDENTIFIER, _U.NONE, "Class in the question (1 IN)"),
    (24, "dnsResponseCode", _T.UNSIGNED8, _S.IDENTIFIER, _U.NONE,
     "RCODE of the answer (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN); 0 without one"),
    (25, "dnsFlags", _T.UNSIGNED16, _S.FLAGS, _U.NONE,
     "Flags word of the answer's header (QR, opcode, AA, TC, RD, RA, AD, CD, RCODE), of the "
     "query without one"),
    (26, "dnsAnswerCount", _T.UNSIGNED16, _S.QUANTITY, _U.NONE,
     "Resource records in the answer section"),
    (27, "dnsAnswers", _T.STRING, _S.DEFAULT, _U.NONE,
     "Answer section as text, 'name type data' per record, '; ' between records; cut "
     "between records"),
    (28, "dnsMinimumTtl", _T.UNSIGNED32, _S.QUANTITY, _U.SECONDS,
     "Lowest TTL in the answer section (0 without answers)"),
)


class Registry:
    """An immutable set of information elements, looked up by name or by (enterprise, id)."""

    __slots__ = ("_by_key", "_by_name", "enterprise_number")

    def __init__(self, elements: Iterable[InformationElement], enterprise_number: int) -> None:
        by_name: dict[str, InformationElement] = {}
        by_key: dict[tuple[int, int], InformationElement] = {}
        for element in elements:
            if element.name in by_name or element.key in by_key:
                raise ValueError(f"duplicate information element {element.name!r} {element.key}")
            by_name[element.name] = element
            by_key[element.key] = element
        self._by_name = MappingProxyType(by_name)
        self._by_key = MappingProxyType(by_key)
        self.enterprise_number = enterprise_number

    def __getitem__(self, name: str) -> InformationElement:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[InformationElement]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def lookup(self, enterprise_number: int, element_id: int) -> InformationElement | None:
        return self._by_key.get((enterprise_number, element_id))

    def enterprise_elements(self) -> tuple[InformationElement, ...]:
        return tuple(e for e in self if e.is_enterprise)


def build_registry(enterprise_number: int = DEFAULT_ENTERPRISE_NUMBER) -> Registry:
    """The registry with our enterprise elements under `enterprise_number`."""
    if not 0 < enterprise_number <= 0xFFFFFFFF:
        raise ValueError(f"enterprise number must be 1..4294967295, not {enterprise_number!r}")
    ours = (
        InformationElement(name, element_id, enterprise_number, data_type, semantics, units, text)
        for element_id, name, data_type, semantics, units, text in ENTERPRISE_ELEMENT_SPECS
    )
    return Registry((*IANA_ELEMENTS, *ours), enterprise_number)


DEFAULT_REGISTRY = build_registry()

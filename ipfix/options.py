"""Options templates and records: RFC 5610 type information and RFC 7011 §4 statistics.

Type records let a collector decode our enterprise elements with no
configuration; statistics records tell it how much the exporter sent and lost.
"""

from __future__ import annotations

import msgspec

from .ie import InformationElement, Registry
from .netflow9 import SCOPE_SYSTEM
from .template import Template, TemplateField, make_template

TYPE_INFO_TEMPLATE_ID = 260
METERING_STATISTICS_TEMPLATE_ID = 261
EXPORTING_STATISTICS_TEMPLATE_ID = 262
SAMPLING_TEMPLATE_ID = 263
NETFLOW9_STATISTICS_TEMPLATE_ID = 260
NETFLOW9_SAMPLING_TEMPLATE_ID = 261
SYSTEMATIC_COUNT_BASED = 1  # selectorAlgorithm (RFC 5477): 1-in-N
DETERMINISTIC = 1  # samplingAlgorithm (v9 SAMPLING_ALGORITHM)


class ExportStatistics(msgspec.Struct, kw_only=True):
    """Totals of one export session (one collector), as sent in statistics records."""

    messages: int = 0
    flow_records: int = 0
    octets: int = 0
    not_sent_flow_records: int = 0
    not_sent_messages: int = 0
    not_sent_octets: int = 0
    first_drop_ms: int = 0
    last_drop_ms: int = 0


# RFC 5610 §3.9's elements, all of them: libfixbuf (YAF, SiLK, super_mediator) applies a
# type record only when its template carries every one, the value range included.
TYPE_INFO_ELEMENTS = (
    "privateEnterpriseNumber", "informationElementId", "informationElementDataType",
    "informationElementSemantics", "informationElementUnits", "informationElementRangeBegin",
    "informationElementRangeEnd", "informationElementName", "informationElementDescription")
NO_RANGE = (0, 0)  # range begin and end both 0: the element's type limits its values


def type_info_template(registry: Registry) -> Template:
    """RFC 5610 §3.9: scope (privateEnterpriseNumber, informationElementId), then the type."""
    return make_template(TYPE_INFO_TEMPLATE_ID, [registry[n] for n in TYPE_INFO_ELEMENTS],
                         scope_field_count=2)


def type_info_values(element: InformationElement) -> tuple[object, ...]:
    return (element.enterprise_number, element.element_id, int(element.data_type),
            int(element.semantics), int(element.units), *NO_RANGE, element.name,
            element.description)


def metering_statistics_template(registry: Registry) -> Template:
    """RFC 7011 §4.1: what this observation domain exported."""
    names = ("observationDomainId", "exportedMessageTotalCount", "exportedFlowRecordTotalCount",
             "exportedOctetTotalCount")
    return make_template(METERING_STATISTICS_TEMPLATE_ID, [registry[n] for n in names],
                         scope_field_count=1)


def metering_statistics_values(domain: int, stats: ExportStatistics) -> tuple[object, ...]:
    return (domain, stats.messages, stats.flow_records, stats.octets)


def exporting_statistics_template(registry: Registry) -> Template:
    """RFC 7011 §4.3: what the exporting process could not send, and when it first and last
    lost a record (observationTimeMilliseconds twice, as §4.3 describes)."""
    names = ("exportingProcessId", "notSentFlowTotalCount", "notSentPacketTotalCount",
             "notSentOctetTotalCount", "observationTimeMilliseconds",
             "observationTimeMilliseconds")
    return make_template(EXPORTING_STATISTICS_TEMPLATE_ID, [registry[n] for n in names],
                         scope_field_count=1)


def exporting_statistics_values(process_id: int, stats: ExportStatistics) -> tuple[object, ...]:
    return (process_id, stats.not_sent_flow_records, stats.not_sent_messages,
            stats.not_sent_octets, stats.first_drop_ms, stats.last_drop_ms)


def netflow9_statistics_template(registry: Registry) -> Template:
    """v9 has one options template here: scope System, then the same totals as IPFIX."""
    names = ("exportedMessageTotalCount", "exportedFlowRecordTotalCount",
             "exportedOctetTotalCount", "notSentFlowTotalCount", "notSentPacketTotalCount",
             "notSentOctetTotalCount")
    fields = (TemplateField(SCOPE_SYSTEM, 4),
              *(TemplateField(registry[n], 8) for n in names))
    return Template(NETFLOW9_STATISTICS_TEMPLATE_ID, fields, scope_field_count=1)


def netflow9_statistics_values(source_id: int, stats: ExportStatistics) -> tuple[object, ...]:
    return (source_id, stats.messages, stats.flow_records, stats.octets,
            stats.not_sent_flow_records, stats.not_sent_messages, stats.not_sent_octets)


def sampling_template(registry: Registry) -> Template:
    """1-in-N flow sampling of an observation domain, in the PSAMP elements (RFC 5477) and in
    the older samplingInterval that many collectors still read."""
    names = ("observationDomainId", "selectorAlgorithm", "samplingPacketInterval",
             "samplingPacketSpace", "samplingInterval")
    return make_template(SAMPLING_TEMPLATE_ID, [registry[n] for n in names],
                         scope_field_count=1)


def sampling_values(domain: int, one_in: int) -> tuple[object, ...]:
    # PSAMP: select 1, then skip N-1
    return (domain, SYSTEMATIC_COUNT_BASED, 1, one_in - 1, one_in)


def netflow9_sampling_template(registry: Registry) -> Template:
    """v9 SAMPLING_INTERVAL (34) and SAMPLING_ALGORITHM (35) with scope System."""
    fields = (TemplateField(SCOPE_SYSTEM, 4), TemplateField(registry["samplingInterval"], 4),
              TemplateField(registry["samplingAlgorithm"], 1))
    return Template(NETFLOW9_SAMPLING_TEMPLATE_ID, fields, scope_field_count=1)


def netflow9_sampling_values(source_id: int, one_in: int) -> tuple[object, ...]:
    return (source_id, one_in, DETERMINISTIC)

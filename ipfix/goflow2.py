"""The scale-out pipeline's files, generated from the registry: N proxies -> goflow2 ->
Kafka -> ClickHouse.

goflow2 (v2.2) fills its own FlowMessage fields from the elements it knows (addresses,
ports, protocol, bytes, times) and puts every other element a mapping names into a field
of its own, declared in the mapping's `formatter.protobuf`. Its JSON output quotes string
values without escaping them (a `"`, a `\\` or the NUL padding of every NetFlow v9 string
makes the line invalid, and goflow2 drops it with the rest of its packet), so the
pipeline uses goflow2's protobuf output (`-format=bin`: each message prefixed by its
length) instead, read by ClickHouse's Kafka engine with `kafka_format = 'Protobuf'` and
the schema generated here; a materialized view turns raw addresses (4 or 16 bytes),
nanosecond times and NUL-padded strings into proper columns.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from .datatypes import DataType
from .ie import InformationElement, Registry, snake_case
from .netflow9 import DEFAULT_PRIVATE_BASE, v9_field_type
from .records import ALL_LAYOUTS

# goflow2's FlowMessage fields (pb/flow.proto, v2.2.3) that our records fill: name, number,
# protobuf type. `type` is its enum FlowType.
BUILTIN_FIELDS: tuple[tuple[str, int, str], ...] = (
    ("type", 1, "FlowType"), ("time_received_ns", 110, "uint64"),
    ("sequence_num", 4, "uint32"), ("sampling_rate", 3, "uint64"),
    ("sampler_address", 11, "bytes"), ("time_flow_start_ns", 111, "uint64"),
    ("time_flow_end_ns", 112, "uint64"), ("bytes", 9, "uint64"), ("packets", 10, "uint64"),
    ("src_addr", 6, "bytes"), ("dst_addr", 7, "bytes"), ("etype", 30, "uint32"),
    ("proto", 20, "uint32"), ("src_port", 21, "uint32"), ("dst_port", 22, "uint32"),
    ("observation_domain_id", 70, "uint32"))
FLOW_TYPES = ("FLOWUNKNOWN", "SFLOW_5", "NETFLOW_V5", "NETFLOW_V9", "IPFIX")
# our elements goflow2 reads into its own fields (producer/proto/producer_nf.go); it reads
# flowStart/EndSysUpTime (v9 FIRST/LAST_SWITCHED) into the times too
BUILTIN_ELEMENTS = {
    "sourceIPv4Address": "src_addr", "sourceIPv6Address": "src_addr",
    "destinationIPv4Address": "dst_addr", "destinationIPv6Address": "dst_addr",
    "sourceTransportPort": "src_port", "destinationTransportPort": "dst_port",
    "protocolIdentifier": "proto", "octetDeltaCount": "bytes",
    "flowStartMilliseconds": "time_flow_start_ns", "flowEndMilliseconds": "time_flow_end_ns"}
# our own fields' protobuf numbers: far above goflow2's, and stable since element ids are
IANA_FIELD_BASE, ENTERPRISE_FIELD_BASE = 2000, 1000


class CustomField(msgspec.Struct, frozen=True):
    """One field of ours in goflow2's messages: the elements it comes from, its protobuf
    number and goflow2 type (varint: big-endian unsigned; bytes: the value as sent)."""

    name: str
    index: int
    kind: str  # "varint", "string" or "bytes"
    elements: tuple[InformationElement, ...]

    @property
    def proto_type(self) -> str:
        return "uint64" if self.kind == "varint" else "bytes"

    @property
    def is_address(self) -> bool:
        return self.elements[0].data_type in (DataType.IPV4_ADDRESS, DataType.IPV6_ADDRESS)


def custom_fields(registry: Registry) -> list[CustomField]:
    """Every element of our records that goflow2 has no field of its own for, once."""
    fields: list[CustomField] = []
    seen: set[str] = set()
    for attribute, names in (spec for layout in ALL_LAYOUTS for spec in layout.fields):
        group = names if isinstance(names, tuple) else (names,)
        if group[0] in seen:
            continue
        seen.add(group[0])
        elements = tuple(registry[n] for n in group)
        if any(e.name in BUILTIN_ELEMENTS for e in elements):
            continue
        first = elements[0]
        if first.data_type in (DataType.IPV4_ADDRESS, DataType.IPV6_ADDRESS):
            name, kind = ("post_nat_dst_addr" if attribute == "upstream_address"
                          else attribute), "bytes"
        elif first.data_type is DataType.STRING:
            name, kind = snake_name(first), "string"
        else:
            name, kind = snake_name(first), "varint"
        if attribute == "upstream_port":
            name = "post_napt_dst_port"
        base = ENTERPRISE_FIELD_BASE if first.is_enterprise else IANA_FIELD_BASE
        fields.append(CustomField(name, base + first.element_id, kind, elements))
    return fields


def snake_name(element: InformationElement) -> str:
    return snake_case(element.name)


def mapping(registry: Registry, private_base: int = DEFAULT_PRIVATE_BASE) -> str:
    """goflow2's -mapping file: every field of our records, IPFIX and NetFlow v9. Every
    formatter field is one of goflow2's or declared under `protobuf:` (else goflow2
    refuses to start); `destination` names a declared field."""
    custom = custom_fields(registry)
    lines = ["# goflow2 -mapping for flowexport records (IPFIX and NetFlow v9).",
             "# Generated by `python -m ipfix.configs`; do not edit by hand.",
             "formatter:", "  fields:"]
    lines += [f"    - {name}" for name, _, _ in BUILTIN_FIELDS]
    lines += [f"    - {field.name}" for field in custom]
    lines.append("  protobuf:")
    for field in custom:
        lines += [f"    - name: {field.name}", f"      index: {field.index}",
                  f"      type: {field.kind}"]
    lines += ["  render:", "    proto: none  # the number, as the ClickHouse column wants it"]
    for field in custom:
        if field.kind == "string":
            lines.append(f"    {field.name}: string")
        elif field.is_address:
            lines.append(f"    {field.name}: ip")
    for section, netflow9 in (("ipfix", False), ("netflowv9", True)):
        lines += [f"{section}:", "  mapping:"]
        for field in custom:
            for element in field.elements:
                if netflow9:
                    lines.append(f"    - field: {v9_field_type(element, private_base)}")
                else:
                    lines.append(f"    - field: {element.element_id}")
                    if element.is_enterprise:
                        lines += ["      penprovided: true",
                                  f"      pen: {element.enterprise_number}"]
                lines.append(f"      destination: {field.name}")
    return "\n".join(lines) + "\n"


def proto_fields(registry: Registry) -> Iterator[tuple[str, int, str]]:
    """(name, number, protobuf type) of every field of goflow2's messages of our records."""
    yield from BUILTIN_FIELDS
    for field in custom_fields(registry):
        yield field.name, field.index, field.proto_type


def proto_schema(registry: Registry) -> str:
    """The protobuf schema of goflow2's -format=bin messages of our records: goflow2's own
    field numbers, and ours. For ClickHouse's Protobuf format (format_schema)."""
    lines = ["// flowexport records as goflow2 writes them (-format=bin) with",
             "// deploy/goflow2/mapping.yaml: goflow2's FlowMessage fields (pb/flow.proto,",
             "// v2.2.3) that our records fill, and our own. Strings are bytes: as sent",
             "// (NetFlow v9 pads them with NUL).",
             "// Generated by `python -m ipfix.configs`; do not edit by hand.",
             'syntax = "proto3";', "", "message FlowMessage {",
             "  enum FlowType {"]
    lines += [f"    {name} = {number};" for number, name in enumerate(FLOW_TYPES)]
    lines.append("  }")
    lines += [f"  {kind} {name} = {number};" for name, number, kind in proto_fields(registry)]
    lines.append("}")
    return "\n".join(lines) + "\n"


_INTS = {DataType.UNSIGNED8: "UInt8", DataType.UNSIGNED16: "UInt16",
         DataType.UNSIGNED32: "UInt32", DataType.UNSIGNED64: "UInt64"}
_QUEUE_TYPES = {"uint64": "UInt64", "uint32": "UInt32", "bytes": "String",
                "FlowType": "String"}


def _address(column: str) -> str:
    """4 or 16 raw bytes (or none) as an IPv6 column: IPv4 addresses as ::ffff:a.b.c.d."""
    return (f"if(length({column}) = 4, IPv4ToIPv6(toIPv4(reinterpretAsUInt32(reverse("
            f"{column})))), CAST(toFixedString({column}, 16) AS IPv6))")


def _time(column: str) -> str:
    return f"toDateTime64(fromUnixTimestamp64Nano(toInt64({column}), 'UTC'), 3, 'UTC')"


def clickhouse_schema(registry: Registry) -> str:
    """goflow2 -> Kafka (protobuf) -> ClickHouse: the queue table, the flows table, and the
    view between them that makes addresses, times and strings proper columns."""
    queue = ",\n".join(f"    {name} {_QUEUE_TYPES[kind]}"
                       for name, _, kind in proto_fields(registry))
    columns: list[tuple[str, str, str]] = [  # name, type, expression from the queue
        ("date", "Date", "toDate(flow_start)"),
        ("flow_start", "DateTime64(3, 'UTC')", _time("time_flow_start_ns")),
        ("flow_end", "DateTime64(3, 'UTC')", _time("time_flow_end_ns")),
        ("received", "DateTime64(3, 'UTC')", _time("time_received_ns")),
        ("exporter", "IPv6", _address("sampler_address")),
        ("observation_domain_id", "UInt32", "observation_domain_id"),
        ("sequence_num", "UInt32", "sequence_num"),
        ("type", "LowCardinality(String)", "type"),
        ("src_addr", "IPv6", _address("src_addr")),
        ("dst_addr", "IPv6", _address("dst_addr")),
        ("src_port", "UInt16", "src_port"), ("dst_port", "UInt16", "dst_port"),
        ("proto", "UInt8", "proto"), ("bytes", "UInt64", "bytes")]
    for field in custom_fields(registry):
        if field.is_address:
            columns.append((field.name, "IPv6", _address(field.name)))
        elif field.kind == "string":  # v9 strings: NUL padding off
            columns.append((field.name, "String",
                            f"replaceRegexpOne({field.name}, '\\\\x00+$', '')"))
        else:
            columns.append((field.name, _INTS[field.elements[0].data_type], field.name))
    table = ",\n".join(f"    {name} {kind}" for name, kind, _ in columns)
    view = ",\n".join(f"    {expression} AS {name}" for name, _, expression in columns)
    return "\n".join([
        "-- flowexport records from goflow2 (-format=bin, deploy/goflow2/mapping.yaml)",
        "-- through Kafka into ClickHouse. The Kafka table reads goflow2's protobuf messages",
        "-- with deploy/clickhouse/flowexport.proto (in ClickHouse's format_schemas folder).",
        "-- Generated by `python -m ipfix.configs`; do not edit by hand.",
        "",
        "CREATE TABLE IF NOT EXISTS flowexport_queue",
        "(",
        queue,
        ")",
        "ENGINE = Kafka",
        "SETTINGS kafka_broker_list = 'kafka:9092', kafka_topic_list = 'flows',",
        "         kafka_group_name = 'clickhouse-flowexport', kafka_format = 'Protobuf',",
        "         kafka_schema = 'flowexport.proto:FlowMessage';",
        "",
        "CREATE TABLE IF NOT EXISTS flowexport_flows",
        "(",
        table,
        ")",
        "ENGINE = MergeTree",
        "PARTITION BY date",
        "ORDER BY (date, exporter, flow_start, flow_id)",
        "TTL date + INTERVAL 30 DAY;",
        "",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS flowexport_queue_to_flows TO flowexport_flows",
        "AS SELECT",
        view,
        "FROM flowexport_queue;",
        "",
    ])

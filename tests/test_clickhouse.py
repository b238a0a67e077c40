"""goflow2 -> Kafka -> ClickHouse with goflow2's real encodings, not our idea of them.

goflow2 (v2.2.3, read from its source) writes each flow as a protobuf FlowMessage
prefixed by its length (-format=bin): its own fields by their pb/flow.proto numbers, and
every field our mapping declares as an extra field of that number (varint: the value as
a big-endian unsigned number; string and bytes: the bytes as sent, NetFlow v9's NUL
padding included). Here the protobuf library builds such messages from what our
exporter sends, and embedded ClickHouse (chdb) reads them with the generated schema,
through the generated tables and view. goflow2 itself is not in the package registries
this project uses; the same files were checked against a goflow2 built from source.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
import ruamel.yaml

from ipfix.connection_record import ConnectionRecord, FlowKind
from ipfix.datatypes import DataType
from ipfix.decoder import Decoder
from ipfix.dns_record import DnsRecord
from ipfix.goflow2 import BUILTIN_ELEMENTS, BUILTIN_FIELDS, FLOW_TYPES
from ipfix.http_record import HttpFlowRecord
from ipfix.ie import DEFAULT_REGISTRY
from ipfix.layout import RecordLayout
from ipfix.records import ALL_LAYOUTS, DEFAULT_MAX_LENGTHS, DEFAULT_V9_WIDTHS
from ipfix.session import ExportFormat
from tests.conftest import NOW_MS, run_session, sample_record

pytestmark = pytest.mark.slow  # embedded ClickHouse: run by .ci/run, not by -m 'not slow'

chdb = pytest.importorskip("chdb")
descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
from google.protobuf import descriptor_pool, message_factory  # noqa: E402
from google.protobuf.internal import encoder as protobuf_encoder  # noqa: E402

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROTO = DEPLOY / "clickhouse" / "flowexport.proto"
SCHEMA = DEPLOY / "clickhouse" / "schema.sql"
MAPPING = DEPLOY / "goflow2" / "mapping.yaml"

# goflow2's FlowMessage field names (pb/flow.proto, v2.2.3): what `formatter.fields` may
# name without declaring it
GOFLOW2_MESSAGE_FIELDS = frozenset((
    "type", "time_received_ns", "sequence_num", "sampling_rate", "sampler_address",
    "time_flow_start_ns", "time_flow_end_ns", "bytes", "packets", "src_addr", "dst_addr",
    "etype", "proto", "src_port", "dst_port", "in_if", "out_if", "src_mac", "dst_mac",
    "src_vlan", "dst_vlan", "vlan_id", "ip_tos", "forwarding_status", "ip_ttl", "ip_flags",
    "tcp_flags", "icmp_type", "icmp_code", "ipv6_flow_label", "fragment_id", "fragment_offset",
    "src_as", "dst_as", "next_hop", "next_hop_as", "src_net", "dst_net", "bgp_next_hop",
    "bgp_communities", "as_path", "mpls_ttl", "mpls_label", "mpls_ip", "observation_domain_id",
    "observation_point_id", "layer_stack", "layer_size", "ipv6_routing_header_addresses",
    "ipv6_routing_header_seg_left"))
GOFLOW2_RENDERERS = frozenset(("none", "ip", "mac", "etype", "proto", "datetime",
                               "datetimenano", "string"))
GOFLOW2_TYPES = frozenset(("varint", "string", "bytes"))


def goflow2_config_problems(mapping: dict[str, Any]) -> list[str]:
    """What goflow2 (producer/proto/config_impl.go) would refuse, or silently ignore."""
    problems = []
    formatter = mapping["formatter"]
    declared = {entry["name"]: entry for entry in formatter.get("protobuf", [])}
    render = formatter.get("render", {})
    for name in formatter["fields"]:
        if name not in GOFLOW2_MESSAGE_FIELDS and name not in declared and name not in render:
            problems.append(f"field {name} in config not found in protobuf")
    for name, entry in declared.items():
        if entry.get("type") not in GOFLOW2_TYPES:
            problems.append(f"could not map {name} to a ProtoType")
    indexes = [entry["index"] for entry in declared.values()]
    if len(set(indexes)) != len(indexes):
        problems.append("two declared fields share an index")
    problems += [f"{name} is not a renderer" for name, value in render.items()
                 if value not in GOFLOW2_RENDERERS]
    for section in ("ipfix", "netflowv9"):
        for entry in mapping.get(section, {}).get("mapping", []):
            # a destination must be a declared field (goflow2's own ones are matched by
            # their Go names; snake_case ones are silently ignored)
            if entry["destination"] not in declared:
                problems.append(f"{section}: destination {entry['destination']} is ignored")
            if set(entry) - {"field", "penprovided", "pen", "destination", "endianness"}:
                problems.append(f"{section}: unknown key in {entry}")
    return problems


def load_mapping() -> dict[str, Any]:
    return ruamel.yaml.YAML(typ="safe").load(MAPPING.read_text())  # type: ignore[no-any-return]


def test_goflow2_accepts_the_mapping_and_it_carries_every_field() -> None:
    mapping = load_mapping()
    assert goflow2_config_problems(mapping) == []
    # every element of the record: goflow2's own field, or one of ours, in both formats
    mapped = {(s, e["field"], e.get("pen")) for s in ("ipfix", "netflowv9")
              for e in mapping[s]["mapping"]}
    for attribute, names in _record_elements():
        for name in names:
            element = DEFAULT_REGISTRY[name]
            if name in BUILTIN_ELEMENTS:
                continue
            pen = element.enterprise_number if element.is_enterprise else None
            assert ("ipfix", element.element_id, pen) in mapped, attribute
            v9_type = element.element_id + (32768 if element.is_enterprise else 0)
            assert ("netflowv9", v9_type, None) in mapped, attribute
    upstream = [e for e in mapping["ipfix"]["mapping"] if e["field"] in (226, 282, 228)]
    assert {e["destination"] for e in upstream} == {"post_nat_dst_addr", "post_napt_dst_port"}
    assert mapping["formatter"]["render"]["post_nat_dst_addr"] == "ip"
    assert mapping["formatter"]["render"]["proto"] == "none"  # a number, not "TCP"


def test_the_check_catches_what_goflow2_refuses() -> None:
    """The rule check above can fail: the mapping shipped before this one did."""
    broken = load_mapping()
    broken["formatter"]["fields"].append("post_nat_dst_port_typo")
    broken["ipfix"]["mapping"].append({"field": 225, "destination": "next_hop_as"})
    problems = goflow2_config_problems(broken)
    assert "field post_nat_dst_port_typo in config not found in protobuf" in problems
    assert "ipfix: destination next_hop_as is ignored" in problems


def _record_elements() -> list[tuple[str, tuple[str, ...]]]:
    """(kind.attribute, its element names) of every kind of record."""
    return [(f"{layout.kind}.{a}", n if isinstance(n, tuple) else (n,))
            for layout in ALL_LAYOUTS for a, n in layout.fields]


def goflow2_destinations(fmt: ExportFormat) -> dict[str, tuple[str, str]]:
    """element name -> (destination, goflow2 type), read from the mapping as goflow2 reads
    it: IPFIX fields by element id and PEN, NetFlow v9 fields by type (32768 + id for an
    enterprise element)."""
    mapping = load_mapping()
    declared = {e["name"]: e["type"] for e in mapping["formatter"]["protobuf"]}
    section = "ipfix" if fmt is ExportFormat.IPFIX else "netflowv9"
    by_field = {(e["field"], e["pen"] if e.get("penprovided") else 0): e["destination"]
                for e in mapping[section]["mapping"]}
    found = {}
    for element in DEFAULT_REGISTRY:
        if fmt is ExportFormat.IPFIX:
            key = (element.element_id, element.enterprise_number)
        else:
            key = (element.element_id + (32768 if element.is_enterprise else 0), 0)
        if key in by_field:
            found[element.name] = (by_field[key], declared[by_field[key]])
    return found


def message_class() -> Any:
    """A FlowMessage class as goflow2 writes it: its own fields (pb/flow.proto), and every
    field the mapping declares, at the mapping's index (ClickHouse reads them with
    deploy/clickhouse/flowexport.proto, so the two must agree)."""
    file = descriptor_pb2.FileDescriptorProto(name="flowexport.proto", syntax="proto3")
    message = file.message_type.add(name="FlowMessage")
    flow_type = message.enum_type.add(name="FlowType")
    for number, name in enumerate(FLOW_TYPES):
        flow_type.value.add(name=name, number=number)
    kinds = {"uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
             "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
             "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
             "FlowType": descriptor_pb2.FieldDescriptorProto.TYPE_ENUM}
    declared = [(e["name"], e["index"], "uint64" if e["type"] == "varint" else "bytes")
                for e in load_mapping()["formatter"]["protobuf"]]
    for name, number, kind in (*BUILTIN_FIELDS, *declared):
        field = message.field.add(name=name, number=number, type=kinds[kind],
                                  label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
        if kind == "FlowType":
            field.type_name = ".FlowMessage.FlowType"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("FlowMessage"))


ADDRESSES = (DataType.IPV4_ADDRESS, DataType.IPV6_ADDRESS)


def packed(address: object) -> bytes:
    return ipaddress.ip_address(str(address)).packed if address else b""


def goflow2_messages(fmt: ExportFormat, records: Sequence[object], **config: object) -> bytes:
    """What goflow2 -format=bin writes for what our exporter sends (one session, every kind
    of record): the stream decoded, then every field filled the way goflow2's producer
    fills it, by the mapping."""
    flow_message = message_class()
    _, datagrams = run_session(records, fmt, layouts=ALL_LAYOUTS, **config)
    decoder = Decoder(strict_text=True)  # a string cut inside a character fails here
    out = bytearray()
    destinations = goflow2_destinations(fmt)
    for datagram in datagrams:
        message = decoder.decode(datagram.payload)
        for record in (r for r in message.records if not r.is_options):
            fields = record.fields
            values: dict[str, Any] = {
                "type": "IPFIX" if fmt is ExportFormat.IPFIX else "NETFLOW_V9",
                "time_received_ns": NOW_MS * 1_000_000,
                "sequence_num": message.sequence_number,
                "sampler_address": socket.inet_aton("127.0.0.1"),
                "observation_domain_id": message.observation_domain_id}
            if fmt is ExportFormat.IPFIX:  # flowStart/EndMilliseconds
                values["time_flow_start_ns"] = int(fields["flowStartMilliseconds"]) * 10**6
                values["time_flow_end_ns"] = int(fields["flowEndMilliseconds"]) * 10**6
            else:  # unix_secs * 1e9 - (sysUpTime - FIRST_SWITCHED) * 1e6, as goflow2 does
                base = message.export_time * 10**9 - message.sys_uptime_ms * 10**6
                values["time_flow_start_ns"] = base + int(fields["flowStartSysUpTime"]) * 10**6
                values["time_flow_end_ns"] = base + int(fields["flowEndSysUpTime"]) * 10**6
            for name, value in fields.items():
                target = BUILTIN_ELEMENTS.get(name)
                if target in ("src_addr", "dst_addr"):
                    values[target] = packed(value)
                elif target in ("src_port", "dst_port", "proto", "bytes"):
                    values[target] = value
                elif name in destinations:
                    destination, kind = destinations[name]
                    assert destination not in values, f"{name}: {destination} filled twice"
                    if kind == "varint":  # the field as a big-endian unsigned number
                        assert isinstance(value, int), f"{name} is no number"
                        values[destination] = value
                    elif DEFAULT_REGISTRY[name].data_type in ADDRESSES:  # string or bytes:
                        values[destination] = packed(value)  # the field's bytes as sent
                    else:
                        raw = str(value).encode()
                        if fmt is ExportFormat.NETFLOW9:  # NUL-padded to the v9 width
                            raw = raw.ljust(DEFAULT_V9_WIDTHS[name], b"\0")
                        values[destination] = raw
            body = flow_message(**values).SerializeToString()
            out += protobuf_encoder._VarintBytes(len(body)) + body  # protodelim
    return bytes(out)


HOSTILE = [
    sample_record(0, host="quote\".example", user_agent='ua "quoted" back\\slash',
                  query='q="x"&b=\\'),
    sample_record(1, user_agent="tab\tand \u00fcn\u00efc\u00f6de \u2603",
                  referrer="https://app.example/\u00e4"),
    sample_record(2, client_address="2001:db8::10", proxy_address="2001:db8::1",
                  upstream_address="2001:db8::7", status_code=503, reason="Unavailable"),
    sample_record(3, upstream_address="", status_code=0, reason="", termination_state=2,
                  flow_end_reason=4),
]


def load_schema(session: Any) -> None:
    """The generated DDL, the Kafka table as a Null table (chdb has no Kafka): inserts into
    it go through the same materialized view."""
    ddl = SCHEMA.read_text()
    kafka = ddl.index("ENGINE = Kafka")
    ddl = ddl[:kafka] + "ENGINE = Null;" + ddl[ddl.index(";", kafka) + 1:]
    code = "\n".join(line for line in ddl.splitlines() if not line.startswith("--"))
    for statement in (s.strip() for s in code.split(";")):
        if statement:
            session.query(statement)


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_every_record_reaches_clickhouse_whatever_its_strings_hold(
        tmp_path: Path, fmt: ExportFormat) -> None:
    stream = tmp_path / "goflow2.bin"
    stream.write_bytes(goflow2_messages(fmt, HOSTILE))
    from chdb import session as chdb_session

    session = chdb_session.Session(str(tmp_path / "chdb"))
    try:
        load_schema(session)
        session.query(f"INSERT INTO flowexport_queue SELECT * FROM file('{stream}', 'Protobuf')"
                      f" SETTINGS format_schema = '{PROTO}:FlowMessage'")
        result = session.query(
            "SELECT flow_id, toString(src_addr) AS src, toString(post_nat_dst_addr) AS up,"
            " toString(flow_start) AS start, toString(flow_end) AS end, proto, src_port,"
            " http_request_host, http_user_agent, http_request_query, http_referrer,"
            " http_status_code, http_termination_state_code, type"
            " FROM flowexport_flows ORDER BY flow_id", "JSONEachRow")
        rows = [json.loads(line) for line in str(result).splitlines() if line.strip()]
    finally:
        session.close()
    assert [row["flow_id"] for row in rows] == [r.flow_id for r in HOSTILE]  # every one
    for row, record in zip(rows, HOSTILE, strict=True):
        mapped = "::ffff:" if "." in record.client_address else ""
        assert row["src"] == mapped + record.client_address
        upstream = record.upstream_address or ("::" if ":" in record.client_address
                                               else "0.0.0.0")
        assert row["up"] == ("::ffff:" + upstream if "." in upstream else upstream)
        assert row["start"] == _clickhouse_time(record.start_ms)
        assert row["end"] == _clickhouse_time(record.end_ms)
        assert (row["proto"], row["src_port"]) == (6, record.client_port)
        assert row["http_request_host"] == record.host  # no NUL padding left
        assert row["http_user_agent"] == record.user_agent
        assert row["http_request_query"] == record.query
        assert row["http_referrer"] == record.referrer
        assert row["http_status_code"] == record.status_code
        assert row["http_termination_state_code"] == record.termination_state
        assert row["type"] == ("IPFIX" if fmt is ExportFormat.IPFIX else "NETFLOW_V9")


def _clickhouse_time(ms: int) -> str:
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{ms % 1000:03d}"


# Connection and DNS records at the edges of their columns: counters at 2**64 - 1, 8-, 16-
# and 32-bit fields at their maxima, every combination of address families (each kind's
# four templates) and no upstream in either family, strings of 2-, 3- and 4-byte
# characters longer than their IPFIX limits and v9 widths
MAX64, MAX32, MAX16, MAX8 = 2**64 - 1, 2**32 - 1, 2**16 - 1, 2**8 - 1
EMOJI, EURO, UMLAUT = "\U0001f600", "\u20ac", "\u00fc"
CONNECTIONS = [
    ConnectionRecord(
        flow_id=2000, start_ms=NOW_MS - 100, end_ms=NOW_MS, client_address="192.0.2.20",
        proxy_address="192.0.2.1", upstream_address="198.51.100.20", client_port=MAX16,
        proxy_port=443, upstream_port=MAX16, protocol=6, octets=MAX64,
        initiator_octets=MAX64, responder_octets=MAX64, initiator_messages=MAX64,
        responder_messages=MAX64, flow_end_reason=MAX8, termination_state=MAX8, kind=MAX8,
        tls_server_name="b" + UMLAUT * 200 + ".example", tls_version="TLSv1.3" + EURO * 30,
        tls_alpn="h2," + EMOJI * 40, tls_offered_alpn="h2,http/1.1," + EURO * 200,
        tls_offered_version="TLSv1." + UMLAUT * 20,
        error="a" * 94 + EMOJI * 100),  # v9 cuts inside the first emoji, IPFIX the 41st
    ConnectionRecord(
        flow_id=2001, start_ms=NOW_MS - 90, end_ms=NOW_MS - 1,
        client_address="2001:db8::20", proxy_address="2001:db8::1", upstream_address="",
        client_port=1, proxy_port=53, upstream_port=0, protocol=17, octets=1,
        initiator_octets=1, responder_octets=0, initiator_messages=1, responder_messages=0,
        flow_end_reason=1, termination_state=3, kind=FlowKind.UDP_STREAM,
        error='no upstream: "quoted" back\\slash\ttab'),
    ConnectionRecord(
        flow_id=2002, start_ms=NOW_MS - 80, end_ms=NOW_MS, client_address="192.0.2.21",
        proxy_address="192.0.2.1", upstream_address="2001:db8::7", client_port=40002,
        proxy_port=8443, upstream_port=443, octets=517, initiator_octets=517,
        initiator_messages=1, termination_state=4, kind=FlowKind.TLS_FAILURE,
        tls_server_name="shop.example", tls_offered_alpn="h2,http/1.1",
        tls_offered_version="TLSv1.3", error="x" * 95),  # exactly v9's 95 bytes
    ConnectionRecord(
        flow_id=2003, start_ms=NOW_MS - 70, end_ms=NOW_MS, client_address="2001:db8::21",
        proxy_address="2001:db8::1", upstream_address="198.51.100.21", client_port=40003,
        proxy_port=8080, upstream_port=22, octets=0, kind=FlowKind.PASSTHROUGH),
]
DNS = [
    DnsRecord(
        flow_id=3000, start_ms=NOW_MS - 60, end_ms=NOW_MS, client_address="192.0.2.30",
        proxy_address="192.0.2.1", upstream_address="198.51.100.53", client_port=MAX16,
        proxy_port=53, upstream_port=53, protocol=17, octets=MAX64, initiator_octets=MAX64,
        responder_octets=MAX64, flow_end_reason=MAX8, termination_state=MAX8,
        transaction_id=MAX16, query_name="x" * 62 + UMLAUT + "." + EURO * 100,
        query_type=MAX16, query_class=MAX16, response_code=MAX8, flags=0xFFFF,
        answer_count=MAX16,
        answers="; ".join(f"b{UMLAUT}cher.example A 192.0.2.{n}" for n in range(60)),
        minimum_ttl=MAX32, error=EURO * 100),
    DnsRecord(
        flow_id=3001, start_ms=NOW_MS - 50, end_ms=NOW_MS, client_address="2001:db8::30",
        proxy_address="2001:db8::1", upstream_address="", client_port=5353, proxy_port=53,
        octets=40, initiator_octets=40, termination_state=2, transaction_id=1,
        query_name="unanswered.example", query_type=28, query_class=1, flags=0x0100,
        error="upstream unreachable"),
    DnsRecord(
        flow_id=3002, start_ms=NOW_MS - 40, end_ms=NOW_MS, client_address="2001:db8::31",
        proxy_address="2001:db8::1", upstream_address="2001:db8::53", client_port=5354,
        proxy_port=53, upstream_port=53, protocol=6, octets=300, initiator_octets=60,
        responder_octets=240, transaction_id=0x1234, query_name="q" * 64,  # v9: one over
        query_type=1, query_class=1, response_code=3, flags=0x8183,
        answers='a "quoted"\\answer\t' + "y" * 108),  # exactly v9's 127 bytes
    DnsRecord(
        flow_id=3003, start_ms=NOW_MS - 35, end_ms=NOW_MS, client_address="192.0.2.31",
        proxy_address="192.0.2.1", upstream_address="2001:db8::53", client_port=5355,
        proxy_port=53, upstream_port=53, octets=100, initiator_octets=40,
        responder_octets=60, transaction_id=7, query_name="v4.example", query_type=1,
        query_class=1, flags=0x8180, answer_count=1, answers="v4.example A 192.0.2.99",
        minimum_ttl=300),
    DnsRecord(
        flow_id=3004, start_ms=NOW_MS - 30, end_ms=NOW_MS, client_address="192.0.2.32",
        proxy_address="192.0.2.1", upstream_address="", client_port=5356, proxy_port=53,
        octets=30, initiator_octets=30, termination_state=5, transaction_id=8,
        query_name="refused.example", query_type=16, query_class=1, flags=0x0120,
        error="unparsed"),
    DnsRecord(
        flow_id=MAX64, start_ms=NOW_MS - 20, end_ms=NOW_MS, client_address="2001:db8::32",
        proxy_address="2001:db8::1", upstream_address="198.51.100.53", client_port=5357,
        proxy_port=53, upstream_port=53, octets=120, initiator_octets=50,
        responder_octets=70, transaction_id=9, query_name="v6.example", query_type=28,
        query_class=1, flags=0x8180, answer_count=1, answers="v6.example AAAA 2001:db8::99",
        minimum_ttl=60),
]

# the column of the flows table each attribute of a record lands in (what a ClickHouse
# user queries); a column no kind fills stays at its default
COMMON_COLUMNS = {
    "flow_id": "flow_id", "src_addr": "client_address", "dst_addr": "proxy_address",
    "post_nat_dst_addr": "upstream_address", "src_port": "client_port",
    "dst_port": "proxy_port", "post_napt_dst_port": "upstream_port", "proto": "protocol",
    "bytes": "octets", "initiator_octets": "initiator_octets",
    "responder_octets": "responder_octets", "flow_end_reason": "flow_end_reason"}
KIND_COLUMNS: dict[type[msgspec.Struct], dict[str, str]] = {
    HttpFlowRecord: {
        **COMMON_COLUMNS, "uploaded_bytes": "uploaded_bytes",
        "downloaded_bytes": "downloaded_bytes", "http_status_code": "status_code",
        "http_termination_state_code": "termination_state",
        "upstream_time_to_first_byte_milliseconds": "upstream_ttfb_ms",
        "http_request_method": "method", "http_request_host": "host",
        "http_request_target": "target", "http_request_query": "query",
        "http_message_version": "version", "http_reason_phrase": "reason",
        "http_user_agent": "user_agent", "http_content_type": "content_type",
        "http_response_content_type": "response_content_type",
        "http_referrer": "referrer", "http_x_forwarded_for": "x_forwarded_for",
        "http_cookie": "cookie", "tls_server_name": "tls_server_name",
        "tls_protocol_version": "tls_version"},
    ConnectionRecord: {
        **COMMON_COLUMNS, "initiator_messages": "initiator_messages",
        "responder_messages": "responder_messages",
        "flow_termination_state_code": "termination_state", "proxy_flow_kind": "kind",
        "tls_server_name": "tls_server_name", "tls_protocol_version": "tls_version",
        "tls_application_protocol": "tls_alpn",
        "tls_offered_application_protocols": "tls_offered_alpn",
        "tls_offered_version": "tls_offered_version", "proxy_error_message": "error"},
    DnsRecord: {
        **COMMON_COLUMNS, "flow_termination_state_code": "termination_state",
        "dns_transaction_id": "transaction_id", "dns_query_name": "query_name",
        "dns_query_type": "query_type", "dns_query_class": "query_class",
        "dns_response_code": "response_code", "dns_flags": "flags",
        "dns_answer_count": "answer_count", "dns_answers": "answers",
        "dns_minimum_ttl": "minimum_ttl", "proxy_error_message": "error"},
}
# columns goflow2 fills from the message rather than the record
MESSAGE_COLUMNS = frozenset(("date", "flow_start", "flow_end", "received", "exporter",
                             "observation_domain_id", "sequence_num", "type"))


def fitted(text: str, limit: int) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, between characters."""
    while len(text.encode()) > limit:
        text = text[:-1]
    return text


def expected_row(record: Any, fmt: ExportFormat) -> dict[str, Any]:
    """Every column that carries a value of `record`, as ClickHouse shows it."""
    layout: RecordLayout = next(x for x in ALL_LAYOUTS if isinstance(record, x.record_type))
    elements = dict(layout.fields)
    row: dict[str, Any] = {}
    for column, attribute in KIND_COLUMNS[type(record)].items():
        value = getattr(record, attribute)
        names = elements[attribute]
        element = DEFAULT_REGISTRY[names if isinstance(names, str) else names[0]]
        if isinstance(names, tuple):  # an address; none: the client's family's zero
            value = value or ("::" if ":" in record.client_address else "0.0.0.0")
            address = ipaddress.ip_address(value)
            row[column] = (address if address.version == 6
                           else ipaddress.IPv6Address(f"::ffff:{address}"))
        elif element.data_type is DataType.STRING:
            limit = DEFAULT_MAX_LENGTHS[element.name]
            if fmt is ExportFormat.NETFLOW9:  # fixed width, one NUL byte kept
                limit = min(limit, DEFAULT_V9_WIDTHS[element.name] - 1)
            row[column] = fitted(value, limit)
        else:
            row[column] = int(value)
    return row


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_every_kind_of_record_reaches_clickhouse_column_for_column(
        tmp_path: Path, fmt: ExportFormat) -> None:
    """HTTP, connection and DNS records in one stream: every column of every row holds what
    was sent (numbers not narrowed, strings cut as sent and without v9's NUL padding), and
    the columns of other kinds hold their defaults."""
    records: list[Any] = [*HOSTILE, *CONNECTIONS, *DNS]
    for kind, columns in KIND_COLUMNS.items():  # every value sent is looked at
        assert {*columns.values(), "start_ms", "end_ms"} == set(kind.__struct_fields__)
    stream = tmp_path / "goflow2.bin"
    # messages large enough for whole records (a record too large for a 1400-byte message
    # has its longest strings cut further, see RecordEncoder.encode_within), and smaller
    # than the 9000 bytes goflow2 reads of a datagram
    stream.write_bytes(goflow2_messages(fmt, records, max_message_size=4000))
    from chdb import session as chdb_session

    session = chdb_session.Session(str(tmp_path / "chdb"))
    try:
        load_schema(session)
        session.query(f"INSERT INTO flowexport_queue SELECT * FROM file('{stream}', 'Protobuf')"
                      f" SETTINGS format_schema = '{PROTO}:FlowMessage'")
        result = session.query(
            "SELECT * FROM flowexport_flows ORDER BY flow_id"
            " SETTINGS output_format_json_quote_64bit_integers = 0", "JSONEachRow")
        rows = [json.loads(line) for line in str(result).splitlines() if line.strip()]
    finally:
        session.close()
    assert [row["flow_id"] for row in rows] == [r.flow_id for r in records]  # every one
    sequence = -1
    for row, record in zip(rows, records, strict=True):
        sent = expected_row(record, fmt)
        got: dict[str, Any] = {}
        for column, value in row.items():
            if column in MESSAGE_COLUMNS:
                continue
            if column in sent and isinstance(sent[column], ipaddress.IPv6Address):
                got[column] = ipaddress.IPv6Address(value)
            elif column in sent or value not in (0, "", "::"):  # another kind's: default
                got[column] = value
        assert got == sent, record.flow_id
        assert row["flow_start"] == _clickhouse_time(record.start_ms)
        assert row["flow_end"] == _clickhouse_time(record.end_ms)
        assert row["date"] == row["flow_start"][:10]
        assert row["received"] == _clickhouse_time(NOW_MS)
        assert row["exporter"] == "::ffff:127.0.0.1"
        assert row["observation_domain_id"] == 1
        assert row["type"] == ("IPFIX" if fmt is ExportFormat.IPFIX else "NETFLOW_V9")
        assert row["sequence_num"] >= sequence  # records went in flow_id order
        sequence = row["sequence_num"]
    # the data means what it says: strings were cut, in v9 inside a character
    cut = [expected_row(r, fmt) for r in (CONNECTIONS[0], DNS[0])]
    assert cut[0]["proxy_error_message"] != CONNECTIONS[0].error
    assert cut[1]["dns_answers"] != DNS[0].answers
    if fmt is ExportFormat.NETFLOW9:
        assert cut[0]["proxy_error_message"] == "a" * 94
        assert expected_row(DNS[2], fmt)["dns_answers"] == DNS[2].answers  # fits exactly
        assert expected_row(DNS[2], fmt)["dns_query_name"] == "q" * 63
